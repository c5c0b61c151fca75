//! The systemd service: the unit passes `systemd-analyze verify`, the daemon
//! runs with exactly the capabilities the unit grants, and it speaks the
//! sd_notify protocol (READY, WATCHDOG, STOPPING) on a real socket.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]

use std::{os::unix::net::UnixDatagram, path::Path, process::Command, time::Duration};

use observer_testkit::*;

fn unit_text() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd/observerd.service"),
    )
    .unwrap()
}

/// The values of `key=` lines in the unit.
fn unit_values(key: &str) -> Vec<String> {
    unit_text()
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .flat_map(|v| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .collect()
}

#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    // The unit names the installed path; point it at the binary under test
    // so systemd-analyze can check that it is executable.
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("observerd.service");
    std::fs::write(
        &unit,
        unit_text().replace("/usr/local/bin/observerd", observerd()),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Warnings about this unit (not about others on the host) are failures.
    let ours: Vec<_> = stderr
        .lines()
        .filter(|l| l.contains("observerd.service"))
        .collect();
    assert!(ours.is_empty(), "{ours:#?}");
}

#[test]
fn the_daemon_runs_with_only_the_units_capabilities() {
    let caps = unit_values("CapabilityBoundingSet");
    assert!(caps.contains(&"CAP_BPF".to_string()), "{caps:?}");
    // setpriv wants "+bpf,+perfmon,...".
    let list = caps
        .iter()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect::<Vec<_>>()
        .join(",");
    let bounding = format!("-all,{list}");
    // The unit requires sys-kernel-tracing.mount; without CAP_SYS_ADMIN the
    // daemon cannot mount tracefs itself, so the test provides it as
    // systemd would.
    if !Path::new("/sys/kernel/tracing/events").exists() {
        let status = Command::new("mount")
            .args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"])
            .status()
            .unwrap();
        assert!(status.success(), "mounting tracefs");
    }
    let state = tempfile::tempdir().unwrap();
    let d = Daemon::start_with(
        StateDir::Shared(state.path().to_owned()),
        &config(&[], ""),
        &["setpriv", "--bounding-set", &bounding, "--inh-caps", "-all"],
        &[],
    );
    // The capability set really is restricted.
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.pid())).unwrap();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim()
        .to_string();
    let eff = u64::from_str_radix(&eff, 16).unwrap();
    let expected = caps.iter().fold(0u64, |m, c| {
        m | 1u64
            << match c.as_str() {
                "CAP_CHOWN" => 0,
                "CAP_DAC_READ_SEARCH" => 2,
                "CAP_NET_ADMIN" => 12,
                "CAP_SYS_PTRACE" => 19,
                "CAP_PERFMON" => 38,
                "CAP_BPF" => 39,
                other => panic!("extend this table for {other}"),
            }
    });
    assert_eq!(eff, expected, "effective capabilities {eff:#x}");
    let mut d = d;
    let name = unique("capped");
    let exe = copy_executable("/bin/true", d.dir.path(), &name);
    assert!(Command::new(&exe).status().unwrap().success());
    let path = exe.display().to_string();
    let ev = d.wait_for(|r| is_event(r, "exec") && r["exec"]["filename"] == path.as_str());
    assert_eq!(ev["process"]["exe_sha256"], sha256_file(&exe));
    let store = d.store();
    let seed = d.master_seed();
    let records = d.stop();
    assert!(records.iter().any(|r| r["kind"] == "observer_stop"));
    let report = verify_store(&store, &seed, vec![]);
    assert!(report.ok(), "{:#?}", report.failures);
}

#[test]
fn readiness_watchdog_and_stopping_are_notified() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let d = Daemon::start_with(
        StateDir::Owned(tempfile::tempdir().unwrap()),
        &config(&[], ""),
        &[],
        &[
            ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "400000"),
        ],
    );
    let mut buf = [0u8; 512];
    let mut recv = || {
        let n = socket.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let ready = recv();
    assert!(ready.starts_with("READY=1\n"), "{ready}");
    assert!(ready.contains(&format!("MAINPID={}", d.pid())), "{ready}");
    // Half the watchdog period: at least two pings within a second.
    let mut pings = 0;
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_millis(1000) {
        if recv() == "WATCHDOG=1" {
            pings += 1;
        }
    }
    assert!(pings >= 2, "{pings} watchdog pings");
    d.signal(nix::sys::signal::Signal::SIGTERM);
    let stopping = (0..10)
        .map(|_| recv())
        .find(|m| m != "WATCHDOG=1")
        .expect("a STOPPING notification");
    assert!(stopping.starts_with("STOPPING=1"), "{stopping}");
}

/// SIGTERM while the daemon is still starting (probes attached, store and
/// readiness not yet): it finishes starting and stops cleanly, with its
/// stop record and a final checkpoint over the whole log, instead of dying
/// by the signal's default action.
#[test]
fn a_stop_during_startup_is_a_clean_stop() {
    let state = tempfile::tempdir().unwrap();
    let d = Daemon::spawn_with(StateDir::Shared(state.path().to_owned()), "", &[], &[]);
    let start = std::time::Instant::now();
    while !d.stderr_text().contains("attached ") {
        assert!(
            start.elapsed() < WAIT,
            "probes never attached: {}",
            d.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let db = d.store();
    // `stop` asserts a zero exit status.
    let records = d.stop();
    assert!(
        records.iter().any(|r| r["kind"] == "observer_stop"),
        "no stop record"
    );
    let store = observer_daemon::receipt::store::Store::open_read_only(&db).unwrap();
    let final_size = store.latest_checkpoint().unwrap().unwrap().size;
    assert_eq!(final_size, stored_receipts(&db).len() as u64);
}
