//! The reference agent run the receipt and observerctl tests build their
//! stores from: a registered agent (a copy of sh) that execs, opens a file
//! three times, connects to a local listener and exits 3, under a real
//! daemon that is then stopped cleanly.
use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;

use crate::{agent_config, copy_executable, is_event, unique, write_file, Daemon, StateDir};

/// What the run left: the daemon's records, and what the agent did.
pub struct AgentRun {
    pub records: Vec<Value>,
    pub agent_exe: PathBuf,
    /// The file it opened three times.
    pub file: PathBuf,
    /// The local listener it connected to.
    pub port: u16,
    pub agent_pid: u64,
}

/// Runs the agent `id` (executable named after `prefix`) with the daemon's
/// state, store and seed in `dir`; `extra` is added to its config.
pub fn run_reference_agent(dir: &Path, id: &str, prefix: &str, extra: &str) -> AgentRun {
    let agent_exe = copy_executable("/bin/sh", dir, &unique(prefix));
    let mut d = Daemon::start_in(
        StateDir::Shared(dir.to_owned()),
        &agent_config(id, &agent_exe, extra),
    );
    let file = dir.join(format!("{}.txt", unique("f")));
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
    let path = agent_exe.display().to_string();
    let exec = d.wait_for(|r| is_event(r, "exec") && r["exec"]["filename"] == path.as_str());
    let agent_pid = exec["process"]["pid"].as_u64().unwrap();
    d.wait_for(|r| is_event(r, "exit") && r["process"]["pid"] == agent_pid);
    let records = d.stop();
    AgentRun {
        records,
        agent_exe,
        file,
        port,
        agent_pid,
    }
}
