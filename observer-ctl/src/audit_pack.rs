//! `audit-pack export` (RECEIPTS.md "Audit pack"): one JSON bundle with
//! the receipts and contexts of a time window, the chain heads at its
//! start and end, the checkpoints with an inclusion proof per receipt and
//! consistency proofs between successive checkpoints, the key
//! announcements and JWK Set, and a manifest signed by the master key.
//! `audit-pack verify` is `observer_receipts::verify::audit_pack`, which
//! needs only the pinned master public key.
//!
//! The bundle is written in JCS form (no insignificant whitespace), so any
//! one-byte change is a change of content.
use std::collections::{BTreeMap, BTreeSet};

use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::CtlError;
use observer_receipts::{
    jcs, json as strict_json, keys,
    keys::ChainKey,
    merkle::{self, Hash},
    mldsa::Signer,
    payload,
    store::{CheckpointRow, Store, StoreNodes},
    verify::{
        audit_pack::{projection, FORMAT, VERSION},
        master_rotations, note_origin, receipt as receipt_check,
    },
};

fn b64_hashes(hashes: &[Hash]) -> Value {
    json!(hashes.iter().map(|h| BASE64.encode(h)).collect::<Vec<_>>())
}

fn parse_text(text: &str, what: &str) -> Result<Value, CtlError> {
    strict_json::parse_strict(text.as_bytes()).map_err(|e| CtlError::Store(format!("{what}: {e}")))
}

fn checkpoint_at_least(store: &Store, size: u64) -> Result<Option<CheckpointRow>, CtlError> {
    Ok(store.checkpoints()?.into_iter().find(|c| c.size >= size))
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
    let rows = store.window_receipts(start_ns, end_ns)?;
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
        let (env, ctx) = store.key_announcement(kid)?.ok_or_else(|| {
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
