//! The product out of the box: observerd run with the shipped
//! observer.toml byte for byte, as the package and `cargo xtask install`
//! install it, finds an unregistered curl to an AI API. Once with no policy
//! directory on the host (the built-in set), once with the policies
//! installed where the shipped config points. The daemon runs in a private
//! mount namespace with /var/lib bound to a test directory, a tmpfs on /run
//! and an overlay on /etc, so the config's real paths (/var/lib/observer,
//! /run/observer, /etc/observer/policies) are used without touching the
//! host's.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use observer_testkit::*;
use serde_json::Value;

const FINDING_WAIT: Duration = Duration::from_secs(30);

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

/// Starts observerd with the shipped config in its own mount namespace;
/// `policies`, when given, is copied to /etc/observer/policies there.
fn start_shipped(policies: Option<&Path>) -> Daemon {
    let shipped = std::fs::read_to_string(repo("observer.toml")).unwrap();
    let stage = match policies {
        Some(p) => format!("cp -r {} /etc/observer/policies && ", p.display()),
        None => String::new(),
    };
    // /etc becomes an overlay whose writes land in the namespace's /run
    // tmpfs: /etc/observer is replaced there (whatever the host has) and
    // the host's /etc is never written.
    // /var/lib is the test's directory, so the store the config names,
    // /var/lib/observer/observer.db, is read from outside (SQLite resolves
    // /proc/PID/root links to the host's paths, so that way is closed).
    let state = tempfile::tempdir().unwrap();
    let var_lib = state.path().join("var-lib");
    std::fs::create_dir(&var_lib).unwrap();
    let script = format!(
        "mount -t tmpfs tmpfs /run && mkdir /run/etc-upper /run/etc-work && \
         mount -t overlay overlay -o lowerdir=/etc,upperdir=/run/etc-upper,workdir=/run/etc-work /etc && \
         rm -rf /etc/observer && mkdir -p /etc/observer && \
         mount --bind {} /var/lib && {stage}exec \"$@\"",
        var_lib.display()
    );
    Daemon::start_with(
        StateDir::Owned(state),
        &shipped,
        &[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
            "sh",
        ],
        &[],
    )
}

/// The store the shipped config names (/var/lib/observer/observer.db in
/// the daemon's namespace).
fn store_of(d: &Daemon) -> PathBuf {
    d.dir.path().join("var-lib/observer/observer.db")
}

fn wait_finding(db: &Path, rule: &str, pid: u32) -> StoredReceipt {
    let start = Instant::now();
    loop {
        let found = db.exists().then(|| {
            stored_receipts_of(db, "shadow_ai.finding")
                .into_iter()
                .find(|r| {
                    let c = r.context.as_ref().unwrap();
                    c["rule_id"] == rule && c["process"]["pid"] == pid
                })
        });
        if let Some(Some(r)) = found {
            return r;
        }
        assert!(
            start.elapsed() < FINDING_WAIT,
            "no {rule} finding for pid {pid}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn policy_context(db: &Path) -> Value {
    stored_receipts_of(db, "observer.policy")
        .first()
        .and_then(|r| r.context.clone())
        .expect("an observer.policy receipt")
}

/// The unregistered curl to api.openai.com (real dnsmasq and TLS server in
/// a network namespace) is a finding, and the policy receipt says which
/// set was in force.
fn curl_to_openai_is_found(subnet: &str, policies: Option<&Path>) -> (Value, Value) {
    let ns = netns::Netns::new(subnet);
    let tls_dir = tempfile::tempdir().unwrap();
    netns::make_certs(tls_dir.path(), &format!("{subnet}.2"));
    let _dns = netns::start_dnsmasq(&ns, tls_dir.path(), subnet);
    let _tls = netns::start_tls_server(&ns, tls_dir.path());
    let d = start_shipped(policies);
    let db = store_of(&d);
    let curl = netns::run_curl(
        &ns,
        tls_dir.path(),
        "curl",
        &[],
        "https://api.openai.com/v1/models",
    );
    let f = wait_finding(&db, "ai-api-egress-unregistered", curl);
    let finding = f.context.unwrap();
    let policy = policy_context(&db);
    let stderr = d.stderr_text();
    d.stop();
    assert!(
        stderr.contains("receipts.deployer_id not set: issuer ids use urn:uuid:"),
        "{stderr}"
    );
    (finding, policy)
}

#[test]
fn shipped_config_without_installed_policies_uses_the_built_in_set() {
    let (finding, policy) = curl_to_openai_is_found("10.231.77", None);
    assert_eq!(finding["matched"]["provider"], "openai");
    assert_eq!(finding["matched"]["destination"], "api.openai.com");
    assert_eq!(policy["policy"]["policy_source"], "built-in");
    assert_eq!(policy["policy"]["policies_dir"], Value::Null);
    // The built-in set is the repository's: same digest as the directory.
    let dir = observer_daemon::policy::Policy::load(&repo("policies"), &[]).unwrap();
    assert_eq!(policy["policy_digest"], dir.digest);
}

#[test]
fn shipped_config_with_installed_policies_uses_the_directory() {
    let (finding, policy) = curl_to_openai_is_found("10.232.77", Some(&repo("policies")));
    assert_eq!(finding["matched"]["provider"], "openai");
    assert_eq!(policy["policy"]["policy_source"], "directory");
    assert_eq!(policy["policy"]["policies_dir"], "/etc/observer/policies");
}

/// The old example deployer id is not used silently: the log at start,
/// `observerctl status` (JSON and table) and the receipts' issuer ids; and
/// TLS plaintext capture is on without being named.
#[test]
fn the_placeholder_deployer_id_is_warned_about_everywhere() {
    let d = Daemon::start(
        "[files]\nprefixes = []\nsuffixes = []\n[receipts]\nstore = \"@DIR@/observer.db\"\n\
         master_seed = \"@DIR@/master.seed\"\ndeployer_id = \"did:web:example.invalid\"\n",
    );
    assert!(
        d.stderr_text()
            .contains("receipts.deployer_id is the placeholder did:web:example.invalid"),
        "{}",
        d.stderr_text()
    );
    let status = |args: &[&str]| {
        let out = std::process::Command::new(observerctl())
            .arg("--socket")
            .arg(d.socket())
            .arg("status")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let v: Value = serde_json::from_str(&status(&["--json"])).unwrap();
    assert_eq!(v["identity"]["deployer_id"], "did:web:example.invalid");
    assert_eq!(v["identity"]["source"], "placeholder");
    assert!(v["identity"]["warning"]
        .as_str()
        .unwrap()
        .contains("names no real deployer"));
    // A config that does not name [plaintext] captures LLM API calls: on
    // by default.
    assert_eq!(v["plaintext"]["enabled"], true, "{v}");
    let table = status(&[]);
    assert!(table.contains("\nplaintext:   on, "), "{table}");
    assert!(
        table.contains("deployer:    did:web:example.invalid (placeholder)\nWARNING:     receipts.deployer_id is the placeholder"),
        "{table}"
    );
}
