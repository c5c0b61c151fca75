//! The fresh-install check shared by the install tests (the .deb and
//! `cargo xtask install --destdir`): the installed observerd, started the
//! way the unit starts it with the installed configuration unedited, finds
//! an unregistered curl to an AI API. Shadow-AI detection must be on the
//! moment the product is installed.
use std::{
    io::Read,
    net::TcpListener,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

/// How long the daemon gets to start and record the finding.
const FINDING_WAIT: Duration = Duration::from_secs(90);

/// Kills (SIGTERM, then SIGKILL) and reaps the daemon when dropped.
pub struct Running {
    child: Child,
    stderr: std::path::PathBuf,
}

impl Running {
    /// Spawns `command` with stdout discarded and stderr kept in
    /// `stderr` (shown when the finding does not come).
    pub fn spawn(mut command: Command, stderr: &Path) -> Running {
        let log = std::fs::File::create(stderr).unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {command:?}: {e}"));
        Running {
            child,
            stderr: stderr.to_owned(),
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Stops the daemon as systemd would (SIGTERM) and waits for it.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on our own child, which has not been reaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "observerd did not stop on SIGTERM:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A TCP server on 127.0.0.1 that reads whatever a client sends (curl's
/// ClientHello) and closes: the connection and the SNI are what the
/// daemon sees; no TLS server is needed for that.
fn hello_sink() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
        }
    });
    port
}

/// Runs `curl https://api.openai.com/...` (the name resolved to the local
/// sink with --resolve, so the name reaches the daemon through the
/// ClientHello) about once a second until `findings` (an observerctl
/// query of the installed store) shows the unregistered-egress finding
/// for one of those curls; returns the finding's context.
pub fn unregistered_curl_is_found(daemon: &Running, findings: impl Fn() -> Vec<Value>) -> Value {
    let port = hello_sink();
    let url = format!("https://api.openai.com:{port}/v1/models");
    let resolve = format!("api.openai.com:{port}:127.0.0.1");
    let mut pids = Vec::new();
    let start = Instant::now();
    loop {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "2", "--resolve", &resolve, &url])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("curl");
        pids.push(u64::from(out.id()));
        // curl fails (the sink speaks no TLS): only its attempt matters.
        let _ = out.wait_with_output();
        std::thread::sleep(Duration::from_secs(1));
        let found = findings().into_iter().find(|f| {
            f["rule_id"] == "ai-api-egress-unregistered"
                && f["process"]["pid"]
                    .as_u64()
                    .is_some_and(|p| pids.contains(&p))
        });
        if let Some(f) = found {
            return f;
        }
        assert!(
            start.elapsed() < FINDING_WAIT,
            "no ai-api-egress-unregistered finding for curl (pids {pids:?}) within \
             {FINDING_WAIT:?}; observerd's stderr:\n{}",
            daemon.stderr()
        );
    }
}

/// The contexts of the shadow_ai.finding receipts `observerctl` (with
/// `args` naming the store or the configuration) lists; empty while the
/// store does not exist yet.
pub fn findings_via(observerctl: &Path, args: &[&str]) -> Vec<Value> {
    let out = Command::new(observerctl)
        .args(args)
        .args(["receipts", "--action", "shadow_ai.finding", "--jsonl"])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", observerctl.display()));
    if !out.status.success() {
        return Vec::new();
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|r| r["context"].clone())
        .collect()
}

/// What every fresh install must show: the finding names the provider
/// and the destination from the ClientHello, and the daemon said which
/// policy set is in force and which deployer id it derived.
pub fn assert_finding_and_start(finding: &Value, daemon: &Running, policies_dir: &str) {
    assert_eq!(finding["matched"]["provider"], "openai", "{finding}");
    assert_eq!(
        finding["matched"]["destination"], "api.openai.com",
        "{finding}"
    );
    let stderr = daemon.stderr();
    assert!(
        stderr.contains(&format!(" (directory {policies_dir}): ")),
        "the log does not name the policy set {policies_dir}:\n{stderr}"
    );
    assert!(
        stderr.contains("receipts.deployer_id not set: issuer ids use urn:uuid:"),
        "{stderr}"
    );
}
