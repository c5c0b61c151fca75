//! `observerctl shadow` groups shadow-AI findings, and `tail --follow`
//! shows new receipts as they are committed.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]
mod observerctl_kit;

use std::{path::Path, process::Command};

use observer_daemon::receipt::{
    chain::{Draft, Identity},
    keys::MasterSeed,
    payload::{self, Mappings, Mode, RiskClass},
    pipeline::{Pipeline, PipelineConfig},
    store::RunKind,
};
use observer_testkit::*;
use serde_json::{json, Value};

fn identity() -> Identity {
    Identity {
        deployer_id: "did:web:example.invalid".into(),
        hostname: "ctl-test-host".into(),
        mode: Mode::Payload,
        observer_executable_hash: sha256_file(Path::new(observerd())),
    }
}

#[test]
fn shadow_groups_findings() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("observer.db");
    let (seed, _) = MasterSeed::load_or_create(&dir.path().join("master.seed")).unwrap();
    let cfg = PipelineConfig {
        store: db.clone(),
        signing_threads: 1,
        queue_capacity: 16,
        checkpoint_interval: std::time::Duration::from_secs(1),
        batch_max: 16,
        waiting_for_room: None,
    };
    let base = 1_795_370_400_000_000_000u64;
    let (mut p, _) = Pipeline::start(
        &cfg,
        identity(),
        seed,
        RunKind::Maintenance,
        &payload::issued_at(base),
    )
    .unwrap();
    let hash_a = format!("sha256:{}", "a".repeat(64));
    let hash_b = format!("sha256:{}", "b".repeat(64));
    let finding = |i: u64, exe: &str, hash: &str, user: &str, rule: &str, risk: RiskClass| Draft {
        agent_id: format!("unregistered:{}", &hash[7..19]),
        action_type: "shadow_ai.finding",
        unix_ns: base + i * 1_000_000_000,
        context: json!({"exe": exe, "user": user, "indicator": "api.openai.com", "rule": rule}),
        risk_class: risk,
        executable_hash: hash.to_string(),
        mappings: Mappings::default(),
        detection_rules_digest: Some(format!("sha256:{}", "c".repeat(64))),
        erases: None,
        prunes: None,
    };
    for d in [
        finding(
            0,
            "/usr/bin/python3",
            &hash_a,
            "alice",
            "llm-api-call",
            RiskClass::Medium,
        ),
        finding(
            1,
            "/usr/bin/python3",
            &hash_a,
            "alice",
            "llm-api-call",
            RiskClass::High,
        ),
        finding(
            2,
            "/usr/bin/node",
            &hash_b,
            "bob",
            "llm-api-call",
            RiskClass::Low,
        ),
        finding(
            3,
            "/usr/bin/python3",
            &hash_a,
            "alice",
            "llm-api-call",
            RiskClass::Low,
        ),
        // An ordinary observation is no finding.
        Draft {
            action_type: "process.exec",
            ..finding(4, "/usr/bin/python3", &hash_a, "alice", "x", RiskClass::Low)
        },
    ] {
        p.submit(d).unwrap();
    }
    p.finish(&payload::issued_at(base + 10_000_000_000))
        .unwrap();
    let v = ctl(CtlTarget::Db(&db), &["shadow", "--json"]);
    assert_eq!(v.code, 0, "{}", v.stderr);
    let groups = v.json()["findings"].as_array().unwrap().clone();
    assert_eq!(groups.len(), 2, "{groups:#?}");
    assert_eq!(
        groups[0],
        json!({
            "agent_id": format!("unregistered:{}", "a".repeat(12)),
            "executable_hash": hash_a,
            "executable": "/usr/bin/python3",
            "user": "alice",
            "indicator": "api.openai.com",
            "rule": "llm-api-call",
            "count": 3,
            "first_seen": payload::issued_at(base),
            "last_seen": payload::issued_at(base + 3_000_000_000),
            "max_risk": "high",
        })
    );
    assert_eq!(groups[1]["count"], 1);
    assert_eq!(groups[1]["user"], "bob");
    assert_eq!(groups[1]["max_risk"], "low");
    // The window applies.
    let since = payload::issued_at(base + 1_500_000_000);
    let w = ctl(CtlTarget::Db(&db), &["shadow", "--json", "--since", &since]).json();
    let w = w["findings"].as_array().unwrap();
    assert_eq!(w.len(), 2);
    assert_eq!(w[0]["count"], 1);
    assert_eq!(w[1]["count"], 1);
    let table = ctl(CtlTarget::Db(&db), &["shadow"]);
    assert!(table.stdout.starts_with("COUNT"));
    assert!(table.stdout.contains("llm-api-call"));
}

#[test]
fn tail_follow_shows_new_receipts_as_they_are_committed() {
    let dir = tempfile::tempdir().unwrap();
    let agent_exe = copy_executable("/bin/sh", dir.path(), &unique("tailagent"));
    let mut d = Daemon::start_in(
        StateDir::Shared(dir.path().to_owned()),
        &agent_config("tail-agent", &agent_exe, ""),
    );
    let db = dir.path().join("observer.db");
    let mut child = ChildGuard(
        Command::new(observerctl())
            .arg("--db")
            .arg(&db)
            .arg("--socket")
            .arg(d.socket())
            .args([
                "tail",
                "-f",
                "--jsonl",
                "--agent",
                "tail-agent",
                "--action",
                "process.exec",
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(serde_json::from_str(&line).unwrap()).is_err() {
                return;
            }
        }
    });
    // Nothing of this agent yet: tail prints nothing until it acts.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(rx.try_recv().is_err());
    let marker = unique("marker");
    let status = Command::new(&agent_exe)
        .args(["-c", &format!("/bin/echo {marker} >/dev/null")])
        .status()
        .unwrap();
    assert!(status.success());
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + WAIT;
    let echo = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let row = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no exec of /bin/echo from tail -f; saw {seen:#?}"));
        if row["context"]["exec"]["filename"] == "/bin/echo" {
            break row;
        }
        seen.push(row);
    };
    assert_eq!(echo["agent_id"], "tail-agent");
    assert_eq!(echo["action_type"], "process.exec");
    assert_eq!(
        echo["context"]["exec"]["argv"],
        json!(["/bin/echo", marker])
    );
    // The agent's own exec came first, in commit order.
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!(
        seen[0]["context"]["exec"]["filename"],
        agent_exe.display().to_string().as_str()
    );
    let pid = echo["pid"].as_u64().unwrap();
    d.wait_for(|r| is_event(r, "exit") && r["process"]["pid"] == pid);
    // What tail printed is what the store holds.
    let stored = stored_receipts(&db);
    let s = stored
        .iter()
        .find(|r| r.hash == echo["receipt_hash"].as_str().unwrap())
        .unwrap();
    assert_eq!(echo["envelope"]["payload"], s.payload);
    drop(child);
    d.stop();
}
