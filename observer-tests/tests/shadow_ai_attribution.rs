//! Shadow-AI attribution to agents: a policy reload attributes a running
//! process to a new agent, and an agent registered by cgroup that ran
//! before the daemon is attributed.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]
mod shadow_ai_kit;

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use observer_testkit::*;
use serde_json::{json, Value};
use shadow_ai_kit::*;

/// An agent registered while its process runs: after the reload, the
/// running process (found by its executable) and the child it starts are
/// the agent's; the `policy_reloaded` receipt lists the process, and the
/// child's read of an SSH key is a finding on the agent's chain.
#[test]
fn reload_attributes_a_running_process_to_a_new_agent() {
    use std::io::{BufRead, Write};
    let state = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let dir = install_policies(state.path(), "");
    let mut d = Daemon::start_in(StateDir::Shared(state.path().to_owned()), &policy_config());
    let db = d.store();
    let digest = start_digest(&db);
    let late = copy_executable("/usr/bin/bash", work.path(), "late-agent");
    std::fs::create_dir(work.path().join(".ssh")).unwrap();
    let key = work.path().join(".ssh/id_ed25519");
    write_file(&key, "secret");
    // Waits for a line, then runs cat on the key and prints its pid.
    let mut agent = ChildGuard(
        Command::new(&late)
            .args([
                "-c",
                "read -r _; /usr/bin/cat \"$0\" >/dev/null & echo $!; wait",
            ])
            .arg(&key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let pid = agent.0.id();
    // The daemon knows the process (its exec record) before the reload.
    let exec = d.wait_for(|r| is_event(r, "exec") && r["process"]["pid"] == pid);
    assert_eq!(exec["process"]["agent"], Value::Null);

    let agents = dir.join("agents.toml");
    let mut text = std::fs::read_to_string(&agents).unwrap();
    text.push_str(&format!(
        "\n[[agent]]\nid = \"late-agent\"\nexecutables = [{:?}]\n",
        late.display().to_string()
    ));
    std::fs::write(&agents, text).unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    let reloaded = wait_policy_event(&db, "policy_reloaded", 0);
    assert_eq!(reloaded["previous_digest"], digest);
    assert_eq!(reloaded["agents"], json!(["late-agent"]));
    assert_eq!(
        reloaded["attributed_running"],
        json!({"count": 1, "processes": [{"pid": pid, "agent": "late-agent"}]})
    );

    writeln!(agent.0.stdin.as_mut().unwrap(), "go").unwrap();
    let mut line = String::new();
    std::io::BufReader::new(agent.0.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let cat: u32 = line.trim().parse().unwrap();
    let f = wait_finding(&db, "agent-reads-other-secrets", cat);
    let new_digest = reloaded["policy_digest"].as_str().unwrap();
    let ev = check_finding(
        &db,
        &f,
        Expect("late-agent", "high", &["AML.T0055"], &["LLM06", "LLM02"]),
        new_digest,
        "file.open",
    );
    assert_eq!(p_ctx(&ev)["process"]["agent"], "late-agent");
    assert_eq!(p_ctx(&ev)["parents"][0]["pid"], pid);
    assert_eq!(agent.0.wait().unwrap().code(), Some(0));
    d.stop();
    let report = verify_store(&db, &state.path().join("master.seed"), vec![]);
    assert!(report.ok(), "{:?}", report.first_failure());
}

/// A cgroup v2 directory for one test, removed (with its processes gone)
/// when dropped.
struct TestCgroup(PathBuf);

impl TestCgroup {
    fn create() -> TestCgroup {
        let dir = Path::new("/sys/fs/cgroup/unified").join(unique("observer-test-cg"));
        std::fs::create_dir(&dir).unwrap();
        TestCgroup(dir)
    }

    /// The path as /proc/<pid>/cgroup and agents.toml name it.
    fn path(&self) -> String {
        format!("/{}", self.0.file_name().unwrap().to_str().unwrap())
    }

    fn adopt(&self, pid: u32) {
        std::fs::write(self.0.join("cgroup.procs"), pid.to_string()).unwrap();
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn an_agent_registered_by_cgroup_that_ran_before_the_daemon_is_attributed() {
    use std::io::{BufRead, Write};
    let state = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let cgroup = TestCgroup::create();
    let sh = copy_executable("/usr/bin/bash", work.path(), "service-agent");
    std::fs::create_dir(work.path().join(".ssh")).unwrap();
    let key = work.path().join(".ssh/id_ed25519");
    write_file(&key, "secret");
    // Started, and moved into its cgroup, before the daemon runs: only the
    // startup scan can see where it lives.
    let mut agent = ChildGuard(
        Command::new(&sh)
            .args([
                "-c",
                // The shell itself opens the key: no exec, so no kernel
                // event says which cgroup it is in.
                "read -r _; read -r _ < \"$0\"; echo done",
            ])
            .arg(&key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let pid = agent.0.id();
    cgroup.adopt(pid);
    install_policies(
        state.path(),
        &format!(
            "\n[[agent]]\nid = \"cgroup-agent\"\ncgroups = [{:?}]\n",
            cgroup.path()
        ),
    );
    let d = Daemon::start_in(StateDir::Shared(state.path().to_owned()), &policy_config());
    let db = d.store();

    writeln!(agent.0.stdin.as_mut().unwrap(), "go").unwrap();
    let mut line = String::new();
    std::io::BufReader::new(agent.0.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "done\n");
    let f = wait_finding(&db, "agent-reads-other-secrets", pid);
    let ev = check_finding(
        &db,
        &f,
        Expect("cgroup-agent", "high", &["AML.T0055"], &["LLM06", "LLM02"]),
        &start_digest(&db),
        "file.open",
    );
    assert_eq!(p_ctx(&ev)["process"]["agent"], "cgroup-agent");
    assert_eq!(p_ctx(&ev)["process"]["origin"], "proc_scan");
    assert_eq!(p_ctx(&ev)["process"]["cgroup"], cgroup.path());
    assert_eq!(agent.0.wait().unwrap().code(), Some(0));
    drop(d);
}
