//! Logging to a real systemd-journald: when `JOURNAL_STREAM` names its
//! stderr, observerd sends each log record in the native journal protocol,
//! with its priority, source location, `MESSAGE_ID` and `OBSERVER_*` fields.
//!
//! PID 1 here is not systemd, so each test starts its own journald in a
//! private mount namespace (tmpfs over /run/systemd and /run/log: the
//! host's directories are not touched) and a private network namespace (so
//! it cannot reach the host's audit or other sockets), and runs observerd
//! and journalctl in that mount namespace.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]

use std::{
    os::unix::net::UnixDatagram,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use observer_daemon::service::journal::{self, message_id, Journal};
use observer_testkit::*;
use serde_json::Value;

/// A systemd-journald of the test's own, stopped on drop.
struct PrivateJournal {
    child: Child,
}

impl PrivateJournal {
    fn start() -> PrivateJournal {
        // unshare and sh exec, so the child's pid is journald's.
        let child = Command::new("unshare")
            .args(["--mount", "--net", "--propagation", "private", "--"])
            .args(["sh", "-c"])
            .arg(
                "mount -t tmpfs tmpfs /run/systemd && mkdir /run/systemd/journal \
                 && mount -t tmpfs tmpfs /run/log && exec /lib/systemd/systemd-journald",
            )
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn systemd-journald");
        let journal = PrivateJournal { child };
        let start = Instant::now();
        while !journal.socket().exists() {
            assert!(start.elapsed() < WAIT, "journald did not open its socket");
            std::thread::sleep(Duration::from_millis(20));
        }
        journal
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// The native socket, reached through journald's root.
    fn socket(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{}", self.child.id(), journal::SOCKET))
    }

    /// Runs `program` inside the journal's mount namespace.
    fn command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.pid(), "-m", "--", program]);
        c
    }

    /// The entries matching journalctl `matches`, as JSON, whole (`--all`
    /// keeps fields longer than 4 KiB).
    fn entries(&self, matches: &[String]) -> Vec<Value> {
        let out = self
            .command("journalctl")
            .args([
                "-D",
                "/run/log/journal",
                "-o",
                "json",
                "--all",
                "--no-pager",
            ])
            .args(matches)
            .output()
            .expect("journalctl");
        assert!(
            out.status.success(),
            "journalctl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("utf-8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("journalctl JSON line"))
            .collect()
    }

    /// Waits until an entry matching `matches` is in the journal files
    /// (journald writes asynchronously) and returns all matching entries.
    fn wait_for(&self, matches: &[String]) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let entries = self.entries(matches);
            if !entries.is_empty() {
                return entries;
            }
            assert!(start.elapsed() < WAIT, "no journal entry for {matches:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for PrivateJournal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run observerd through this to give it what systemd gives a service whose
/// stderr is the journal: `JOURNAL_STREAM` naming stderr's device and inode.
const AS_JOURNAL_STREAM: &str =
    r#"export JOURNAL_STREAM="$(stat -L -c %d:%i /proc/self/fd/2)"; exec "$0" "$@""#;

fn one<'a>(entries: &'a [Value], message_id: &str) -> &'a Value {
    let found: Vec<&Value> = entries
        .iter()
        .filter(|e| e["MESSAGE_ID"] == message_id)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "entries with MESSAGE_ID {message_id}: {found:?}"
    );
    found[0]
}

#[test]
fn observerd_logs_to_the_journal_with_priorities_locations_and_fields() {
    let journald = PrivateJournal::start();
    let pid = journald.pid();
    let wrapper = [
        "nsenter",
        "-t",
        &pid,
        "-m",
        "--",
        "sh",
        "-c",
        AS_JOURNAL_STREAM,
    ];
    // A shared directory outlives the daemon: its stderr file is read after.
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_with(
        StateDir::Shared(dir.path().to_path_buf()),
        &config(&[], ""),
        &wrapper,
        &[],
    );
    let daemon_pid = daemon.pid();
    let stderr = daemon.stderr.clone();
    let records = daemon.stop();

    let by_pid = format!("_PID={daemon_pid}");
    journald.wait_for(&[
        by_pid.clone(),
        format!("MESSAGE_ID={}", message_id::STOPPED),
    ]);
    let entries = journald.entries(&[by_pid]);
    for e in &entries {
        // Native protocol (not the stdout stream), our identifier, a
        // priority and the source location on every record.
        assert_eq!(e["_TRANSPORT"], "journal", "{e}");
        assert_eq!(e["SYSLOG_IDENTIFIER"], "observerd", "{e}");
        assert!(e["CODE_FILE"].as_str().unwrap().ends_with(".rs"), "{e}");
        e["CODE_LINE"].as_str().unwrap().parse::<u32>().unwrap();
        assert!(
            e["CODE_MODULE"]
                .as_str()
                .unwrap()
                .starts_with("observer_daemon"),
            "{e}"
        );
    }

    let ready = one(&entries, message_id::READY);
    assert_eq!(
        ready["MESSAGE"],
        format!("observerd ready (pid {daemon_pid})")
    );
    assert_eq!(ready["PRIORITY"], "6");
    assert_eq!(ready["CODE_FILE"], "observer-daemon/src/daemon/mod.rs");
    assert_eq!(ready["CODE_MODULE"], "observer_daemon::daemon");

    let start = records
        .iter()
        .find(|r| r["kind"] == "observer_start")
        .expect("start record");
    let attached = entries
        .iter()
        .find(|e| e["MESSAGE"].as_str().unwrap().starts_with("attached "))
        .expect("attached entry");
    let probes = start["probes"].as_array().unwrap().len();
    assert_eq!(attached["OBSERVER_PROBES"], probes.to_string());
    assert_eq!(attached["MESSAGE"], format!("attached {probes} probes"));

    let stopping = one(&entries, message_id::STOPPING);
    assert_eq!(stopping["MESSAGE"], "shutting down");
    let stopped = one(&entries, message_id::STOPPED);
    assert_eq!(stopped["PRIORITY"], "6");
    assert_eq!(
        stopped["OBSERVER_RECORDS_WRITTEN"],
        records.len().to_string()
    );
    stopped["OBSERVER_KERNEL_RECORDS"]
        .as_str()
        .unwrap()
        .parse::<u64>()
        .unwrap();

    // Everything went to the journal; none of it was duplicated as text on
    // the stream systemd would also have captured.
    assert_eq!(std::fs::read_to_string(stderr).unwrap(), "");
}

#[test]
fn a_fatal_error_is_an_err_priority_entry() {
    let journald = PrivateJournal::start();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let stderr = dir.path().join("stderr.log");
    let child = journald
        .command("sh")
        .args(["-c", AS_JOURNAL_STREAM, observerd()])
        .arg("--config")
        .arg(&missing)
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2));

    let entries = journald.wait_for(&[
        format!("_PID={pid}"),
        format!("MESSAGE_ID={}", message_id::FAILED),
    ]);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["PRIORITY"], "3");
    let message = entries[0]["MESSAGE"].as_str().unwrap();
    assert!(
        message.contains(&missing.display().to_string()),
        "{message}"
    );
    assert_eq!(std::fs::read_to_string(stderr).unwrap(), "");
}

#[test]
fn a_record_larger_than_a_datagram_and_multi_line_values_arrive_whole() {
    let journald = PrivateJournal::start();
    // 480 KB with newlines: above the socket's send buffer, so the datagram
    // is refused and the record must go in a sealed memfd.
    let message: String = (0..12_000)
        .map(|i| format!("line {i:05} of a long message..........\n"))
        .collect();
    assert!(message.len() > 450_000);
    let mut record = Vec::new();
    journal::encode_field(&mut record, "MESSAGE", message.as_bytes());
    journal::encode_field(&mut record, "OBSERVER_TEST", b"memfd");
    journal::encode_field(&mut record, "SYSLOG_IDENTIFIER", b"observer-test");
    let direct = UnixDatagram::unbound()
        .unwrap()
        .send_to(&record, journald.socket())
        .expect_err("a 480 KB datagram");
    assert_eq!(direct.raw_os_error(), Some(libc::EMSGSIZE));

    let sender = Journal::open(&journald.socket()).unwrap();
    sender.send(&record).unwrap();
    let mut small = Vec::new();
    journal::encode_field(&mut small, "MESSAGE", b"two\nlines");
    journal::encode_field(&mut small, "OBSERVER_TEST", b"datagram");
    sender.send(&small).unwrap();

    let big = journald.wait_for(&["OBSERVER_TEST=memfd".to_string()]);
    assert_eq!(big.len(), 1);
    assert_eq!(big[0]["MESSAGE"], message.as_str());
    assert_eq!(big[0]["_TRANSPORT"], "journal");
    let two = journald.wait_for(&["OBSERVER_TEST=datagram".to_string()]);
    assert_eq!(two[0]["MESSAGE"], "two\nlines");
}

#[test]
fn no_journal_socket_means_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let err = Journal::open(&dir.path().join("socket"))
        .err()
        .expect("no socket");
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    let file = dir.path().join("file");
    std::fs::write(&file, "").unwrap();
    assert!(Journal::open(&file).is_err());
}
