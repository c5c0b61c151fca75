//! observerd's command line: configuration errors and privilege checks.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]
use std::{os::unix::process::CommandExt, process::Command};

fn observerd() -> Command {
    Command::new(observer_testkit::observerd())
}

#[test]
fn unknown_config_key_is_refused_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[kernel]\npoll_interval_ms = 5\nring_bufer_bytes = 4096\n",
    )
    .unwrap();
    let out = observerd()
        .arg("--config")
        .arg(&path)
        .arg("--check-config")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}: line 3, column 1", path.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("unknown field `ring_bufer_bytes`"),
        "{stderr}"
    );
}

#[test]
fn repository_config_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../observer.toml");
    let out = observerd()
        .args(["--config", path, "--check-config"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn unprivileged_start_fails_with_a_clear_reason() {
    let out = observerd().uid(65534).gid(65534).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("must run as root"), "{stderr}");
}

#[test]
fn output_failure_stops_the_daemon_with_the_error() {
    let started = std::time::Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("observer.toml");
    std::fs::write(
        &config,
        format!(
            "[receipts]\nstore = \"{0}/observer.db\"\nmaster_seed = \"{0}/master.seed\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let out = observerd()
        .arg("--config")
        .arg(&config)
        .args(["--events-jsonl", "/dev/full"])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a daemon that cannot write must not keep running"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the event writer stopped"), "{stderr}");
    assert!(stderr.contains("No space left on device"), "{stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}
