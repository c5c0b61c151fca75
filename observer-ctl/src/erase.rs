//! `erase`: drop a receipt's context offline through `receipt::erase`,
//! which records the erasure as an `observer.policy` receipt and keeps
//! verification green. The daemon is the store's only writer while it
//! runs: when it holds the writer lock, the erasure is refused with exit
//! status 3 (the control socket that will let the daemon do it is a later
//! step).
use std::{path::Path, time::Duration};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::CtlError;
use observer_receipts::{
    chain::Identity,
    erase::{self, EraseError},
    keys::MasterSeed,
    payload::{self, Mode},
    pipeline::PipelineConfig,
    store::{Store, WriterLock},
};

/// The deployer id and host name of the store's observer chain, so the
/// erasure lands on that chain whatever the local configuration says.
fn identity_of(store: &Store) -> Result<(String, String), CtlError> {
    let issuer = store.chain_issuer(payload::OBSERVER_AGENT)?;
    issuer
        .strip_suffix("/agent/observer")
        .and_then(|o| o.rsplit_once("/host/"))
        .map(|(d, h)| (d.to_string(), h.to_string()))
        .ok_or_else(|| CtlError::Store(format!("observer chain issuer {issuer:?} is malformed")))
}

pub fn erase(
    db: &Path,
    receipt_hash: &[u8],
    seed: MasterSeed,
    reason: &str,
) -> Result<Value, CtlError> {
    let hash_hex = hex::encode(receipt_hash);
    let (deployer_id, hostname) = identity_of(&super::open_store(db)?)?;
    match WriterLock::acquire(db) {
        Ok(lock) => drop(lock),
        Err(e) => {
            return Err(CtlError::Daemon(format!(
                "the daemon holds the receipt store for writing ({e}); stop observerd to erase offline \
                 (erasure through the running daemon needs its control socket, not available yet)"
            )))
        }
    }
    let exe = std::env::current_exe()
        .and_then(std::fs::read)
        .map_err(|e| CtlError::Io(format!("hashing the observerctl executable: {e}")))?;
    let identity = Identity {
        deployer_id,
        hostname,
        mode: Mode::Payload,
        observer_executable_hash: format!("sha256:{}", hex::encode(Sha256::digest(&exe))),
    };
    let cfg = PipelineConfig {
        store: db.to_owned(),
        signing_threads: 1,
        queue_capacity: 16,
        checkpoint_interval: Duration::from_secs(1),
        batch_max: 16,
        waiting_for_room: None,
    };
    erase::erase(&cfg, identity, seed, &hash_hex, reason).map_err(|e| match e {
        EraseError::Store(e) => CtlError::Store(e.to_string()),
        EraseError::Pipeline(e) => CtlError::Store(e.to_string()),
        e => CtlError::Usage(e.to_string()),
    })?;
    let store = super::open_store(db)?;
    let by = store.erasure_receipt(&hash_hex)?;
    Ok(json!({ "erased": hash_hex, "erasure_receipt": hex::encode(by), "reason": reason }))
}
