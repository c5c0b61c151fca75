//! Late-2026 indicators end to end (issue #15): the real daemon with the
//! shipped policies and no `[files]` of its own, real processes on the real
//! kernel. An agent CLI given its autonomous flag as two argv entries, and
//! model weights under a /home/<user> directory that only the policy's
//! per-home kernel prefixes make visible.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use observer_testkit::*;
use serde_json::{json, Value};

const FINDING_WAIT: Duration = Duration::from_secs(30);

fn contexts(db: &Path) -> Vec<Value> {
    if !db.exists() {
        return vec![];
    }
    stored_receipts_of(db, "shadow_ai.finding")
        .into_iter()
        .filter_map(|r| r.context)
        .collect()
}

fn rules_for(db: &Path, pid: u32) -> Vec<String> {
    let mut v: Vec<String> = contexts(db)
        .iter()
        .filter(|c| c["process"]["pid"] == pid)
        .map(|c| c["rule_id"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

fn wait_finding(db: &Path, rule: &str, pid: u32) -> Value {
    let start = Instant::now();
    loop {
        if let Some(c) = contexts(db)
            .into_iter()
            .find(|c| c["rule_id"] == rule && c["process"]["pid"] == pid)
        {
            return c;
        }
        assert!(
            start.elapsed() < FINDING_WAIT,
            "no {rule} finding for pid {pid}; findings: {:#?}",
            contexts(db)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn run(cmd: &mut Command) -> u32 {
    let child = cmd.stdout(Stdio::null()).spawn().expect("spawn");
    let pid = child.id();
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{cmd:?}: {}", out.status);
    pid
}

/// A home directory of this test under /home, removed when dropped.
struct TestHome(PathBuf);

impl Drop for TestHome {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn two_argument_autonomous_flag_and_model_files_under_a_home() {
    // The home exists before the daemon starts: its prefixes are pushed
    // to the kernel when the policy is loaded.
    let home = TestHome(PathBuf::from("/home").join(unique("ind")));
    let blobs = home.0.join(".ollama/models/blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    let blob = blobs.join(format!("sha256-{}", "ab".repeat(32)));
    write_file(&blob, "weights");
    let ckpt = home.0.join("sd/model.ckpt");
    std::fs::create_dir_all(ckpt.parent().unwrap()).unwrap();
    write_file(&ckpt, "weights");
    let not_model = home.0.join("notes/sha256-cd");
    std::fs::create_dir_all(not_model.parent().unwrap()).unwrap();
    write_file(&not_model, "text");

    let state = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    install_policies(state.path(), "");
    let d = Daemon::start_in(
        StateDir::Shared(state.path().to_owned()),
        "policies_dir = \"@DIR@/policies\"\n[files]\nprefixes = []\nsuffixes = []\n",
    );
    let db = d.store();

    // A program named `claude` (a copy of true): the near miss first, so
    // its events are processed before the positive's finding appears.
    let claude = copy_executable("/usr/bin/true", work.path(), "claude");
    let plan = run(Command::new(&claude).args(["--permission-mode", "plan"]));
    let bypass = run(Command::new(&claude).args(["--permission-mode", "bypassPermissions"]));
    let f = wait_finding(&db, "agent-autonomous-mode", bypass);
    assert_eq!(
        f["matched"],
        json!({"indicator": "autonomous_mode", "cli": "claude-code", "flag": "--permission-mode bypassPermissions"})
    );
    assert_eq!(f["risk_class"], "high");
    assert_eq!(
        f["process"]["argv"],
        json!([
            claude.display().to_string(),
            "--permission-mode",
            "bypassPermissions"
        ])
    );
    wait_finding(&db, "agent-cli-unregistered", plan);
    assert_eq!(rules_for(&db, plan), ["agent-cli-unregistered"]);

    // Model files under the home: an extensionless Ollama blob (seen only
    // through the per-home prefix) and a .ckpt; then a near miss in the
    // same home, opened before the last positive.
    let miss = run(Command::new("/usr/bin/cat").arg(&not_model));
    let blob_pid = run(Command::new("/usr/bin/cat").arg(&blob));
    let ckpt_pid = run(Command::new("/usr/bin/cat").arg(&ckpt));
    for (pid, path) in [(blob_pid, &blob), (ckpt_pid, &ckpt)] {
        let f = wait_finding(&db, "model-weights-unregistered", pid);
        assert_eq!(
            f["matched"],
            json!({"indicator": "model_file", "path": path.display().to_string()})
        );
    }
    assert!(rules_for(&db, miss).is_empty(), "{:#?}", contexts(&db));
    d.stop();
}
