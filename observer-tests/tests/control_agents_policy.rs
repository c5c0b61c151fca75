//! `observerctl agents --tree` (an agent's child attributed) and `policy
//! check` / `policy show`, against a real daemon on the real kernel.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use observer_daemon::policy::Policy;
use observer_testkit::*;

fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

#[test]
fn agents_tree_shows_an_agents_child_attributed() {
    let state = tempfile::tempdir().unwrap();
    let agent = copy_executable("/bin/sh", state.path(), &unique("treeagent"));
    let d = Daemon::start_in(
        StateDir::Shared(state.path().to_owned()),
        &agent_config("tree-agent", &agent, ""),
    );
    let socket = d.socket();
    let sh = ChildGuard(
        Command::new(&agent)
            .args(["-c", "/bin/sleep 30; true"])
            .spawn()
            .unwrap(),
    );
    let agent_pid = sh.0.id();
    let start = Instant::now();
    let (sleep_pid, tree) = loop {
        let kids = children_of(agent_pid);
        if let Some(&pid) = kids.first() {
            let r = ctl(
                CtlTarget::Socket(&socket),
                &["agents", "tree", &pid.to_string(), "--json"],
            );
            if r.code == 0 {
                let v = r.json();
                if v["process"]["exe"]
                    .as_str()
                    .is_some_and(|e| e.ends_with("/sleep"))
                {
                    break (pid, v);
                }
            }
        }
        assert!(start.elapsed() < WAIT, "no tree for the agent's child");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(tree["pid"], sleep_pid);
    let me = &tree["process"];
    assert_eq!(me["pid"], sleep_pid);
    assert_eq!(me["ppid"], agent_pid);
    assert_eq!(me["agent"], "tree-agent");
    assert_eq!(me["argv"], serde_json::json!(["/bin/sleep", "30"]));
    assert_eq!(me["exited"], false);
    let ancestors = tree["ancestors"].as_array().unwrap();
    let parent = ancestors.last().unwrap();
    assert_eq!(parent["pid"], agent_pid);
    assert_eq!(parent["agent"], "tree-agent");
    assert_eq!(parent["exe"], agent.display().to_string());
    // Above the agent nothing is attributed: this test process and its own
    // ancestors up to the top.
    let test_pid = std::process::id();
    let above = &ancestors[ancestors.len() - 2];
    assert_eq!(above["pid"], test_pid);
    assert!(above["agent"].is_null());

    // From the agent down: its child, attributed.
    let r = ctl(
        CtlTarget::Socket(&socket),
        &["agents", "tree", &agent_pid.to_string(), "--json"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = r.json();
    assert_eq!(v["process"]["agent"], "tree-agent");
    let kids = v["process"]["children"].as_array().unwrap();
    assert_eq!(kids.len(), 1, "{v:#}");
    assert_eq!(kids[0]["pid"], sleep_pid);
    assert_eq!(kids[0]["agent"], "tree-agent");
    // The table marks the process asked about and names the agent.
    let t = ctl(
        CtlTarget::Socket(&socket),
        &["agents", "tree", &sleep_pid.to_string()],
    );
    assert_eq!(t.code, 0);
    assert!(
        t.stdout.contains(&format!(
            "{sleep_pid} /usr/bin/sleep uid 0  [agent tree-agent]  <=="
        )) || t.stdout.contains(&format!(
            "{sleep_pid} /bin/sleep uid 0  [agent tree-agent]  <=="
        )),
        "{}",
        t.stdout
    );
    // A pid the daemon never saw.
    let r = ctl(
        CtlTarget::Socket(&socket),
        &["agents", "tree", "4194305", "--json"],
    );
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("pid 4194305 is not in the daemon's process table"));
}

#[test]
fn policy_check_and_show() {
    let state = tempfile::tempdir().unwrap();
    let shipped_digest = Policy::load(&shipped_policies(), &[]).unwrap().digest;
    let shipped_arg = shipped_policies().display().to_string();
    let r = ctl(
        CtlTarget::Socket(Path::new("/nonexistent.sock")),
        &["policy", "check", &shipped_arg, "--json"],
    );
    assert_eq!(r.code, 0, "{}", r.stdout);
    let v = r.json();
    assert_eq!(v["ok"], true);
    assert_eq!(v["policy_digest"], shipped_digest.as_str());
    let r = ctl(
        CtlTarget::Socket(Path::new("/nonexistent.sock")),
        &["policy", "check", &shipped_arg],
    );
    assert!(
        r.stdout
            .starts_with(&format!("policies ok: {shipped_digest} (")),
        "{}",
        r.stdout
    );

    // A misspelt key: file, line and column.
    let bad_dir = tempfile::tempdir().unwrap();
    let bad = install_policies(
        bad_dir.path(),
        "[[agent]]\nid = \"x\"\nexecutable = [\"/usr/bin/x\"]\n",
    );
    let text = std::fs::read_to_string(bad.join("agents.toml")).unwrap();
    let line = text
        .lines()
        .position(|l| l.starts_with("executable ="))
        .unwrap()
        + 1;
    let r = ctl(
        CtlTarget::Socket(Path::new("/nonexistent.sock")),
        &["policy", "check", &bad.display().to_string()],
    );
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.starts_with(&format!(
            "observerctl: {}:{line}:1: unknown field `executable`",
            bad.join("agents.toml").display()
        )),
        "{}",
        r.stderr
    );
    let r = ctl(
        CtlTarget::Socket(Path::new("/nonexistent.sock")),
        &["policy", "check", &bad.display().to_string(), "--json"],
    );
    assert_eq!(r.code, 1);
    assert_eq!(r.json()["error"]["kind"], "policy_invalid");

    // show: from the running daemon, then from the directory once it stopped.
    let dir = install_policies(state.path(), "");
    let d = Daemon::start_in(
        StateDir::Shared(state.path().to_owned()),
        &format!(
            "policies_dir = {:?}\n[files]\nprefixes = []\nsuffixes = []\n",
            dir.display().to_string()
        ),
    );
    let digest = Policy::load(&dir, &[]).unwrap().digest;
    let config = state.path().join("observer.toml");
    let show = |extra: &[&str]| {
        let mut c = Command::new(observerctl());
        c.arg("--config")
            .arg(&config)
            .args(["policy", "show"])
            .args(extra);
        run(c)
    };
    let r = show(&["--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = r.json();
    assert_eq!(v["source"], "daemon");
    assert_eq!(v["policy_digest"], digest.as_str());
    assert_eq!(v["policies_dir"], dir.display().to_string());
    let r = show(&[]);
    assert!(
        r.stdout
            .starts_with(&format!("policy {digest} in force in the running daemon\n")),
        "{}",
        r.stdout
    );
    d.stop();
    let r = show(&["--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = r.json();
    assert_eq!(v["source"], "policies_dir");
    assert_eq!(v["policy_digest"], digest.as_str());
    assert!(v["daemon_error"]
        .as_str()
        .unwrap()
        .starts_with("the observer daemon is not reachable at"));
}
