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
                c.args(args).arg(env!("CARGO_BIN_EXE_observerd"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_observerd")),
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
/// Copies an executable for a test to run. The copy is written by a `cp`
/// child, never through a descriptor of the test process: tests run on many
/// threads, and a fork on another thread between our open and close would
/// carry the writable descriptor into that child until it execs, making our
/// own exec of the copy fail with ETXTBSY ("Text file busy").
pub fn copy_executable(src: &str, dir: &Path, name: &str) -> PathBuf {
    let dst = dir.join(name);
    let status = Command::new("cp")
        .arg("--")
        .arg(src)
        .arg(&dst)
        .status()
        .expect("run cp");
    assert!(status.success(), "cp {src} {}: {status}", dst.display());
    dst
}

/// Writes an executable script, for the same reason as `copy_executable`
/// through a child: the text goes to a private staging file first, and `cp`
/// makes the executable inode.
pub fn write_executable(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    let staging = path.with_extension("staging");
    std::fs::write(&staging, text).expect("write script");
    std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o755))
        .expect("chmod script");
    let name = path.file_name().unwrap().to_str().unwrap();
    copy_executable(staging.to_str().unwrap(), path.parent().unwrap(), name);
    std::fs::remove_file(&staging).expect("remove staging file");
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

/// One stored receipt, parsed.
#[derive(Debug, Clone)]
pub struct StoredReceipt {
    pub leaf: u64,
    pub hash: String,
    pub chain: String,
    pub seq: u64,
    pub payload: Value,
    pub envelope: String,
    pub context: Option<Value>,
}

/// The receipts of one action type, in log order.
pub fn stored_receipts_of(db: &Path, action_type: &str) -> Vec<StoredReceipt> {
    let c =
        observer_daemon::receipt::sqlite::connect(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open store");
    let mut stmt = c
        .prepare(
            "SELECT r.leaf_index, r.receipt_hash, r.issuer_id, r.seq,
                    receipt_envelope(r.envelope_text, r.sig), c.context
             FROM receipts r LEFT JOIN contexts c USING (leaf_index)
             WHERE r.action_type = ?1 ORDER BY r.leaf_index",
        )
        .expect("prepare");
    let rows = stmt
        .query_map([action_type], |r| {
            let envelope: String = r.get(4)?;
            let context: Option<String> = r.get(5)?;
            let parsed: Value = serde_json::from_str(&envelope).expect("envelope JSON");
            Ok(StoredReceipt {
                leaf: r.get::<_, i64>(0)? as u64,
                hash: hex::encode(r.get::<_, Vec<u8>>(1)?),
                chain: r.get(2)?,
                seq: r.get::<_, i64>(3)? as u64,
                payload: parsed["payload"].clone(),
                envelope,
                context: context.map(|c| serde_json::from_str(&c).expect("context JSON")),
            })
        })
        .expect("query");
    rows.map(|r| r.expect("row")).collect()
}

/// Every receipt of a store, in log order.
pub fn stored_receipts(db: &Path) -> Vec<StoredReceipt> {
    let store = observer_daemon::receipt::store::Store::open_read_only(db).expect("open store");
    let mut out = Vec::new();
    store
        .for_each_receipt(|row| {
            let envelope: Value = serde_json::from_str(&row.envelope).expect("envelope JSON");
            out.push(StoredReceipt {
                leaf: row.leaf_index,
                hash: hex::encode(&row.receipt_hash),
                chain: row.issuer_id.clone(),
                seq: row.seq,
                payload: envelope["payload"].clone(),
                envelope: row.envelope.clone(),
                context: row
                    .context
                    .as_deref()
                    .map(|c| serde_json::from_str(c).expect("context JSON")),
            });
            true
        })
        .expect("read receipts");
    out
}

/// The master public key derived from a daemon's master seed.
pub fn master_public_key(seed: &Path) -> Vec<u8> {
    use observer_daemon::receipt::keys;
    let seed = keys::MasterSeed::load_existing(seed).expect("master seed");
    keys::ChainKey::master_key(&seed).public_key().to_vec()
}

/// Verifies a store with both ML-DSA implementations.
pub fn verify_store(
    db: &Path,
    seed: &Path,
    external: Vec<String>,
) -> observer_daemon::receipt::verify::Report {
    verify_store_with(db, seed, external, true)
}

pub fn verify_store_with(
    db: &Path,
    seed: &Path,
    external: Vec<String>,
    independent: bool,
) -> observer_daemon::receipt::verify::Report {
    let store = observer_daemon::receipt::store::Store::open_read_only(db).expect("open store");
    observer_daemon::receipt::verify::verify_store(
        &store,
        &observer_daemon::receipt::verify::VerifyOptions {
            master_public_key: master_public_key(seed),
            now_unix_ns: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64,
            external_checkpoints: external,
            independent,
            threads: 2,
        },
    )
    .expect("verify")
}

/// What tells file opens apart when they are counted against receipts:
/// process, path, flags and the errno of a failure.
pub type OpenKey = (u64, String, u64, Option<i64>);

/// The [`OpenKey`] of the open `o` (an event's or a list entry's
/// `file_open`) by process `pid`.
pub fn open_key(pid: &Value, o: &Value) -> OpenKey {
    let result = o["result"].as_i64().unwrap();
    (
        pid.as_u64().unwrap(),
        o["path"].as_str().unwrap().to_string(),
        o["flags"].as_u64().unwrap(),
        (result < 0).then_some(result),
    )
}

/// A config registering `exe` as agent `id`.
pub fn agent_config(id: &str, exe: &Path, extra: &str) -> String {
    format!(
        "[files]\nprefixes = []\nsuffixes = []\n{extra}\n[[agents]]\nid = {id:?}\nexecutables = [{:?}]\n",
        exe.display().to_string()
    )
}
pub mod account;
pub mod netns;
pub mod pki;
pub mod scrape;

/// The deployer id observerd signs with when the config sets none: derived
/// from this host's /etc/machine-id.
pub fn default_deployer_id() -> String {
    let machine_id = std::fs::read_to_string(observer_daemon::deployer::MACHINE_ID)
        .expect("read /etc/machine-id");
    observer_daemon::deployer::from_machine_id(machine_id.trim()).expect("machine id")
}

/// Kills and reaps a child when dropped.
pub struct ChildGuard(pub std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The observerctl binary these tests run: built by the observer-ctl
/// package into the same directory as observerd (`cargo test --workspace`,
/// which `cargo xtask test` runs, builds it with the tests). Cargo names
/// only the binaries of the package under test, so the path is derived,
/// and a binary older than a source it is built from is refused rather
/// than tested: the sources cargo's dep-info beside it lists (a `cargo
/// build` writes it), else every source of the crates it links.
pub fn observerctl() -> &'static str {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let bin = Path::new(env!("CARGO_BIN_EXE_observerd")).with_file_name("observerctl");
        let rebuild = "build it with `cargo build -p observer-ctl` (cargo test --workspace does)";
        let built = std::fs::metadata(&bin)
            .and_then(|m| m.modified())
            .unwrap_or_else(|e| panic!("{}: {e}: {rebuild}", bin.display()));
        let sources = match std::fs::read_to_string(bin.with_extension("d")) {
            Ok(deps) => dep_info_sources(&deps),
            Err(_) => linked_crate_sources(),
        };
        for source in sources {
            let changed = std::fs::metadata(&source).and_then(|m| m.modified());
            if changed.map_or(true, |t| t > built) {
                panic!(
                    "{} is older than {} (or it is gone): {rebuild}",
                    bin.display(),
                    source.display()
                );
            }
        }
        bin.to_string_lossy().into_owned()
    })
}

/// The sources of the workspace crates observerctl links (observerd's own
/// `src/bin` aside), for a binary that no plain build left dep-info for.
fn linked_crate_sources() -> Vec<PathBuf> {
    fn walk(dir: &Path, skip: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path == skip {
                continue;
            }
            if path.is_dir() {
                walk(&path, skip, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let skip = root.join("observer-daemon/src/bin");
    let mut out = Vec::new();
    for krate in [
        "observer-ctl",
        "observer-daemon",
        "observer-receipts",
        "observer-common",
    ] {
        walk(&root.join(krate).join("src"), &skip, &mut out);
    }
    out
}

/// The prerequisites of a make-style dep-info file (`target: a b\ c`).
fn dep_info_sources(text: &str) -> Vec<PathBuf> {
    let line = text.lines().next().unwrap_or_default();
    let rest = line.split_once(": ").map_or("", |(_, r)| r);
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => cur.extend(chars.next()),
            ' ' if !cur.is_empty() => out.push(PathBuf::from(std::mem::take(&mut cur))),
            ' ' => {}
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(PathBuf::from(cur));
    }
    out
}

/// `observerctl receipts --json` with `args`: (receipt hash, summary).
pub fn receipt_summaries(db: &Path, args: &[&str]) -> Vec<(String, String)> {
    let out = Command::new(observerctl())
        .arg("--db")
        .arg(db)
        .args(["receipts", "--json"])
        .args(args)
        .output()
        .expect("run observerctl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).expect("observerctl JSON");
    doc["receipts"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r["receipt_hash"].as_str().unwrap().to_string(),
                r["summary"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}
