//! `proof` and `verify-proof`: a receipt's inclusion proof against the
//! latest signed checkpoint, in the c2sp.org/tlog-proof layout, carrying in
//! its `extra` line what an offline verifier needs besides the pinned master
//! public key: the receipt's envelope, its context, and the master-signed
//! `observer.key` receipt that announced its chain key.
//!
//! The `extra` data is unauthenticated by the format; here it is bound:
//! the envelope's SHA-256 is the receipt hash whose leaf the proof includes,
//! the context matches the signed payload_digest, and the announcement is
//! signed by the pinned key.
use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{
    anchors::{
        key_announcement, master_rotations, note_origin, store_masters, verify_note_signature,
    },
    CtlError,
};
use observer_daemon::receipt::verify::receipt as receipt_check;
use observer_daemon::receipt::{
    checkpoint::{self, Checkpoint},
    jcs, json as strict_json,
    merkle::{self, Hash},
    store::{Store, StoreNodes},
    verify::{MasterEpoch, Outcome},
};

/// The members an `extra` object may have.
const EXTRA_MEMBERS: &[&str] = &[
    "v",
    "envelope",
    "context",
    "key_announcement",
    "master_rotations",
];

/// Version of the `extra` object.
const EXTRA_VERSION: u64 = 1;

/// The tlog-proof text of the receipt `receipt_hash`.
pub fn make_proof(store: &Store, receipt_hash: &[u8]) -> Result<String, CtlError> {
    let row = store.receipt_by_hash(receipt_hash)?.ok_or_else(|| {
        CtlError::Usage(format!(
            "receipt {} is not in the store",
            hex::encode(receipt_hash)
        ))
    })?;
    let cp = store
        .latest_checkpoint()?
        .ok_or_else(|| CtlError::Usage("the store has no signed checkpoint yet".into()))?;
    if row.leaf_index >= cp.size {
        return Err(CtlError::Usage(format!(
            "receipt {} (log index {}) is not yet covered by a checkpoint (latest size {}); \
             retry after the next checkpoint",
            hex::encode(receipt_hash),
            row.leaf_index,
            cp.size
        )));
    }
    let path = merkle::inclusion_proof(&StoreNodes(store), row.leaf_index, cp.size)
        .map_err(|e| CtlError::Store(format!("building the inclusion proof: {e}")))?;
    let envelope = strict_json::parse_strict(row.envelope.as_bytes())
        .map_err(|e| CtlError::Store(format!("stored envelope: {e}")))?;
    let kid = envelope["signature"]["kid"].as_str().unwrap_or_default();
    let announcement = key_announcement(store, kid)?;
    let mut extra = json!({
        "v": EXTRA_VERSION,
        "envelope": row.envelope,
        "context": row.context,
        "key_announcement": announcement.map(|(e, c)| json!({"envelope": e, "context": c})),
    });
    // After a key rotation: every master rotation, so the pinned genesis
    // key walks to the master that signed the checkpoint.
    let rotations = master_rotations(store)?;
    if !rotations.is_empty() {
        extra["master_rotations"] = serde_json::to_value(&rotations)
            .map_err(|e| CtlError::Store(format!("master rotations: {e}")))?;
    }
    let extra = jcs::canonicalize(&extra).map_err(|e| CtlError::Store(e.to_string()))?;
    let text = checkpoint::format_tlog_proof(row.leaf_index, &path, &cp.note);
    // format_tlog_proof writes no extra line: it goes after the header.
    let (header, rest) = text.split_once('\n').unwrap_or((&text, ""));
    Ok(format!("{header}\nextra {}\n{rest}", BASE64.encode(extra)))
}

/// Checks a proof file with only the pinned master key. Returns the report
/// and whether everything passed.
pub fn verify_proof(text: &str, master: &[u8]) -> (Value, bool) {
    let mut checks: Vec<receipt_check::Check> = Vec::new();
    let fail = |check, detail: String| receipt_check::Check {
        check,
        outcome: Outcome::Fail,
        detail,
    };
    let parsed = match checkpoint::parse_tlog_proof(text) {
        Ok(p) => p,
        Err(e) => {
            checks.push(fail("proof_format", e.to_string()));
            return report(Value::Null, None, checks);
        }
    };
    let extra = match parsed
        .extra
        .as_deref()
        .ok_or("the proof has no extra line with the receipt".to_string())
        .and_then(|b| strict_json::parse_strict(b).map_err(|e| format!("extra: {e}")))
    {
        Ok(v) if v["v"] == EXTRA_VERSION && v["envelope"].is_string() => {
            // Exactly the members a proof is written with: a misspelt or
            // extra member (an edited proof) is refused, not ignored.
            let unknown = v.as_object().and_then(|o| {
                o.keys()
                    .find(|k| !EXTRA_MEMBERS.contains(&k.as_str()))
                    .cloned()
            });
            if let Some(k) = unknown {
                checks.push(fail(
                    "proof_format",
                    format!("extra has an unknown member {k:?}"),
                ));
                return report(Value::Null, None, checks);
            }
            v
        }
        Ok(_) => {
            checks.push(fail(
                "proof_format",
                "extra is not an observer proof object (v 1 with an envelope)".into(),
            ));
            return report(Value::Null, None, checks);
        }
        Err(e) => {
            checks.push(fail("proof_format", e));
            return report(Value::Null, None, checks);
        }
    };
    let envelope_text = extra["envelope"].as_str().unwrap_or_default();
    let context = extra["context"].as_str();
    let receipt_hash: Hash = Sha256::digest(envelope_text.as_bytes()).into();
    let origin = note_origin(&parsed.checkpoint_text);
    let rotations: Vec<observer_daemon::receipt::retention::RotationAnchor> =
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
        verify_note_signature(signer),
    ) {
        Ok(cp) => {
            checks.push(receipt_check::Check {
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
            checks.push(receipt_check::Check {
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
    report(receipt, cp, checks)
}

fn report(
    receipt: Value,
    cp: Option<Checkpoint>,
    checks: Vec<receipt_check::Check>,
) -> (Value, bool) {
    let ok = receipt_check::all_pass(&checks);
    (
        json!({
            "ok": ok,
            "receipt": receipt,
            "checkpoint": cp.map(|c| json!({"origin": c.origin, "size": c.size, "root": BASE64.encode(c.root)})),
            "checks": checks,
            "first_failure": receipt_check::first_problem(&checks),
        }),
        ok,
    )
}

/// The `log_inclusion` check of a stored receipt: its recomputed leaf
/// under the latest checkpoint signed by `master`.
pub fn inclusion_check(
    store: &Store,
    master: &[u8],
    leaf_index: u64,
) -> Result<receipt_check::Check, CtlError> {
    let check = |outcome, detail: String| receipt_check::Check {
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
    let row = store
        .connection()
        .query_row(
            "SELECT receipt_envelope(envelope_text, sig) FROM receipts WHERE leaf_index = ?1",
            [leaf_index as i64],
            |r| r.get::<_, String>(0),
        )
        .map_err(super::sql_err(store))?;
    let receipt_hash: Hash = Sha256::digest(row.as_bytes()).into();
    let leaf = merkle::leaf_hash(&receipt_hash);
    let path = match merkle::inclusion_proof(&StoreNodes(store), leaf_index, cp.size) {
        Ok(p) => p,
        Err(e) => return Ok(check(Outcome::Fail, e.to_string())),
    };
    let origin = note_origin(&cp.note);
    // Signed by the master current after the checkpoint's last leaf.
    let masters = store_masters(store, master)?;
    let signer: &[u8] = MasterEpoch::at(&masters, cp.size).map_or(master, |m| &m.public_key);
    let opened = checkpoint::open_note(&cp.note, &origin, signer, verify_note_signature(signer));
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
