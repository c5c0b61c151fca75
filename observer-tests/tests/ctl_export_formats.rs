//! `observerctl export` as CloudEvents (parsed by the official CloudEvents
//! Python SDK) and as JSON lines (the store itself; filters select exactly)
//! on a store filled by a real daemon.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]
mod ctl_export_kit;

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use ctl_export_kit::*;
use observer_testkit::{netns, *};
use serde_json::Value;

/// The official CloudEvents Python SDK (PyPI, pinned), installed once into
/// this virtual environment.
const CLOUDEVENTS_VENV: &str = "/var/tmp/observer-test-venv-cloudevents-2.2.0";

fn cloudevents_python() -> PathBuf {
    let python = Path::new(CLOUDEVENTS_VENV).join("bin/python3");
    let ready = Command::new(&python)
        .args([
            "-c",
            "import cloudevents.core.formats.json, cloudevents.v1.http",
        ])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ready {
        let _ = std::fs::remove_dir_all(CLOUDEVENTS_VENV);
        netns::run(Command::new("python3.11").args(["-m", "venv", CLOUDEVENTS_VENV]));
        netns::run(
            Command::new(Path::new(CLOUDEVENTS_VENV).join("bin/pip")).args([
                "install",
                "-q",
                "--disable-pip-version-check",
                "cloudevents==2.2.0",
            ]),
        );
    }
    python
}

/// Parses each line of the file with the SDK's JSON event format (which
/// validates the v1.0 attributes) and with its HTTP `from_json`; prints
/// what both read.
const PARSE_CLOUDEVENTS: &str = r#"
import json, sys
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from cloudevents.v1.http import from_json
fmt = JSONFormat()
for line in open(sys.argv[1], "rb"):
    e = fmt.read(CloudEvent, line)
    h = from_json(line)
    assert h["id"] == e.get_id() and h.data == e.get_data()
    print(json.dumps({"id": e.get_id(), "source": e.get_source(), "type": e.get_type(),
                      "specversion": e.get_specversion(), "subject": e.get_subject(),
                      "time": e.get_time().isoformat(), "sequence": e.get_extension("sequence"),
                      "capturetopology": e.get_extension("capturetopology"), "data": e.get_data()}))
"#;

#[test]
fn cloudevents_export_parses_with_the_official_sdk() {
    let f = fixture();
    let db = f.db();
    let out_dir = tempfile::tempdir().unwrap();
    let file = out_dir.path().join("events.jsonl");
    let r = ctl(
        CtlTarget::Db(&db),
        &[
            "export",
            "--format",
            "cloudevents",
            "--out",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let python = cloudevents_python();
    let parsed = Command::new(python)
        .args(["-c", PARSE_CLOUDEVENTS, file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        parsed.status.success(),
        "{}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    let events: Vec<Value> = String::from_utf8(parsed.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let stored = stored_receipts(&db);
    let cps = checkpoint_sizes(&db);
    assert_eq!(events.len(), stored.len() + cps.len());
    let receipts: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] != "dev.observer.checkpoint")
        .collect();
    assert_eq!(receipts.len(), stored.len());
    for (e, s) in receipts.iter().zip(&stored) {
        assert_eq!(e["specversion"], "1.0");
        assert_eq!(e["id"], s.hash.as_str());
        assert_eq!(e["source"], s.chain.as_str());
        assert_eq!(
            e["type"],
            format!(
                "dev.observer.receipt.{}",
                s.payload["action_type"].as_str().unwrap()
            )
        );
        assert_eq!(e["subject"], s.payload["agent_id"]);
        assert_eq!(e["sequence"], s.leaf.to_string());
        assert_eq!(e["capturetopology"], "passive_telemetry");
        let d = &e["data"];
        assert_eq!(
            d["receipt"],
            serde_json::from_str::<Value>(&s.envelope).unwrap()
        );
        assert_eq!(
            receipt_hash_of(&d["receipt"]),
            s.hash,
            "the signed receipt in data hashes to the stored hash"
        );
        assert_eq!(d["receipt_hash"], s.hash.as_str());
        assert_eq!(d["seq"], s.seq);
        assert_eq!(d["log_index"], s.leaf);
        assert_eq!(d["context"], s.context.clone().unwrap_or(Value::Null));
    }
    let sizes: Vec<u64> = events
        .iter()
        .filter(|e| e["type"] == "dev.observer.checkpoint")
        .map(|e| e["data"]["checkpoint"]["size"].as_u64().unwrap())
        .collect();
    assert_eq!(sizes, cps);
}

#[test]
fn jsonl_export_is_the_store_and_filters_select_exactly() {
    let f = fixture();
    let db = f.db();
    let stored = stored_receipts(&db);
    let lines = export(&db, &["--format", "jsonl"]);
    let mut stream = Vec::new();
    for l in &lines {
        assert_eq!(l["capture_topology"], "passive_telemetry");
        if l["record"] == "checkpoint" {
            stream.push(("c".to_string(), l["checkpoint"]["size"].to_string()));
            continue;
        }
        let hash = l["receipt_hash"].as_str().unwrap();
        let s = stored.iter().find(|s| s.hash == hash).unwrap();
        assert_eq!(
            l["receipt"],
            serde_json::from_str::<Value>(&s.envelope).unwrap()
        );
        assert_eq!(l["context"], s.context.clone().unwrap_or(Value::Null));
        assert_eq!(l["log_index"], s.leaf);
        stream.push(("r".to_string(), hash.to_string()));
    }
    assert_eq!(stream, expected_stream(&db));

    // Content filters: exactly the matching receipts, in log order, and no
    // checkpoints.
    let hashes = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["--format", "jsonl"];
        a.extend_from_slice(args);
        export(&db, &a)
            .iter()
            .map(|l| {
                assert_eq!(l["record"], "receipt");
                l["receipt_hash"].as_str().unwrap().to_string()
            })
            .collect()
    };
    let want = |pred: &dyn Fn(&StoredReceipt) -> bool| -> Vec<String> {
        stored
            .iter()
            .filter(|s| pred(s))
            .map(|s| s.hash.clone())
            .collect()
    };
    let agent = want(&|s| s.payload["agent_id"] == "export-agent");
    assert!(agent.len() >= 6, "{}", agent.len());
    assert_eq!(hashes(&["--agent", "export-agent"]), agent);
    assert_eq!(
        hashes(&["--agent", "export-agent", "--action", "dns.resolve"]),
        want(&|s| s.payload["agent_id"] == "export-agent"
            && s.payload["action_type"] == "dns.resolve")
    );
    assert_eq!(
        hashes(&["--risk", "high"]),
        want(&|s| s.payload["risk_class"] == "high")
    );
    assert_eq!(hashes(&["--agent", "nobody"]), Vec::<String>::new());
    // A time window: the receipts issued in it.
    let issued = |s: &StoredReceipt| s.payload["issued_at"].as_str().unwrap().to_string();
    let mid = &stored[stored.len() / 2];
    let last = &stored[stored.len() * 3 / 4];
    let in_window = |s: &StoredReceipt| {
        let t = humantime::parse_rfc3339(&issued(s)).unwrap();
        t >= humantime::parse_rfc3339(&issued(mid)).unwrap()
            && t <= humantime::parse_rfc3339(&issued(last)).unwrap()
    };
    let window: Vec<String> = export(
        &db,
        &[
            "--format",
            "jsonl",
            "--since",
            &issued(mid),
            "--until",
            &issued(last),
        ],
    )
    .iter()
    .filter(|l| l["record"] == "receipt")
    .map(|l| l["receipt_hash"].as_str().unwrap().to_string())
    .collect();
    assert_eq!(window, want(&in_window));
    assert!(!window.is_empty());
}
