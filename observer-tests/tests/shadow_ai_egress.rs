//! AI API egress judged by registration and scope: real connections (DNS
//! and SNI), the real OpenAI SDK, and model-hub fetches by pip (excluded)
//! and by curl (a finding).
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]
mod shadow_ai_kit;

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use observer_testkit::*;
use serde_json::{json, Value};
use shadow_ai_kit::*;

/// The names of an AI API connection, as the finding and its evidence
/// carry them.
fn openai_by_dns_and_sni() -> Value {
    json!([
        {"name": "api.openai.com", "source": "dns"},
        {"name": "api.openai.com", "source": "sni"}
    ])
}

/// AI API egress in a namespace whose real dnsmasq answers
/// api.openai.com and whose real TLS server presents a test CA's
/// certificate for it: real curl, unregistered, is a finding naming
/// api.openai.com by DNS and SNI; a registered agent that declares OpenAI
/// leaves receipts and no finding; one that declares only Anthropic is out
/// of scope.
#[test]
fn ai_api_egress_is_judged_by_registration_and_scope() {
    let subnet = "10.216.77";
    let ns = netns::Netns::new(subnet);
    let tls_dir = tempfile::tempdir().unwrap();
    netns::make_certs(tls_dir.path(), &format!("{subnet}.2"));
    let _dns = netns::start_dnsmasq(&ns, tls_dir.path(), subnet);
    let _tls = netns::start_tls_server(&ns, tls_dir.path());
    let state = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let in_scope = copy_executable("/usr/bin/curl", work.path(), "openai-agent");
    let out_of_scope = copy_executable("/usr/bin/curl", work.path(), "anthropic-agent");
    install_policies(
        state.path(),
        &format!(
            "[[agent]]\nid = \"openai-agent\"\nexecutables = [{:?}]\nallowed_providers = [\"openai\"]\n\n\
             [[agent]]\nid = \"anthropic-agent\"\nexecutables = [{:?}]\nallowed_providers = [\"anthropic\"]\n",
            in_scope.display().to_string(),
            out_of_scope.display().to_string()
        ),
    );
    let d = Daemon::start_in(StateDir::Shared(state.path().to_owned()), &policy_config());
    let db = d.store();
    let digest = start_digest(&db);
    let url = "https://api.openai.com/v1/models";

    let shadow = netns::run_curl(&ns, tls_dir.path(), "curl", &[], url);
    let f = wait_finding(&db, "ai-api-egress-unregistered", shadow);
    let ev = check_finding(
        &db,
        &f,
        Expect(
            &unregistered(Path::new("/usr/bin/curl")),
            "high",
            &["AML.T0040"],
            &["LLM10"],
        ),
        &digest,
        "network.connect",
    );
    let c = p_ctx(&f);
    assert_eq!(
        c["matched"],
        json!({"indicator": "ai_api", "provider": "openai", "destination": "api.openai.com", "sources": ["dns", "sni"]})
    );
    assert_eq!(c["process"]["comm"], "curl");
    assert_eq!(p_ctx(&ev)["connect"]["remote_addr"], format!("{subnet}.1"));
    assert_eq!(p_ctx(&ev)["connect"]["remote_port"], 443);
    assert_eq!(p_ctx(&ev)["connect"]["dst_names"], openai_by_dns_and_sni());

    let allowed = netns::run_curl(
        &ns,
        tls_dir.path(),
        &in_scope.display().to_string(),
        &[],
        url,
    );
    let outside = netns::run_curl(
        &ns,
        tls_dir.path(),
        &out_of_scope.display().to_string(),
        &[],
        url,
    );
    let f = wait_finding(&db, "agent-out-of-scope-destination", outside);
    let ev = check_finding(
        &db,
        &f,
        Expect(
            "anthropic-agent",
            "high",
            &["AML.T0053"],
            &["LLM06", "LLM02"],
        ),
        &digest,
        "network.connect",
    );
    assert_eq!(p_ctx(&ev)["connect"]["dst_names"], openai_by_dns_and_sni());
    assert_eq!(
        p_ctx(&f)["matched"],
        json!({"outside_agent_scope": true, "remote_addr": format!("{subnet}.1"),
            "remote_port": 443, "dst_names": openai_by_dns_and_sni()})
    );

    d.stop();
    let connect = stored_receipts_of(&db, "network.connect")
        .into_iter()
        .find(|r| {
            p_ctx(r)["process"]["pid"] == allowed && p_ctx(r)["connect"]["remote_port"] == 443
        })
        .expect("the in-scope agent's connect is a receipt");
    assert_eq!(connect.payload["agent_id"], "openai-agent");
    assert_eq!(
        p_ctx(&connect)["connect"]["dst_names"],
        openai_by_dns_and_sni()
    );
    assert_eq!(findings_for(&db, allowed).len(), 0, "in scope: no finding");
    let report = verify_store(&db, &state.path().join("master.seed"), vec![]);
    assert!(report.ok(), "{:?}", report.first_failure());
}

/// The openai Python SDK (from PyPI, pinned) installed once into this
/// virtual environment; the venv's python is the interpreter that runs it.
const OPENAI_VENV: &str = "/var/tmp/observer-test-venv-openai-3.54.0";

/// Tests of this binary that need the SDK run in parallel: one makes the
/// venv while the others wait (on a fresh machine two used to race, one
/// removing the venv the other was installing into).
static OPENAI_VENV_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn openai_sdk_python() -> PathBuf {
    let _only_one = OPENAI_VENV_LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let python = Path::new(OPENAI_VENV).join("bin/python3");
    let ready = Command::new(&python)
        .args(["-c", "import openai"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ready {
        let host = Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .expect("python3 on PATH");
        let host = String::from_utf8(host.stdout).unwrap();
        let _ = std::fs::remove_dir_all(OPENAI_VENV);
        run_pid(Command::new(host.trim()).args(["-m", "venv", OPENAI_VENV]));
        run_pid(Command::new(Path::new(OPENAI_VENV).join("bin/pip")).args([
            "install",
            "-q",
            "--disable-pip-version-check",
            "openai==3.54.0",
        ]));
    }
    python
}

/// The real openai SDK at its default base URL (it trusts the test CA
/// through SSL_CERT_FILE, as its system trust store does): an unregistered
/// interpreter's API call is a finding naming api.openai.com by DNS and
/// SNI, with the SDK's own connection as evidence.
#[test]
fn real_openai_sdk_call_is_shadow_ai() {
    let python = openai_sdk_python();
    let subnet = "10.217.77";
    let ns = netns::Netns::new(subnet);
    let tls_dir = tempfile::tempdir().unwrap();
    netns::make_certs(tls_dir.path(), &format!("{subnet}.2"));
    let _dns = netns::start_dnsmasq(&ns, tls_dir.path(), subnet);
    let _tls = netns::start_tls_server(&ns, tls_dir.path());
    let state = tempfile::tempdir().unwrap();
    install_policies(state.path(), "");
    let d = Daemon::start_in(StateDir::Shared(state.path().to_owned()), &policy_config());
    let db = d.store();
    let digest = start_digest(&db);
    let script = tls_dir.path().join("call_openai.py");
    // The test server answers with an HTML page, not the API: the SDK
    // fails to parse it after the request, which is all this needs.
    write_file(
        &script,
        "import openai\n\
         client = openai.OpenAI(api_key='sk-test', max_retries=0)\n\
         assert str(client.base_url) == 'https://api.openai.com/v1/'\n\
         try:\n    client.models.list()\nexcept Exception as e:\n    print('answered', type(e).__name__)\n",
    );
    let child = ns
        .command(&[&python.display().to_string(), &script.display().to_string()])
        .env("SSL_CERT_FILE", tls_dir.path().join("ca.pem"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("answered"),
        "the SDK reached the test server: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let f = wait_finding(&db, "ai-api-egress-unregistered", pid);
    let exe = std::fs::canonicalize(&python).unwrap();
    let ev = check_finding(
        &db,
        &f,
        Expect(&unregistered(&exe), "medium", &["AML.T0040"], &["LLM10"]),
        &digest,
        "network.connect",
    );
    assert_eq!(
        p_ctx(&f)["matched"],
        json!({"indicator": "ai_api", "provider": "openai", "destination": "api.openai.com", "sources": ["dns", "sni"]})
    );
    assert_eq!(p_ctx(&ev)["connect"]["dst_names"], openai_by_dns_and_sni());
    d.stop();
    let report = verify_store(&db, &state.path().join("master.seed"), vec![]);
    assert!(report.ok(), "{:?}", report.first_failure());
}

/// A model hub fetch (huggingface.co, answered in the namespace by the real
/// dnsmasq and TLS server): the real pip, pointed at the hub as its index,
/// is excluded by the shipped rule (no finding, although its connection
/// carries the hub's name by DNS and SNI); the same fetch by curl is a
/// `model-hub-fetch-unregistered` finding.
#[test]
fn model_hub_fetch_by_pip_is_excluded_and_by_curl_is_a_finding() {
    let pip = Path::new(OPENAI_VENV).join("bin/pip");
    openai_sdk_python();
    let subnet = "10.218.77";
    let ns = netns::Netns::new(subnet);
    let tls_dir = tempfile::tempdir().unwrap();
    netns::make_certs(tls_dir.path(), &format!("{subnet}.2"));
    let _dns = netns::start_dnsmasq(&ns, tls_dir.path(), subnet);
    let _tls = netns::start_tls_server(&ns, tls_dir.path());
    let state = tempfile::tempdir().unwrap();
    install_policies(state.path(), "");
    let d = Daemon::start_in(StateDir::Shared(state.path().to_owned()), &policy_config());
    let db = d.store();
    let digest = start_digest(&db);

    let downloads = tempfile::tempdir().unwrap();
    let child = ns
        .command(&[
            &pip.display().to_string(),
            "download",
            "--no-deps",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "--retries",
            "0",
            "--timeout",
            "5",
            "--cert",
            "ca.pem",
            "--index-url",
            "https://huggingface.co/simple/",
            "-d",
            &downloads.path().display().to_string(),
            "observer-test-model",
        ])
        .current_dir(tls_dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pip_pid = child.id();
    let out = child.wait_with_output().unwrap();
    // The test server's page lists no distribution: pip reached it, then
    // found nothing to download.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("No matching distribution found for observer-test-model"),
        "{stderr}"
    );

    let url = "https://huggingface.co/org/model/resolve/main/model.gguf";
    let curl = netns::run_curl(&ns, tls_dir.path(), "curl", &[], url);
    let f = wait_finding(&db, "model-hub-fetch-unregistered", curl);
    let ev = check_finding(
        &db,
        &f,
        Expect(
            &unregistered(Path::new("/usr/bin/curl")),
            "medium",
            &["AML.T0002"],
            &["LLM03"],
        ),
        &digest,
        "network.connect",
    );
    let hub = json!([
        {"name": "huggingface.co", "source": "dns"},
        {"name": "huggingface.co", "source": "sni"}
    ]);
    assert_eq!(
        p_ctx(&f)["matched"],
        json!({"indicator": "model_hub", "provider": "huggingface-hub", "destination": "huggingface.co", "sources": ["dns", "sni"]})
    );
    assert_eq!(
        p_ctx(&f)["reason"],
        "a process that is not a registered agent fetched from a model hub; from a shell, curl or wget"
    );
    assert_eq!(f.payload["mitre_techniques"], json!(["T1105"]));
    assert_eq!(p_ctx(&ev)["connect"]["dst_names"], hub);

    // pip ran first, so its connection was judged before curl's.
    assert_eq!(findings_for(&db, pip_pid).len(), 0, "pip is excluded");
    let records = d.stop();
    let pip_connect = records
        .iter()
        .find(|r| {
            is_event(r, "connect")
                && r["process"]["pid"] == pip_pid
                && r["connect"]["remote_port"] == 443
        })
        .expect("pip's connection was observed");
    assert_eq!(pip_connect["process"]["comm"], "pip");
    assert_eq!(pip_connect["connect"]["dst_names"], hub);
    let report = verify_store(&db, &state.path().join("master.seed"), vec![]);
    assert!(report.ok(), "{:?}", report.first_failure());
}
