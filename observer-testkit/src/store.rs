//! Reading a daemon's receipt store directly (as root) and verifying it.
use std::path::Path;

use serde_json::Value;

/// One stored receipt, parsed.
#[derive(Debug, Clone)]
pub struct StoredReceipt {
    pub leaf: u64,
    pub hash: String,
    pub chain: String,
    pub seq: u64,
    pub payload: Value,
    pub envelope: String,
    pub context: Option<Value>,
}

/// The receipts of one action type, in log order.
pub fn stored_receipts_of(db: &Path, action_type: &str) -> Vec<StoredReceipt> {
    let c =
        observer_daemon::receipt::sqlite::connect(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open store");
    let mut stmt = c
        .prepare(
            "SELECT r.leaf_index, r.receipt_hash, r.issuer_id, r.seq,
                    receipt_envelope(r.envelope_text, r.sig), c.context
             FROM receipts r LEFT JOIN contexts c USING (leaf_index)
             WHERE r.action_type = ?1 ORDER BY r.leaf_index",
        )
        .expect("prepare");
    let rows = stmt
        .query_map([action_type], |r| {
            let envelope: String = r.get(4)?;
            let context: Option<String> = r.get(5)?;
            let parsed: Value = serde_json::from_str(&envelope).expect("envelope JSON");
            Ok(StoredReceipt {
                leaf: r.get::<_, i64>(0)? as u64,
                hash: hex::encode(r.get::<_, Vec<u8>>(1)?),
                chain: r.get(2)?,
                seq: r.get::<_, i64>(3)? as u64,
                payload: parsed["payload"].clone(),
                envelope,
                context: context.map(|c| serde_json::from_str(&c).expect("context JSON")),
            })
        })
        .expect("query");
    rows.map(|r| r.expect("row")).collect()
}

/// Every receipt of a store, in log order.
pub fn stored_receipts(db: &Path) -> Vec<StoredReceipt> {
    let store = observer_daemon::receipt::store::Store::open_read_only(db).expect("open store");
    let mut out = Vec::new();
    store
        .for_each_receipt(|row| {
            let envelope: Value = serde_json::from_str(&row.envelope).expect("envelope JSON");
            out.push(StoredReceipt {
                leaf: row.leaf_index,
                hash: hex::encode(&row.receipt_hash),
                chain: row.issuer_id.clone(),
                seq: row.seq,
                payload: envelope["payload"].clone(),
                envelope: row.envelope.clone(),
                context: row
                    .context
                    .as_deref()
                    .map(|c| serde_json::from_str(c).expect("context JSON")),
            });
            true
        })
        .expect("read receipts");
    out
}

/// The master public key derived from a daemon's master seed.
pub fn master_public_key(seed: &Path) -> Vec<u8> {
    use observer_daemon::receipt::keys;
    let seed = keys::MasterSeed::load_existing(seed).expect("master seed");
    keys::ChainKey::master_key(&seed).public_key().to_vec()
}

/// Verifies a store with both ML-DSA implementations.
pub fn verify_store(
    db: &Path,
    seed: &Path,
    external: Vec<String>,
) -> observer_daemon::receipt::verify::Report {
    verify_store_with(db, seed, external, true)
}

pub fn verify_store_with(
    db: &Path,
    seed: &Path,
    external: Vec<String>,
    independent: bool,
) -> observer_daemon::receipt::verify::Report {
    let store = observer_daemon::receipt::store::Store::open_read_only(db).expect("open store");
    observer_daemon::receipt::verify::verify_store(
        &store,
        &observer_daemon::receipt::verify::VerifyOptions {
            master_public_key: master_public_key(seed),
            now_unix_ns: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64,
            external_checkpoints: external,
            independent,
            threads: 2,
        },
    )
    .expect("verify")
}

/// The deployer id observerd signs with when the config sets none: derived
/// from this host's /etc/machine-id.
pub fn default_deployer_id() -> String {
    let machine_id = std::fs::read_to_string(observer_daemon::deployer::MACHINE_ID)
        .expect("read /etc/machine-id");
    observer_daemon::deployer::from_machine_id(machine_id.trim()).expect("machine id")
}
