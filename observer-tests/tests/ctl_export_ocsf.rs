//! `observerctl export --format ocsf` end to end on a store filled by a real
//! daemon: the output is checked against the committed OCSF 1.3.0 schema
//! and every record is compared with the store; the validator itself
//! rejects what the schema forbids.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]
mod ctl_export_kit;
#[path = "ocsf/validator.rs"]
mod validator;

use ctl_export_kit::*;
use observer_testkit::*;
use serde_json::{json, Value};

#[test]
fn ocsf_export_validates_against_the_ocsf_schema_and_carries_the_receipts() {
    let f = fixture();
    let db = f.db();
    let schema = validator::Schema::load();
    assert_eq!(
        schema.class_uids(),
        vec![1001, 1007, 2004, 4001, 4002, 4003, 6003]
    );
    let events = export(&db, &["--format", "ocsf"]);
    let stored = stored_receipts(&db);
    let mut stream = Vec::new();
    let mut classes = std::collections::BTreeMap::<u64, usize>::new();
    for ev in &events {
        let errors = schema.validate(ev);
        assert!(errors.is_empty(), "{errors:#?}\n{ev:#}");
        *classes
            .entry(ev["class_uid"].as_u64().unwrap())
            .or_default() += 1;
        assert_eq!(ev["capture_topology"], "passive_telemetry");
        if let Some(cp) = ev["unmapped"]["observer"].get("checkpoint") {
            stream.push(("c".to_string(), cp["size"].to_string()));
            continue;
        }
        let o = &ev["unmapped"]["observer"];
        let hash = o["receipt_hash"].as_str().unwrap();
        let s = stored
            .iter()
            .find(|s| s.hash == hash)
            .expect("a stored receipt");
        stream.push(("r".to_string(), hash.to_string()));
        let envelope: Value = serde_json::from_str(&s.envelope).unwrap();
        assert_eq!(ev["metadata"]["uid"], hash);
        assert_eq!(ev["metadata"]["log_name"], s.chain.as_str());
        assert_eq!(ev["metadata"]["sequence"], s.seq);
        assert_eq!(o["log_index"], s.leaf);
        // The signature value is carried once, in raw_data; the signer
        // names its algorithm and key.
        assert_eq!(o["signer"]["alg"], "ML-DSA-65");
        assert_eq!(o["signer"]["kid"], envelope["signature"]["kid"]);
        assert!(o.get("signature").is_none());
        assert_eq!(ev["raw_data"], s.envelope.as_str());
        assert_eq!(
            receipt_hash_of(&serde_json::from_str(ev["raw_data"].as_str().unwrap()).unwrap()),
            hash
        );
        let ctx = s.context.as_ref().unwrap();
        match s.payload["action_type"].as_str().unwrap() {
            "process.exec" => {
                assert_eq!(ev["class_uid"], 1007);
                assert_eq!(ev["type_uid"], 100701);
                assert_eq!(ev["process"]["pid"], ctx["process"]["pid"]);
                assert_eq!(ev["actor"]["process"]["pid"], ctx["process"]["ppid"]);
            }
            "file.open" => {
                assert_eq!(ev["class_uid"], 1001);
                assert_eq!(ev["file"]["path"], ctx["file_open"]["path"]);
            }
            "network.connect" => {
                assert_eq!(ev["class_uid"], 4001);
                assert_eq!(ev["dst_endpoint"]["ip"], ctx["connect"]["remote_addr"]);
                assert_eq!(ev["dst_endpoint"]["port"], ctx["connect"]["remote_port"]);
            }
            "dns.resolve" => {
                assert_eq!(ev["class_uid"], 4003);
                assert_eq!(ev["type_uid"], 400302);
                let a = &ctx["dns_answer"];
                assert_eq!(ev["query"]["hostname"], a["question"]["name"]);
                if a["question"] == json!({"name": "api.openai.com", "type": "A"}) {
                    assert_eq!(ev["answers"][0]["rdata"], format!("{SUBNET}.1"));
                    assert_eq!(ev["rcode_id"], 0);
                    assert_eq!(ev["rcode"], "NoError");
                    assert_eq!(ev["src_endpoint"]["ip"], format!("{SUBNET}.1"));
                    assert_eq!(ev["src_endpoint"]["port"], 53);
                }
            }
            "shadow_ai.finding" => {
                assert_eq!(ev["class_uid"], 2004);
                assert_eq!(ev["type_uid"], 200401);
                assert_eq!(ev["finding_info"]["uid"], hash);
                assert_eq!(ev["finding_info"]["analytic"]["uid"], ctx["rule_id"]);
                assert_eq!(ev["finding_info"]["title"], ctx["reason"]);
                assert_eq!(ev["severity_id"], 4, "ai-api-egress-unregistered is high");
                assert!(ev["finding_info"]["types"]
                    .as_array()
                    .unwrap()
                    .contains(&json!("mitre_atlas:AML.T0040")));
            }
            _ => {}
        }
    }
    assert_eq!(stream, expected_stream(&db));
    for class in [1007, 1001, 4001, 4003, 2004] {
        assert!(
            classes.get(&class).is_some_and(|n| *n > 0),
            "no class {class}: {classes:?}"
        );
    }
}

/// Each mutation of a valid exported event and the violation it must
/// produce: the validator cannot pass what the schema forbids.
#[test]
fn the_ocsf_validator_rejects_what_the_schema_forbids() {
    let f = fixture();
    let schema = validator::Schema::load();
    let events = export(&f.db(), &["--format", "ocsf"]);
    let of = |class: u64| {
        events
            .iter()
            .find(|e| e["class_uid"] == class)
            .unwrap_or_else(|| panic!("an event of class {class}"))
            .clone()
    };
    type Mutation = fn(&mut Value);
    let cases: Vec<(u64, Mutation, &str)> = vec![
        (
            1007,
            |e| {
                drop(
                    e["metadata"]["product"]
                        .as_object_mut()
                        .unwrap()
                        .remove("vendor_name"),
                );
            },
            "metadata.product.vendor_name: required attribute missing",
        ),
        (
            1007,
            |e| drop(e.as_object_mut().unwrap().remove("device")),
            "device: required attribute missing",
        ),
        (
            1007,
            |e| e["time"] = json!("yesterday"),
            "time: \"yesterday\" is not of type timestamp_t",
        ),
        (
            1007,
            |e| e["process"]["pid"] = json!("42"),
            "process.pid: \"42\" is not of type integer_t",
        ),
        (
            1007,
            |e| e["activity_id"] = json!(42),
            "activity_id: 42 is not one of the enum values",
        ),
        (
            1007,
            |e| e["type_uid"] = json!(100702),
            "type_uid: Some(Number(100702)), expected",
        ),
        (
            1007,
            |e| e["activity_name"] = json!("Terminate"),
            "activity_name: \"Terminate\", but activity_id 1 is \"Launch\"",
        ),
        (
            1007,
            |e| e["process"]["cgroup"] = json!("/x"),
            "process.cgroup: not an attribute",
        ),
        (
            1001,
            |e| drop(e["file"].as_object_mut().unwrap().remove("name")),
            "file.name: required attribute missing",
        ),
        (
            4001,
            |e| e["dst_endpoint"]["port"] = json!(70000),
            "dst_endpoint.port: 70000 outside the range of port_t",
        ),
        (
            4001,
            |e| e["dst_endpoint"]["ip"] = json!("not-an-ip"),
            "dst_endpoint.ip: \"not-an-ip\" does not match",
        ),
        (
            4001,
            |e| drop(e["metadata"].as_object_mut().unwrap().remove("profiles")),
            "actor: attribute of profile \"host\"",
        ),
        (
            4001,
            |e| e["category_uid"] = json!(1),
            "category_uid: Some(Number(1)), class 4001 is in category 4",
        ),
        (
            4003,
            |e| e["answers"] = json!({"rdata": "x"}),
            "answers: expected an array",
        ),
        (
            4003,
            |e| drop(e["query"].as_object_mut().unwrap().remove("hostname")),
            "query.hostname: required attribute missing",
        ),
        (
            2004,
            |e| drop(e.as_object_mut().unwrap().remove("finding_info")),
            "finding_info: required attribute missing",
        ),
        (
            2004,
            |e| drop(e["finding_info"].as_object_mut().unwrap().remove("uid")),
            "finding_info.uid: required attribute missing",
        ),
        (
            2004,
            |e| e["metadata"]["profiles"] = json!(["network_proxy"]),
            "\"network_proxy\" is not a profile of class 2004",
        ),
        (
            2004,
            |e| drop(e["metadata"].as_object_mut().unwrap().remove("extensions")),
            "capture_topology: not an attribute",
        ),
    ];
    for (class, mutate, want) in cases {
        let mut ev = of(class);
        assert_eq!(
            schema.validate(&ev),
            Vec::<String>::new(),
            "class {class} valid before"
        );
        mutate(&mut ev);
        let errors = schema.validate(&ev);
        assert!(
            errors.iter().any(|e| e.contains(want)),
            "class {class}: wanted {want:?}, got {errors:#?}"
        );
    }
}
