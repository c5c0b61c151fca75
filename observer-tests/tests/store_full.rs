//! A receipt store on a real, tiny tmpfs that fills up while the daemon
//! runs: the daemon stays up, holds what it can, counts what it drops, and
//! once there is room writes an `observer.loss` receipt and the
//! `unsigned_gap` of each affected chain; the store verifies. A start on a
//! full store waits (and says so) instead of exiting into a restart loop.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use observer_testkit::*;
use serde_json::json;

/// A tmpfs of `size` mounted in its own temporary directory; unmounted
/// when dropped.
struct Tmpfs {
    mount: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let mount = dir.path().join("mnt");
        std::fs::create_dir(&mount).unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&mount)
            .status()
            .unwrap();
        assert!(status.success(), "mount tmpfs: {status}");
        Tmpfs { mount, _dir: dir }
    }

    /// Writes a filler file until the file system refuses more; returns it.
    fn fill(&self) -> PathBuf {
        let path = self.mount.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        for chunk in [1 << 20, 4096, 1] {
            let buf = vec![0xa5u8; chunk];
            loop {
                match f.write_all(&buf) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                    Err(e) => panic!("filling {}: {e}", path.display()),
                }
            }
        }
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

/// The store on the tmpfs, the seed beside the daemon's other files; a
/// small hold so that a few hundred receipts overflow it.
fn full_config(exe: &Path, store: &Path, dir: &Path) -> String {
    agent_config(
        "filler-agent",
        exe,
        &format!(
            "[receipts]\nstore = {:?}\nmaster_seed = {:?}\nfull_hold_max = 20\nqueue_capacity = 16\n",
            store.display().to_string(),
            dir.join("master.seed").display().to_string()
        ),
    )
}

/// The agent execs /bin/true `n` times.
fn burst(exe: &Path, n: u32) {
    let status = Command::new(exe)
        .args([
            "-c",
            &format!("i=0; while [ $i -lt {n} ]; do /bin/true; i=$((i+1)); done"),
        ])
        .status()
        .unwrap();
    assert!(status.success());
}

fn wait_until(what: &str, d: &Daemon, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what}; stderr:\n{}",
            d.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

const FULL_LOG: &str = "holding signed receipts in memory";

#[test]
fn a_store_that_fills_up_keeps_the_daemon_running_and_reports_what_was_dropped() {
    let fs = Tmpfs::mount("32m");
    let dir = tempfile::tempdir().unwrap();
    let exe = copy_executable("/bin/sh", dir.path(), &unique("filler"));
    let db = fs.mount.join("observer.db");
    let mut d = Daemon::start_in(
        StateDir::Shared(dir.path().to_owned()),
        &full_config(&exe, &db, dir.path()),
    );
    burst(&exe, 1);
    wait_until("the agent's chain exists", &d, || {
        stored_receipts(&db)
            .iter()
            .any(|r| r.payload["agent_id"] == "filler-agent")
    });

    let filler = fs.fill();
    // Act until the writer finds the store full (the WAL may absorb a
    // little first), then well past the hold.
    let start = Instant::now();
    while !d.stderr_text().contains(FULL_LOG) {
        assert!(start.elapsed() < Duration::from_secs(30), "never full");
        burst(&exe, 5);
        std::thread::sleep(Duration::from_millis(100));
    }
    burst(&exe, 20);
    std::thread::sleep(Duration::from_millis(500));
    let during = d.records();
    assert!(
        during.iter().any(|r| r["kind"] == "event"),
        "capture goes on while the store is full"
    );

    std::fs::remove_file(&filler).unwrap();
    // The next tick writes the loss receipt; the agent's next receipt
    // carries its chain's gap.
    wait_until("an observer.loss receipt for the full store", &d, || {
        stored_receipts_of(&db, "observer.loss")
            .iter()
            .any(|r| r.context.as_ref().unwrap()["reason"] == "store_full")
    });
    burst(&exe, 1);
    let _ = d.wait_for(|r| is_event(r, "exit"));
    std::thread::sleep(Duration::from_millis(1500));
    let stderr = d.stderr_text();
    let _ = d.stop();

    // Logged once for the episode, and its end.
    assert_eq!(stderr.matches(FULL_LOG).count(), 1, "{stderr}");
    assert_eq!(
        stderr.matches("has room again after").count(),
        1,
        "{stderr}"
    );

    let rs = stored_receipts(&db);
    let losses: Vec<_> = rs
        .iter()
        .filter(|r| {
            r.payload["action_type"] == "observer.loss"
                && r.context.as_ref().unwrap()["reason"] == "store_full"
        })
        .collect();
    assert_eq!(losses.len(), 1, "one episode, one loss receipt");
    let loss = losses[0].context.as_ref().unwrap();
    let chains = loss["chains"].as_array().unwrap();
    let agent_issuer = rs
        .iter()
        .find(|r| r.payload["agent_id"] == "filler-agent")
        .unwrap()
        .chain
        .clone();
    let agent_loss = chains
        .iter()
        .find(|c| c["issuer_id"] == agent_issuer.as_str())
        .expect("the agent's chain lost receipts");
    let total: u64 = chains.iter().map(|c| c["count"].as_u64().unwrap()).sum();
    assert!(agent_loss["count"].as_u64().unwrap() > 0, "{loss}");
    assert_eq!(loss["total"], json!(total));
    assert_eq!(loss["user"]["store_full"], json!(total));
    assert_eq!(loss["full_hold_max"], 20);

    // Each affected chain's next receipt after the loss receipt carries
    // exactly its own count and window; no other receipt has a gap.
    for c in chains {
        let next = rs
            .iter()
            .find(|r| r.chain == c["issuer_id"].as_str().unwrap() && r.leaf > losses[0].leaf)
            .unwrap_or_else(|| panic!("no receipt after the loss on {c}"));
        assert_eq!(
            next.payload["unsigned_gap"],
            json!({"count": c["count"], "from": c["from"], "to": c["to"]}),
            "{c}"
        );
    }
    let gaps = rs
        .iter()
        .filter(|r| r.payload.get("unsigned_gap").is_some())
        .count();
    assert_eq!(gaps, chains.len());

    // Every agent exec was either stored or counted as dropped.
    let stored_execs = rs
        .iter()
        .filter(|r| r.chain == agent_issuer && r.payload["action_type"] == "process.exec")
        .count();
    assert!(stored_execs > 0);

    let report = verify_store(&db, &dir.path().join("master.seed"), vec![]);
    assert!(report.ok(), "{:#?}", report.failures);
    assert_eq!(report.receipts, rs.len() as u64);
}

#[test]
fn a_start_on_a_full_store_waits_for_room_and_says_so() {
    let fs = Tmpfs::mount("8m");
    let dir = tempfile::tempdir().unwrap();
    let exe = copy_executable("/bin/sh", dir.path(), &unique("waiter"));
    let db = fs.mount.join("observer.db");
    let config = full_config(&exe, &db, dir.path());
    // A store from an earlier run, cleanly stopped.
    let d = Daemon::start_in(StateDir::Shared(dir.path().to_owned()), &config);
    burst(&exe, 1);
    let _ = d.stop();
    let committed = stored_receipts(&db).len();

    let filler = fs.fill();
    // systemd's notification socket: the wait must keep extending the
    // start timeout, or systemd would restart observerd into the full disk.
    let notify_path = dir.path().join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut d = Daemon::spawn_with(
        StateDir::Shared(dir.path().to_owned()),
        &config,
        &[],
        &[("NOTIFY_SOCKET", notify_path.to_str().unwrap())],
    );
    wait_until("observerd says it waits for room", &d, || {
        d.stderr_text()
            .contains("the file system is full; waiting for room before starting")
    });
    let mut buf = [0u8; 512];
    let n = notify.recv(&mut buf).expect("a notification while waiting");
    assert_eq!(
        std::str::from_utf8(&buf[..n]).unwrap(),
        "EXTEND_TIMEOUT_USEC=15000000\nSTATUS=waiting for room in the receipt store's file system"
    );
    // Still waiting, not exited (wait_for panics if observerd exited).
    std::thread::sleep(Duration::from_millis(500));
    assert!(Path::new(&format!("/proc/{}", d.pid())).exists());
    assert!(d.records().iter().all(|r| r["kind"] != "observer_start"));

    std::fs::remove_file(&filler).unwrap();
    d.wait_for(|r| r["kind"] == "observer_start");
    burst(&exe, 1);
    let _ = d.wait_for(|r| is_event(r, "exit"));
    let _ = d.stop();
    let rs = stored_receipts(&db);
    assert!(rs.len() > committed, "receipts after the wait");
    assert!(rs
        .iter()
        .any(|r| r.payload["action_type"] == "observer.start" && r.leaf >= committed as u64));
    let report = verify_store(&db, &dir.path().join("master.seed"), vec![]);
    assert!(report.ok(), "{:#?}", report.failures);
}
