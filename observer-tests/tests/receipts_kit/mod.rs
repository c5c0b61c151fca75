//! What the receipt tests share: a registered agent run under the real
//! daemon, tampered copies of its store, and the daemon's identity.
// Each test binary of the topic compiles this module and uses part of it.
#![allow(dead_code)]

use std::path::Path;

use observer_daemon::receipt::payload;
use observer_testkit::*;
use serde_json::Value;

/// The reference agent run ([`run_reference_agent`]) and the directory
/// holding its store and seed.
pub struct AgentRun {
    pub records: Vec<Value>,
    pub dir: tempfile::TempDir,
    pub agent_exe: std::path::PathBuf,
    pub file: std::path::PathBuf,
    pub port: u16,
    pub agent_pid: u64,
}

/// Runs the reference agent (execs, opens a file three times, connects to
/// a local listener, exits 3), then stops the daemon cleanly.
pub fn run_agent(extra: &str) -> AgentRun {
    let dir = tempfile::tempdir().unwrap();
    let run = run_reference_agent(dir.path(), "test-agent", "agent", extra);
    AgentRun {
        records: run.records,
        dir,
        agent_exe: run.agent_exe,
        file: run.file,
        port: run.port,
        agent_pid: run.agent_pid,
    }
}

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
