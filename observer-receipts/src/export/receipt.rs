//! `receipt`: the signed envelope exactly as stored (parsed JSON) and its
//! context beside it, plus the log position.
use serde_json::{json, Value};

use super::{checkpoint_json, parse_or_string, Item, CAPTURE_TOPOLOGY};

/// The record in the `receipt` format: `{capture_topology, record,
/// log_index, receipt_hash, receipt, context}` for a receipt,
/// `{capture_topology, record, checkpoint}` for a checkpoint.
pub fn format(item: &Item) -> Value {
    match item {
        Item::Receipt(r) => json!({
            "capture_topology": CAPTURE_TOPOLOGY,
            "record": "receipt",
            "log_index": r.leaf_index,
            "receipt_hash": hex::encode(r.receipt_hash),
            "receipt": parse_or_string(&r.envelope),
            "context": r.context.as_deref().map_or(Value::Null, parse_or_string),
        }),
        Item::Checkpoint(c) => json!({
            "capture_topology": CAPTURE_TOPOLOGY,
            "record": "checkpoint",
            "checkpoint": checkpoint_json(c),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    #[test]
    fn receipt_keeps_envelope_and_context() {
        let r = exec_receipt();
        let v = format(&Item::Receipt(r.clone()));
        assert_eq!(v["capture_topology"], "passive_telemetry");
        assert_eq!(v["log_index"], 12);
        assert_eq!(v["receipt_hash"], "ab".repeat(32));
        assert_eq!(
            v["receipt"],
            serde_json::from_str::<Value>(&r.envelope).unwrap()
        );
        assert_eq!(v["context"]["exec"]["filename"], "/usr/bin/true");
        // The fast text form is the same JSON.
        let text: Value = serde_json::from_str(&super::super::to_json_text(
            &Item::Receipt(r),
            super::super::Format::Receipt,
        ))
        .unwrap();
        assert_eq!(text, v);
        // A row that is not JSON is forwarded as a string, as `format` does.
        let mut odd = exec_receipt();
        odd.envelope = "{\"payload\": tampered".into();
        odd.context = None;
        let text: Value = serde_json::from_str(&super::super::to_json_text(
            &Item::Receipt(odd.clone()),
            super::super::Format::Receipt,
        ))
        .unwrap();
        assert_eq!(text, format(&Item::Receipt(odd)));
        assert_eq!(text["receipt"], "{\"payload\": tampered");
        let c = format(&Item::Checkpoint(checkpoint()));
        assert_eq!(c["checkpoint"]["size"], 13);
        assert_eq!(c["checkpoint"]["origin"], "did:web:x/host/h");
        assert_eq!(c["checkpoint"]["root"], "cd".repeat(32));
    }
}
