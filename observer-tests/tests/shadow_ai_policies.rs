//! Shadow-AI policies on a running daemon: a broken policy is refused and
//! the old one keeps working, `--check-policies` validates without running,
//! and SIGHUP without a policy directory does not stop the daemon.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]
mod shadow_ai_kit;

use std::{
    process::Command,
    time::{Duration, Instant},
};

use observer_testkit::*;
use serde_json::json;
use shadow_ai_kit::*;

#[test]
fn broken_policy_is_refused_and_the_old_one_keeps_working() {
    let state = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let dir = install_policies(state.path(), "");
    let d = Daemon::start_in(StateDir::Shared(state.path().to_owned()), &policy_config());
    let db = d.store();
    let digest = start_digest(&db);
    let rules = dir.join("rules.toml");
    let good = std::fs::read_to_string(&rules).unwrap();
    let anchor =
        "when = { event = [\"file_open\"], registered = false, indicator = \"model_file\" }";
    assert!(good.contains(anchor));
    let broken = good.replace(anchor, &anchor.replace("registered", "registerd"));
    std::fs::write(&rules, &broken).unwrap();
    let line = broken
        .lines()
        .position(|l| l.contains("registerd"))
        .unwrap()
        + 1;
    let col = broken
        .lines()
        .nth(line - 1)
        .unwrap()
        .find("registerd")
        .unwrap()
        + 1;
    let refused = wait_policy_event(&db, "policy_refused", 0);
    assert_eq!(refused["trigger"], "file_change");
    assert_eq!(
        refused["policy_digest"], digest,
        "the old set stays in force"
    );
    assert_eq!(
        refused["error"],
        format!(
            "{}:{line}:{col}: unknown field `registerd`, expected one of `event`, `registered`, `indicator`, `process_names`, `not_process_names`, `exe_paths`, `argv`, `ancestor_names`, `paths`, `ports`, `loopback`, `uids`, `credential_owner`, `outside_agent_scope`, `tool_verdict`; did you mean `registered`?",
            rules.display()
        )
    );
    // The old rules still find.
    let gguf = work.path().join("m.gguf");
    write_file(&gguf, "GGUF");
    let pid = run_pid(Command::new("/usr/bin/cat").arg(&gguf));
    let f = wait_finding(&db, "model-weights-unregistered", pid);
    assert_eq!(f.payload["detection_rules_digest"], digest);
    assert_eq!(f.payload["risk_class"], "medium");

    // A path the kernel does not report yet: dropped in the kernel.
    let probe = work.path().join("weights.obstest");
    write_file(&probe, "x");
    let before = run_pid(Command::new("/usr/bin/cat").arg(&probe));

    // A valid edit (a new model-file suffix, a stricter risk), applied on
    // SIGHUP or by the file poll, whichever is first. The indicator file is
    // written while rules.toml is still broken, so no half-edited set loads.
    let models = dir.join("indicators/model_files.toml");
    let text = std::fs::read_to_string(&models).unwrap();
    let with_probe = text.replacen(
        "suffixes = [\".gguf\",",
        "suffixes = [\".obstest\", \".gguf\",",
        1,
    );
    assert_ne!(with_probe, text);
    std::fs::write(&models, with_probe).unwrap();
    let stricter = good.replacen(
        "risk = \"medium\"\nreason = \"model weights were opened",
        "risk = \"high\"\nreason = \"model weights were opened",
        1,
    );
    assert_ne!(stricter, good);
    std::fs::write(&rules, &stricter).unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    let reloaded = wait_policy_event(&db, "policy_reloaded", 0);
    assert_eq!(reloaded["previous_digest"], digest);
    let new_digest = reloaded["policy_digest"].as_str().unwrap().to_string();
    assert_ne!(new_digest, digest);
    // The new suffix was pushed into the kernel's filters.
    let after = run_pid(Command::new("/usr/bin/cat").arg(&probe));
    let f = wait_finding(&db, "model-weights-unregistered", after);
    assert_eq!(f.payload["detection_rules_digest"], new_digest);
    assert_eq!(
        f.context.as_ref().unwrap()["matched"],
        json!({"indicator": "model_file", "path": probe.display().to_string()})
    );
    let opened = |pid: u32| {
        d.records()
            .iter()
            .any(|r| is_event(r, "file_open") && r["process"]["pid"] == pid)
    };
    assert!(opened(after));
    assert!(
        !opened(before),
        "before the reload the kernel dropped the open"
    );
    let gguf2 = work.path().join("m2.gguf");
    write_file(&gguf2, "GGUF");
    let pid = run_pid(Command::new("/usr/bin/cat").arg(&gguf2));
    let f = wait_finding(&db, "model-weights-unregistered", pid);
    assert_eq!(f.payload["detection_rules_digest"], new_digest);
    assert_eq!(f.payload["risk_class"], "high");
    d.stop();
    let report = verify_store(&db, &state.path().join("master.seed"), vec![]);
    assert!(report.ok(), "{:?}", report.first_failure());
}

#[test]
fn check_policies_validates_without_running() {
    let out = Command::new(observerd())
        .arg("--check-policies")
        .arg(shipped_policies())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("policies ok: sha256:") && stdout.contains("18 rules"),
        "{stdout}"
    );

    let state = tempfile::tempdir().unwrap();
    let dir = install_policies(
        state.path(),
        "[[agent]]\nid = \"x\"\nexecutable = [\"/usr/bin/x\"]\n",
    );
    let out = Command::new(observerd())
        .arg("--check-policies")
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = std::fs::read_to_string(dir.join("agents.toml")).unwrap();
    let line = text
        .lines()
        .position(|l| l.starts_with("executable ="))
        .unwrap()
        + 1;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(&format!(
            "{}:{line}:1: unknown field `executable`",
            dir.join("agents.toml").display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.trim_end().ends_with("did you mean `executables`?"),
        "{stderr}"
    );
}

#[test]
fn sighup_without_a_policy_directory_does_not_stop_the_daemon() {
    let d = Daemon::start("[files]\nprefixes = []\nsuffixes = []\n");
    d.signal(nix::sys::signal::Signal::SIGHUP);
    let start = Instant::now();
    while !d
        .stderr_text()
        .contains("SIGHUP: no policies_dir configured, nothing to reload")
    {
        assert!(start.elapsed() < WAIT, "{}", d.stderr_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    // Still running, and stops cleanly.
    let records = d.stop();
    assert!(records.iter().any(|r| r["kind"] == "observer_stop"));
}
