use serde_json::{json, Value};

use super::super::{fixtures::exec_receipt, Item};
use super::*;

/// `exec_receipt` with another action, context and envelope payload.
fn receipt(action: &str, context: Option<Value>, payload: Value) -> ReceiptItem {
    let mut r = exec_receipt();
    let mut envelope: Value = serde_json::from_str(&r.envelope).unwrap();
    for (k, v) in payload.as_object().unwrap() {
        envelope["payload"][k] = v.clone();
    }
    envelope["payload"]["action_type"] = json!(action);
    r.action_type = action.into();
    r.envelope = envelope.to_string();
    r.context = context.map(|c| c.to_string());
    r
}

fn process() -> Value {
    json!({"pid": 77, "tid": 78, "ppid": 70, "uid": 1000, "user": "dev", "comm": "cu\"rl",
           "exe": "/usr/bin/curl", "exe_sha256": "sha256:sha256:cd",
           "argv": ["curl", 5, "-s\n", null, "https://x"], "cgroup": "/a", "unit": "u.scope",
           "agent": null})
}

/// One receipt of each class and activity, and rows that read
/// members the unusual ways `Value` allows.
fn representative() -> Vec<ReceiptItem> {
    let none = json!({});
    let mut all = vec![exec_receipt()];
    all.push(receipt(
        "process.exit",
        Some(
            json!({"event": "exit", "process": process(), "exit": {"exit_code": 3},
                    "parents": [{"pid": 71, "comm": "other"}]}),
        ),
        none.clone(),
    ));
    all.push(receipt(
        "process.exec",
        Some(
            json!({"event": "exec", "process": {"pid": 5, "ppid": 4, "uid": null},
                    "parents": [{"pid": 4.0, "comm": "p"}],
                    "exec": {"result": -2}, "exit": {"exit_code": null}}),
        ),
        none.clone(),
    ));
    all.push(receipt(
        "process.exec",
        Some(json!({"event": "exec", "process": null, "parents": [null], "exec": {"result": 1.5}})),
        none.clone(),
    ));
    all.push(receipt(
        "network.connect",
        Some(json!({"event": "connect", "process": process(),
                    "connect": {"socket_type": "stream", "local_addr": "10.0.0.2", "local_port": 40000,
                                "remote_addr": "10.0.0.1", "remote_port": 443,
                                "dst_names": [{"name": "api.openai.com", "source": "sni"}]}})),
        none.clone(),
    ));
    all.push(receipt(
        "network.accept",
        Some(
            json!({"event": "accept", "accept": {"socket_type": "dgram", "local_addr": null,
                                                  "dst_names": [{"source": "dns"}]}}),
        ),
        none.clone(),
    ));
    all.push(receipt(
        "network.listen",
        Some(
            json!({"event": "listen", "process": process(), "listen": {"socket_type": "raw",
                    "local_addr": "::", "local_port": 8080, "dst_names": []}}),
        ),
        none.clone(),
    ));
    all.push(receipt(
        "network.connect",
        Some(json!({"event": "bind"})),
        none.clone(),
    ));
    all.push(receipt(
        "file.open",
        Some(
            json!({"event": "file_open", "process": process(), "count": 4,
                    "file_open": {"path": "/etc/ssl/certs/", "flags": 0}}),
        ),
        none.clone(),
    ));
    all.push(receipt(
        "file.open",
        Some(json!({"event": "file_open", "count": null, "file_open": {"path": 7}})),
        none.clone(),
    ));
    all.push(receipt("file.open", Some(folded_open()), none.clone()));
    // The OCSF count of opens from lists and counts read the unusual ways.
    for file_open in [
        json!({"path": "/x", "count": 2, "paths": [{"path": "/x", "count": 1},
                                                   {"path": "/y", "count": 1.5}]}),
        json!({"path": "/x", "count": "7", "paths": null}),
        json!({"path": "/x", "count": 3, "paths": []}),
        json!({"path": "/x", "paths": [{"count": u64::MAX}, {"count": 1}]}),
        json!({"path": "/x", "paths": [7, {"count": 1}]}),
        json!({"path": "/x", "count": -1}),
    ] {
        all.push(receipt(
            "file.open",
            Some(json!({"event": "file_open", "file_open": file_open})),
            none.clone(),
        ));
    }
    all.push(receipt(
        "dns.resolve",
        Some(
            json!({"event": "dns_answer", "process": process(), "dns_answer": {
            "transport": "udp", "server_addr": "10.0.0.1", "server_port": 53,
            "local_addr": "10.0.0.2", "local_port": 5353, "id": 4660, "rcode": "NOERROR",
            "question": {"name": "api.openai.com.", "type": "A"},
            "answers": [{"name": "api.openai.com", "ttl": 60, "type": "A", "data": "10.0.0.1"},
                        {"name": "x", "ttl": null, "type": "CNAME", "data": "y."}, "odd"]}}),
        ),
        none.clone(),
    ));
    all.push(receipt(
        "dns.resolve",
        Some(
            json!({"event": "dns_answer", "dns_answer": {"transport": "tcp", "rcode": "RCODE9",
                    "question": ["name"], "answers": {"0": 1}}}),
        ),
        none.clone(),
    ));
    all.push(receipt(
        "shadow_ai.finding",
        Some(
            json!({"process": process(), "rule_id": "ai-api-egress-unregistered",
                    "reason": "AI API call by \"curl\"", "policy_digest": "sha256:ff"}),
        ),
        json!({"mitre_atlas": ["AML.T0040", 3], "owasp_llm_top10": ["LLM10"]}),
    ));
    all.push(receipt(
        "shadow_ai.finding",
        Some(json!({"rule_id": "r1", "reason": null})),
        json!({"mitre_atlas": "AML.T0040", "previousReceiptHash": null}),
    ));
    all.push(receipt(
        "observer.start",
        Some(json!({"event": "start", "v": [1, 2.5]})),
        none.clone(),
    ));
    all.push(receipt("process.exec", None, none.clone()));
    // The signer from signatures of every shape.
    for signature in [
        json!({"kid": "k2", "sig": "c2ln", "extra": 1}),
        json!("c2ln"),
        Value::Null,
    ] {
        let mut r = exec_receipt();
        let mut envelope: Value = serde_json::from_str(&r.envelope).unwrap();
        envelope["signature"] = signature;
        r.envelope = envelope.to_string();
        all.push(r);
    }
    let mut r = exec_receipt();
    r.envelope = r#"{"payload": {"seq": 1}}"#.into();
    all.push(r);
    // Rows the text path leaves to the Value path.
    let mut odd = exec_receipt();
    odd.envelope = "{\"payload\": tampered".into();
    all.push(odd);
    let mut odd = exec_receipt();
    odd.context = Some("[1]".into());
    all.push(odd);
    let mut odd = exec_receipt();
    odd.context = Some(r#"{"process": {"pid": 1, "pid": 2}}"#.into());
    all.push(odd);
    let mut odd = exec_receipt();
    odd.context = Some(r#"{"parents": {"0": {"pid": 4000, "comm": "o"}}, "s": "\ud800"}"#.into());
    all.push(odd);
    let mut odd = exec_receipt();
    odd.context = Some(r#"{"parents": {"0": {"pid": 4000, "comm": "o"}}}"#.into());
    all.push(odd);
    let mut odd = receipt(
        "network.connect",
        Some(json!({"connect": {"dst_names": {"0": {"name": "n"}}}})),
        none,
    );
    odd.agent_id = "a\"b\\c\u{7}é".into();
    all.push(odd);
    all
}

#[test]
fn text_is_the_value_mapping_byte_for_byte() {
    let records = representative();
    for r in &records {
        let mut out = b"x".to_vec();
        push_receipt(&mut out, r);
        let text = String::from_utf8(out).unwrap();
        let expected = ocsf::format(&Item::Receipt(r.clone()));
        assert_eq!(
            text[1..],
            serde_json::to_string(&expected).unwrap(),
            "{r:?}"
        );
    }
    // Every class and activity is among them.
    let classes: std::collections::BTreeSet<_> = records
        .iter()
        .map(|r| {
            ocsf::format(&Item::Receipt(r.clone()))["type_uid"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(
        classes.into_iter().collect::<Vec<_>>(),
        [99, 100114, 100701, 100702, 200401, 400101, 400107, 400302]
    );
}

#[test]
fn a_path_search_rides_in_the_context_unmapped() {
    // OCSF's Process Activity has no attribute for the directories a
    // launch tried first: they stay in `unmapped.observer.context`.
    let mut r = exec_receipt();
    let mut ctx: Value = serde_json::from_str(r.context.as_deref().unwrap()).unwrap();
    let search = json!([{"filename": "/a/true", "result": -2, "error": "ENOENT",
                         "time": "2026-11-22T18:00:00.123000000Z", "cpu": 1, "seq": 9}]);
    ctx["exec"]["path_search"] = search.clone();
    r.context = Some(ctx.to_string());
    let mut out = Vec::new();
    push_receipt(&mut out, &r);
    let text: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(text, ocsf::format(&Item::Receipt(r)));
    assert_eq!(text["type_uid"], 100701);
    assert_eq!(text["status_id"], 1);
    assert_eq!(
        text["unmapped"]["observer"]["context"]["exec"]["path_search"],
        search
    );
}

/// A `file.open` folded over its process's window: the first open's
/// members and the list of every distinct open (docs/RECEIPTS.md).
fn folded_open() -> Value {
    let entry = |path: &str, seq: u64, count: u64| {
        json!({"path": path, "result": 3, "error": null, "flags": 524288,
               "flags_text": "O_RDONLY|O_CLOEXEC", "mode": 0, "reasons": ["watched"],
               "openat2": false, "dfd": -100, "time": "2026-11-22T18:00:00.1Z", "cpu": 1,
               "seq": seq, "count": count, "last_time": "2026-11-22T18:00:00.2Z"})
    };
    json!({"event": "file_open", "process": process(), "seq": 4, "file_open": {
        "path": "/etc/ld.so.cache", "result": 3, "flags": 524288, "count": 2,
        "last_time": "2026-11-22T18:00:00.2Z",
        "paths": [entry("/etc/ld.so.cache", 4, 2), entry("/etc/hostname", 5, 1)]}})
}

#[test]
fn a_folded_open_exports_its_first_path_and_keeps_the_list_unmapped() {
    let folded = folded_open();
    let mut plain = folded.clone();
    plain["file_open"].as_object_mut().unwrap().remove("paths");
    let event = |ctx: &Value| {
        let r = receipt("file.open", Some(ctx.clone()), json!({}));
        let mut out = Vec::new();
        push_receipt(&mut out, &r);
        let text: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(text, ocsf::format(&Item::Receipt(r)));
        text
    };
    let (with_list, without) = (event(&folded), event(&plain));
    assert_eq!(with_list["type_uid"], 100114);
    assert_eq!(with_list["file"]["path"], "/etc/ld.so.cache");
    // count: every open the receipt covers; without the list, the first
    // path's.
    assert_eq!(with_list["count"], 3);
    assert_eq!(without["count"], 2);
    assert_eq!(
        with_list["unmapped"]["observer"]["context"]["file_open"]["paths"],
        folded["file_open"]["paths"]
    );
    // The list changes nothing else: a receipt without it (a store
    // from before folding) exports the same event but for its count.
    let mut stripped = with_list.clone();
    stripped["unmapped"]["observer"]["context"] = plain;
    stripped["count"] = json!(2);
    assert_eq!(stripped, without);
}

#[test]
fn escaped_strings_are_read_decoded() {
    // Members with escapes map to the same values; the embedded
    // context keeps its own (equivalent) escapes.
    let r = receipt("file.open", None, json!({}));
    let mut r = r;
    r.context = Some(
        r#"{"process":{"comm":"\u0063url","exe":"\/usr\/bin\/c\u00e9","argv":["a\tb","\u00e9"]},"file_open":{"path":"\/etc\/x"}}"#
            .into(),
    );
    let mut out = Vec::new();
    push_receipt(&mut out, &r);
    let text: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(text, ocsf::format(&Item::Receipt(r)));
    assert_eq!(text["file"]["name"], "x");
    assert_eq!(text["actor"]["process"]["cmd_line"], "a\tb é");
    assert_eq!(text["actor"]["process"]["file"]["name"], "cé");
}
