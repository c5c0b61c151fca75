//! Audit packs (RECEIPTS.md "Audit pack"): one JSON bundle with the
//! receipts and contexts of a time window, the chain heads at its start
//! and end, the checkpoints with an inclusion proof per receipt and
//! consistency proofs between successive checkpoints, the key
//! announcements and JWK Set, and a manifest signed by the master key.
//! It verifies offline with only the pinned master public key.
//!
//! The bundle is written in JCS form (no insignificant whitespace), so any
//! one-byte change is a change of content.
use std::collections::{BTreeMap, BTreeSet, HashMap};

use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::{
    anchors::{key_announcement, master_rotations, note_origin, verify_note_signature},
    sql_err, CtlError,
};
use observer_daemon::receipt::{
    checkpoint, jcs, json as strict_json, keys,
    keys::ChainKey,
    merkle::{self, Hash},
    mldsa::{LibcruxVerifier, Signer, Verifier},
    payload,
    retention::RotationAnchor,
    store::{CheckpointRow, ReceiptRow, Store, StoreNodes},
    verify::{
        receipt::{self as receipt_check, Check},
        walk_rotations, MasterEpoch, Outcome,
    },
};

pub const FORMAT: &str = "observer-audit-pack";
pub const VERSION: u64 = 1;

fn b64_hashes(hashes: &[Hash]) -> Value {
    json!(hashes.iter().map(|h| BASE64.encode(h)).collect::<Vec<_>>())
}

fn parse_text(text: &str, what: &str) -> Result<Value, CtlError> {
    strict_json::parse_strict(text.as_bytes()).map_err(|e| CtlError::Store(format!("{what}: {e}")))
}

/// Receipts issued in `[start_ns, end_ns]`, plus the receipts between
/// them in each chain (a chain's seq order and issue times can differ by
/// a file-open window), so every chain in the pack is contiguous.
fn window_rows(store: &Store, start_ns: u64, end_ns: u64) -> Result<Vec<ReceiptRow>, CtlError> {
    let conn = store.connection();
    let mut stmt = conn
        .prepare(
            "SELECT issuer_id, MIN(seq), MAX(seq) FROM receipts
             WHERE issued_ns >= ?1 AND issued_ns <= ?2 GROUP BY issuer_id",
        )
        .map_err(sql_err(store))?;
    let ranges = stmt
        .query_map(rusqlite::params![start_ns as i64, end_ns as i64], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(sql_err(store))?;
    let mut stmt = conn
        .prepare(
            "SELECT r.leaf_index, r.receipt_hash, r.issuer_id, r.seq, receipt_envelope(r.envelope_text, r.sig), c.context
             FROM receipts r LEFT JOIN contexts c ON c.leaf_index = r.leaf_index
             WHERE r.issuer_id = ?1 AND r.seq >= ?2 AND r.seq <= ?3",
        )
        .map_err(sql_err(store))?;
    let mut rows = Vec::new();
    for (issuer, lo, hi) in ranges {
        let part = stmt
            .query_map(rusqlite::params![issuer, lo, hi], |r| {
                Ok(ReceiptRow {
                    leaf_index: r.get::<_, i64>(0)? as u64,
                    receipt_hash: r.get(1)?,
                    issuer_id: r.get(2)?,
                    seq: r.get::<_, i64>(3)? as u64,
                    envelope: r.get(4)?,
                    context: r.get(5)?,
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(sql_err(store))?;
        rows.extend(part);
    }
    rows.sort_by_key(|r| r.leaf_index);
    Ok(rows)
}

fn checkpoint_at_least(store: &Store, size: u64) -> Result<Option<CheckpointRow>, CtlError> {
    Ok(store.checkpoints()?.into_iter().find(|c| c.size >= size))
}

/// The projection P: the pack without the manifest's digest and signature.
fn projection(pack: &Value) -> Value {
    let mut p = pack.clone();
    if let Some(m) = p["manifest"].as_object_mut() {
        m.remove("bundle_digest");
        m.remove("bundle_signature");
    }
    p
}

/// Builds and signs the pack; returns its bytes (JCS) and a summary.
pub fn export(
    store: &Store,
    start_ns: u64,
    end_ns: u64,
    master: &ChainKey,
) -> Result<(Vec<u8>, Value), CtlError> {
    if start_ns > end_ns {
        return Err(CtlError::Usage("--start is after --end".into()));
    }
    let rows = window_rows(store, start_ns, end_ns)?;
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        return Err(CtlError::Usage(format!(
            "no receipts issued between {} and {}",
            payload::issued_at(start_ns),
            payload::issued_at(end_ns)
        )));
    };
    let cover = checkpoint_at_least(store, last.leaf_index + 1)?.ok_or_else(|| {
        CtlError::Usage(format!(
            "the window's last receipt (log index {}) is not yet covered by a checkpoint; \
             retry after the next checkpoint or end the window earlier",
            last.leaf_index
        ))
    })?;
    let start_cp = checkpoint_at_least(store, first.leaf_index + 1)?;
    let latest = store.latest_checkpoint()?;
    let mut cps: Vec<CheckpointRow> = start_cp.into_iter().chain([cover.clone()]).collect();
    cps.extend(latest);
    cps.sort_by_key(|c| c.size);
    cps.dedup_by_key(|c| c.size);
    let origin = note_origin(&cover.note);
    let nodes = StoreNodes(store);
    let tree_err = |e: merkle::TreeError<_>| CtlError::Store(format!("Merkle log: {e}"));

    let mut receipts = Vec::new();
    let mut heads: BTreeMap<String, (Value, Value)> = BTreeMap::new();
    let mut kids = BTreeSet::new();
    for r in &rows {
        let envelope = parse_text(&r.envelope, "stored envelope")?;
        let context = r
            .context
            .as_deref()
            .map(|c| parse_text(c, "stored context"))
            .transpose()?;
        let p = &envelope["payload"];
        kids.insert(
            envelope["signature"]["kid"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
        let proof = merkle::inclusion_proof(&nodes, r.leaf_index, cover.size).map_err(tree_err)?;
        let head_here = json!({
            "issuer_id": r.issuer_id, "seq": r.seq, "payload_hash": receipt_check::payload_hash(p),
        });
        let head_before = json!({
            "issuer_id": r.issuer_id, "seq": r.seq.saturating_sub(1), "payload_hash": p["previousReceiptHash"],
        });
        heads
            .entry(r.issuer_id.clone())
            .and_modify(|(lo, hi)| {
                if r.seq <= lo["seq"].as_u64().unwrap_or(0) {
                    *lo = head_before.clone();
                }
                if r.seq > hi["seq"].as_u64().unwrap_or(0) {
                    *hi = head_here.clone();
                }
            })
            .or_insert((head_before.clone(), head_here.clone()));
        receipts.push(json!({
            "leaf_index": r.leaf_index,
            "receipt_hash": hex::encode(&r.receipt_hash),
            "envelope": envelope,
            "context": context,
            "inclusion_proof": b64_hashes(&proof),
        }));
    }
    let master_kid = keys::thumbprint(master.public_key());
    // Every master rotation since the log's start (those pruned travel in
    // the retention anchor), so that the genesis key alone walks to the
    // master that signs the pack.
    let rotations = master_rotations(store)?;
    let mut jwks = Vec::new();
    let mut master_kids = BTreeSet::new();
    for k in super::keys::stored_keys(store)?
        .into_iter()
        .filter(|k| k.agent_id == payload::OBSERVER_AGENT)
    {
        master_kids.insert(k.kid.clone());
        jwks.push(k.jwk);
    }
    if !master_kids.contains(&master_kid) {
        master_kids.insert(master_kid.clone());
        jwks.push(master.jwk());
    }
    let mut announcements = Vec::new();
    for kid in kids.iter().filter(|k| !master_kids.contains(*k)) {
        let (env, ctx) = key_announcement(store, kid)?.ok_or_else(|| {
            CtlError::Store(format!(
                "no observer.key receipt announcing key {kid} is in the store"
            ))
        })?;
        let ctx = parse_text(&ctx, "key announcement context")?;
        jwks.push(ctx["jwk"].clone());
        announcements.push(json!({
            "envelope": parse_text(&env, "key announcement")?,
            "context": ctx,
        }));
    }
    let mut consistency = Vec::new();
    for pair in cps.windows(2) {
        let proof =
            merkle::consistency_proof(&nodes, pair[0].size, pair[1].size).map_err(tree_err)?;
        consistency.push(json!({
            "from": pair[0].size, "to": pair[1].size, "proof": b64_hashes(&proof),
        }));
    }
    let (start_heads, end_heads): (Vec<Value>, Vec<Value>) = heads.into_values().unzip();
    let mut pack = json!({
        "manifest": {
            "format": FORMAT,
            "version": VERSION,
            "capture_topology": payload::CAPTURE_TOPOLOGY,
            "origin": origin,
            "start": payload::issued_at(start_ns),
            "end": payload::issued_at(end_ns),
            "created_at": payload::issued_at(payload::now_unix_ns()),
            "receipt_count": receipts.len(),
            "master_kid": master_kid,
            "inclusion_checkpoint_size": cover.size,
        },
        "receipts": receipts,
        "chain_heads": { "start": start_heads, "end": end_heads },
        "checkpoints": cps.iter().map(|c| c.note.clone()).collect::<Vec<_>>(),
        "consistency_proofs": consistency,
        "key_announcements": announcements,
        "jwks": { "keys": jwks },
    });
    if !rotations.is_empty() {
        pack["master_rotations"] = json!(rotations
            .iter()
            .map(|r| Ok(json!({
                "leaf_index": r.leaf_index,
                "envelope": parse_text(&r.envelope, "master rotation")?,
                "context": parse_text(&r.context, "master rotation context")?,
            })))
            .collect::<Result<Vec<_>, CtlError>>()?);
    }
    let p = jcs::canonicalize(&projection(&pack)).map_err(|e| CtlError::Store(e.to_string()))?;
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&p)));
    let signature = master
        .sign(&p)
        .map_err(|e| CtlError::Store(format!("signing the pack: {e}")))?;
    pack["manifest"]["bundle_digest"] = json!(digest);
    pack["manifest"]["bundle_signature"] = json!(BASE64.encode(signature));
    let bytes = jcs::canonicalize(&pack).map_err(|e| CtlError::Store(e.to_string()))?;
    let summary = json!({
        "receipts": rows.len(),
        "chains": pack["chain_heads"]["start"].as_array().map_or(0, Vec::len),
        "checkpoints": cps.len(),
        "bundle_digest": digest,
        "bytes": bytes.len(),
    });
    Ok((bytes, summary))
}

/// Failures found while verifying, in order.
struct Findings {
    checks: BTreeMap<&'static str, (u64, u64)>,
    failures: Vec<Value>,
}

impl Findings {
    fn record(&mut self, check: &'static str, ok: bool, at: Value, reason: impl Into<String>) {
        let c = self.checks.entry(check).or_default();
        if ok {
            c.0 += 1;
        } else {
            c.1 += 1;
            let mut f = at;
            f["check"] = json!(check);
            f["reason"] = json!(reason.into());
            self.failures.push(f);
        }
    }
}

/// Verifies a pack with only the pinned master public key.
pub fn verify(bytes: &[u8], master: &[u8]) -> (Value, bool) {
    let mut f = Findings {
        checks: BTreeMap::new(),
        failures: Vec::new(),
    };
    let pack = match strict_json::parse_strict(bytes) {
        Ok(v) => v,
        Err(e) => {
            f.record(
                "format",
                false,
                json!({}),
                format!("not a valid bundle: {e}"),
            );
            return finish(f, 0);
        }
    };
    let log = json!({});
    // The masters, walked from the pinned genesis key through the pack's
    // master rotations; the pack is signed by the last one.
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
    let masters = match walk_rotations(&genesis, &rotations) {
        Ok(masters) => {
            f.record("master_rotation", true, log.clone(), "");
            masters
        }
        Err(e) => {
            f.record("master_rotation", false, log.clone(), e);
            vec![genesis]
        }
    };
    let current: &[u8] = masters.last().map_or(master, |m| &m.public_key);
    let m = &pack["manifest"];
    f.record(
        "format",
        m["format"] == FORMAT && m["version"] == VERSION,
        log.clone(),
        format!("manifest format must be {FORMAT} version {VERSION}"),
    );
    f.record(
        "capture_topology",
        m["capture_topology"] == payload::CAPTURE_TOPOLOGY,
        log.clone(),
        "manifest capture_topology must be passive_telemetry",
    );
    // Manifest digest and signature over the projection.
    match jcs::canonicalize(&projection(&pack)) {
        Ok(p) => {
            let digest = format!("sha256:{}", hex::encode(Sha256::digest(&p)));
            f.record(
                "bundle_digest",
                m["bundle_digest"] == digest.as_str(),
                log.clone(),
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
                log.clone(),
                format!(
                    "bundle_signature does not verify under the current master key (the pinned key or its last rotation): {}",
                    verdict.err().map(|e| e.to_string()).unwrap_or_default()
                ),
            );
        }
        Err(e) => f.record("bundle_digest", false, log.clone(), e.to_string()),
    }
    let origin = m["origin"].as_str().unwrap_or_default().to_string();
    // Checkpoints and consistency between successive ones.
    let mut roots: HashMap<u64, Hash> = HashMap::new();
    for note in pack["checkpoints"].as_array().into_iter().flatten() {
        let note = note.as_str().unwrap_or_default();
        // Signed by the master current after the tree's last leaf.
        let size = note
            .lines()
            .nth(1)
            .and_then(|l| l.parse::<u64>().ok())
            .unwrap_or(0);
        let signer: &[u8] = MasterEpoch::at(&masters, size).map_or(master, |m| &m.public_key);
        match checkpoint::open_note(note, &origin, signer, verify_note_signature(signer)) {
            Ok(cp) => {
                f.record("checkpoint_signature", true, log.clone(), "");
                roots.insert(cp.size, cp.root);
            }
            Err(e) => f.record(
                "checkpoint_signature",
                false,
                log.clone(),
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
            log.clone(),
            format!("no valid consistency proof from checkpoint size {a} to {b}"),
        );
    }
    // Chain keys, authorised by master-signed announcements.
    let mut authorised: HashMap<String, (String, Vec<u8>)> = HashMap::new();
    for a in pack["key_announcements"].as_array().into_iter().flatten() {
        let env = jcs_text(&a["envelope"]);
        let ctx = jcs_text(&a["context"]);
        let issuer = a["context"]["issuer_id"].as_str().unwrap_or_default();
        let kid = a["context"]["kid"].as_str().unwrap_or_default();
        // Announced by one of the masters (a re-announcement after a
        // rotation is signed by the new one).
        let mut verdict = Err(String::new());
        for m in &masters {
            verdict = receipt_check::authorise_key(&m.public_key, issuer, kid, Some((&env, &ctx)));
            if verdict.is_ok() {
                break;
            }
        }
        match verdict {
            Ok(pk) => {
                f.record("key_authorised", true, log.clone(), "");
                authorised.insert(kid.to_string(), (issuer.to_string(), pk));
            }
            Err(e) => f.record("key_authorised", false, json!({"kid": kid}), e),
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
            json!({"kid": kid}),
            "a key of the JWK Set is neither the pinned master key nor announced by it",
        );
    }
    // Receipts.
    let inclusion_size = m["inclusion_checkpoint_size"].as_u64().unwrap_or(0);
    let mut chains: BTreeMap<String, Vec<(u64, String, String)>> = BTreeMap::new();
    let receipts = pack["receipts"].as_array().cloned().unwrap_or_default();
    for r in &receipts {
        let env_text = jcs_text(&r["envelope"]);
        let ctx_text = (!r["context"].is_null()).then(|| jcs_text(&r["context"]));
        let hash: Hash = Sha256::digest(env_text.as_bytes()).into();
        let p = &r["envelope"]["payload"];
        let issuer = p["issuer_id"].as_str().unwrap_or_default().to_string();
        let seq = p["seq"].as_u64().unwrap_or(0);
        let at = json!({"chain": issuer, "seq": seq, "receipt_hash": hex::encode(hash)});
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
        let signer = MasterEpoch::at(&masters, leaf);
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
            at.clone(),
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
    // Chains: contiguous from the start head to the end head.
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
    for (issuer, mut links) in chains.iter().map(|(i, l)| (i.clone(), l.clone())) {
        links.sort_by_key(|l| l.0);
        let (Some(start), Some(end)) = (starts.get(&issuer), ends.get(&issuer)) else {
            f.record(
                "chain_heads",
                false,
                json!({"chain": issuer}),
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
                    json!({"chain": issuer, "seq": s}),
                    format!("seq {s} does not follow seq {seq} of the pack's chain"),
                );
                ok = false;
                break;
            }
            seq = *s;
            head = ph.clone();
        }
        if ok {
            f.record(
                "chain_heads",
                (seq, head.clone()) == *end,
                json!({"chain": issuer}),
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
        log.clone(),
        "a chain head names a chain with no receipts in the pack",
    );
    finish(f, receipts.len())
}

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

fn finish(f: Findings, receipts: usize) -> (Value, bool) {
    let ok = f.failures.is_empty();
    let checks: Map<String, Value> = f
        .checks
        .iter()
        .map(|(k, (p, x))| (k.to_string(), json!({"pass": p, "fail": x})))
        .collect();
    (
        json!({
            "ok": ok,
            "receipts": receipts,
            "checks": checks,
            "first_failure": f.failures.first(),
            "failures": f.failures,
        }),
        ok,
    )
}
