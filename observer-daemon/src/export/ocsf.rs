//! `ocsf`: OCSF 1.3 events. Class by action type:
//!
//! | action | class | activity |
//! | --- | --- | --- |
//! | process.exec / process.exit | Process Activity 1007 | Launch 1 / Terminate 2 |
//! | network.connect / accept / listen | Network Activity 4001 | Open 1 / Open 1 / Listen 7 |
//! | file.open | File System Activity 1001 | Open 14 |
//! | dns.resolve | DNS Activity 4003 | Response 2 |
//! | shadow_ai.finding | Detection Finding 2004 | Create 1 |
//! | observer.*, checkpoints | Base Event 0 | Other 99 |
//!
//! Every event carries the receipt hash (`metadata.uid`), the chain
//! position (`metadata.log_name` = chain, `metadata.sequence` = seq, and the
//! log index), the signature and the whole signed envelope (`raw_data`) so
//! a receiver can verify it, under `unmapped.observer`.
use serde_json::{json, Map, Value};

use super::{checkpoint_json, parse_or_string, signature_of, Item, ReceiptItem, CAPTURE_TOPOLOGY};

pub const OCSF_VERSION: &str = "1.3.0";

/// (class_uid, category_uid, activity_id, class name, activity name).
pub fn class_of(action_type: &str) -> (u32, u32, u32, &'static str, &'static str) {
    match action_type {
        "process.exec" => (1007, 1, 1, "Process Activity", "Launch"),
        "process.exit" => (1007, 1, 2, "Process Activity", "Terminate"),
        "network.connect" | "network.accept" => (4001, 4, 1, "Network Activity", "Open"),
        "network.listen" => (4001, 4, 7, "Network Activity", "Listen"),
        "file.open" => (1001, 1, 14, "File System Activity", "Open"),
        "dns.resolve" => (4003, 4, 2, "DNS Activity", "Response"),
        "shadow_ai.finding" => (2004, 2, 1, "Detection Finding", "Create"),
        _ => (0, 0, 99, "Base Event", "Other"),
    }
}

/// OCSF severity_id from the receipt's risk class.
fn severity(risk: &str) -> (u32, &'static str) {
    match risk {
        "low" => (2, "Low"),
        "medium" => (3, "Medium"),
        "high" => (4, "High"),
        _ => (0, "Unknown"),
    }
}

fn metadata(uid: &str, log_name: &str, sequence: u64) -> Value {
    json!({
        "version": OCSF_VERSION,
        "product": {"name": "observer", "vendor_name": "observer", "version": env!("CARGO_PKG_VERSION")},
        "uid": uid,
        "log_name": log_name,
        "sequence": sequence,
    })
}

pub fn format(item: &Item) -> Value {
    match item {
        Item::Receipt(r) => receipt_event(r),
        Item::Checkpoint(c) => {
            let time_ms = parse_ms(&c.created_at);
            json!({
                "class_uid": 0, "class_name": "Base Event",
                "category_uid": 0, "category_name": "Uncategorized",
                "activity_id": 99, "activity_name": "Other",
                "type_uid": 99, "type_name": "Base Event: Other",
                "severity_id": 1, "severity": "Informational",
                "time": time_ms,
                "message": "observer checkpoint (signed Merkle root of the host log)",
                "metadata": metadata(&format!("checkpoint-{}", c.size), c.origin(), c.size),
                "capture_topology": CAPTURE_TOPOLOGY,
                "unmapped": {"observer": {"checkpoint": checkpoint_json(c)}},
            })
        }
    }
}

fn receipt_event(r: &ReceiptItem) -> Value {
    let (class_uid, category_uid, activity_id, class_name, activity_name) =
        class_of(&r.action_type);
    let (severity_id, severity_name) = severity(&r.risk_class);
    let envelope = parse_or_string(&r.envelope);
    let context = r.context.as_deref().map_or(Value::Null, parse_or_string);
    let hash = hex::encode(r.receipt_hash);
    let mut ev = json!({
        "class_uid": class_uid,
        "class_name": class_name,
        "category_uid": category_uid,
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": class_uid * 100 + activity_id,
        "type_name": format!("{class_name}: {activity_name}"),
        "severity_id": severity_id,
        "severity": severity_name,
        "time": r.issued_ns / 1_000_000,
        "status_id": 1,
        "metadata": metadata(&hash, &r.issuer_id, r.seq),
        "capture_topology": CAPTURE_TOPOLOGY,
        "raw_data": r.envelope,
        "unmapped": {"observer": {
            "receipt_hash": hash,
            "signature": signature_of(&envelope),
            "chain": r.issuer_id,
            "seq": r.seq,
            "log_index": r.leaf_index,
            "agent_id": r.agent_id,
            "action_type": r.action_type,
            "risk_class": r.risk_class,
            "previous_receipt_hash": envelope.pointer("/payload/previousReceiptHash").cloned().unwrap_or(Value::Null),
            "context": context,
        }},
    });
    if let (Some(obj), Some(ctx)) = (ev.as_object_mut(), r.context.as_ref().map(|_| &context)) {
        map_context(obj, class_uid, ctx, &r.agent_id);
    }
    if category_uid == 1 || category_uid == 4 {
        if let Some(obj) = ev.as_object_mut() {
            obj.insert(
                "category_name".into(),
                json!(if category_uid == 1 {
                    "System Activity"
                } else {
                    "Network Activity"
                }),
            );
        }
    } else if let Some(obj) = ev.as_object_mut() {
        obj.insert(
            "category_name".into(),
            json!(if category_uid == 2 {
                "Findings"
            } else {
                "Uncategorized"
            }),
        );
    }
    ev
}

/// OCSF `process` object from the enriched event's process.
fn process_obj(p: &Value, agent: &str) -> Value {
    let mut out = Map::new();
    let copy = |out: &mut Map<String, Value>, to: &str, v: Option<&Value>| {
        if let Some(v) = v.filter(|v| !v.is_null()) {
            out.insert(to.into(), v.clone());
        }
    };
    copy(&mut out, "pid", p.get("pid"));
    copy(&mut out, "name", p.get("comm"));
    if let Some(argv) = p.get("argv").and_then(Value::as_array) {
        let words: Vec<&str> = argv.iter().filter_map(Value::as_str).collect();
        out.insert("cmd_line".into(), json!(words.join(" ")));
    }
    let mut file = Map::new();
    copy(&mut file, "path", p.get("exe"));
    if let Some(h) = p.get("exe_sha256").and_then(Value::as_str) {
        file.insert(
            "hashes".into(),
            json!([{"algorithm_id": 3, "algorithm": "SHA-256", "value": h.trim_start_matches("sha256:")}]),
        );
    }
    if !file.is_empty() {
        out.insert("file".into(), Value::Object(file));
    }
    let mut user = Map::new();
    copy(
        &mut user,
        "uid",
        p.get("uid").map(|u| json!(u.to_string())).as_ref(),
    );
    copy(&mut user, "name", p.get("user"));
    if !user.is_empty() {
        out.insert("user".into(), Value::Object(user));
    }
    copy(&mut out, "cgroup", p.get("cgroup"));
    if let Some(ppid) = p.get("ppid") {
        out.insert("parent_process".into(), json!({"pid": ppid}));
    }
    out.insert("xattributes".into(), json!({"agent_id": agent}));
    Value::Object(out)
}

/// Maps the stored context (docs/events.md) onto the class's objects.
fn map_context(ev: &mut Map<String, Value>, class_uid: u32, ctx: &Value, agent: &str) {
    let process = ctx.get("process").map(|p| process_obj(p, agent));
    match class_uid {
        1007 => {
            if let Some(p) = process {
                ev.insert(
                    "actor".into(),
                    json!({"process": p.get("parent_process").cloned().unwrap_or(Value::Null)}),
                );
                ev.insert("process".into(), p);
            }
            if let Some(code) = ctx.pointer("/exit/exit_code") {
                ev.insert("exit_code".into(), code.clone());
            }
            if let Some(r) = ctx.pointer("/exec/result").and_then(Value::as_i64) {
                if r != 0 {
                    ev.insert("status_id".into(), json!(2));
                    ev.insert("status".into(), json!("Failure"));
                }
            }
        }
        4001 => {
            if let Some(p) = process {
                ev.insert("actor".into(), json!({"process": p}));
            }
            let n = ["connect", "accept", "listen", "bind"]
                .iter()
                .find_map(|k| ctx.get(*k))
                .cloned()
                .unwrap_or(Value::Null);
            ev.insert(
                "src_endpoint".into(),
                json!({"ip": n.get("local_addr"), "port": n.get("local_port")}),
            );
            let mut dst = json!({"ip": n.get("remote_addr"), "port": n.get("remote_port")});
            if let Some(name) = n.pointer("/dst_names/0/name") {
                dst["hostname"] = name.clone();
            }
            ev.insert("dst_endpoint".into(), dst);
            ev.insert(
                "connection_info".into(),
                json!({"protocol_name": n.get("socket_type"), "direction": if ctx.get("accept").is_some() { "Inbound" } else { "Outbound" }}),
            );
        }
        1001 => {
            if let Some(p) = process {
                ev.insert("actor".into(), json!({"process": p}));
            }
            ev.insert(
                "file".into(),
                json!({"path": ctx.pointer("/file_open/path"), "type_id": 1}),
            );
            if let Some(c) = ctx.get("count") {
                ev.insert("count".into(), c.clone());
            }
        }
        4003 | 2004 => {
            if let Some(p) = process {
                ev.insert("actor".into(), json!({"process": p}));
            }
        }
        _ => {}
    }
}

/// RFC 3339 to epoch ms; 0 when it does not parse.
fn parse_ms(text: &str) -> u64 {
    humantime::parse_rfc3339(text)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    #[test]
    fn exec_is_process_activity_launch() {
        let v = format(&Item::Receipt(exec_receipt()));
        assert_eq!(v["class_uid"], 1007);
        assert_eq!(v["activity_id"], 1);
        assert_eq!(v["type_uid"], 100701);
        assert_eq!(v["category_uid"], 1);
        assert_eq!(v["severity_id"], 3);
        assert_eq!(v["time"], 1_795_370_400_123u64);
        assert_eq!(v["capture_topology"], "passive_telemetry");
        assert_eq!(v["metadata"]["uid"], "ab".repeat(32));
        assert_eq!(v["metadata"]["sequence"], 7);
        assert_eq!(v["metadata"]["version"], OCSF_VERSION);
        assert_eq!(v["process"]["pid"], 4242);
        assert_eq!(v["process"]["cmd_line"], "sh -c true");
        assert_eq!(v["process"]["file"]["path"], "/usr/bin/sh");
        assert_eq!(v["actor"]["process"]["pid"], 4000);
        assert_eq!(v["unmapped"]["observer"]["signature"]["sig"], "c2ln");
        assert_eq!(v["unmapped"]["observer"]["log_index"], 12);
        assert_eq!(v["raw_data"], exec_receipt().envelope);
    }

    #[test]
    fn classes_by_action() {
        assert_eq!(class_of("network.listen").0, 4001);
        assert_eq!(class_of("network.listen").2, 7);
        assert_eq!(class_of("file.open").0, 1001);
        assert_eq!(class_of("file.open").2, 14);
        assert_eq!(class_of("dns.resolve").0, 4003);
        assert_eq!(class_of("shadow_ai.finding").0, 2004);
        assert_eq!(class_of("observer.start").0, 0);
        let c = format(&Item::Checkpoint(checkpoint()));
        assert_eq!(c["class_uid"], 0);
        assert_eq!(c["capture_topology"], "passive_telemetry");
        assert_eq!(c["unmapped"]["observer"]["checkpoint"]["size"], 13);
        assert_eq!(c["time"], 1_795_370_401_000u64);
    }
}
