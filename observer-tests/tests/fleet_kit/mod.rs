//! What the fleet tests share: hosts whose real daemons forward into one
//! ClickHouse (clickhouse_kit), their master keys pinned as an operator
//! pins them, and `observerctl fleet` run against that ClickHouse.
// Each test binary of the topic compiles this module and uses part of it.
#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use observer_testkit::{
    ctl::{ctl, run, CtlTarget},
    *,
};
use serde_json::Value;

use crate::{
    clickhouse_kit::{expected, ClickHouse, USER},
    forwarding_kit::{agent_execs, free_port},
};

/// One host: its state directory (store, seed) and its log's origin.
pub struct Host {
    pub dir: tempfile::TempDir,
    pub origin: String,
}

impl Host {
    pub fn db(&self) -> PathBuf {
        self.dir.path().join("observer.db")
    }
}

/// The daemon config of host `name`: a clickhouse sink into `ch`, and the
/// metrics endpoint on `mport`.
pub fn host_config(ch: &ClickHouse, dir: &Path, name: &str, mport: u16) -> String {
    format!(
        "[receipts]\nstore = \"@DIR@/observer.db\"\nmaster_seed = \"@DIR@/master.seed\"\n\
         hostname = {name:?}\n\
         [metrics]\nlisten = \"127.0.0.1:{mport}\"\n\
         [forwarding]\nflush_timeout_ms = 15000\n\
         [[sinks]]\nname = \"fleet\"\ntype = \"clickhouse\"\nretry_initial_ms = 100\nretry_max_ms = 1000\n\
         [sinks.clickhouse]\n{}",
        ch.sink_settings(&dir.join("ch.password"))
    )
}

pub fn start_host(ch: &ClickHouse, name: &str) -> (Host, PathBuf, Daemon, u16) {
    let dir = tempfile::tempdir().unwrap();
    let mport = free_port();
    let exe = copy_executable("/bin/sh", dir.path(), &unique("fleet-agent"));
    let d = Daemon::start_in(
        StateDir::Shared(dir.path().to_owned()),
        &agent_config(
            "fleet-agent",
            &exe,
            &host_config(ch, dir.path(), name, mport),
        ),
    );
    let host = Host {
        dir,
        origin: String::new(),
    };
    (host, exe, d, mport)
}

/// A host whose daemon ran `execs` execs of its agent and stopped (the
/// stop signs a final checkpoint and forwards it).
pub fn run_host(ch: &ClickHouse, name: &str, execs: usize) -> Host {
    let (mut host, exe, d, _) = start_host(ch, name);
    agent_execs(&exe, execs);
    d.stop();
    host.origin = expected::host_of(&host.db());
    host
}

/// Pins `host`'s genesis master key in `keys` as an operator would: the
/// JWK `keys export --master` prints on the host, then `fleet keys add`.
pub fn pin(host: &Host, keys: &Path) {
    let export = ctl(CtlTarget::Db(&host.db()), &["keys", "export", "--master"]);
    assert_eq!(export.code, 0, "{}", export.stderr);
    let jwk = host.dir.path().join("master.jwk");
    std::fs::write(&jwk, &export.stdout).unwrap();
    let add = fleet(&[
        "keys",
        "add",
        &host.origin,
        jwk.to_str().unwrap(),
        "--keys-dir",
        keys.to_str().unwrap(),
    ]);
    assert_eq!(add.code, 0, "{}", add.stderr);
}

pub fn fleet(args: &[&str]) -> observer_testkit::ctl::Run {
    let mut c = Command::new(observer_testkit::bins::observerctl());
    c.arg("fleet").args(args);
    run(c)
}

/// The arguments of `fleet verify` against `ch` with the pinned keys in
/// `keys` (text output).
pub fn verify_args(ch: &ClickHouse, password: &Path, keys: &Path) -> Vec<String> {
    vec![
        "verify".into(),
        "--clickhouse".into(),
        format!("http://127.0.0.1:{}", ch.port),
        "--clickhouse-user".into(),
        USER.into(),
        "--password-file".into(),
        password.display().to_string(),
        "--allow-password-over-http".into(),
        "--keys-dir".into(),
        keys.display().to_string(),
    ]
}

/// `fleet verify --json` against `ch` with the pinned keys in `keys`:
/// (exit code, host reports by origin).
pub fn verify(ch: &ClickHouse, password: &Path, keys: &Path, extra: &[&str]) -> (i32, Value) {
    let mut args = verify_args(ch, password, keys);
    args.push("--json".into());
    args.extend(extra.iter().map(|a| (*a).to_string()));
    let out = fleet(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        out.code == 0 || out.code == 1,
        "exit {}: {}",
        out.code,
        out.stderr
    );
    (out.code, out.json())
}

/// Pins `host`'s key in a new key directory: (the directory, kept alive
/// by the caller, and the key directory path).
pub fn pinned(host: &Host) -> (tempfile::TempDir, PathBuf) {
    let keys_dir = tempfile::tempdir().unwrap();
    let keys = keys_dir.path().join("k");
    pin(host, &keys);
    (keys_dir, keys)
}

pub fn report<'a>(doc: &'a Value, host: &Host) -> &'a Value {
    doc["reports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["host"] == host.origin.as_str())
        .unwrap_or_else(|| panic!("no report for {}: {doc:#}", host.origin))
}

/// Runs a mutation and waits until ClickHouse has applied it.
pub fn mutate(ch: &ClickHouse, sql: &str) {
    ch.query(sql);
    let start = Instant::now();
    while ch.count("SELECT count() FROM system.mutations WHERE is_done = 0") > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{sql}: not applied"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn agent_receipts(db: &Path) -> Vec<StoredReceipt> {
    stored_receipts(db)
        .into_iter()
        .filter(|r| r.payload["agent_id"] == "fleet-agent")
        .collect()
}

pub fn failures(r: &Value) -> &Vec<Value> {
    r["failures"].as_array().unwrap()
}
