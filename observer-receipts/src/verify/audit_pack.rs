//! Verification of an audit pack (RECEIPTS.md "Audit pack"): one JSON
//! bundle with the receipts and contexts of a time window, the chain heads
//! at its start and end, the checkpoints with an inclusion proof per
//! receipt and consistency proofs between successive checkpoints, the key
//! announcements and JWK Set, and a manifest signed by the master key. It
//! verifies offline with only the pinned master public key.
//!
//! The bundle is written in JCS form (no insignificant whitespace), so any
//! one-byte change is a change of content. `observerctl audit-pack export`
//! builds it with [`FORMAT`], [`VERSION`] and [`projection`].
use std::collections::{BTreeMap, HashMap};

use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{
    checkpoint, jcs, json as strict_json, keys,
    merkle::{self, Hash},
    mldsa::{LibcruxVerifier, Verifier},
    payload,
    retention::RotationAnchor,
    verify::{
        masters::{note_origin, note_signature_verifier, walk_rotations, MasterEpoch},
        receipt::{self as receipt_check, Check},
        Outcome,
    },
};

/// The manifest's `format`.
pub const FORMAT: &str = "observer-audit-pack";
/// The manifest's `version`.
pub const VERSION: u64 = 1;

/// The projection P the manifest signs: the pack without the manifest's
/// digest and signature.
pub fn projection(pack: &Value) -> Value {
    let mut p = pack.clone();
    if let Some(m) = p["manifest"].as_object_mut() {
        m.remove("bundle_digest");
        m.remove("bundle_signature");
    }
    p
}

/// What verifying a pack found: per check how many passed and failed, and
/// every failure in the order found. Serialised as `observerctl
/// audit-pack verify --json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct PackReport {
    /// No check failed.
    pub ok: bool,
    /// Receipts in the pack.
    pub receipts: usize,
    /// Per check, by name.
    pub checks: BTreeMap<&'static str, PassFail>,
    /// The first of `failures`.
    pub first_failure: Option<PackFailure>,
    /// Every failure, in the order found.
    pub failures: Vec<PackFailure>,
}

/// How many times a check passed and failed.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct PassFail {
    /// Times it passed.
    pub pass: u64,
    /// Times it failed.
    pub fail: u64,
}

/// One failed check and where in the pack it failed.
#[derive(Debug, Clone, Serialize)]
pub struct PackFailure {
    /// The check's name.
    pub check: &'static str,
    /// Where: its members sit beside `check` and `reason`.
    #[serde(flatten)]
    pub place: Place,
    /// Why it failed.
    pub reason: String,
}

/// Where a failure is: nothing for the pack as a whole, else the chain,
/// the receipt or the key at fault.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Place {
    /// The chain (issuer id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain: Option<String>,
    /// The receipt's seq in its chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// The receipt hash, hex, as recomputed from the envelope.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt_hash: Option<String>,
    /// The key id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
}

impl Place {
    fn pack() -> Place {
        Place::default()
    }

    fn key(kid: &str) -> Place {
        Place {
            kid: Some(kid.to_string()),
            ..Place::default()
        }
    }

    fn chain(issuer: &str) -> Place {
        Place {
            chain: Some(issuer.to_string()),
            ..Place::default()
        }
    }

    fn link(issuer: &str, seq: u64) -> Place {
        Place {
            seq: Some(seq),
            ..Place::chain(issuer)
        }
    }

    fn receipt(issuer: &str, seq: u64, receipt_hash: String) -> Place {
        Place {
            receipt_hash: Some(receipt_hash),
            ..Place::link(issuer, seq)
        }
    }
}

impl PackReport {
    /// The report as a JSON value (members in name order).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// The counts and failures gathered so far, in the order found.
#[derive(Default)]
struct Findings {
    checks: BTreeMap<&'static str, PassFail>,
    failures: Vec<PackFailure>,
}

impl Findings {
    fn record(&mut self, check: &'static str, ok: bool, place: Place, reason: impl Into<String>) {
        let c = self.checks.entry(check).or_default();
        if ok {
            c.pass += 1;
        } else {
            c.fail += 1;
            self.failures.push(PackFailure {
                check,
                place,
                reason: reason.into(),
            });
        }
    }

    fn finish(self, receipts: usize) -> PackReport {
        PackReport {
            ok: self.failures.is_empty(),
            receipts,
            checks: self.checks,
            first_failure: self.failures.first().cloned(),
            failures: self.failures,
        }
    }
}

/// Verifies a pack (its bytes as written) with only the pinned master
/// public key.
pub fn verify_audit_pack(bytes: &[u8], master: &[u8]) -> PackReport {
    let mut f = Findings::default();
    let pack = match strict_json::parse_strict(bytes) {
        Ok(v) => v,
        Err(e) => {
            f.record(
                "format",
                false,
                Place::pack(),
                format!("not a valid bundle: {e}"),
            );
            return f.finish(0);
        }
    };
    let masters = check_masters(&mut f, &pack, master);
    check_manifest(
        &mut f,
        &pack,
        masters.last().map_or(master, |m| &m.public_key),
    );
    let origin = pack["manifest"]["origin"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let roots = check_checkpoints(&mut f, &pack, &masters, master, &origin);
    let authorised = check_keys(&mut f, &pack, &masters);
    let receipts = pack["receipts"].as_array().cloned().unwrap_or_default();
    let chains = check_receipts(
        &mut f,
        &pack,
        &receipts,
        &masters,
        &authorised,
        &roots,
        &origin,
    );
    check_chains(&mut f, &pack, &chains);
    f.finish(receipts.len())
}

/// The masters, walked from the pinned genesis key through the pack's
/// master rotations; the pack is signed by the last one.
fn check_masters(f: &mut Findings, pack: &Value, master: &[u8]) -> Vec<MasterEpoch> {
    let rotations: Vec<RotationAnchor> = pack["master_rotations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| RotationAnchor {
            leaf_index: r["leaf_index"].as_u64().unwrap_or(u64::MAX),
            envelope: jcs_text(&r["envelope"]),
            context: jcs_text(&r["context"]),
        })
        .collect();
    let genesis = MasterEpoch::genesis(master);
    match walk_rotations(&genesis, &rotations) {
        Ok(masters) => {
            f.record("master_rotation", true, Place::pack(), "");
            masters
        }
        Err(e) => {
            f.record("master_rotation", false, Place::pack(), e);
            vec![genesis]
        }
    }
}

/// The manifest's format, and its digest and signature over the
/// projection under the `current` master.
fn check_manifest(f: &mut Findings, pack: &Value, current: &[u8]) {
    let m = &pack["manifest"];
    f.record(
        "format",
        m["format"] == FORMAT && m["version"] == VERSION,
        Place::pack(),
        format!("manifest format must be {FORMAT} version {VERSION}"),
    );
    f.record(
        "capture_topology",
        m["capture_topology"] == payload::CAPTURE_TOPOLOGY,
        Place::pack(),
        "manifest capture_topology must be passive_telemetry",
    );
    match jcs::canonicalize(&projection(pack)) {
        Ok(p) => {
            let digest = format!("sha256:{}", hex::encode(Sha256::digest(&p)));
            f.record(
                "bundle_digest",
                m["bundle_digest"] == digest.as_str(),
                Place::pack(),
                format!("bundle_digest is not {digest}"),
            );
            let sig = m["bundle_signature"]
                .as_str()
                .and_then(|s| BASE64.decode(s).ok())
                .unwrap_or_default();
            let verdict = LibcruxVerifier.verify(current, &p, &sig);
            f.record(
                "bundle_signature",
                verdict.is_ok(),
                Place::pack(),
                format!(
                    "bundle_signature does not verify under the current master key (the pinned key or its last rotation): {}",
                    verdict.err().map(|e| e.to_string()).unwrap_or_default()
                ),
            );
        }
        Err(e) => f.record("bundle_digest", false, Place::pack(), e.to_string()),
    }
}

/// The checkpoints' signatures and the consistency between successive
/// ones; returns the root of each checkpoint that verified, by size.
fn check_checkpoints(
    f: &mut Findings,
    pack: &Value,
    masters: &[MasterEpoch],
    master: &[u8],
    origin: &str,
) -> HashMap<u64, Hash> {
    let mut roots: HashMap<u64, Hash> = HashMap::new();
    for note in pack["checkpoints"].as_array().into_iter().flatten() {
        let note = note.as_str().unwrap_or_default();
        // Signed by the master current after the tree's last leaf.
        let size = note
            .lines()
            .nth(1)
            .and_then(|l| l.parse::<u64>().ok())
            .unwrap_or(0);
        let signer: &[u8] = MasterEpoch::at(masters, size).map_or(master, |m| &m.public_key);
        match checkpoint::open_note(note, origin, signer, note_signature_verifier(signer)) {
            Ok(cp) => {
                f.record("checkpoint_signature", true, Place::pack(), "");
                roots.insert(cp.size, cp.root);
            }
            Err(e) => f.record(
                "checkpoint_signature",
                false,
                Place::pack(),
                format!("checkpoint {:?}: {e}", note_origin(note)),
            ),
        }
    }
    let mut sizes: Vec<u64> = roots.keys().copied().collect();
    sizes.sort_unstable();
    let proofs: HashMap<(u64, u64), Vec<Hash>> = pack["consistency_proofs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| {
            Some((
                (c["from"].as_u64()?, c["to"].as_u64()?),
                hashes(&c["proof"])?,
            ))
        })
        .collect();
    for pair in sizes.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let ok = proofs
            .get(&(a, b))
            .is_some_and(|p| merkle::verify_consistency(a, b, &roots[&a], &roots[&b], p).is_ok());
        f.record(
            "consistency",
            ok,
            Place::pack(),
            format!("no valid consistency proof from checkpoint size {a} to {b}"),
        );
    }
    roots
}

/// Chain keys, authorised by master-signed announcements, and the JWK
/// Set; returns the authorised keys: kid to (issuer, public key).
fn check_keys(
    f: &mut Findings,
    pack: &Value,
    masters: &[MasterEpoch],
) -> HashMap<String, (String, Vec<u8>)> {
    let mut authorised: HashMap<String, (String, Vec<u8>)> = HashMap::new();
    for a in pack["key_announcements"].as_array().into_iter().flatten() {
        let env = jcs_text(&a["envelope"]);
        let ctx = jcs_text(&a["context"]);
        let issuer = a["context"]["issuer_id"].as_str().unwrap_or_default();
        let kid = a["context"]["kid"].as_str().unwrap_or_default();
        // Announced by one of the masters (a re-announcement after a
        // rotation is signed by the new one).
        let mut verdict = Err(String::new());
        for m in masters {
            verdict = receipt_check::authorise_key(&m.public_key, issuer, kid, Some((&env, &ctx)));
            if verdict.is_ok() {
                break;
            }
        }
        match verdict {
            Ok(pk) => {
                f.record("key_authorised", true, Place::pack(), "");
                authorised.insert(kid.to_string(), (issuer.to_string(), pk));
            }
            Err(e) => f.record("key_authorised", false, Place::key(kid), e),
        }
    }
    for jwk in pack["jwks"]["keys"].as_array().into_iter().flatten() {
        let pk = keys::public_key_from_jwk(jwk).ok();
        let kid = pk.as_deref().map(keys::thumbprint).unwrap_or_default();
        let ok = masters
            .iter()
            .any(|m| pk.as_deref() == Some(&*m.public_key))
            || authorised
                .get(&kid)
                .is_some_and(|(_, a)| Some(a) == pk.as_ref());
        f.record(
            "jwks",
            ok,
            Place::key(&kid),
            "a key of the JWK Set is neither the pinned master key nor announced by it",
        );
    }
    authorised
}

/// One receipt's place in its chain: (seq, previousReceiptHash, payload
/// hash).
type Link = (u64, String, String);

/// Each receipt: its hash, key, own checks and inclusion under the
/// manifest's checkpoint; returns the links of each chain, in pack order.
fn check_receipts(
    f: &mut Findings,
    pack: &Value,
    receipts: &[Value],
    masters: &[MasterEpoch],
    authorised: &HashMap<String, (String, Vec<u8>)>,
    roots: &HashMap<u64, Hash>,
    origin: &str,
) -> BTreeMap<String, Vec<Link>> {
    let inclusion_size = pack["manifest"]["inclusion_checkpoint_size"]
        .as_u64()
        .unwrap_or(0);
    let mut chains: BTreeMap<String, Vec<Link>> = BTreeMap::new();
    for r in receipts {
        let env_text = jcs_text(&r["envelope"]);
        let ctx_text = (!r["context"].is_null()).then(|| jcs_text(&r["context"]));
        let hash: Hash = Sha256::digest(env_text.as_bytes()).into();
        let p = &r["envelope"]["payload"];
        let issuer = p["issuer_id"].as_str().unwrap_or_default().to_string();
        let seq = p["seq"].as_u64().unwrap_or(0);
        let at = Place::receipt(&issuer, seq, hex::encode(hash));
        f.record(
            "receipt_hash",
            r["receipt_hash"] == hex::encode(hash).as_str(),
            at.clone(),
            "receipt_hash is not the SHA-256 of the envelope's JCS form",
        );
        let kid = r["envelope"]["signature"]["kid"]
            .as_str()
            .unwrap_or_default();
        let leaf = r["leaf_index"].as_u64().unwrap_or(u64::MAX);
        // On the observer chain: the master current at the receipt's log
        // index (bound by its inclusion proof).
        let signer = MasterEpoch::at(masters, leaf);
        let key = if issuer == format!("{origin}/agent/observer") {
            signer
                .filter(|m| m.kid == kid)
                .map(|m| m.public_key.to_vec())
        } else {
            authorised
                .get(kid)
                .filter(|(i, _)| *i == issuer)
                .map(|(_, pk)| pk.clone())
        };
        f.record(
            "key_authorised",
            key.is_some(),
            at.clone(),
            format!("key {kid} is not authorised for {issuer} by the pinned master key"),
        );
        for c in receipt_check::check_receipt(&env_text, ctx_text.as_deref(), key.as_deref()) {
            let Check {
                check,
                outcome,
                detail,
            } = c;
            if outcome == Outcome::Unverifiable && key.is_none() {
                continue;
            }
            f.record(check, outcome == Outcome::Pass, at.clone(), detail);
        }
        let ok = match (roots.get(&inclusion_size), hashes(&r["inclusion_proof"])) {
            (Some(root), Some(proof)) => merkle::verify_inclusion(
                &merkle::leaf_hash(&hash),
                leaf,
                inclusion_size,
                &proof,
                root,
            )
            .is_ok(),
            _ => false,
        };
        f.record(
            "log_inclusion",
            ok,
            at,
            format!(
                "not included at log index {leaf} under the checkpoint of size {inclusion_size}"
            ),
        );
        chains.entry(issuer).or_default().push((
            seq,
            p["previousReceiptHash"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            receipt_check::payload_hash(p),
        ));
    }
    chains
}

/// Chains: contiguous from the start head to the end head, and no head
/// without receipts.
fn check_chains(f: &mut Findings, pack: &Value, chains: &BTreeMap<String, Vec<Link>>) {
    let heads = |k: &str| -> HashMap<String, (u64, String)> {
        pack["chain_heads"][k]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|h| {
                Some((
                    h["issuer_id"].as_str()?.to_string(),
                    (h["seq"].as_u64()?, h["payload_hash"].as_str()?.to_string()),
                ))
            })
            .collect()
    };
    let (starts, ends) = (heads("start"), heads("end"));
    for (issuer, links) in chains {
        let mut links = links.clone();
        links.sort_by_key(|l| l.0);
        let (Some(start), Some(end)) = (starts.get(issuer), ends.get(issuer)) else {
            f.record(
                "chain_heads",
                false,
                Place::chain(issuer),
                "no chain head for this chain",
            );
            continue;
        };
        let (mut seq, mut head) = start.clone();
        let mut ok = true;
        for (s, prev, ph) in &links {
            if *s != seq + 1 || *prev != head {
                f.record(
                    "chain_link",
                    false,
                    Place::link(issuer, *s),
                    format!("seq {s} does not follow seq {seq} of the pack's chain"),
                );
                ok = false;
                break;
            }
            seq = *s;
            head.clone_from(ph);
        }
        if ok {
            f.record(
                "chain_heads",
                (seq, head.clone()) == *end,
                Place::chain(issuer),
                format!("the chain ends at seq {seq}, not at the end head {}", end.0),
            );
        }
    }
    let unmatched = starts
        .keys()
        .chain(ends.keys())
        .any(|k| !chains.contains_key(k));
    f.record(
        "chain_heads",
        !unmatched,
        Place::pack(),
        "a chain head names a chain with no receipts in the pack",
    );
}

/// A list of base64 hashes (a proof), or None if any is not one.
fn hashes(v: &Value) -> Option<Vec<Hash>> {
    v.as_array()?
        .iter()
        .map(|h| {
            let b = BASE64.decode(h.as_str()?).ok()?;
            Hash::try_from(b.as_slice()).ok()
        })
        .collect()
}

/// JCS text of a value ("" if it cannot be canonicalised: then nothing
/// that depends on it verifies).
fn jcs_text(v: &Value) -> String {
    jcs::canonicalize(v)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default()
}
