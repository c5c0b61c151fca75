//! What the export tests share: a store filled by a real daemon (a
//! registered agent's execs, file opens, DNS lookup and TLS connection in a
//! namespace with a real dnsmasq and TLS server, and an unregistered curl's
//! AI API call, a shadow-AI finding), `observerctl export` on it, and the
//! stream the store says an export must carry.
// Each test binary of the topic compiles this module and uses part of it.
#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    sync::OnceLock,
    time::{Duration, Instant},
};

use observer_testkit::{netns, *};
use serde_json::Value;
use sha2::Digest as _;

pub const SUBNET: &str = "10.221.77";
pub const WAIT_FINDING: Duration = Duration::from_secs(30);

pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn db(&self) -> PathBuf {
        self.dir.path().join("observer.db")
    }
}

pub fn wait_until(what: &str, db: &Path, pred: impl Fn(&[StoredReceipt]) -> bool) {
    let start = Instant::now();
    loop {
        if db.exists() && pred(&stored_receipts(db)) {
            return;
        }
        assert!(start.elapsed() < WAIT_FINDING, "waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let ns = netns::Netns::new(SUBNET);
        let tls = tempfile::tempdir().unwrap();
        netns::make_certs(tls.path(), &format!("{SUBNET}.2"));
        let _dns = netns::start_dnsmasq(&ns, tls.path(), SUBNET);
        let _server = netns::start_tls_server(&ns, tls.path());
        let dir = tempfile::tempdir().unwrap();
        let agent = copy_executable("/bin/sh", dir.path(), &unique("exportagent"));
        install_policies(
            dir.path(),
            &format!(
                "[[agent]]\nid = \"export-agent\"\nexecutables = [{:?}]\nallowed_providers = [\"openai\"]\n",
                agent.display().to_string()
            ),
        );
        let d = Daemon::start_in(
            StateDir::Shared(dir.path().to_owned()),
            "policies_dir = \"@DIR@/policies\"\n[files]\nprefixes = []\nsuffixes = []\n",
        );
        let db = d.store();
        let file = dir.path().join(format!("{}.txt", unique("f")));
        write_file(&file, "hello");
        // The agent: execs, opens, a DNS lookup and a TLS connection.
        let script = format!(
            "cat {f} >/dev/null; cat {f} >/dev/null; \
             curl -sS --cacert ca.pem -o /dev/null https://api.openai.com/v1/models; exit 3",
            f = file.display()
        );
        let status = ns
            .command(&[agent.to_str().unwrap(), "-c", &script])
            .current_dir(tls.path())
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(3));
        // Shadow AI: an unregistered curl calling the same API.
        let shadow = netns::run_curl(&ns, tls.path(), "curl", &[], "https://api.openai.com/v1/models");
        wait_until("the agent's DNS answer and the finding", &db, |all| {
            let agent_dns = all.iter().any(|r| {
                r.payload["agent_id"] == "export-agent" && r.payload["action_type"] == "dns.resolve"
            });
            let finding = all.iter().any(|r| {
                r.payload["action_type"] == "shadow_ai.finding"
                    && r.context.as_ref().is_some_and(|c| c["process"]["pid"] == shadow)
            });
            agent_dns && finding
        });
        d.stop();
        Fixture { dir }
    })
}

/// `export` with `args`: the records, one per line.
pub fn export(db: &Path, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["export"];
    all.extend_from_slice(args);
    let r = ctl(CtlTarget::Db(db), &all);
    assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
    assert_eq!(
        r.stderr, "",
        "no progress bar when stderr is not a terminal"
    );
    assert!(r.stdout.ends_with('\n') || r.stdout.is_empty());
    r.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

pub fn checkpoint_sizes(db: &Path) -> Vec<u64> {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    let mut stmt = c
        .prepare("SELECT size FROM checkpoints ORDER BY size")
        .unwrap();
    let rows = stmt.query_map([], |r| r.get::<_, i64>(0)).unwrap();
    rows.map(|r| r.unwrap() as u64).collect()
}

/// The stream the export must write without filters: each receipt in log
/// order, each checkpoint of size n right after receipt n - 1, as
/// ("r", hash) / ("c", size).
pub fn expected_stream(db: &Path) -> Vec<(String, String)> {
    let cps = checkpoint_sizes(db);
    let mut out = Vec::new();
    for r in stored_receipts(db) {
        out.push(("r".to_string(), r.hash.clone()));
        if cps.contains(&(r.leaf + 1)) {
            out.push(("c".to_string(), (r.leaf + 1).to_string()));
        }
    }
    out
}

pub fn receipt_hash_of(envelope: &Value) -> String {
    let jcs = observer_daemon::receipt::jcs::canonicalize(envelope).unwrap();
    hex::encode(sha2::Sha256::digest(jcs))
}
