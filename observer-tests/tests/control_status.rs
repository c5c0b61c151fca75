//! `observerctl status` over the control socket of a real daemon on the
//! real kernel: the real probes and counters moving; with the daemon down,
//! exit 3 and a clear message.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]

use std::{
    os::unix::fs::MetadataExt,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use observer_daemon::{config::AgentEntry, policy::Policy};
use observer_testkit::*;
use serde_json::Value;

/// Polls `status --json` until `pred` holds.
fn status_until(socket: &Path, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let r = ctl(CtlTarget::Socket(socket), &["status", "--json"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let v = r.json();
        if pred(&v) {
            return v;
        }
        assert!(start.elapsed() < WAIT, "{what}: {v:#}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn exec_count(v: &Value) -> u64 {
    v["events"]["by_kind"]["exec"].as_u64().unwrap()
}

#[test]
fn status_shows_the_real_probes_and_counters_moving() {
    let state = tempfile::tempdir().unwrap();
    let agent = copy_executable("/bin/sh", state.path(), &unique("statusagent"));
    let extra = "[[sinks]]\nname = \"archive\"\ntype = \"file\"\n[sinks.file]\npath = \"@DIR@/forwarded.jsonl\"\n";
    let d = Daemon::start_in(
        StateDir::Shared(state.path().to_owned()),
        &agent_config("status-agent", &agent, extra),
    );
    let socket = d.socket();
    // Root-only without an `observer` group, else root:observer 0660.
    let meta = std::fs::metadata(&socket).unwrap();
    match nix::unistd::Group::from_name("observer").unwrap() {
        Some(g) => {
            assert_eq!(meta.mode() & 0o777, 0o660);
            assert_eq!(meta.gid(), g.gid.as_raw());
        }
        None => {
            assert_eq!(meta.mode() & 0o777, 0o600);
            assert!(d.stderr_text().contains("root-only (0600)"));
        }
    }
    assert_eq!(meta.uid(), 0);

    let before = status_until(&socket, "first counters", |v| !v["events"].is_null());
    assert_eq!(before["daemon"]["pid"], d.pid());
    assert_eq!(before["daemon"]["version"], env!("CARGO_PKG_VERSION"));
    let programs: Vec<&str> = before["probes"]["programs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(programs, probes::PROGRAMS);
    assert!(before["probes"]["attachments"]
        .as_array()
        .unwrap()
        .contains(&Value::from("exec_exit -> syscalls/sys_exit_execveat")));
    // No policies_dir and (as tests/common sets) builtin_policies = false.
    let expected_policy = Policy::from_config(&[AgentEntry {
        id: "status-agent".into(),
        executables: vec![agent.display().to_string()],
        capture_content: Default::default(),
    }]);
    assert_eq!(before["policy"]["digest"], expected_policy.digest.as_str());
    assert_eq!(before["policy"]["source"], "config");
    assert_eq!(before["identity"]["source"], "machine-id");
    assert_eq!(before["identity"]["warning"], Value::Null);
    assert_eq!(before["policy"]["agents"][0], "status-agent");

    // Real activity: the agent runs 20 programs.
    let status = Command::new(&agent)
        .args([
            "-c",
            "for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do /bin/true; done",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let n0 = exec_count(&before);
    let after = status_until(&socket, "20 more execs, receipts forwarded", |v| {
        exec_count(v) >= n0 + 21
            && v["events"]["per_second"].as_f64().is_some_and(|r| r > 0.0)
            && v["receipts"]["committed"].as_u64() > before["receipts"]["committed"].as_u64()
            && v["chains"]["heads"]
                .as_array()
                .unwrap()
                .iter()
                .any(|h| h["agent_id"] == "status-agent" && h["seq"].as_u64() >= Some(21))
            && !v["last_checkpoint"].is_null()
            && v["sinks"][0]["backlog"] == 0
            && v["sinks"][0]["delivered"].as_u64() > Some(21)
    });
    assert!(after["events"]["total"].as_u64() > before["events"]["total"].as_u64());
    assert!(after["daemon"]["uptime_seconds"].as_u64().is_some());
    for kind in ["exec", "fork", "exit", "connect", "file_open"] {
        let k = &after["drops"]["kernel"][kind];
        assert!(
            k["ringbuf_full"].is_u64() && k["read_error"].is_u64(),
            "{kind}: {k}"
        );
    }
    assert!(after["drops"]["total"].is_u64());
    let sink = &after["sinks"][0];
    assert_eq!(sink["name"], "archive");
    assert_eq!(sink["type"], "file");
    assert_eq!(sink["errors"], serde_json::json!({}));
    // The chains and the checkpoint are the store's.
    let store = observer_daemon::receipt::store::Store::open_read_only(&d.store()).unwrap();
    let heads = store.chain_heads().unwrap();
    let chains = &after["chains"];
    assert!(chains["count"].as_u64().unwrap() >= 2, "{chains}");
    assert!(chains["count"].as_u64().unwrap() as usize <= heads.len());
    let cp = &after["last_checkpoint"];
    assert!(cp["size"].as_u64().unwrap() <= store.log_size().unwrap());
    assert!(cp["size"].as_u64().unwrap() <= after["receipts"]["log_size"].as_u64().unwrap());
    assert!(store
        .checkpoints()
        .unwrap()
        .iter()
        .any(|c| c.size == cp["size"].as_u64().unwrap()
            && hex::encode(&c.root) == cp["root"].as_str().unwrap()
            && c.created_at == cp["created_at"].as_str().unwrap()));

    // The table for people.
    let table = ctl(CtlTarget::Socket(&socket), &["status"]);
    assert_eq!(table.code, 0, "{}", table.stderr);
    assert!(
        table.stdout.starts_with(&format!(
            "observerd {} running, pid {}",
            env!("CARGO_PKG_VERSION"),
            d.pid()
        )),
        "{}",
        table.stdout
    );
    assert!(
        table.stdout.contains("probes:      25 programs"),
        "{}",
        table.stdout
    );
    assert!(
        table.stdout.contains("sink archive      file    backlog 0"),
        "{}",
        table.stdout
    );

    // A request line over the limit is refused and the connection closed;
    // an unknown version is refused with the version this daemon speaks.
    use std::io::{BufRead, BufReader, Write};
    let mut s = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    s.write_all(b"{\"v\":2,\"cmd\":\"status\"}\n").unwrap();
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["error"]["kind"], "unsupported_version");
    assert_eq!(v["v"], 1);
    let big = format!("{{\"v\":1,\"cmd\":\"{}\"}}\n", "x".repeat(70_000));
    let _ = s.write_all(big.as_bytes());
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["error"]["kind"], "request_too_large");

    // Stopped: the socket is gone and status says the daemon is down.
    d.stop();
    assert!(!socket.exists());
    let down = ctl(CtlTarget::Socket(&socket), &["status", "--json"]);
    assert_eq!(down.code, 3, "{}", down.stdout);
    assert_eq!(down.json()["error"]["kind"], "daemon");
}

#[test]
fn daemon_down_is_exit_3_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("observer.sock");
    let r = ctl(CtlTarget::Socket(&missing), &["status"]);
    assert_eq!(r.code, 3);
    assert_eq!(
        r.stderr.trim_end(),
        format!(
            "observerctl: the observer daemon is not reachable at {}: no such socket (is observerd running? see control.socket in observer.toml)",
            missing.display()
        )
    );
    // A stale socket nobody accepts on.
    drop(std::os::unix::net::UnixListener::bind(&missing).unwrap());
    let r = ctl(CtlTarget::Socket(&missing), &["status", "--json"]);
    assert_eq!(r.code, 3);
    let v = r.json();
    assert_eq!(v["error"]["kind"], "daemon");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .ends_with("connection refused (observerd is not running)"),
        "{v}"
    );
    let r = ctl(CtlTarget::Socket(&missing), &["agents", "tree", "1"]);
    assert_eq!(r.code, 3);
}
