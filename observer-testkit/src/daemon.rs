//! The daemon guard: runs the real `observerd` (as root, with real probes)
//! and reads the JSON lines it writes.
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{bins::observerd, child::terminate, unique, WAIT};

/// A running daemon; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Daemon {
    child: Option<Child>,
    pub dir: StateDir,
    pub events: PathBuf,
    pub stderr: PathBuf,
}

/// Where a daemon keeps its config, output, store and master seed: its own
/// temporary directory, or one a test shares between successive daemons.
pub enum StateDir {
    Owned(tempfile::TempDir),
    Shared(PathBuf),
}

impl StateDir {
    pub fn path(&self) -> &Path {
        match self {
            StateDir::Owned(t) => t.path(),
            StateDir::Shared(p) => p,
        }
    }
}

impl Daemon {
    /// Starts observerd with `config` (TOML text) and waits until it
    /// reports that its probes are attached. `@DIR@` in the config is the
    /// daemon's directory; without a `[receipts]` section the receipt store
    /// and master seed go there.
    pub fn start(config: &str) -> Daemon {
        Self::start_in(
            StateDir::Owned(tempfile::tempdir().expect("tempdir")),
            config,
        )
    }

    pub fn start_in(dir: StateDir, config: &str) -> Daemon {
        Self::start_with(dir, config, &[], &[])
    }

    /// Starts observerd through `wrapper` (a command and its arguments that
    /// then run observerd, e.g. setpriv), with extra environment, and
    /// waits for its start record.
    pub fn start_with(
        dir: StateDir,
        config: &str,
        wrapper: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon {
        let mut d = Daemon::spawn_with(dir, config, wrapper, env);
        d.wait_for(|r| r["kind"] == "observer_start");
        d
    }

    /// As `start_with`, without waiting for anything.
    pub fn spawn_with(
        dir: StateDir,
        config: &str,
        wrapper: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon {
        assert!(
            nix::unistd::geteuid().is_root(),
            "integration tests load eBPF programs and must run as root"
        );
        // Tests that name no policy run without the built-in set: its
        // findings for other tests' processes (the daemon sees the whole
        // host) would add receipts to stores whose contents they count.
        let mut config = if config.contains("policies_dir") || config.contains("builtin_policies") {
            config.to_string()
        } else {
            format!("builtin_policies = false\n{config}")
        };
        if !config.contains("[receipts]") {
            config.push_str(
                "\n[receipts]\nstore = \"@DIR@/observer.db\"\nmaster_seed = \"@DIR@/master.seed\"\n",
            );
        }
        // Each daemon's control socket in its own directory: tests never
        // share /run/observer/observer.sock.
        if !config.contains("[control]") {
            config.push_str("\n[control]\nsocket = \"@DIR@/observer.sock\"\n");
        }
        let config = config.replace("@DIR@", &dir.path().display().to_string());
        let config_path = dir.path().join("observer.toml");
        std::fs::write(&config_path, config).expect("write config");
        // Fresh files per start: a shared directory sees several daemons.
        let run = unique("run");
        let events = dir.path().join(format!("{run}.events.jsonl"));
        let stderr = dir.path().join(format!("{run}.stderr.log"));
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(observerd());
                c
            }
            None => Command::new(observerd()),
        };
        let child = command
            .envs(env.iter().copied())
            .arg("--config")
            .arg(&config_path)
            .arg("--events-jsonl")
            .arg(&events)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("spawn observerd");
        Daemon {
            child: Some(child),
            dir,
            events,
            stderr,
        }
    }

    pub fn store(&self) -> PathBuf {
        self.dir.path().join("observer.db")
    }

    /// The control socket (unless the config set its own).
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("observer.sock")
    }

    pub fn master_seed(&self) -> PathBuf {
        self.dir.path().join("master.seed")
    }

    /// SIGKILL: no clean stop, no final checkpoint.
    pub fn kill(mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("SIGKILL");
        child.wait().expect("wait");
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGSTOP, returning once every thread of the daemon is stopped (the
    /// signal is asynchronous: a reader thread may drain a little longer).
    pub fn freeze(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
        let start = Instant::now();
        let tasks = format!("/proc/{}/task", self.pid());
        loop {
            let all_stopped = std::fs::read_dir(&tasks)
                .expect("task dir")
                .filter_map(Result::ok)
                .all(|t| {
                    let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
                    // The state follows the ")" that ends the comm field.
                    stat.rsplit_once(')')
                        .is_some_and(|(_, rest)| rest.trim_start().starts_with('T'))
                });
            if all_stopped {
                return;
            }
            assert!(start.elapsed() < WAIT, "observerd did not stop");
            std::thread::sleep(Duration::from_millis(5));
        }
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
            terminate(&mut child, Duration::from_secs(5));
        }
    }
}
