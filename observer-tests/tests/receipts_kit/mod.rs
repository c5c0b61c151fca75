//! What the receipt tests share: a registered agent run under the real
//! daemon, tampered copies of its store, and the daemon's identity.
// Each test binary of the topic compiles this module and uses part of it.
#![allow(dead_code)]

use std::{net::TcpListener, path::Path, process::Command};

use observer_daemon::receipt::payload;
use observer_testkit::*;
use serde_json::Value;

pub struct AgentRun {
    pub records: Vec<Value>,
    pub dir: tempfile::TempDir,
    pub agent_exe: std::path::PathBuf,
    pub file: std::path::PathBuf,
    pub port: u16,
    pub agent_pid: u64,
}

/// Runs an agent (a copy of sh) that execs, opens a file three times and
/// connects to a local listener, then stops the daemon cleanly.
pub fn run_agent(extra: &str) -> AgentRun {
    let dir = tempfile::tempdir().unwrap();
    let name = unique("agent");
    let agent_exe = copy_executable("/bin/sh", dir.path(), &name);
    let d = Daemon::start_in(
        StateDir::Shared(dir.path().to_owned()),
        &agent_config("test-agent", &agent_exe, extra),
    );
    let file = dir.path().join(format!("{}.txt", unique("f")));
    write_file(&file, "hello");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accept = std::thread::spawn(move || {
        let _ = listener.accept();
    });
    // No pause: the kernel marks the agent watched at its exec, so the cats
    // it forks at once are watched too.
    let script = format!(
        "/bin/true; for i in 1 2 3; do cat {f} >/dev/null; done; \
         /usr/bin/curl -s --max-time 2 http://127.0.0.1:{port}/ >/dev/null; exit 3",
        f = file.display()
    );
    let status = Command::new(&agent_exe)
        .args(["-c", &script])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(3));
    accept.join().unwrap();
    let mut d = d;
    let agent_path = agent_exe.display().to_string();
    let exec = d.wait_for(|r| is_event(r, "exec") && r["exec"]["filename"] == agent_path.as_str());
    let agent_pid = exec["process"]["pid"].as_u64().unwrap();
    d.wait_for(|r| is_event(r, "exit") && r["process"]["pid"] == agent_pid);
    let records = d.stop();
    AgentRun {
        records,
        dir,
        agent_exe,
        file,
        port,
        agent_pid,
    }
}

/// Copies a store to a new file for one tamper case.
pub fn tampered_copy(db: &Path, name: &str) -> std::path::PathBuf {
    let copy = db.with_file_name(format!("{name}.db"));
    let src = rusqlite::Connection::open(db).unwrap();
    src.execute("VACUUM INTO ?1", [copy.display().to_string()])
        .unwrap();
    copy
}

pub fn exec_sql(db: &Path, sql: &str, params: impl rusqlite::Params) {
    let c = rusqlite::Connection::open(db).unwrap();
    c.execute(sql, params).unwrap();
}

pub fn identity() -> observer_daemon::receipt::chain::Identity {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    observer_daemon::receipt::chain::Identity {
        deployer_id: default_deployer_id(),
        hostname: host.trim().to_string(),
        mode: payload::Mode::Payload,
        observer_executable_hash: sha256_file(Path::new(observerd())),
    }
}
