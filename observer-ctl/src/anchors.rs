//! What a store and a checkpoint say about the keys that signed them,
//! shared by `receipts show`, `prove`/`verify-proof` and `audit-pack`: the
//! master rotations of the log (pruned ones from the retention anchor), the
//! master epochs walked from a pinned genesis key, the `observer.key`
//! receipt that announced a chain key, and checkpoint note signatures.
use observer_daemon::receipt::{
    json as strict_json,
    mldsa::{LibcruxVerifier, Verifier},
    retention::{self, RotationAnchor},
    store::Store,
    verify::{receipt as receipt_check, MasterEpoch},
};

use super::{sql_err, CtlError};

/// The origin a signed checkpoint names (its first line).
pub fn note_origin(note: &str) -> String {
    note.lines().next().unwrap_or_default().to_string()
}

pub fn verify_note_signature(pk: &[u8]) -> impl Fn(&[u8], &[u8]) -> bool + '_ {
    move |m, s| LibcruxVerifier.verify(pk, m, s).is_ok()
}

/// Every master rotation receipt of the log, pruned ones from the latest
/// retention anchor, in log order.
pub fn master_rotations(store: &Store) -> Result<Vec<RotationAnchor>, CtlError> {
    let mut rotations: Vec<RotationAnchor> = match retention::latest_prune(store)? {
        Some((_, context)) => parse_text(&context, "prune anchor")
            .ok()
            .and_then(|v| serde_json::from_value::<retention::PruneAnchor>(v).ok())
            .map(|a| a.master_rotations)
            .unwrap_or_default(),
        None => Vec::new(),
    };
    for (leaf_index, envelope, context) in store.master_rotations()? {
        if rotations.iter().all(|r| r.leaf_index != leaf_index) {
            rotations.push(RotationAnchor {
                leaf_index,
                envelope,
                context,
            });
        }
    }
    rotations.sort_by_key(|r| r.leaf_index);
    Ok(rotations)
}

/// The masters of the store, walked from the pinned genesis key.
pub fn store_masters(store: &Store, pinned: &[u8]) -> Result<Vec<MasterEpoch>, CtlError> {
    receipt_check::walk_masters(pinned, &master_rotations(store)?)
        .map_err(|e| CtlError::Verification(format!("master key rotations of the store: {e}")))
}

/// The `observer.key` receipt (envelope, context) that announced `kid`.
pub fn key_announcement(store: &Store, kid: &str) -> Result<Option<(String, String)>, CtlError> {
    let mut stmt = store
        .connection()
        .prepare(
            "SELECT receipt_envelope(r.envelope_text, r.sig), c.context
             FROM receipts r JOIN contexts c ON c.leaf_index = r.leaf_index
             WHERE r.action_type = 'observer.key' AND r.agent_id = 'observer'
               AND json_extract(c.context, '$.kid') = ?1 ORDER BY r.leaf_index LIMIT 1",
        )
        .map_err(sql_err(store))?;
    let mut rows = stmt.query([kid]).map_err(sql_err(store))?;
    match rows.next().map_err(sql_err(store))? {
        Some(r) => Ok(Some((
            r.get(0).map_err(sql_err(store))?,
            r.get(1).map_err(sql_err(store))?,
        ))),
        None => Ok(None),
    }
}

fn parse_text(text: &str, what: &str) -> Result<serde_json::Value, CtlError> {
    strict_json::parse_strict(text.as_bytes()).map_err(|e| CtlError::Store(format!("{what}: {e}")))
}
