//! The rows a `clickhouse` sink inserts, as JSONEachRow lines (one JSON
//! object per line; ClickHouse 18.16 reads it strictly: every key must be a
//! column of deploy/clickhouse/schema.sql). Each row names its host (the
//! log's origin, `<deployer_id>/host/<hostname>`), so one table holds a
//! fleet. The envelope, context, checkpoint note and key JWK are the
//! store's exact text: a verifier checks signatures from ClickHouse alone.
//!
//! Each INSERT names its columns ([`columns`]): a column the sink does not
//! send (`receipts.rule`) is then computed from its DEFAULT expression,
//! and a table that lacks such a column (a schema from before it) still
//! takes the rows.
use serde::{Deserialize, Serialize};

use crate::{
    export::{CheckpointItem, ReceiptItem},
    receipt::store::KeyRow,
};

// Rows borrow the records' text: a receipt's envelope is several KiB, and
// the sink's throughput is its serialisation.
#[derive(Serialize)]
struct ReceiptRow<'a> {
    host: &'a str,
    chain: &'a str,
    seq: u64,
    leaf_index: u64,
    agent: &'a str,
    action: &'a str,
    risk: &'a str,
    issued_ns: u64,
    receipt_hash: String,
    previous_hash: String,
    envelope: &'a str,
    context: Option<&'a str>,
}

#[derive(Serialize)]
struct CheckpointRow<'a> {
    host: &'a str,
    size: u64,
    root: String,
    origin: &'a str,
    note: &'a str,
    created_at: &'a str,
    created_ns: u64,
}

#[derive(Serialize)]
struct KeyRowOut<'a> {
    host: &'a str,
    kid: &'a str,
    chain: &'a str,
    agent: &'a str,
    jwk: &'a str,
    generation: u64,
    rotates: Option<&'a str>,
    introduced_by: String,
}

/// The columns an INSERT into `table` names: its rows' keys. `None` for a
/// table the sink does not write.
pub fn columns(table: &str) -> Option<&'static str> {
    Some(match table {
        "receipts" => {
            "host, chain, seq, leaf_index, agent, action, risk, issued_ns, receipt_hash, \
             previous_hash, envelope, context"
        }
        "checkpoints" => "host, size, root, origin, note, created_at, created_ns",
        "keys" => "host, kid, chain, agent, jwk, generation, rotates, introduced_by",
        _ => return None,
    })
}

/// One row of `receipts`.
pub fn push_receipt(out: &mut Vec<u8>, host: &str, r: &ReceiptItem) {
    push_line(
        out,
        &ReceiptRow {
            host,
            chain: &r.issuer_id,
            seq: r.seq,
            leaf_index: r.leaf_index,
            agent: &r.agent_id,
            action: &r.action_type,
            risk: &r.risk_class,
            issued_ns: r.issued_ns,
            receipt_hash: hex::encode(r.receipt_hash),
            previous_hash: previous_hash(&r.envelope),
            envelope: &r.envelope,
            context: r.context.as_deref(),
        },
    );
}

/// One row of `checkpoints`.
pub fn push_checkpoint(out: &mut Vec<u8>, host: &str, c: &CheckpointItem) {
    let created_ns = humantime::parse_rfc3339(&c.created_at)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as u64);
    push_line(
        out,
        &CheckpointRow {
            host,
            size: c.size,
            root: hex::encode(&c.root),
            origin: c.origin(),
            note: &c.note,
            created_at: &c.created_at,
            created_ns,
        },
    );
}

/// One row of `keys`: a key as the store records it, with the receipt
/// that announced it.
pub fn push_key(out: &mut Vec<u8>, host: &str, k: &KeyRow, introduced_by: &[u8]) {
    push_line(
        out,
        &KeyRowOut {
            host,
            kid: &k.kid,
            chain: &k.issuer_id,
            agent: &k.agent_id,
            jwk: &k.jwk,
            generation: k.generation,
            rotates: k.rotates.as_deref(),
            introduced_by: hex::encode(introduced_by),
        },
    );
}

fn push_line(out: &mut Vec<u8>, row: &impl Serialize) {
    // Serialising these rows into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, row);
    out.push(b'\n');
}

/// The payload's `previousReceiptHash`, "" when the envelope does not
/// parse or lacks it (a tampered row: it is forwarded anyway, and the
/// verifier reports it from the envelope itself). Only the payload's
/// member is kept; the rest of the envelope is skipped by the parser.
fn previous_hash(envelope: &str) -> String {
    #[derive(Deserialize)]
    struct Envelope<'a> {
        #[serde(borrow)]
        payload: Payload<'a>,
    }
    #[derive(Deserialize)]
    struct Payload<'a> {
        #[serde(rename = "previousReceiptHash", borrow, default)]
        previous: Option<std::borrow::Cow<'a, str>>,
    }
    serde_json::from_str::<Envelope<'_>>(envelope)
        .ok()
        .and_then(|e| e.payload.previous)
        .map_or_else(String::new, |p| p.into_owned())
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::export::fixtures::{checkpoint, exec_receipt};

    fn lines(out: &[u8]) -> Vec<Value> {
        std::str::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn a_receipt_row_keeps_the_stored_text_and_its_chain_position() {
        let r = exec_receipt();
        let mut out = Vec::new();
        push_receipt(&mut out, "did:web:x/host/h", &r);
        let row = &lines(&out)[0];
        assert_eq!(row["host"], "did:web:x/host/h");
        assert_eq!(row["chain"], "did:web:x/host/h/agent/claude");
        assert_eq!(
            (row["seq"].as_u64(), row["leaf_index"].as_u64()),
            (Some(7), Some(12))
        );
        assert_eq!(row["issued_ns"].as_u64(), Some(1_795_370_400_123_456_789));
        assert_eq!(row["receipt_hash"], "ab".repeat(32));
        assert_eq!(row["previous_hash"], "11".repeat(32));
        // Byte for byte: the signature covers these bytes.
        assert_eq!(row["envelope"].as_str(), Some(r.envelope.as_str()));
        assert_eq!(row["context"].as_str(), r.context.as_deref());
        let mut hashed_only = r.clone();
        hashed_only.context = None;
        hashed_only.envelope = "{\"payload\": tampered".into();
        let mut out = Vec::new();
        push_receipt(&mut out, "h", &hashed_only);
        let row = &lines(&out)[0];
        assert_eq!(row["context"], Value::Null);
        assert_eq!(row["previous_hash"], "");
        assert_eq!(row["envelope"], "{\"payload\": tampered");
    }

    /// A row's keys, and a column list, as sorted names (JSONEachRow
    /// matches keys to columns by name).
    fn keys_of(row: &Value) -> Vec<String> {
        let Value::Object(map) = row else {
            panic!("not an object: {row}")
        };
        let mut keys: Vec<String> = map.keys().cloned().collect();
        keys.sort();
        keys
    }

    fn named(table: &str) -> Vec<String> {
        let mut names: Vec<String> = columns(table)
            .unwrap()
            .split(", ")
            .map(str::to_string)
            .collect();
        names.sort();
        names
    }

    #[test]
    fn each_insert_names_exactly_the_keys_of_its_rows() {
        let mut out = Vec::new();
        push_receipt(&mut out, "h", &exec_receipt());
        assert_eq!(keys_of(&lines(&out)[0]), named("receipts"));
        let mut out = Vec::new();
        push_checkpoint(&mut out, "h", &checkpoint());
        assert_eq!(keys_of(&lines(&out)[0]), named("checkpoints"));
        let key = KeyRow {
            kid: "k1".into(),
            issuer_id: "c".into(),
            agent_id: "a".into(),
            jwk: "{}".into(),
            generation: 1,
            rotates: None,
        };
        let mut out = Vec::new();
        push_key(&mut out, "h", &key, &[0; 32]);
        assert_eq!(keys_of(&lines(&out)[0]), named("keys"));
        assert_eq!(columns("other"), None);
    }

    #[test]
    fn checkpoint_and_key_rows() {
        let mut out = Vec::new();
        push_checkpoint(&mut out, "did:web:x/host/h", &checkpoint());
        let key = KeyRow {
            kid: "k1".into(),
            issuer_id: "did:web:x/host/h/agent/claude".into(),
            agent_id: "claude".into(),
            jwk: "{\"kty\":\"AKP\"}".into(),
            generation: 1,
            rotates: None,
        };
        push_key(&mut out, "did:web:x/host/h", &key, &[0xab; 32]);
        let rows = lines(&out);
        assert_eq!(rows[0]["size"].as_u64(), Some(13));
        assert_eq!(rows[0]["root"], "cd".repeat(32));
        assert_eq!(rows[0]["origin"], "did:web:x/host/h");
        assert_eq!(rows[0]["note"], checkpoint().note);
        assert_eq!(
            rows[0]["created_ns"].as_u64(),
            Some(1_795_370_401_000_000_000)
        );
        assert_eq!(rows[1]["kid"], "k1");
        assert_eq!(rows[1]["jwk"], "{\"kty\":\"AKP\"}");
        assert_eq!(rows[1]["rotates"], Value::Null);
        assert_eq!(rows[1]["introduced_by"], "ab".repeat(32));
    }
}
