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
    assert_eq!(
        v["unmapped"]["observer"]["signer"],
        json!({"alg": "ML-DSA-65", "kid": "k1"})
    );
    assert!(v["unmapped"]["observer"].get("signature").is_none());
    assert_eq!(v["unmapped"]["observer"]["log_index"], 12);
    assert_eq!(v["raw_data"], exec_receipt().envelope);
    assert_eq!(v["process"]["file"]["name"], "sh");
    assert_eq!(v["process"]["xattributes"]["cgroup"], "/user.slice");
    assert_eq!(v["actor"]["process"]["name"], "bash");
    assert_eq!(v["device"]["hostname"], "h");
    assert_eq!(v["metadata"]["profiles"], json!(["host"]));
    assert_eq!(v["metadata"]["extensions"][0]["name"], "observer");
}

#[test]
fn a_receipt_without_context_is_a_base_event() {
    let mut r = exec_receipt();
    r.context = None;
    let v = format(&Item::Receipt(r));
    assert_eq!(v["class_uid"], 0);
    assert_eq!(v["type_uid"], 99);
    assert!(v.get("process").is_none() && v.get("device").is_none());
    assert_eq!(v["metadata"]["uid"], "ab".repeat(32));
    assert!(v["metadata"].get("profiles").is_none());
}

#[test]
fn dns_rcodes_and_names() {
    assert_eq!(rcode("NOERROR"), (0, "NoError"));
    assert_eq!(rcode("NXDOMAIN"), (3, "NXDomain"));
    assert_eq!(rcode("RCODE9"), (9, "NotAuth"));
    assert_eq!(rcode("RCODE12"), (99, "Other"));
    assert_eq!(base_name("/usr/bin/sh"), "sh");
    assert_eq!(base_name("rel/dir/"), "dir");
    assert_eq!(device("did:web:x/host/h1/agent/a")["hostname"], "h1");
    assert!(device("did:web:x").get("hostname").is_none());
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
