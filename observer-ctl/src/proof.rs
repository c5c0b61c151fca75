//! `proof`: a receipt's inclusion proof against the latest signed
//! checkpoint, in the c2sp.org/tlog-proof layout, carrying in its `extra`
//! line what an offline verifier needs besides the pinned master public
//! key: the receipt's envelope, its context, the master-signed
//! `observer.key` receipt that announced its chain key and the master
//! rotations. `verify-proof` is `observer_receipts::verify::proof`.
use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use serde_json::json;

use super::CtlError;
use observer_receipts::{
    checkpoint, jcs, json as strict_json, merkle,
    store::{Store, StoreNodes},
    verify::{master_rotations, proof::EXTRA_VERSION},
};

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
    let announcement = store.key_announcement(kid)?;
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
