//! What the shadow-AI tests share: the shipped policies installed for a
//! daemon, waiting for a finding or a policy event in the signed store, and
//! checking a finding against its evidence receipts.
// Each test binary of the topic compiles this module and uses part of it.
#![allow(dead_code)]

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use observer_testkit::*;
use serde_json::{json, Value};

pub const FINDING_WAIT: Duration = Duration::from_secs(30);

/// No `[files]` entries of its own: every path the rules need reaches the
/// daemon because the policy pushed it into the kernel's filters.
pub fn policy_config() -> String {
    "policies_dir = \"@DIR@/policies\"\n[files]\nprefixes = []\nsuffixes = []\n".into()
}

pub fn payload_hash(payload: &Value) -> String {
    let bytes = observer_daemon::receipt::jcs::canonicalize(payload).unwrap();
    observer_daemon::receipt::payload::sha256_hex(&bytes)
}

/// The first stored finding of `rule` for `pid`, waiting for it.
pub fn wait_finding(db: &Path, rule: &str, pid: u32) -> StoredReceipt {
    let start = Instant::now();
    loop {
        if let Some(r) = findings(db).into_iter().find(|r| {
            let c = r.context.as_ref().unwrap();
            c["rule_id"] == rule && c["process"]["pid"] == pid
        }) {
            return r;
        }
        assert!(
            start.elapsed() < FINDING_WAIT,
            "no {rule} finding for pid {pid}; findings: {:#?}",
            findings(db)
                .iter()
                .map(|r| r.context.clone())
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn findings(db: &Path) -> Vec<StoredReceipt> {
    if !db.exists() {
        return vec![];
    }
    stored_receipts_of(db, "shadow_ai.finding")
}

pub fn findings_for(db: &Path, pid: u32) -> Vec<StoredReceipt> {
    findings(db)
        .into_iter()
        .filter(|r| r.context.as_ref().unwrap()["process"]["pid"] == pid)
        .collect()
}

/// Checks the finding's payload members and that its evidence names a
/// stored receipt of `action_type` on the same chain; returns that receipt.
/// What a finding must say: chain, risk, ATLAS and OWASP ids.
pub struct Expect<'a>(
    pub &'a str,
    pub &'a str,
    pub &'a [&'a str],
    pub &'a [&'a str],
);

pub fn check_finding(
    db: &Path,
    f: &StoredReceipt,
    Expect(agent_id, risk, atlas, owasp): Expect,
    digest: &str,
    evidence_action: &str,
) -> StoredReceipt {
    let p = &f.payload;
    assert_eq!(p["type"], "protectmcp:observation");
    assert_eq!(p["action_type"], "shadow_ai.finding");
    assert_eq!(p["agent_id"], agent_id);
    assert_eq!(p["risk_class"], risk);
    assert_eq!(p["mitre_atlas"], json!(atlas));
    assert_eq!(p["owasp_llm_top10"], json!(owasp));
    assert_eq!(p["framework_mappings_self_declared"], true);
    assert_eq!(p["detection_rules_digest"], digest);
    let c = f.context.as_ref().unwrap();
    assert_eq!(c["risk_class"], risk);
    assert_eq!(c["policy_digest"], digest);
    assert_eq!(c["registered"], !agent_id.starts_with("unregistered:"));
    let ev = &c["evidence"].as_array().unwrap()[0];
    assert_eq!(c["evidence"].as_array().unwrap().len(), 1);
    let stored = stored_receipts(db)
        .into_iter()
        .find(|r| r.leaf == ev["leaf_index"].as_u64().unwrap())
        .expect("evidence receipt stored");
    assert_eq!(ev["action_type"], evidence_action);
    assert_eq!(stored.payload["action_type"], evidence_action);
    assert_eq!(ev["agent_id"], agent_id);
    assert_eq!(stored.payload["agent_id"], agent_id);
    assert_eq!(ev["issuer_id"], stored.chain);
    assert_eq!(f.chain, stored.chain, "finding and evidence share a chain");
    assert_eq!(ev["seq"], stored.seq);
    assert_eq!(ev["payload_hash"], payload_hash(&stored.payload));
    assert!(f.seq > stored.seq, "the finding follows its evidence");
    assert_eq!(p["executable_hash"], stored.payload["executable_hash"]);
    stored
}

pub fn unregistered(exe: &Path) -> String {
    let h = sha256_file(exe);
    format!("unregistered:{}", &h["sha256:".len().."sha256:".len() + 16])
}

pub fn start_digest(db: &Path) -> String {
    let start = Instant::now();
    loop {
        if let Some(r) = stored_receipts_of(db, "observer.policy").first() {
            return r.context.as_ref().unwrap()["policy_digest"]
                .as_str()
                .unwrap()
                .to_string();
        }
        assert!(start.elapsed() < FINDING_WAIT, "no observer.policy receipt");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A copy of python named `ollama` listening on `addr`:11434.
pub fn fake_ollama(dir: &Path, addr: &str) -> ChildGuard {
    let exe = dir.join("ollama");
    if !exe.exists() {
        copy_executable("/usr/bin/python3.11", dir, "ollama");
    }
    let mut child = Command::new(&exe)
        .args([
            "-c",
            "import socket,sys,time\n\
             s=socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)\n\
             s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
             s.bind((sys.argv[1],11434)); s.listen()\n\
             print('listening',flush=True); time.sleep(60)",
            addr,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start ollama");
    let mut line = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "listening");
    ChildGuard(child)
}

/// Runs `cmd` to success (stdout discarded); returns its pid.
pub fn run_pid(cmd: &mut Command) -> u32 {
    let child = cmd.stdout(Stdio::null()).spawn().expect("spawn");
    let pid = child.id();
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{cmd:?}: {}", out.status);
    pid
}

pub fn p_ctx(r: &StoredReceipt) -> &Value {
    r.context.as_ref().unwrap()
}

pub fn wait_policy_event(db: &Path, event: &str, after: usize) -> Value {
    let start = Instant::now();
    loop {
        let all = stored_receipts_of(db, "observer.policy");
        if let Some(r) = all
            .iter()
            .skip(after)
            .find(|r| r.context.as_ref().unwrap()["event"] == event)
        {
            return r.context.clone().unwrap();
        }
        assert!(
            start.elapsed() < FINDING_WAIT,
            "no {event} observer.policy receipt"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
