//! One row of `receipts` and `tail`: the receipt's columns, what its context
//! says about the process, and the stored envelope and context.
//!
//! The envelope (5 KB, mostly the signature) and the context are written
//! out as stored, after a syntax check, instead of being parsed into a tree
//! and serialised again: that round trip was most of the time of a query
//! printing hundreds of rows. The stored envelope is JCS and the stored
//! context is compact JSON with sorted keys, which is exactly how a
//! `serde_json::Value` prints them, so the output is the same bytes.
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{json, value::RawValue, Map, Value};

use super::summary;
use crate::{jcs_scan, json as strict_json, payload, verify::receipt as receipt_check};

/// The SQL columns a row is read from, in this order.
pub const COLUMNS: &str = "r.leaf_index, r.receipt_hash, r.issuer_id, r.seq, r.agent_id, \
     r.action_type, r.issued_ns, r.risk_class, receipt_envelope(r.envelope_text, r.sig), c.context";

/// One receipt as `observerctl receipts` and `tail` print it: its columns,
/// a few context members and a summary, with the envelope and context
/// serialised as stored.
pub struct QueryRow {
    /// Every member but `envelope` and `context` (an object).
    pub fields: Value,
    /// `None` when the stored text is not JSON (printed as `null`).
    envelope: Option<Box<RawValue>>,
    /// `None` without a context (erased rows keep a stub) or when it is
    /// not JSON.
    context: Option<Box<RawValue>>,
}

impl QueryRow {
    /// Reads a row selected with [`COLUMNS`], in that order.
    pub fn from_sql(r: &rusqlite::Row<'_>) -> rusqlite::Result<QueryRow> {
        let envelope_text: String = r.get(8)?;
        let context_text: Option<String> = r.get(9)?;
        let (payload, payload_hash) = payload_of(&envelope_text);
        let context = context_text
            .as_deref()
            .map(|c| serde_json::from_str::<Value>(c).unwrap_or(Value::Null));
        let null = Value::Null;
        let ctx = context.as_ref().unwrap_or(&null);
        let fields = json!({
            "leaf_index": r.get::<_, i64>(0)?,
            "receipt_hash": hex::encode(r.get::<_, Vec<u8>>(1)?),
            "issuer_id": r.get::<_, String>(2)?,
            "seq": r.get::<_, i64>(3)?,
            "agent_id": r.get::<_, String>(4)?,
            "action_type": r.get::<_, String>(5)?,
            "issued_ns": r.get::<_, i64>(6)?,
            "issued_at": payload["issued_at"],
            "risk_class": r.get::<_, String>(7)?,
            "executable_hash": payload["executable_hash"],
            "mode": payload["mode"],
            "pid": ctx["process"]["pid"],
            "exe": ctx["process"]["exe"],
            "user": ctx["process"]["user"],
            "summary": summary(ctx),
            "payload_hash": payload_hash,
        });
        Ok(QueryRow {
            fields,
            envelope: as_stored(envelope_text),
            context: context_text.and_then(as_stored),
        })
    }

    /// The row as one JSON tree (pretty printing, `show`).
    pub fn to_value(&self) -> Value {
        let parse = |raw: &Option<Box<RawValue>>| match raw {
            Some(r) => strict_json::parse_strict(r.get().as_bytes()).unwrap_or(Value::Null),
            None => Value::Null,
        };
        let mut v = self.fields.clone();
        if let Value::Object(m) = &mut v {
            m.insert("envelope".into(), parse(&self.envelope));
            m.insert("context".into(), parse(&self.context));
        }
        v
    }
}

/// Stored JSON text to print as is; `None` (printed as null, as a failed
/// parse printed it) for text that is not JSON or that a `Value` parse
/// would reject (lone surrogates, out-of-range numbers, deep nesting: only
/// in a tampered store).
fn as_stored(text: String) -> Option<Box<RawValue>> {
    crate::export::ocsf_fields::check_strict(&text).ok()?;
    RawValue::from_string(text).ok()
}

/// The payload and its hash. The stored envelope reads
/// `{"payload":<JCS(payload)>,"signature":{...}}`; when that slice is one
/// whole canonical value it is hashed as is and only it is parsed. Anything
/// else takes the slow path: the whole envelope parsed strictly and the
/// payload canonicalised for its hash.
fn payload_of(envelope: &str) -> (Value, Value) {
    if let Some(text) = stored_payload_text(envelope) {
        if let Ok(p @ Value::Object(_)) = serde_json::from_str::<Value>(text) {
            return (p, json!(payload::sha256_hex(text.as_bytes())));
        }
    }
    let envelope = strict_json::parse_strict(envelope.as_bytes()).unwrap_or(Value::Null);
    let p = envelope["payload"].clone();
    let hash = receipt_check::payload_hash(&p);
    (p, json!(hash))
}

/// The payload's text inside a stored envelope, when that text is already
/// its own JCS form; the scan accepts only one whole canonical value, so a
/// slice cut anywhere else is refused (and the caller canonicalises).
pub fn stored_payload_text(envelope: &str) -> Option<&str> {
    let rest = envelope.strip_prefix("{\"payload\":")?;
    let end = rest.rfind(",\"signature\":")?;
    let text = &rest[..end];
    jcs_scan::scan(text).map(|_| text)
}

impl Serialize for QueryRow {
    /// The members in sorted order, as a `Value` object prints them.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let empty = Map::new();
        let fields = self.fields.as_object().unwrap_or(&empty);
        let mut map = serializer.serialize_map(Some(fields.len() + 2))?;
        let mut raw = [("context", &self.context), ("envelope", &self.envelope)]
            .into_iter()
            .peekable();
        for (key, value) in fields {
            while let Some((raw_key, raw_value)) = raw.next_if(|(k, _)| *k < key.as_str()) {
                map.serialize_entry(raw_key, raw_value)?;
            }
            map.serialize_entry(key, value)?;
        }
        for (raw_key, raw_value) in raw {
            map.serialize_entry(raw_key, raw_value)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jcs;

    #[test]
    fn the_stored_payload_text_hashes_as_the_canonical_payload() {
        let envelope = json!({
            "payload": {"v": 1, "seq": 7, "agent_id": "a\"b", "issued_at": "2026-11-22T18:00:00.123456789Z",
                        "nested": {"signature": "not the envelope's"}},
            "signature": {"alg": "ML-DSA-65", "kid": "k", "sig": "c2ln"},
        });
        let text = String::from_utf8(jcs::canonicalize(&envelope).unwrap()).unwrap();
        let slice = stored_payload_text(&text).expect("a JCS envelope's payload");
        assert_eq!(
            payload::sha256_hex(slice.as_bytes()),
            receipt_check::payload_hash(&envelope["payload"])
        );
        // Not JCS (a space, members out of order): no slice, canonicalise.
        assert_eq!(stored_payload_text(&text.replacen(":7,", ": 7,", 1)), None);
        let reordered = text.replacen("{\"payload\":", "{\"signature\":{},\"payload\":", 1);
        assert_eq!(stored_payload_text(&reordered), None);
    }

    /// A row read back through SQLite from literal columns.
    fn row(envelope: &str, context: Option<&str>) -> QueryRow {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.query_row(
            "SELECT 7, x'ab01', 'issuer', 3, 'agent', 'process.exec', 42, 'low', ?1, ?2",
            rusqlite::params![envelope, context],
            QueryRow::from_sql,
        )
        .unwrap()
    }

    fn envelope() -> Value {
        json!({
            "payload": {"v": 1, "issued_at": "2026-11-22T18:00:00.123456789Z", "mode": "passive_telemetry",
                        "executable_hash": "sha256:00", "note": "tab\there, \u{1} and é"},
            "signature": {"alg": "ML-DSA-65", "kid": "k", "sig": "c2ln"},
        })
    }

    #[test]
    fn a_row_prints_the_same_bytes_as_its_json_tree() {
        let stored = String::from_utf8(jcs::canonicalize(&envelope()).unwrap()).unwrap();
        let context = json!({"process": {"pid": 9, "exe": "/bin/sh", "user": "root"},
                             "exec": {"argv": ["sh", "-c", "x\ny"]}});
        let r = row(&stored, Some(&context.to_string()));
        let tree = r.to_value();
        assert_eq!(serde_json::to_string(&r).unwrap(), tree.to_string());
        assert_eq!(tree["envelope"], envelope());
        assert_eq!(tree["context"], context);
        assert_eq!(tree["pid"], 9);
        assert_eq!(tree["summary"], "sh -c x\ny");
        assert_eq!(tree["issued_at"], "2026-11-22T18:00:00.123456789Z");
        assert_eq!(
            tree["payload_hash"],
            receipt_check::payload_hash(&envelope()["payload"])
        );
    }

    #[test]
    fn a_non_canonical_envelope_still_gives_the_canonical_payload_hash() {
        let spaced = serde_json::to_string_pretty(&envelope()).unwrap();
        let r = row(&spaced, None);
        assert_eq!(
            r.fields["payload_hash"],
            receipt_check::payload_hash(&envelope()["payload"])
        );
        assert_eq!(r.fields["mode"], "passive_telemetry");
        let printed: Value = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(printed["envelope"], envelope());
        assert_eq!(printed["context"], Value::Null);
    }

    #[test]
    fn text_a_value_parse_rejects_prints_as_null() {
        let r = row("{\"payload\":{},\"x\":\"\\ud800\"}", Some("{\"n\":1e400}"));
        let printed: Value = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(printed["envelope"], Value::Null);
        assert_eq!(printed["context"], Value::Null);
    }

    #[test]
    fn text_that_is_not_json_prints_as_null() {
        let r = row("{\"payload\":", Some("not json"));
        let printed: Value = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(printed["envelope"], Value::Null);
        assert_eq!(printed["context"], Value::Null);
        assert_eq!(printed["issued_at"], Value::Null);
    }
}
