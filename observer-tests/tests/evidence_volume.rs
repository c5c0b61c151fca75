//! No fact lost to folding: a registered agent (a copy of sh) runs the
//! reference workload of `cargo xtask bench workload`
//! (tests/workloads/reference_agent.sh: python, node, git, grep, cat, ls
//! and a command that exists nowhere, each through an env-shebang wrapper
//! on a long PATH, and one TCP connect). Every exec attempt, every file open
//! and every connect of the agent in the run's `--events-jsonl` output is
//! in some receipt's context: an exec attempt as a receipt's own event or
//! an entry of its `exec.path_search`; opens counted exactly, per process,
//! path, flags and outcome, over the `file_open.paths` lists and the
//! receipts of one path; a connect as a receipt's own event. The folding
//! itself is asserted too (fewer receipts than events), so the test cannot
//! pass by storing a receipt per event.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]

use std::{
    collections::{BTreeMap, HashSet},
    net::TcpListener,
    path::{Path, PathBuf},
    process::Command,
};

use observer_testkit::*;
use serde_json::Value;

const AGENT: &str = "evidence-volume-agent";

fn workload_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workloads/reference_agent.sh")
}

/// An event's or entry's kernel identity.
fn cpu_seq(v: &Value) -> (u64, u64) {
    (v["cpu"].as_u64().unwrap(), v["seq"].as_u64().unwrap())
}

#[test]
fn every_exec_attempt_open_and_connect_of_an_agent_task_is_in_a_receipt() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("workload");
    let setup = Command::new("/bin/sh")
        .arg(workload_script())
        .arg("setup")
        .arg(&tree)
        .status()
        .expect("set up the workload");
    assert!(setup.success());
    let agent = copy_executable("/bin/sh", dir.path(), &unique("agent"));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || for _ in listener.incoming() {});

    let mut d = Daemon::start_in(
        StateDir::Shared(dir.path().to_owned()),
        &agent_config(AGENT, &agent, ""),
    );
    let status = Command::new(&agent)
        .arg(workload_script())
        .arg("run")
        .arg(&tree)
        .arg(port.to_string())
        .env_clear()
        .env("HOME", &tree)
        .env("PATH", "/usr/bin:/bin")
        .status()
        .expect("run the workload");
    assert!(status.success());
    // The connect is the workload's last action.
    d.wait_for(|r| {
        is_event(r, "connect")
            && r["process"]["agent"] == AGENT
            && r["connect"]["remote_port"] == port
    });
    let db = d.store();
    let seed = d.master_seed();
    let records = d.stop();

    let of_agent = |kind: &str| -> Vec<&Value> {
        records
            .iter()
            .filter(|r| is_event(r, kind) && r["process"]["agent"] == AGENT)
            .collect()
    };
    let (execs, opens, connects) = (of_agent("exec"), of_agent("file_open"), of_agent("connect"));
    let receipts: Vec<StoredReceipt> = stored_receipts(&db)
        .into_iter()
        .filter(|r| r.payload["agent_id"] == AGENT)
        .collect();
    let of_action = |action: &str| -> Vec<Value> {
        receipts
            .iter()
            .filter(|r| r.payload["action_type"] == action)
            .map(|r| r.context.clone().expect("context kept"))
            .collect()
    };

    // Exec attempts: the receipt's own event or an entry of its search.
    let exec_receipts = of_action("process.exec");
    let mut kept: HashSet<(u64, u64)> = HashSet::new();
    for ctx in &exec_receipts {
        kept.insert(cpu_seq(ctx));
        for e in ctx["exec"]["path_search"].as_array().into_iter().flatten() {
            kept.insert(cpu_seq(e));
        }
    }
    let failed = execs.iter().filter(|e| e["exec"]["result"] != 0).count();
    assert!(
        failed >= 20,
        "the wrappers' PATH searches: {failed} failed execs"
    );
    for ev in &execs {
        assert!(
            kept.contains(&cpu_seq(ev)),
            "exec attempt in no receipt: {ev}"
        );
    }

    // File opens: counted exactly, no open lost and none invented.
    let mut seen: BTreeMap<OpenKey, u64> = BTreeMap::new();
    for ev in &opens {
        *seen
            .entry(open_key(&ev["process"]["pid"], &ev["file_open"]))
            .or_default() += 1;
    }
    let open_receipts = of_action("file.open");
    let mut counted: BTreeMap<OpenKey, u64> = BTreeMap::new();
    for ctx in &open_receipts {
        let pid = &ctx["process"]["pid"];
        let o = &ctx["file_open"];
        match o["paths"].as_array() {
            Some(entries) => {
                for e in entries {
                    // An agent's list names each entry's process.
                    let pid = if e["pid"].is_u64() { &e["pid"] } else { pid };
                    *counted.entry(open_key(pid, e)).or_default() += e["count"].as_u64().unwrap();
                }
            }
            None => {
                *counted.entry(open_key(pid, o)).or_default() += o["count"].as_u64().unwrap_or(1);
            }
        }
    }
    assert!(seen.len() > 50, "the workload's opens: {}", seen.len());
    assert_eq!(
        counted, seen,
        "every open counted once, per process and path"
    );

    // Connects: the receipt's own event.
    let connect_receipts: HashSet<(u64, u64)> =
        of_action("network.connect").iter().map(cpu_seq).collect();
    assert!(!connects.is_empty());
    for ev in &connects {
        assert!(
            connect_receipts.contains(&cpu_seq(ev)),
            "connect in no receipt: {ev}"
        );
    }

    // Folding did fold: fewer receipts than events, for both kinds.
    eprintln!(
        "agent events: {} execs ({failed} failed), {} opens, {} connects; receipts: {} \
         process.exec, {} file.open, {} in all",
        execs.len(),
        opens.len(),
        connects.len(),
        exec_receipts.len(),
        open_receipts.len(),
        receipts.len()
    );
    assert!(exec_receipts.len() + 20 <= execs.len());
    assert!(open_receipts.len() * 5 <= opens.len());
    let report = verify_store(&db, &seed, Vec::new());
    assert!(report.ok(), "{:#?}", report.failures);
}
