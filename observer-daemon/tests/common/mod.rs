//! Test harness: runs the real `observerd` (as root, with real probes) and
//! reads the JSON lines it writes.
#![allow(dead_code)]

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

pub const WAIT: Duration = Duration::from_secs(15);

/// A running daemon; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Daemon {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub events: PathBuf,
    pub stderr: PathBuf,
}

impl Daemon {
    /// Starts observerd with `config` (TOML text) and waits until it
    /// reports that its probes are attached.
    pub fn start(config: &str) -> Daemon {
        assert!(
            nix::unistd::geteuid().is_root(),
            "integration tests load eBPF programs and must run as root"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("observer.toml");
        std::fs::write(&config_path, config).expect("write config");
        let events = dir.path().join("events.jsonl");
        let stderr = dir.path().join("stderr.log");
        let child = Command::new(env!("CARGO_BIN_EXE_observerd"))
            .arg("--config")
            .arg(&config_path)
            .arg("--events-jsonl")
            .arg(&events)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("spawn observerd");
        let mut d = Daemon {
            child: Some(child),
            dir,
            events,
            stderr,
        };
        d.wait_for(|r| r["kind"] == "observer_start");
        d
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), sig).expect("kill");
    }

    /// Every complete record so far. The daemon writes through a buffer,
    /// so the file may end in a line it is still writing: that one is left
    /// for the next read.
    pub fn records(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.events).unwrap_or_default();
        let complete = text.rfind('\n').map_or("", |end| &text[..=end]);
        complete
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
            .collect()
    }

    /// The first record matching `pred`, waiting up to [`WAIT`].
    pub fn wait_for(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            if let Some(r) = self.records().into_iter().find(|r| pred(r)) {
                return r;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().expect("try_wait"))
            {
                panic!("observerd exited ({status}): {}", self.stderr_text());
            }
            assert!(
                start.elapsed() < WAIT,
                "no matching record within {WAIT:?}; stderr:\n{}",
                self.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the daemon with SIGTERM and returns every record it wrote.
    pub fn stop(mut self) -> Vec<Value> {
        let mut child = self.child.take().expect("running");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("SIGTERM");
        let status = child.wait().expect("wait");
        assert!(
            status.success(),
            "observerd exit {status}: {}",
            self.stderr_text()
        );
        self.records()
    }

    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A name no other test or process on the host will use.
pub fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("obs-{tag}-{}-{nanos:x}", std::process::id())
}

/// Copies `src` to `dir/name` keeping it executable.
pub fn copy_executable(src: &str, dir: &Path, name: &str) -> PathBuf {
    let dst = dir.join(name);
    std::fs::copy(src, &dst).expect("copy executable");
    dst
}

pub fn sha256_file(path: &Path) -> String {
    use sha2::Digest;
    let bytes = std::fs::read(path).expect("read file");
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)))
}

pub fn is_event(r: &Value, event: &str) -> bool {
    r["kind"] == "event" && r["event"] == event
}

/// A config with no default file filters and only the given suffixes.
pub fn config(suffixes: &[&str], extra: &str) -> String {
    let list = suffixes
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("[files]\nprefixes = []\nsuffixes = [{list}]\n{extra}\n")
}

pub fn write_file(path: &Path, text: &str) {
    std::fs::File::create(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .expect("write file");
}
