//! `observerctl tail -f` and `receipts` through the daemon's control
//! socket, run by a real non-root member of the socket's group (who cannot
//! open the 0600 store) against a real daemon on the real kernel; and a
//! user outside the group, refused.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]

use std::{
    io::BufRead,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use observer_testkit::*;
use serde_json::{json, Value};

const MEMBER: &str = "obstail-member";
const GROUP: &str = "obstail-grp";

const AS_MEMBER: &[&str] = &["--reuid=obstail-member", "--regid=nogroup", "--init-groups"];
const AS_OUTSIDER: &[&str] = &["--reuid=nobody", "--regid=nogroup", "--clear-groups"];

/// Where observerctl finds the daemon's socket and store.
struct Ctl {
    bin: PathBuf,
    socket: PathBuf,
    db: PathBuf,
}

impl Ctl {
    /// observerctl through setpriv as `who` (root when empty).
    fn command(&self, who: &[&str], args: &[&str]) -> Command {
        let mut c = if who.is_empty() {
            Command::new(&self.bin)
        } else {
            let mut c = Command::new("setpriv");
            c.args(who).arg(&self.bin);
            c
        };
        c.arg("--socket")
            .arg(&self.socket)
            .arg("--db")
            .arg(&self.db)
            .args(args);
        c
    }
}

/// The files a process holds open.
fn open_files(pid: u32) -> Vec<PathBuf> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .collect()
}

/// The leaf index of the agent's exec of `/bin/echo marker`, once the
/// store holds it (read here as root; observerctl never reads it).
fn committed_echo(db: &Path, marker: &str) -> Option<u64> {
    let found: Vec<_> = stored_receipts_of(db, "process.exec")
        .into_iter()
        .filter(|r| {
            r.payload["agent_id"] == "tail-agent"
                && r.context
                    .as_ref()
                    .is_some_and(|c| c["exec"]["argv"] == json!(["/bin/echo", marker]))
        })
        .collect();
    assert!(found.len() <= 1, "{found:#?}");
    found.first().map(|r| r.leaf)
}

#[test]
fn a_group_member_follows_and_queries_through_the_daemon_and_an_outsider_is_refused() {
    let _account = account::Account::create(MEMBER, GROUP);
    let dir = tempfile::tempdir().unwrap();
    // Traversable, so only the socket's mode and the peer check decide;
    // the store stays 0600 root.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let bin = copy_executable(observerctl(), dir.path(), "observerctl");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let agent_exe = copy_executable("/bin/sh", dir.path(), &unique("tailagent"));
    let d = Daemon::start_in(
        StateDir::Shared(dir.path().to_owned()),
        &agent_config(
            "tail-agent",
            &agent_exe,
            &format!("[control]\nsocket = \"@DIR@/ctl.sock\"\ngroup = \"{GROUP}\"\n"),
        ),
    );
    let ctl = Ctl {
        bin,
        socket: dir.path().join("ctl.sock"),
        db: d.store(),
    };
    let meta = std::fs::metadata(&ctl.db).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (0, 0o600));

    // History: the agent's first exec, listed by the member through the
    // daemon, is byte for byte what root reads from the store.
    let status = Command::new(&agent_exe)
        .args(["-c", "true"])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + WAIT;
    let history = [
        "receipts",
        "--jsonl",
        "--agent",
        "tail-agent",
        "--action",
        "process.exec",
    ];
    let direct = loop {
        let r = run(ctl.command(&[], &history));
        assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
        if !r.stdout.is_empty() {
            break r.stdout;
        }
        assert!(
            Instant::now() < deadline,
            "the agent's exec was never committed"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let member = run(ctl.command(AS_MEMBER, &history));
    assert_eq!(member.code, 0, "{}", member.stderr);
    assert_eq!(member.stdout, direct);
    assert_eq!(direct.lines().count(), 1, "{direct}");

    // Follow as the member, from now on (-n 0).
    let mut follower = ctl.command(
        AS_MEMBER,
        &[
            "tail",
            "-f",
            "-n",
            "0",
            "--jsonl",
            "--agent",
            "tail-agent",
            "--action",
            "process.exec",
        ],
    );
    let mut follower = ChildGuard(
        follower
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = follower.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<(Instant, String)>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send((Instant::now(), line)).is_err() {
                return;
            }
        }
    });
    // Subscribed once the daemon counts it.
    let deadline = Instant::now() + WAIT;
    loop {
        let r = run(ctl.command(&[], &["status", "--json"]));
        assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
        let v: Value = serde_json::from_str(&r.stdout).unwrap();
        if v["control"]["followers"] == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the follower never subscribed: {v:#}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // setpriv execs observerctl in place: this pid is the follower. It
    // holds no descriptor of the store (it could not open it anyway).
    let open = open_files(follower.0.id());
    assert!(
        !open.iter().any(|p| p.starts_with(dir.path())),
        "the follower opened {open:?}"
    );

    let marker = unique("marker");
    let status = Command::new(&agent_exe)
        .args(["-c", &format!("/bin/echo {marker} >/dev/null")])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + WAIT;
    let (leaf, committed_seen) = loop {
        if let Some(leaf) = committed_echo(&ctl.db, &marker) {
            break (leaf, Instant::now());
        }
        assert!(Instant::now() < deadline, "the echo was never committed");
        std::thread::sleep(Duration::from_millis(10));
    };
    // The agent's own exec (sh) comes first, in commit order, then the echo.
    let mut next = || {
        let (arrived, line) = rx.recv_timeout(WAIT).unwrap_or_else(|_| {
            panic!("the follower printed nothing; {:?}", follower.0.try_wait())
        });
        (arrived, serde_json::from_str::<Value>(&line).unwrap(), line)
    };
    let (_, sh, _) = next();
    // Lists of the agent's opens may be committed between the two (an
    // agent's list is issued when full, not at an exec).
    assert!(sh["leaf_index"].as_u64().unwrap() < leaf, "{sh}");
    assert_eq!(
        sh["context"]["exec"]["filename"],
        agent_exe.display().to_string()
    );
    let (arrived, row, line) = next();
    // The promise: a member sees a new receipt within a second of
    // its commit (seen here by reading the store).
    assert!(
        arrived.saturating_duration_since(committed_seen) < Duration::from_secs(1),
        "the row came {:?} after the commit was seen",
        arrived.saturating_duration_since(committed_seen)
    );
    assert_eq!(row["leaf_index"], leaf);
    assert_eq!(row["agent_id"], "tail-agent");
    assert_eq!(row["context"]["exec"]["argv"], json!(["/bin/echo", marker]));
    // The same bytes root's `receipts --jsonl` prints for that receipt.
    let all = run(ctl.command(&[], &history));
    assert_eq!(all.stdout.lines().last(), Some(line.as_str()));
    assert!(rx.try_recv().is_err(), "only the two execs matched");

    // Outside the group: refused at connect, by the socket's mode, saying so.
    let refused = format!(
        "permission denied connecting to the observer control socket {}: only root and \
         members of its group (observer by default) may use it",
        ctl.socket.display()
    );
    let r = run(ctl.command(AS_OUTSIDER, &["tail", "-f", "--json"]));
    assert_eq!(r.code, 5, "{} {}", r.stdout, r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "permission_denied");
    assert_eq!(v["error"]["message"], refused);
    let r = run(ctl.command(AS_OUTSIDER, &["receipts"]));
    assert_eq!(r.code, 5, "{} {}", r.stdout, r.stderr);
    assert_eq!(
        r.stderr.trim_end(),
        format!(
            "observerctl: cannot open the receipt store {} (root-only), so asked the daemon: {refused}",
            ctl.db.display()
        )
    );
    assert_eq!(r.stdout, "");
    drop(follower);
    d.stop();
}

#[test]
fn a_follower_that_stops_reading_is_dropped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let agent_exe = copy_executable("/bin/sh", dir.path(), &unique("busyagent"));
    let d = Daemon::start_in(
        StateDir::Shared(dir.path().to_owned()),
        &agent_config(
            "busy-agent",
            &agent_exe,
            "[control]\nsocket = \"@DIR@/ctl.sock\"\ntimeout_ms = 3000\n",
        ),
    );
    let ctl = Ctl {
        bin: PathBuf::from(observerctl()),
        socket: dir.path().join("ctl.sock"),
        db: d.store(),
    };
    // Status answers within the connection's deadline; a busy machine may
    // miss it now and then: asked again until the deadline below.
    let status = || -> Option<Value> {
        let r = run(ctl.command(&[], &["status", "--json"]));
        (r.code == 0).then(|| serde_json::from_str(&r.stdout).unwrap())
    };
    let until = |what: &str, pred: &dyn Fn(&Value) -> bool| {
        let deadline = Instant::now() + WAIT;
        let mut last = None;
        loop {
            if let Some(v) = status() {
                if pred(&v) {
                    return v;
                }
                last = Some(v);
            }
            assert!(Instant::now() < deadline, "{what}: {last:#?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    // A follower that sends its request and never reads.
    let mut stuck = std::os::unix::net::UnixStream::connect(&ctl.socket).unwrap();
    std::io::Write::write_all(&mut stuck, b"{\"v\":1,\"cmd\":\"follow\",\"lines\":0}\n").unwrap();
    until("the follower subscribed", &|v| {
        v["control"]["followers"] == 1
    });
    // Each receipt row is kilobytes (the signature alone is 3309 bytes):
    // 200 execs and their exits overflow the socket's buffer.
    let status_ok = Command::new(&agent_exe)
        .args(["-c", "for i in $(seq 200); do /bin/true; done"])
        .status()
        .unwrap();
    assert!(status_ok.success());
    let v = until("the stalled follower was dropped", &|v| {
        v["control"]["streams_dropped_slow"] == 1 && v["control"]["followers"] == 0
    });
    assert_eq!(v["control"]["followers_lagged"], 0);
    assert!(d
        .stderr_text()
        .contains("control socket: dropped a stream whose client stopped reading for 3000 ms"));
    // The daemon closed its side: what was buffered, then end of file.
    stuck.set_read_timeout(Some(WAIT)).unwrap();
    let mut buffered = Vec::new();
    std::io::Read::read_to_end(&mut stuck, &mut buffered).unwrap();
    assert!(buffered.starts_with(b"{\"v\":1,\"ok\":true,\"result\":{\"following\":true"));
    d.stop();
}
