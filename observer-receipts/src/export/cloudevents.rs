//! `cloudevents`: CloudEvents 1.0 structured JSON. `id` is the receipt
//! hash (unique per receipt, stable across re-sends, so a receiver can
//! drop at-least-once duplicates), `source` the chain's issuer, `subject`
//! the agent; `data` holds the signed receipt, its context and the log
//! position. Extension attributes must be lowercase alphanumerics, so the
//! capture topology is `capturetopology` there and `capture_topology` in
//! `data`.
use serde_json::{json, Value};

use super::{
    checkpoint_json, parse_or_string, push_json_string, push_stored_json, rfc3339_ns, Item,
    ReceiptItem, CAPTURE_TOPOLOGY,
};

/// Prefix of every event `type`: `dev.observer.receipt.<action_type>` and
/// `dev.observer.checkpoint`.
pub const TYPE_PREFIX: &str = "dev.observer.";

/// The record as a CloudEvent.
pub fn format(item: &Item) -> Value {
    match item {
        Item::Receipt(r) => json!({
            "specversion": "1.0",
            "id": hex::encode(r.receipt_hash),
            "source": r.issuer_id,
            "type": format!("{TYPE_PREFIX}receipt.{}", r.action_type),
            "subject": r.agent_id,
            "time": rfc3339_ns(r.issued_ns),
            "datacontenttype": "application/json",
            "capturetopology": CAPTURE_TOPOLOGY,
            "sequence": r.leaf_index.to_string(),
            "data": {
                "capture_topology": CAPTURE_TOPOLOGY,
                "log_index": r.leaf_index,
                "receipt_hash": hex::encode(r.receipt_hash),
                "chain": r.issuer_id,
                "seq": r.seq,
                "risk_class": r.risk_class,
                "receipt": parse_or_string(&r.envelope),
                "context": r.context.as_deref().map_or(Value::Null, parse_or_string),
            },
        }),
        Item::Checkpoint(c) => checkpoint_event(c),
    }
}

/// A receipt's event as JSON text, the same JSON as `format` gives, with
/// the stored envelope and context embedded as they are.
pub fn receipt_text(r: &ReceiptItem) -> String {
    let hash = hex::encode(r.receipt_hash);
    let mut out = String::with_capacity(r.envelope.len() + 2000);
    out.push_str("{\"specversion\":\"1.0\",\"id\":\"");
    out.push_str(&hash);
    out.push_str("\",\"source\":");
    push_json_string(&mut out, &r.issuer_id);
    out.push_str(",\"type\":");
    push_json_string(&mut out, &format!("{TYPE_PREFIX}receipt.{}", r.action_type));
    out.push_str(",\"subject\":");
    push_json_string(&mut out, &r.agent_id);
    out.push_str(",\"time\":\"");
    out.push_str(&rfc3339_ns(r.issued_ns));
    out.push_str("\",\"datacontenttype\":\"application/json\",\"capturetopology\":\"");
    out.push_str(CAPTURE_TOPOLOGY);
    out.push_str("\",\"sequence\":\"");
    out.push_str(&r.leaf_index.to_string());
    out.push_str("\",\"data\":{\"capture_topology\":\"");
    out.push_str(CAPTURE_TOPOLOGY);
    out.push_str("\",\"log_index\":");
    out.push_str(&r.leaf_index.to_string());
    out.push_str(",\"receipt_hash\":\"");
    out.push_str(&hash);
    out.push_str("\",\"chain\":");
    push_json_string(&mut out, &r.issuer_id);
    out.push_str(",\"seq\":");
    out.push_str(&r.seq.to_string());
    out.push_str(",\"risk_class\":");
    push_json_string(&mut out, &r.risk_class);
    out.push_str(",\"receipt\":");
    push_stored_json(&mut out, Some(&r.envelope));
    out.push_str(",\"context\":");
    push_stored_json(&mut out, r.context.as_deref());
    out.push_str("}}");
    out
}

fn checkpoint_event(c: &super::CheckpointItem) -> Value {
    json!({
        "specversion": "1.0",
        "id": format!("checkpoint-{}-{}", c.size, hex::encode(&c.root)),
        "source": c.origin(),
        "type": format!("{TYPE_PREFIX}checkpoint"),
        "time": c.created_at,
        "datacontenttype": "application/json",
        "capturetopology": CAPTURE_TOPOLOGY,
        "data": {
            "capture_topology": CAPTURE_TOPOLOGY,
            "checkpoint": checkpoint_json(c),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    #[test]
    fn cloudevent_required_attributes() {
        let v = format(&Item::Receipt(exec_receipt()));
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["id"], "ab".repeat(32));
        assert_eq!(v["source"], "did:web:x/host/h/agent/claude");
        assert_eq!(v["type"], "dev.observer.receipt.process.exec");
        assert_eq!(v["time"], "2026-11-22T18:00:00.123456789Z");
        assert_eq!(v["data"]["capture_topology"], "passive_telemetry");
        assert_eq!(v["data"]["receipt"]["signature"]["alg"], "ML-DSA-65");
        assert_eq!(v["data"]["seq"], 7);
        // Extension attribute names: [a-z0-9]{1,20}.
        for key in v.as_object().unwrap().keys() {
            assert!(
                key.len() <= 20
                    && key
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
                "{key}"
            );
        }
        // The text form is the same JSON, also for rows that are not JSON
        // (forwarded as strings) and hash-only receipts (null context).
        let mut odd = exec_receipt();
        odd.envelope = "{\"payload\": tampered".into();
        odd.context = None;
        odd.agent_id = "a\"b\\c\u{7}".into();
        for r in [exec_receipt(), odd] {
            let text: Value = serde_json::from_str(&receipt_text(&r)).unwrap();
            assert_eq!(text, format(&Item::Receipt(r)));
        }
        let c = format(&Item::Checkpoint(checkpoint()));
        assert_eq!(c["type"], "dev.observer.checkpoint");
        assert_eq!(c["source"], "did:web:x/host/h");
        assert_eq!(c["data"]["checkpoint"]["size"], 13);
    }
}
