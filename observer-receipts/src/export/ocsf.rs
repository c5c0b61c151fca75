//! `ocsf`: OCSF 1.3.0 events. Class by action type:
//!
//! | action | class | activity |
//! | --- | --- | --- |
//! | process.exec / process.exit | Process Activity 1007 | Launch 1 / Terminate 2 |
//! | network.connect / accept / listen | Network Activity 4001 | Open 1 / Open 1 / Listen 7 |
//! | file.open | File System Activity 1001 | Open 14 |
//! | dns.resolve | DNS Activity 4003 | Response 2 |
//! | shadow_ai.finding | Detection Finding 2004 | Create 1 |
//! | llm.request | HTTP Activity 4002 | Post 6 |
//! | mcp.session / tool_call / tool_definition | API Activity 6003 | Other 99 |
//! | observer.*, checkpoints, receipts without a context | Base Event 0 | Other 99 |
//!
//! A receipt whose context is not stored (hash-only mode, erased) is a
//! Base Event: the classes' required objects (the file, the finding, the
//! actor) come from the context and cannot be made up.
//!
//! Every event carries the receipt hash (`metadata.uid`), the chain
//! position (`metadata.log_name` = chain, `metadata.sequence` = seq, and the
//! log index under `unmapped.observer`) and the whole signed envelope with
//! its signature (`raw_data`), so a receiver can verify it;
//! `unmapped.observer.signer` names the signature's algorithm and key
//! without repeating its 4.4 KB value. The top-level
//! `capture_topology` is the one attribute of the `observer` schema
//! extension declared in `metadata.extensions`; the `host` profile (actor,
//! device) is declared in `metadata.profiles`. The output validates against
//! the OCSF 1.3.0 schema (tests/ocsf/).
//!
//! `format` builds the event as a `Value`; export and forwarding write
//! receipts through `ocsf_text`, the same JSON assembled as text (pinned
//! equal to `format` by its tests), and fall back to `format` for rows it
//! does not read.
use serde_json::{json, Map, Value};

use super::{checkpoint_json, parse_or_string, Item, ReceiptItem, CAPTURE_TOPOLOGY};

/// The OCSF schema version events declare in `metadata.version`.
pub const OCSF_VERSION: &str = "1.3.0";

/// The schema extension declaring `capture_topology` (OCSF extensions
/// carry a name, a uid and a version). 999 is the uid the OCSF extensions
/// registry (`extensions.md` in ocsf/ocsf-schema) reserves for development
/// extensions: observer has no registered uid of its own yet, and taking a
/// free number would collide with the next vendor the registry assigns it.
pub const EXTENSION: (&str, &str, &str) = ("observer", "999", "1.0.0");

/// (class_uid, category_uid, activity_id, class name, activity name).
pub fn class_of(action_type: &str) -> (u32, u32, u32, &'static str, &'static str) {
    match action_type {
        "process.exec" => (1007, 1, 1, "Process Activity", "Launch"),
        "process.exit" => (1007, 1, 2, "Process Activity", "Terminate"),
        "network.connect" | "network.accept" => (4001, 4, 1, "Network Activity", "Open"),
        "network.listen" => (4001, 4, 7, "Network Activity", "Listen"),
        "file.open" => (1001, 1, 14, "File System Activity", "Open"),
        "dns.resolve" => (4003, 4, 2, "DNS Activity", "Response"),
        // The LLM APIs are called with POST.
        "llm.request" => (4002, 4, 6, "HTTP Activity", "Post"),
        // An MCP tool call is a call of an application's API (JSON-RPC).
        "mcp.tool_call" | "mcp.request" | "mcp.session" | "mcp.tool_definition" => {
            (6003, 6, 99, "API Activity", "Other")
        }
        "shadow_ai.finding" => (2004, 2, 1, "Detection Finding", "Create"),
        _ => BASE_EVENT,
    }
}

pub(crate) const BASE_EVENT: (u32, u32, u32, &str, &str) = (0, 0, 99, "Base Event", "Other");

/// Whether the class takes OCSF's `host` profile (the `device`): every
/// mapped class but API Activity, which OCSF 1.3.0 leaves without it.
pub(crate) fn has_host_profile(class_uid: u32) -> bool {
    !matches!(class_uid, 0 | 6003)
}

/// Stands in for an absent context member.
static NULL: Value = Value::Null;

pub(crate) fn category_name(category_uid: u32) -> &'static str {
    match category_uid {
        1 => "System Activity",
        2 => "Findings",
        4 => "Network Activity",
        6 => "Application Activity",
        _ => "Uncategorized",
    }
}

/// OCSF severity_id from the receipt's risk class.
pub(crate) fn severity(risk: &str) -> (u32, &'static str) {
    match risk {
        "low" => (2, "Low"),
        "medium" => (3, "Medium"),
        "high" => (4, "High"),
        _ => (0, "Unknown"),
    }
}

fn metadata(uid: &str, log_name: &str, sequence: u64, host_profile: bool) -> Value {
    let (name, ext_uid, version) = EXTENSION;
    let mut m = json!({
        "version": OCSF_VERSION,
        "product": {"name": "observer", "vendor_name": "observer", "version": env!("CARGO_PKG_VERSION")},
        "uid": uid,
        "log_name": log_name,
        "sequence": sequence,
        "extensions": [{"name": name, "uid": ext_uid, "version": version}],
    });
    if host_profile {
        m["profiles"] = json!(["host"]);
    }
    m
}

/// The record as an OCSF event, of the class the module's table gives
/// (checkpoints and receipts without a stored context: Base Event 0).
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
                "metadata": metadata(&format!("checkpoint-{}", c.size), c.origin(), c.size, false),
                "capture_topology": CAPTURE_TOPOLOGY,
                "unmapped": {"observer": {"checkpoint": checkpoint_json(c)}},
            })
        }
    }
}

pub(crate) fn receipt_event(r: &ReceiptItem) -> Value {
    let envelope = parse_or_string(&r.envelope);
    let context = r.context.as_deref().map(parse_or_string);
    let mapped = context.as_ref().filter(|c| c.is_object());
    let (class_uid, category_uid, activity_id, class_name, activity_name) = match mapped {
        Some(_) => class_of(&r.action_type),
        None => BASE_EVENT,
    };
    let (severity_id, severity_name) = severity(&r.risk_class);
    let hash = hex::encode(r.receipt_hash);
    let mut ev = json!({
        "class_uid": class_uid,
        "class_name": class_name,
        "category_uid": category_uid,
        "category_name": category_name(category_uid),
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": class_uid * 100 + activity_id,
        "type_name": format!("{class_name}: {activity_name}"),
        "severity_id": severity_id,
        "severity": severity_name,
        "time": r.issued_ns / 1_000_000,
        "metadata": metadata(&hash, &r.issuer_id, r.seq, has_host_profile(class_uid)),
        "capture_topology": CAPTURE_TOPOLOGY,
        "raw_data": r.envelope,
    });
    if let Some(obj) = ev.as_object_mut() {
        match mapped {
            // observer.* receipts stay Base Events: no device, no status.
            Some(_) if class_uid == 0 => {}
            Some(ctx) => {
                obj.insert("status_id".into(), json!(1));
                if has_host_profile(class_uid) {
                    obj.insert("device".into(), device(&r.issuer_id));
                }
                map_context(obj, class_uid, ctx, &r.agent_id, &envelope, &hash);
            }
            None => {
                obj.insert(
                    "message".into(),
                    json!(format!(
                        "{} receipt without a stored context (hash-only mode or erased)",
                        r.action_type
                    )),
                );
            }
        }
        // Last, so the context moves in instead of being copied.
        obj.insert(
            "unmapped".into(),
            json!({"observer": {
                "receipt_hash": hash,
                "signer": signer_of(&envelope),
                "chain": r.issuer_id,
                "seq": r.seq,
                "log_index": r.leaf_index,
                "agent_id": r.agent_id,
                "action_type": r.action_type,
                "risk_class": r.risk_class,
                "previous_receipt_hash": envelope.pointer("/payload/previousReceiptHash").cloned().unwrap_or(Value::Null),
                "context": context.unwrap_or(Value::Null),
            }}),
        );
    }
    ev
}

/// Who signed the receipt: its signature's `alg` and `kid`. The signature
/// value (3,309 bytes of ML-DSA-65, 4.4 KB as text) is carried once, inside
/// `raw_data`, the signed envelope a receiver verifies; repeating it here
/// made every event a third larger in the SIEM. A signature member that is
/// not an object is given as stored.
fn signer_of(envelope: &Value) -> Value {
    match envelope.get("signature") {
        Some(Value::Object(sig)) => Value::Object(
            ["alg", "kid"]
                .into_iter()
                .filter_map(|k| Some((k.to_string(), sig.get(k)?.clone())))
                .collect(),
        ),
        Some(other) => other.clone(),
        None => Value::Null,
    }
}

/// The host as an OCSF device: its name is the `host/<name>` segment of
/// the issuer id (the type is not known to the observer).
fn device(issuer_id: &str) -> Value {
    let mut d = json!({"type_id": 0, "type": "Unknown"});
    if let Some(h) = host_of(issuer_id) {
        d["hostname"] = json!(h);
    }
    d
}

/// The `host/<name>` segment of an issuer id.
pub(crate) fn host_of(issuer_id: &str) -> Option<&str> {
    issuer_id
        .split('/')
        .skip_while(|s| *s != "host")
        .nth(1)
        .filter(|h| !h.is_empty())
}

/// Inserts `key: v` when `v` is present and not null.
fn put(out: &mut Map<String, Value>, key: &str, v: Option<&Value>) {
    if let Some(v) = v.filter(|v| !v.is_null()) {
        out.insert(key.into(), v.clone());
    }
}

/// The last path component, as OCSF `file.name` wants it.
pub(crate) fn base_name(path: &str) -> &str {
    path.rsplit('/').find(|s| !s.is_empty()).unwrap_or(path)
}

/// OCSF `file` object of a path (a regular file).
fn file_obj(path: &Value, sha256: Option<&str>) -> Value {
    let mut file = Map::new();
    if let Some(p) = path.as_str() {
        file.insert("name".into(), json!(base_name(p)));
        file.insert("path".into(), json!(p));
    }
    file.insert("type_id".into(), json!(1));
    file.insert("type".into(), json!("Regular File"));
    if let Some(h) = sha256 {
        file.insert(
            "hashes".into(),
            json!([{"algorithm_id": 3, "algorithm": "SHA-256", "value": h.trim_start_matches("sha256:")}]),
        );
    }
    Value::Object(file)
}

/// OCSF `process` object from the enriched event's process. What OCSF has
/// no attribute for (agent, cgroup, systemd unit) goes to `xattributes`.
fn process_obj(p: &Value, agent: &str) -> Value {
    let mut out = Map::new();
    put(&mut out, "pid", p.get("pid"));
    put(&mut out, "tid", p.get("tid"));
    put(&mut out, "name", p.get("comm"));
    if let Some(argv) = p.get("argv").and_then(Value::as_array) {
        let words: Vec<&str> = argv.iter().filter_map(Value::as_str).collect();
        out.insert("cmd_line".into(), json!(words.join(" ")));
    }
    if let Some(exe) = p.get("exe").filter(|e| e.is_string()) {
        out.insert(
            "file".into(),
            file_obj(exe, p.get("exe_sha256").and_then(Value::as_str)),
        );
    }
    let mut user = Map::new();
    put(
        &mut user,
        "uid",
        p.get("uid").map(|u| json!(u.to_string())).as_ref(),
    );
    put(&mut user, "name", p.get("user"));
    if !user.is_empty() {
        out.insert("user".into(), Value::Object(user));
    }
    if let Some(ppid) = p.get("ppid").filter(|v| !v.is_null()) {
        out.insert("parent_process".into(), json!({"pid": ppid}));
    }
    let mut x = Map::new();
    x.insert("agent_id".into(), json!(agent));
    put(&mut x, "cgroup", p.get("cgroup"));
    put(&mut x, "unit", p.get("unit"));
    out.insert("xattributes".into(), Value::Object(x));
    Value::Object(out)
}

/// An endpoint of the non-null address and port given.
fn endpoint(ip: Option<&Value>, port: Option<&Value>) -> Value {
    let mut e = Map::new();
    put(&mut e, "ip", ip);
    put(&mut e, "port", port);
    Value::Object(e)
}

/// (protocol_name, protocol_num) of a socket type (inet sockets).
fn protocol(socket_type: Option<&Value>) -> Option<(&'static str, u32)> {
    match socket_type.and_then(Value::as_str) {
        Some("stream") => Some(("tcp", 6)),
        Some("dgram") => Some(("udp", 17)),
        _ => None,
    }
}

/// OCSF `rcode_id` and its caption (`rcode`) of the DNS rcode names the
/// decoder writes (NOERROR ... REFUSED, else RCODE<n>).
pub(crate) fn rcode(name: &str) -> (u32, &'static str) {
    const CAPTIONS: [(u32, &str); 19] = [
        (0, "NoError"),
        (1, "FormError"),
        (2, "ServError"),
        (3, "NXDomain"),
        (4, "NotImp"),
        (5, "Refused"),
        (6, "YXDomain"),
        (7, "YXRRSet"),
        (8, "NXRRSet"),
        (9, "NotAuth"),
        (10, "NotZone"),
        (11, "DSOTYPENI"),
        (16, "BADSIG_VERS"),
        (17, "BADKEY"),
        (18, "BADTIME"),
        (19, "BADMODE"),
        (20, "BADNAME"),
        (21, "BADALG"),
        (22, "BADTRUNC"),
    ];
    let n = match name {
        "NOERROR" => Some(0),
        "FORMERR" => Some(1),
        "SERVFAIL" => Some(2),
        "NXDOMAIN" => Some(3),
        "NOTIMP" => Some(4),
        "REFUSED" => Some(5),
        other => other
            .strip_prefix("RCODE")
            .and_then(|n| n.parse::<u32>().ok()),
    };
    n.and_then(|n| CAPTIONS.iter().find(|(id, _)| *id == n).copied())
        .unwrap_or((99, "Other"))
}

/// Maps the stored context (docs/events.md) onto the class's objects.
/// The opens a `file.open` receipt covers (OCSF `count`): the sum of its
/// list's counts (`file_open.paths`), else its one path's `file_open.count`
/// (a sensitive path folded per window); none for a receipt of one open or
/// a count that is not an unsigned integer.
pub(crate) fn opens_count(ctx: &Value) -> Option<u64> {
    let open = ctx.get("file_open")?;
    match open.get("paths").and_then(Value::as_array) {
        Some(entries) => entries.iter().try_fold(0u64, |sum, e| {
            e.get("count")
                .and_then(Value::as_u64)
                .and_then(|c| sum.checked_add(c))
        }),
        None => open.get("count").and_then(Value::as_u64),
    }
}

fn map_context(
    ev: &mut Map<String, Value>,
    class_uid: u32,
    ctx: &Value,
    agent: &str,
    envelope: &Value,
    hash: &str,
) {
    let process = ctx.get("process").map(|p| process_obj(p, agent));
    match class_uid {
        1007 => {
            // The actor of a launch or an exit is the parent process.
            let mut parent = Map::new();
            put(&mut parent, "pid", ctx.pointer("/process/ppid"));
            if let Some(first) = ctx.pointer("/parents/0") {
                if first.get("pid") == ctx.pointer("/process/ppid") {
                    put(&mut parent, "name", first.get("comm"));
                    if let Some(exe) = first.get("exe").filter(|e| e.is_string()) {
                        parent.insert("file".into(), file_obj(exe, None));
                    }
                }
            }
            ev.insert("actor".into(), json!({"process": parent}));
            ev.insert("process".into(), process.unwrap_or_else(|| json!({})));
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
            let (n, direction) = [
                ("connect", (2, "Outbound")),
                ("accept", (1, "Inbound")),
                ("listen", (0, "Unknown")),
                ("bind", (0, "Unknown")),
            ]
            .iter()
            .find_map(|(k, d)| ctx.get(*k).map(|n| (n, *d)))
            .unwrap_or((&NULL, (0, "Unknown")));
            ev.insert(
                "src_endpoint".into(),
                endpoint(n.get("local_addr"), n.get("local_port")),
            );
            let mut dst = endpoint(n.get("remote_addr"), n.get("remote_port"));
            if let Some(name) = n.pointer("/dst_names/0/name") {
                dst["hostname"] = name.clone();
            }
            ev.insert("dst_endpoint".into(), dst);
            let mut info = json!({"direction_id": direction.0, "direction": direction.1});
            if let Some((name, num)) = protocol(n.get("socket_type")) {
                info["protocol_name"] = json!(name);
                info["protocol_num"] = json!(num);
            }
            ev.insert("connection_info".into(), info);
        }
        1001 => {
            if let Some(p) = process.clone() {
                ev.insert("actor".into(), json!({"process": p}));
            } else {
                ev.insert("actor".into(), json!({}));
            }
            ev.insert(
                "file".into(),
                file_obj(ctx.pointer("/file_open/path").unwrap_or(&NULL), None),
            );
            if let Some(c) = opens_count(ctx) {
                ev.insert("count".into(), json!(c));
            }
        }
        4003 => {
            if let Some(p) = process {
                ev.insert("actor".into(), json!({"process": p}));
            }
            let a = ctx.get("dns_answer").unwrap_or(&NULL);
            // A response travels from the server to the local socket.
            ev.insert(
                "src_endpoint".into(),
                endpoint(a.get("server_addr"), a.get("server_port")),
            );
            ev.insert(
                "dst_endpoint".into(),
                endpoint(a.get("local_addr"), a.get("local_port")),
            );
            let mut query = Map::new();
            if let Some(name) = a.pointer("/question/name").and_then(Value::as_str) {
                query.insert("hostname".into(), json!(name.trim_end_matches('.')));
            }
            put(&mut query, "type", a.pointer("/question/type"));
            put(&mut query, "packet_uid", a.get("id"));
            query.insert("class".into(), json!("IN"));
            ev.insert("query".into(), Value::Object(query));
            let answers: Vec<Value> = a
                .get("answers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|x| {
                    let mut o = Map::new();
                    put(&mut o, "rdata", x.get("data"));
                    put(&mut o, "ttl", x.get("ttl"));
                    put(&mut o, "type", x.get("type"));
                    o.insert("class".into(), json!("IN"));
                    put(&mut o, "packet_uid", a.get("id"));
                    Value::Object(o)
                })
                .collect();
            ev.insert("answers".into(), Value::Array(answers));
            if let Some(name) = a.get("rcode").and_then(Value::as_str) {
                let (id, caption) = rcode(name);
                ev.insert("rcode_id".into(), json!(id));
                ev.insert("rcode".into(), json!(caption));
            }
            if let Some((name, num)) =
                a.get("transport")
                    .and_then(Value::as_str)
                    .and_then(|t| match t {
                        "udp" => Some(("udp", 17)),
                        "tcp" => Some(("tcp", 6)),
                        _ => None,
                    })
            {
                ev.insert(
                    "connection_info".into(),
                    json!({"direction_id": 1, "direction": "Inbound", "protocol_name": name, "protocol_num": num}),
                );
            }
        }
        4002 | 6003 => super::ocsf_agent::map(ev, class_uid, ctx, process),
        2004 => {
            if let Some(p) = process {
                ev.insert("actor".into(), json!({"process": p}));
            }
            let rule = ctx.get("rule_id").and_then(Value::as_str).unwrap_or("");
            let reason = ctx.get("reason").and_then(Value::as_str).unwrap_or(rule);
            let mut info = json!({
                "uid": hash,
                "title": reason,
                "analytic": {"type_id": 1, "type": "Rule", "uid": rule, "name": rule},
                "created_time": ev.get("time").cloned().unwrap_or(Value::Null),
            });
            if let Some(d) = ctx.get("policy_digest").and_then(Value::as_str) {
                info["analytic"]["version"] = json!(d);
            }
            // ATLAS and OWASP LLM ids are not ATT&CK: they go with the
            // finding's types, named by their framework.
            let mut types = vec![json!("shadow_ai")];
            for (key, prefix) in [
                ("mitre_atlas", "mitre_atlas:"),
                ("owasp_llm_top10", "owasp_llm_top10:"),
            ] {
                for id in envelope
                    .pointer(&format!("/payload/{key}"))
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    types.push(json!(format!("{prefix}{id}")));
                }
            }
            info["types"] = Value::Array(types);
            ev.insert("finding_info".into(), info);
            ev.insert("status_id".into(), json!(1));
            ev.insert("status".into(), json!("New"));
            ev.insert("message".into(), json!(reason));
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
mod tests;
