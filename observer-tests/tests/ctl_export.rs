//! `observerctl export` end to end on a store filled by a real daemon: a
//! registered agent's execs, file opens, DNS lookup and TLS connection in a
//! namespace with a real dnsmasq and TLS server, and an unregistered curl's
//! AI API call (a shadow-AI finding). The OCSF output is checked against the
//! committed OCSF 1.3.0 schema, the CloudEvents output is parsed by the
//! official CloudEvents Python SDK, and every record is compared with the
//! store.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]
#[path = "ocsf/validator.rs"]
mod validator;

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use observer_testkit::{netns, *};
use serde_json::{json, Value};
use sha2::Digest as _;

const SUBNET: &str = "10.221.77";
const WAIT_FINDING: Duration = Duration::from_secs(30);

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn db(&self) -> PathBuf {
        self.dir.path().join("observer.db")
    }
}

/// The shipped policies with `agents` appended to agents.toml.
fn install_policies(dir: &Path, agents: &str) {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let out = dir.join("policies");
    std::fs::create_dir_all(out.join("indicators")).unwrap();
    for entry in std::fs::read_dir(shipped.join("indicators")).unwrap() {
        let e = entry.unwrap();
        std::fs::copy(e.path(), out.join("indicators").join(e.file_name())).unwrap();
    }
    std::fs::copy(shipped.join("rules.toml"), out.join("rules.toml")).unwrap();
    let text = std::fs::read_to_string(shipped.join("agents.toml")).unwrap();
    std::fs::write(out.join("agents.toml"), format!("{text}\n{agents}")).unwrap();
}

fn wait_until(what: &str, db: &Path, pred: impl Fn(&[StoredReceipt]) -> bool) {
    let start = Instant::now();
    loop {
        if db.exists() && pred(&stored_receipts(db)) {
            return;
        }
        assert!(start.elapsed() < WAIT_FINDING, "waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let ns = netns::Netns::new(SUBNET);
        let tls = tempfile::tempdir().unwrap();
        netns::make_certs(tls.path(), &format!("{SUBNET}.2"));
        let _dns = netns::start_dnsmasq(&ns, tls.path(), SUBNET);
        let _server = netns::start_tls_server(&ns, tls.path());
        let dir = tempfile::tempdir().unwrap();
        let agent = copy_executable("/bin/sh", dir.path(), &unique("exportagent"));
        install_policies(
            dir.path(),
            &format!(
                "[[agent]]\nid = \"export-agent\"\nexecutables = [{:?}]\nallowed_providers = [\"openai\"]\n",
                agent.display().to_string()
            ),
        );
        let d = Daemon::start_in(
            StateDir::Shared(dir.path().to_owned()),
            "policies_dir = \"@DIR@/policies\"\n[files]\nprefixes = []\nsuffixes = []\n",
        );
        let db = d.store();
        let file = dir.path().join(format!("{}.txt", unique("f")));
        write_file(&file, "hello");
        // The agent: execs, opens, a DNS lookup and a TLS connection.
        let script = format!(
            "cat {f} >/dev/null; cat {f} >/dev/null; \
             curl -sS --cacert ca.pem -o /dev/null https://api.openai.com/v1/models; exit 3",
            f = file.display()
        );
        let status = ns
            .command(&[agent.to_str().unwrap(), "-c", &script])
            .current_dir(tls.path())
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(3));
        // Shadow AI: an unregistered curl calling the same API.
        let shadow = netns::run_curl(&ns, tls.path(), "curl", &[], "https://api.openai.com/v1/models");
        wait_until("the agent's DNS answer and the finding", &db, |all| {
            let agent_dns = all.iter().any(|r| {
                r.payload["agent_id"] == "export-agent" && r.payload["action_type"] == "dns.resolve"
            });
            let finding = all.iter().any(|r| {
                r.payload["action_type"] == "shadow_ai.finding"
                    && r.context.as_ref().is_some_and(|c| c["process"]["pid"] == shadow)
            });
            agent_dns && finding
        });
        d.stop();
        Fixture { dir }
    })
}

/// `export` with `args`: the records, one per line.
fn export(db: &Path, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["export"];
    all.extend_from_slice(args);
    let r = ctl(CtlTarget::Db(db), &all);
    assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
    assert_eq!(
        r.stderr, "",
        "no progress bar when stderr is not a terminal"
    );
    assert!(r.stdout.ends_with('\n') || r.stdout.is_empty());
    r.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn checkpoint_sizes(db: &Path) -> Vec<u64> {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    let mut stmt = c
        .prepare("SELECT size FROM checkpoints ORDER BY size")
        .unwrap();
    let rows = stmt.query_map([], |r| r.get::<_, i64>(0)).unwrap();
    rows.map(|r| r.unwrap() as u64).collect()
}

/// The stream the export must write without filters: each receipt in log
/// order, each checkpoint of size n right after receipt n - 1, as
/// ("r", hash) / ("c", size).
fn expected_stream(db: &Path) -> Vec<(String, String)> {
    let cps = checkpoint_sizes(db);
    let mut out = Vec::new();
    for r in stored_receipts(db) {
        out.push(("r".to_string(), r.hash.clone()));
        if cps.contains(&(r.leaf + 1)) {
            out.push(("c".to_string(), (r.leaf + 1).to_string()));
        }
    }
    out
}

fn receipt_hash_of(envelope: &Value) -> String {
    let jcs = observer_daemon::receipt::jcs::canonicalize(envelope).unwrap();
    hex::encode(sha2::Sha256::digest(jcs))
}

#[test]
fn ocsf_export_validates_against_the_ocsf_schema_and_carries_the_receipts() {
    let f = fixture();
    let db = f.db();
    let schema = validator::Schema::load();
    assert_eq!(schema.class_uids(), vec![1001, 1007, 2004, 4001, 4003]);
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
                )
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

#[test]
fn export_out_is_written_whole_and_atomically() {
    let f = fixture();
    let db = f.db();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export.ocsf");
    let r = ctl(
        CtlTarget::Db(&db),
        &[
            "--json",
            "export",
            "--format",
            "ocsf",
            "--out",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let summary: Value = serde_json::from_str(&r.stdout).unwrap();
    let stdout = ctl(CtlTarget::Db(&db), &["export", "--format", "ocsf"]).stdout;
    assert_eq!(std::fs::read_to_string(&file).unwrap(), stdout);
    assert_eq!(summary["format"], "ocsf");
    assert_eq!(summary["receipts"], stored_receipts(&db).len());
    assert_eq!(summary["checkpoints"], checkpoint_sizes(&db).len());
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        vec!["export.ocsf".to_string()],
        "no temporary file left"
    );
    // An existing file is replaced whole.
    std::fs::write(&file, "old").unwrap();
    let r = ctl(
        CtlTarget::Db(&db),
        &[
            "export",
            "--format",
            "ocsf",
            "--agent",
            "nobody",
            "--out",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "");
    // A directory that does not exist: a clear error, exit 2, nothing written.
    let missing = dir.path().join("no/such/dir/out.jsonl");
    let r = ctl(
        CtlTarget::Db(&db),
        &[
            "--json",
            "export",
            "--format",
            "jsonl",
            "--out",
            missing.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 2);
    let err: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(err["error"]["kind"], "io", "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("out.jsonl.tmp"),
        "{err}"
    );
    assert!(!missing.exists());
    // A bad format is a usage error.
    let r = ctl(CtlTarget::Db(&db), &["export", "--format", "xml"]);
    assert_eq!(r.code, 2);
}

/// Runs observerctl under `script`, which gives it a terminal: the
/// progress bar appears on the terminal, the records still go to the file.
fn on_a_terminal(db: &Path, args: &str) -> String {
    let cmd = format!("{} --db {} {args}", observerctl(), db.display());
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn progress_bars_only_on_a_terminal() {
    let f = fixture();
    let db = f.db();
    let n = stored_receipts(&db).len();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("e.jsonl");
    let tty = on_a_terminal(
        &db,
        &format!("export --format jsonl --out {}", file.display()),
    );
    assert!(tty.contains(&format!("/{n} receipts exported")), "{tty:?}");
    assert!(
        tty.contains(&format!("{}: {n} receipts", file.display())),
        "{tty:?}"
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap().lines().count(),
        n + checkpoint_sizes(&db).len()
    );
    let seed = f.dir.path().join("master.seed");
    let tty = on_a_terminal(&db, &format!("verify --master-seed {}", seed.display()));
    assert!(tty.contains(&format!("/{n} receipts verified")), "{tty:?}");
    assert!(tty.contains("verification passed"), "{tty:?}");
    // Not in JSON mode, even on a terminal; never when stderr is a pipe.
    let tty = on_a_terminal(
        &db,
        &format!("--json verify --master-seed {}", seed.display()),
    );
    assert!(!tty.contains("receipts verified"), "{tty:?}");
    let r = ctl(
        CtlTarget::Db(&db),
        &["verify", "--master-seed", seed.to_str().unwrap()],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stderr, "");
}
