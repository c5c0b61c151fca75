//! `cloudevents`: CloudEvents 1.0 structured JSON. `id` is the receipt
//! hash (unique per receipt, stable across re-sends, so a receiver can
//! drop at-least-once duplicates), `source` the chain's issuer, `subject`
//! the agent; `data` holds the signed receipt, its context and the log
//! position. Extension attributes must be lowercase alphanumerics, so the
//! capture topology is `capturetopology` there and `capture_topology` in
//! `data`.
use serde_json::{json, Value};

use super::{checkpoint_json, parse_or_string, rfc3339_ns, Item, CAPTURE_TOPOLOGY};

pub const TYPE_PREFIX: &str = "dev.observer.";

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
        Item::Checkpoint(c) => json!({
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
        }),
    }
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
        let c = format(&Item::Checkpoint(checkpoint()));
        assert_eq!(c["type"], "dev.observer.checkpoint");
        assert_eq!(c["source"], "did:web:x/host/h");
        assert_eq!(c["data"]["checkpoint"]["size"], 13);
    }
}
