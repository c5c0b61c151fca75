//! Right to erasure: drop a receipt's context while the receipt, its chain
//! and the log keep verifying. The context is replaced by
//! `{"erased": true, "by": <hash of the erasure receipt>}` in the same
//! transaction that commits that receipt, an `observer.policy` receipt on
//! the observer's chain naming what was erased and why.
use serde_json::json;

use super::{
    chain::{Draft, Identity},
    json,
    keys::MasterSeed,
    payload::{self, Mappings, RiskClass, OBSERVER_AGENT},
    pipeline::{Pipeline, PipelineConfig, PipelineError},
    store::{RunKind, Store, StoreError},
};

/// Why nothing was erased.
#[derive(Debug, thiserror::Error)]
pub enum EraseError {
    /// The store could not be opened or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The erasure receipt could not be issued or committed, e.g. the
    /// daemon holds the store's writer lock.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// No stored receipt has this hash (never there, or pruned).
    #[error("receipt {0} is not in the store")]
    NotFound(String),
    /// Nothing to erase: a `hash` mode receipt, one already erased, or a
    /// stored row that does not parse.
    #[error("receipt {0} has no stored context (hash-only mode) or it is already erased")]
    NoContext(String),
    /// An `observer.key` receipt: its context is the key that verifies a
    /// chain, so it is kept.
    #[error("receipt {0} is a key announcement: its context is never erased")]
    KeyAnnouncement(String),
    /// The given receipt hash is not 64 hex digits.
    #[error("receipt hash must be 64 hex digits, got {0:?}")]
    BadHash(String),
}

/// Erases the context of the receipt `receipt_hash` (hex). Runs offline:
/// it takes the store's writer lock, so it fails while the daemon runs.
pub fn erase(
    cfg: &PipelineConfig,
    identity: Identity,
    master: MasterSeed,
    receipt_hash: &str,
    reason: &str,
) -> Result<(), EraseError> {
    let raw = hex::decode(receipt_hash)
        .ok()
        .filter(|b| b.len() == 32)
        .ok_or_else(|| EraseError::BadHash(receipt_hash.to_string()))?;
    let now = crate::payload::now_unix_ns();
    let observer_executable_hash = identity.observer_executable_hash.clone();
    let (mut pipeline, _) = Pipeline::start(
        cfg,
        identity,
        master,
        RunKind::Maintenance,
        &payload::issued_at(now),
    )?;
    let row = Store::open_read_only(&cfg.store)?
        .receipt_by_hash(&raw)?
        .ok_or_else(|| EraseError::NotFound(receipt_hash.to_string()))?;
    let context = row
        .context
        .as_deref()
        .and_then(|c| json::parse_strict(c.as_bytes()).ok())
        .filter(|c| c.get("erased").is_none())
        .ok_or_else(|| EraseError::NoContext(receipt_hash.to_string()))?;
    let envelope = json::parse_strict(row.envelope.as_bytes())
        .map_err(|_| EraseError::NoContext(receipt_hash.to_string()))?;
    if envelope["payload"]["action_type"] == "observer.key" {
        return Err(EraseError::KeyAnnouncement(receipt_hash.to_string()));
    }
    drop(context);
    pipeline.submit(Draft {
        agent_id: OBSERVER_AGENT.to_string(),
        action_type: "observer.policy",
        unix_ns: now,
        context: json!({
            "event": "erase",
            "erase": receipt_hash,
            "chain": row.issuer_id,
            "seq": row.seq,
            "reason": reason,
        }),
        risk_class: RiskClass::Low,
        executable_hash: observer_executable_hash,
        mappings: Mappings::default(),
        detection_rules_digest: None,
        erases: Some(row.leaf_index),
        prunes: None,
    })?;
    pipeline.finish(&payload::issued_at(crate::payload::now_unix_ns()))?;
    Ok(())
}
