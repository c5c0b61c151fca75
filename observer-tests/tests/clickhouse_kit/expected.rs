//! What ClickHouse must hold for one host's store: its receipts,
//! checkpoints and keys read straight from the SQLite tables (not through
//! the daemon's spool), as rows with the columns of
//! deploy/clickhouse/schema.sql.
use std::path::Path;

use serde_json::{json, Value};

use super::ClickHouse;

fn connect(db: &Path) -> rusqlite::Connection {
    observer_daemon::receipt::sqlite::connect(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open store")
}

/// The store's receipts in log order, as `receipts` rows of `host`.
pub fn receipts(db: &Path, host: &str) -> Vec<Value> {
    let c = connect(db);
    let mut stmt = c
        .prepare(
            "SELECT r.leaf_index, r.receipt_hash, r.issuer_id, r.seq, r.agent_id, r.action_type,
                    r.issued_ns, r.risk_class, receipt_envelope(r.envelope_text, r.sig), c.context
             FROM receipts r LEFT JOIN contexts c USING (leaf_index) ORDER BY r.leaf_index",
        )
        .unwrap();
    let rows = stmt
        .query_map([], |r| {
            let envelope: String = r.get(8)?;
            let payload = serde_json::from_str::<Value>(&envelope).unwrap()["payload"].clone();
            let action: String = r.get(5)?;
            let context: Option<String> = r.get(9)?;
            // A finding's rule: its context's top-level rule_id.
            let rule = match (action.as_str(), &context) {
                ("shadow_ai.finding", Some(c)) => serde_json::from_str::<Value>(c).unwrap()
                    ["rule_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                _ => String::new(),
            };
            Ok(json!({
                "host": host,
                "chain": r.get::<_, String>(2)?,
                "seq": r.get::<_, i64>(3)?,
                "leaf_index": r.get::<_, i64>(0)?,
                "agent": r.get::<_, String>(4)?,
                "action": action,
                "risk": r.get::<_, String>(7)?,
                "issued_ns": r.get::<_, i64>(6)?,
                "receipt_hash": hex::encode(r.get::<_, Vec<u8>>(1)?),
                "previous_hash": payload["previousReceiptHash"],
                "envelope": envelope,
                "context": context,
                "rule": rule,
            }))
        })
        .unwrap();
    rows.map(|r| r.unwrap()).collect()
}

/// The store's checkpoints by size, as `checkpoints` rows of `host`.
pub fn checkpoints(db: &Path, host: &str) -> Vec<Value> {
    let c = connect(db);
    let mut stmt = c
        .prepare("SELECT size, root, note, created_at FROM checkpoints ORDER BY size")
        .unwrap();
    let rows = stmt
        .query_map([], |r| {
            let note: String = r.get(2)?;
            let created_at: String = r.get(3)?;
            let created_ns = humantime::parse_rfc3339(&created_at)
                .unwrap()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64;
            Ok(json!({
                "host": host,
                "size": r.get::<_, i64>(0)?,
                "root": hex::encode(r.get::<_, Vec<u8>>(1)?),
                "origin": note.lines().next().unwrap(),
                "note": note,
                "created_at": created_at,
                "created_ns": created_ns,
            }))
        })
        .unwrap();
    rows.map(|r| r.unwrap()).collect()
}

/// The store's keys by kid, as `keys` rows of `host`.
pub fn keys(db: &Path, host: &str) -> Vec<Value> {
    let c = connect(db);
    let mut stmt = c
        .prepare(
            "SELECT kid, issuer_id, agent_id, jwk, generation, rotates, introduced_by
             FROM keys ORDER BY kid",
        )
        .unwrap();
    let rows = stmt
        .query_map([], |r| {
            Ok(json!({
                "host": host,
                "kid": r.get::<_, String>(0)?,
                "chain": r.get::<_, String>(1)?,
                "agent": r.get::<_, String>(2)?,
                "jwk": r.get::<_, String>(3)?,
                "generation": r.get::<_, i64>(4)?,
                "rotates": r.get::<_, Option<String>>(5)?,
                "introduced_by": hex::encode(r.get::<_, Vec<u8>>(6)?),
            }))
        })
        .unwrap();
    rows.map(|r| r.unwrap()).collect()
}

/// The host a store's rows carry: its log origin, the first line of its
/// checkpoints.
pub fn host_of(db: &Path) -> String {
    let store = observer_daemon::receipt::store::Store::open_read_only(db).unwrap();
    let cp = store.latest_checkpoint().unwrap().expect("a checkpoint");
    cp.note.lines().next().unwrap().to_string()
}

/// Asserts that ClickHouse holds exactly the store's rows once merged
/// (`FINAL`): every column of every receipt, checkpoint and key.
pub fn assert_holds_exactly(ch: &ClickHouse, db: &Path) {
    let host = host_of(db);
    let want = receipts(db, &host);
    let got = ch.rows(&format!(
        "SELECT * FROM observer.receipts FINAL WHERE host = '{host}' ORDER BY leaf_index"
    ));
    assert_eq!(got.len(), want.len(), "receipts in ClickHouse vs the store");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w);
    }
    let got = ch.rows(&format!(
        "SELECT * FROM observer.checkpoints FINAL WHERE host = '{host}' ORDER BY size"
    ));
    assert_eq!(got, checkpoints(db, &host));
    let got = ch.rows(&format!(
        "SELECT * FROM observer.keys FINAL WHERE host = '{host}' ORDER BY kid"
    ));
    let want = keys(db, &host);
    assert!(!want.is_empty());
    assert_eq!(got, want);
}
