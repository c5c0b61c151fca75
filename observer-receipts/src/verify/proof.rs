//! Verification of a receipt's inclusion proof (`observerctl prove`): the
//! c2sp.org/tlog-proof layout whose `extra` line carries what an offline
//! verifier needs besides the pinned master public key: the receipt's
//! envelope, its context, the master-signed `observer.key` receipt that
//! announced its chain key, and the master rotations since the log began.
//!
//! The `extra` data is unauthenticated by the format; here it is bound:
//! the envelope's SHA-256 is the receipt hash whose leaf the proof includes,
//! the context matches the signed payload_digest, and the announcement is
//! signed by a master walked from the pinned key.
use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::{
    checkpoint::{self, Checkpoint},
    json as strict_json,
    merkle::{self, Hash},
    retention::RotationAnchor,
    store::{Store, StoreNodes},
    verify::{
        masters::{note_origin, note_signature_verifier, store_masters, MasterEpoch},
        receipt::{self as receipt_check, Check},
        Outcome, VerifyError,
    },
};

/// The members an `extra` object may have.
pub const EXTRA_MEMBERS: &[&str] = &[
    "v",
    "envelope",
    "context",
    "key_announcement",
    "master_rotations",
];

/// Version of the `extra` object.
pub const EXTRA_VERSION: u64 = 1;

/// What verifying a proof found: the receipt it proves, the checkpoint it
/// is included under (if its signature verified), and every check in the
/// order it ran. Serialised as `observerctl verify-proof --json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct ProofReport {
    /// Every check passed.
    pub ok: bool,
    /// The receipt's hash, log index and identifying payload members
    /// (null when the proof could not be read).
    pub receipt: Value,
    /// The checkpoint the receipt is included under.
    pub checkpoint: Option<CheckpointSummary>,
    /// Every check, in the order run.
    pub checks: Vec<Check>,
    /// The first check that did not pass, as `check: detail`.
    pub first_failure: Option<String>,
}

/// A checkpoint as a proof report names it.
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointSummary {
    /// The log's origin line.
    pub origin: String,
    /// The tree size.
    pub size: u64,
    /// The tree root, standard base64 (as in the note).
    pub root: String,
}

impl ProofReport {
    fn new(receipt: Value, cp: Option<Checkpoint>, checks: Vec<Check>) -> ProofReport {
        ProofReport {
            ok: receipt_check::all_pass(&checks),
            receipt,
            checkpoint: cp.map(|c| CheckpointSummary {
                origin: c.origin,
                size: c.size,
                root: BASE64.encode(c.root),
            }),
            first_failure: receipt_check::first_problem(&checks),
            checks,
        }
    }

    /// The report as a JSON value (members in name order).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

fn fail(check: &'static str, detail: String) -> Check {
    Check {
        check,
        outcome: Outcome::Fail,
        detail,
    }
}

/// The `extra` object of a parsed proof, or why it is not one: exactly
/// the members a proof is written with, so that a misspelt or added
/// member (an edited proof) is refused, not ignored.
fn read_extra(parsed: &checkpoint::TlogProof) -> Result<Value, String> {
    let v = parsed
        .extra
        .as_deref()
        .ok_or("the proof has no extra line with the receipt".to_string())
        .and_then(|b| strict_json::parse_strict(b).map_err(|e| format!("extra: {e}")))?;
    if v["v"] != EXTRA_VERSION || !v["envelope"].is_string() {
        return Err("extra is not an observer proof object (v 1 with an envelope)".into());
    }
    let unknown = v.as_object().and_then(|o| {
        o.keys()
            .find(|k| !EXTRA_MEMBERS.contains(&k.as_str()))
            .cloned()
    });
    match unknown {
        Some(k) => Err(format!("extra has an unknown member {k:?}")),
        None => Ok(v),
    }
}

/// Checks a proof file's text with only the pinned master public key.
pub fn verify_proof(text: &str, master: &[u8]) -> ProofReport {
    let mut checks: Vec<Check> = Vec::new();
    let parsed = match checkpoint::parse_tlog_proof(text) {
        Ok(p) => p,
        Err(e) => {
            checks.push(fail("proof_format", e.to_string()));
            return ProofReport::new(Value::Null, None, checks);
        }
    };
    let extra = match read_extra(&parsed) {
        Ok(v) => v,
        Err(e) => {
            checks.push(fail("proof_format", e));
            return ProofReport::new(Value::Null, None, checks);
        }
    };
    let envelope_text = extra["envelope"].as_str().unwrap_or_default();
    let context = extra["context"].as_str();
    let receipt_hash: Hash = Sha256::digest(envelope_text.as_bytes()).into();
    let origin = note_origin(&parsed.checkpoint_text);
    let rotations: Vec<RotationAnchor> =
        serde_json::from_value(extra["master_rotations"].clone()).unwrap_or_default();
    let masters = match receipt_check::walk_masters(master, &rotations) {
        Ok(m) => m,
        Err(e) => {
            checks.push(fail("master_rotation", e));
            vec![MasterEpoch::genesis(master)]
        }
    };
    // The checkpoint is signed by the master current after its last leaf.
    let size = parsed
        .checkpoint_text
        .lines()
        .nth(1)
        .and_then(|l| l.parse::<u64>().ok())
        .unwrap_or(0);
    let signer: &[u8] = MasterEpoch::at(&masters, size).map_or(master, |m| &m.public_key);
    let cp = match parsed.verify(
        &merkle::leaf_hash(&receipt_hash),
        &origin,
        signer,
        note_signature_verifier(signer),
    ) {
        Ok(cp) => {
            checks.push(Check {
                check: "log_inclusion",
                outcome: Outcome::Pass,
                detail: format!(
                    "leaf {} of {} under the checkpoint signed by the pinned key",
                    parsed.index, cp.size
                ),
            });
            Some(cp)
        }
        Err(e) => {
            checks.push(fail("log_inclusion", e.to_string()));
            None
        }
    };
    let envelope = strict_json::parse_strict(envelope_text.as_bytes()).unwrap_or(Value::Null);
    let issuer = envelope["payload"]["issuer_id"]
        .as_str()
        .unwrap_or_default();
    let kid = envelope["signature"]["kid"].as_str().unwrap_or_default();
    if !issuer.starts_with(&format!("{origin}/agent/")) {
        checks.push(fail(
            "issuer",
            format!("issuer {issuer:?} is not a chain of the log {origin:?}"),
        ));
    }
    let announcement = extra["key_announcement"].as_object().map(|a| {
        (
            a.get("envelope")
                .and_then(Value::as_str)
                .unwrap_or_default(),
            a.get("context").and_then(Value::as_str).unwrap_or_default(),
        )
    });
    let key = match receipt_check::authorise_key_after_rotations(
        &masters,
        issuer,
        kid,
        parsed.index,
        announcement,
    ) {
        Ok(pk) => {
            checks.push(Check {
                check: "key_authorised",
                outcome: Outcome::Pass,
                detail: String::new(),
            });
            Some(pk)
        }
        Err(e) => {
            checks.push(fail("key_authorised", e));
            None
        }
    };
    checks.extend(receipt_check::check_receipt(
        envelope_text,
        context,
        key.as_deref(),
    ));
    let receipt = json!({
        "receipt_hash": hex::encode(receipt_hash),
        "leaf_index": parsed.index,
        "issuer_id": issuer,
        "seq": envelope["payload"]["seq"],
        "agent_id": envelope["payload"]["agent_id"],
        "action_type": envelope["payload"]["action_type"],
        "issued_at": envelope["payload"]["issued_at"],
    });
    ProofReport::new(receipt, cp, checks)
}

/// The `log_inclusion` check of a stored receipt: its recomputed leaf
/// under the latest checkpoint signed by the master walked from `master`
/// (the pinned genesis key) that was current at the checkpoint's size.
pub fn inclusion_check(
    store: &Store,
    master: &[u8],
    leaf_index: u64,
) -> Result<Check, VerifyError> {
    let check = |outcome, detail: String| Check {
        check: "log_inclusion",
        outcome,
        detail,
    };
    let Some(cp) = store.latest_checkpoint()? else {
        return Ok(check(Outcome::Unverifiable, "no checkpoint yet".into()));
    };
    if leaf_index >= cp.size {
        return Ok(check(
            Outcome::Unverifiable,
            format!("after the latest checkpoint (size {})", cp.size),
        ));
    }
    let envelope = store.envelope_at(leaf_index)?;
    let receipt_hash: Hash = Sha256::digest(envelope.as_bytes()).into();
    let leaf = merkle::leaf_hash(&receipt_hash);
    let path = match merkle::inclusion_proof(&StoreNodes(store), leaf_index, cp.size) {
        Ok(p) => p,
        Err(e) => return Ok(check(Outcome::Fail, e.to_string())),
    };
    let origin = note_origin(&cp.note);
    // Signed by the master current after the checkpoint's last leaf.
    let masters = store_masters(store, master)?;
    let signer: &[u8] = MasterEpoch::at(&masters, cp.size).map_or(master, |m| &m.public_key);
    let opened = checkpoint::open_note(&cp.note, &origin, signer, note_signature_verifier(signer));
    Ok(match opened {
        Err(e) => check(
            Outcome::Fail,
            format!("checkpoint at size {}: {e}", cp.size),
        ),
        Ok(c) => match merkle::verify_inclusion(&leaf, leaf_index, c.size, &path, &c.root) {
            Ok(()) => check(
                Outcome::Pass,
                format!("leaf {leaf_index} of the checkpoint at size {}", c.size),
            ),
            Err(e) => check(Outcome::Fail, e.to_string()),
        },
    })
}
