//! Shadow-AI detection end to end: the real daemon with the shipped
//! policies, real processes on the real kernel, and the findings and their
//! evidence read back from the signed store.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use observer_testkit::*;
use serde_json::{json, Value};

const FINDING_WAIT: Duration = Duration::from_secs(30);

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

/// Copies the shipped policies to `dir/policies`, appending `agents` to
/// agents.toml.
fn install_policies(dir: &Path, agents: &str) -> PathBuf {
    let out = dir.join("policies");
    std::fs::create_dir_all(out.join("indicators")).unwrap();
    for entry in std::fs::read_dir(shipped().join("indicators")).unwrap() {
        let e = entry.unwrap();
        std::fs::copy(e.path(), out.join("indicators").join(e.file_name())).unwrap();
    }
    std::fs::copy(shipped().join("rules.toml"), out.join("rules.toml")).unwrap();
    let text = std::fs::read_to_string(shipped().join("agents.toml")).unwrap();
    std::fs::write(out.join("agents.toml"), format!("{text}\n{agents}")).unwrap();
    out
}

/// No `[files]` entries of its own: every path the rules need reaches the
/// daemon because the policy pushed it into the kernel's filters.
fn policy_config() -> String {
    "policies_dir = \"@DIR@/policies\"\n[files]\nprefixes = []\nsuffixes = []\n".into()
}

fn payload_hash(payload: &Value) -> String {
    let bytes = observer_daemon::receipt::jcs::canonicalize(payload).unwrap();
    observer_daemon::receipt::payload::sha256_hex(&bytes)
}

/// The first stored finding of `rule` for `pid`, waiting for it.
fn wait_finding(db: &Path, rule: &str, pid: u32) -> StoredReceipt {
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

fn findings(db: &Path) -> Vec<StoredReceipt> {
    if !db.exists() {
        return vec![];
    }
    stored_receipts_of(db, "shadow_ai.finding")
}

fn findings_for(db: &Path, pid: u32) -> Vec<StoredReceipt> {
    findings(db)
        .into_iter()
        .filter(|r| r.context.as_ref().unwrap()["process"]["pid"] == pid)
        .collect()
}

/// Checks the finding's payload members and that its evidence names a
/// stored receipt of `action_type` on the same chain; returns that receipt.
/// What a finding must say: chain, risk, ATLAS and OWASP ids.
struct Expect<'a>(&'a str, &'a str, &'a [&'a str], &'a [&'a str]);

fn check_finding(
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

fn unregistered(exe: &Path) -> String {
    let h = sha256_file(exe);
    format!("unregistered:{}", &h["sha256:".len().."sha256:".len() + 16])
}

fn start_digest(db: &Path) -> String {
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
fn fake_ollama(dir: &Path, addr: &str) -> ChildGuard {
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

fn run(cmd: &mut Command) -> u32 {
    let child = cmd.stdout(Stdio::null()).spawn().expect("spawn");
    let pid = child.id();
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{cmd:?}: {}", out.status);
    pid
}

#[test]
fn findings_rest_on_evidence_receipts() {
    let state = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let agentcat = copy_executable("/usr/bin/cat", work.path(), "agentcat");
    let script = work.path().join("agent.py");
    write_file(
        &script,
        "import subprocess,sys\np=subprocess.Popen(['/usr/bin/cat',sys.argv[1]],stdout=subprocess.DEVNULL)\nprint(p.pid,flush=True)\np.wait()\n",
    );
    install_policies(
        state.path(),
        &format!(
            "[[agent]]\nid = \"test-agent\"\nexecutables = [{:?}]\n\n\
             [[agent]]\nid = \"py-agent\"\ninterpreters = [\"python3*\"]\nscripts = [{:?}]\n",
            agentcat.display().to_string(),
            script.display().to_string()
        ),
    );
    let d = Daemon::start_in(StateDir::Shared(state.path().to_owned()), &policy_config());
    let db = d.store();
    let digest = start_digest(&db);
    assert!(digest.starts_with("sha256:"));

    // Negatives first: a random .bin and a non-AI listener.
    let bin = work.path().join("weights.bin");
    write_file(&bin, "not a model");
    let neg_open = run(Command::new("/usr/bin/cat").arg(&bin));
    let neg_listen = {
        let mut g = ChildGuard(
            Command::new("/usr/bin/python3.11")
                .args(["-c", "import socket,time; s=socket.socket(); s.bind(('0.0.0.0',0)); s.listen(); print('x',flush=True); time.sleep(30)"])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let mut line = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(g.0.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "x");
        g.0.id()
    };

    // A local inference server on loopback, then on every address.
    let lo = fake_ollama(work.path(), "127.0.0.1");
    let ollama_exe = work.path().join("ollama");
    let shadow_ollama = unregistered(&ollama_exe);
    let f = wait_finding(&db, "local-inference-listening", lo.0.id());
    let ev = check_finding(
        &db,
        &f,
        Expect(&shadow_ollama, "medium", &["AML.T0044"], &["LLM10"]),
        &digest,
        "network.listen",
    );
    let c = f.context.as_ref().unwrap();
    assert_eq!(
        c["matched"],
        json!({"indicator": "local_inference", "server": "ollama", "default_port": true})
    );
    assert_eq!(c["process"]["comm"], "ollama");
    assert_eq!(c["process"]["exe"], ollama_exe.display().to_string());
    assert_eq!(c["reason"], "a local inference server is listening");
    assert_eq!(p_ctx(&ev)["listen"]["local_addr"], "127.0.0.1");
    assert_eq!(p_ctx(&ev)["listen"]["local_port"], 11434);
    let started = wait_finding(&db, "local-inference-server-started", lo.0.id());
    check_finding(
        &db,
        &started,
        Expect(&shadow_ollama, "low", &["AML.T0044"], &["LLM03"]),
        &digest,
        "process.exec",
    );
    drop(lo);
    let any = fake_ollama(work.path(), "0.0.0.0");
    let f = wait_finding(&db, "local-inference-listening", any.0.id());
    let ev = check_finding(
        &db,
        &f,
        Expect(&shadow_ollama, "high", &["AML.T0044"], &["LLM10"]),
        &digest,
        "network.listen",
    );
    assert_eq!(
        f.context.as_ref().unwrap()["reason"],
        "a local inference server is listening; on a non-loopback address (reachable from the network, usually without authentication)"
    );
    assert_eq!(p_ctx(&ev)["listen"]["local_addr"], "0.0.0.0");
    drop(any);

    // Model weights opened by an unregistered process.
    let gguf = work.path().join("tiny.gguf");
    write_file(&gguf, "GGUF");
    let cat_pid = run(Command::new("/usr/bin/cat").arg(&gguf));
    let f = wait_finding(&db, "model-weights-unregistered", cat_pid);
    let shadow_cat = unregistered(Path::new("/usr/bin/cat"));
    let ev = check_finding(
        &db,
        &f,
        Expect(&shadow_cat, "medium", &["AML.T0044"], &["LLM03"]),
        &digest,
        "file.open",
    );
    assert_eq!(p_ctx(&ev)["file_open"]["path"], gguf.display().to_string());
    assert_eq!(
        f.context.as_ref().unwrap()["matched"],
        json!({"indicator": "model_file", "path": gguf.display().to_string()})
    );

    // An agent CLI in autonomous mode, outside the registry.
    let claude = work.path().join("claude");
    // It stays alive a moment so its executable (the shell) is hashed
    // from /proc, as for any agent that runs longer than an instant.
    write_executable(&claude, "#!/bin/sh\nsleep 1\n");
    let claude_pid = run(Command::new(&claude).arg("--dangerously-skip-permissions"));
    let shadow_sh = unregistered(&std::fs::canonicalize("/bin/sh").unwrap());
    let f = wait_finding(&db, "agent-cli-unregistered", claude_pid);
    check_finding(
        &db,
        &f,
        Expect(&shadow_sh, "medium", &["AML.T0047"], &["LLM06"]),
        &digest,
        "process.exec",
    );
    let f = wait_finding(&db, "agent-autonomous-mode", claude_pid);
    check_finding(
        &db,
        &f,
        Expect(&shadow_sh, "high", &["AML.T0053"], &["LLM06"]),
        &digest,
        "process.exec",
    );
    assert_eq!(
        f.context.as_ref().unwrap()["matched"],
        json!({"indicator": "autonomous_mode", "cli": "claude-code", "flag": "--dangerously-skip-permissions"})
    );

    // An AI credential file read by cat under a temporary HOME.
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join(".claude")).unwrap();
    let cred = home.path().join(".claude/.credentials.json");
    write_file(&cred, "{}");
    let cred_pid = run(Command::new("/bin/sh")
        .args([
            "-c",
            "exec /usr/bin/cat \"$HOME/.claude/.credentials.json\"",
        ])
        .env("HOME", home.path()));
    let f = wait_finding(&db, "ai-credential-read-by-non-owner", cred_pid);
    let ev = check_finding(
        &db,
        &f,
        Expect(&shadow_cat, "high", &["AML.T0055"], &["LLM02"]),
        &digest,
        "file.open",
    );
    assert_eq!(p_ctx(&ev)["file_open"]["path"], cred.display().to_string());
    assert_eq!(
        f.context.as_ref().unwrap()["matched"],
        json!({"indicator": "ai_credential", "credential": "claude-code", "path": cred.display().to_string(), "owner": false})
    );

    // A registered agent reading an SSH key: on the agent's own chain.
    std::fs::create_dir(home.path().join(".ssh")).unwrap();
    let key = home.path().join(".ssh/id_ed25519");
    write_file(&key, "secret");
    let agent_pid = run(Command::new(&agentcat).arg(&key));
    let f = wait_finding(&db, "agent-reads-other-secrets", agent_pid);
    let ev = check_finding(
        &db,
        &f,
        Expect("test-agent", "high", &["AML.T0055"], &["LLM06", "LLM02"]),
        &digest,
        "file.open",
    );
    assert_eq!(p_ctx(&ev)["process"]["agent"], "test-agent");
    assert_eq!(
        f.payload["mitre_techniques"],
        json!(["T1552.001", "T1552.004"])
    );

    // A python agent matched by interpreter and script: its child inherits
    // the identity, and its read lands on the agent's chain.
    let out = Command::new("/usr/bin/python3.11")
        .arg(&script)
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success());
    let child: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let f = wait_finding(&db, "agent-reads-other-secrets", child);
    let ev = check_finding(
        &db,
        &f,
        Expect("py-agent", "high", &["AML.T0055"], &["LLM06", "LLM02"]),
        &digest,
        "file.open",
    );
    assert_eq!(p_ctx(&ev)["process"]["agent"], "py-agent");
    assert_eq!(p_ctx(&ev)["process"]["comm"], "cat");
    assert_eq!(p_ctx(&ev)["parents"][0]["comm"], "python3.11");

    // The negatives were seen before everything above, and found nothing.
    assert_eq!(findings_for(&db, neg_open).len(), 0);
    assert_eq!(findings_for(&db, neg_listen).len(), 0);
    let records = d.stop();
    assert!(records
        .iter()
        .any(|r| is_event(r, "listen") && r["process"]["pid"] == neg_listen));
    let report = verify_store(&db, &state.path().join("master.seed"), vec![]);
    assert!(report.ok(), "{:?}", report.first_failure());
}

fn p_ctx(r: &StoredReceipt) -> &Value {
    r.context.as_ref().unwrap()
}

/// The npm cache the real MCP server is installed into once (idempotent:
/// npx reuses it on later runs).
const NPM_CACHE: &str = "/var/tmp/observer-test-npm";

fn npx(dir: &Path) -> Command {
    let mut c = Command::new("/usr/bin/npx");
    c.args(["-y", "@modelcontextprotocol/server-filesystem"])
        .arg(dir)
        .env("npm_config_cache", NPM_CACHE)
        .env("npm_config_update_notifier", "false");
    c
}

#[test]
fn real_mcp_server_launched_by_npx() {
    let work = tempfile::tempdir().unwrap();
    // Install (or reuse) the package before observing. The first run
    // downloads it from the npm registry.
    let log = work.path().join("npx.log");
    let mut install = ChildGuard(
        npx(work.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("npx"),
    );
    let start = Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("Secure MCP Filesystem Server running on stdio")
    {
        assert!(
            install.0.try_wait().unwrap().is_none(),
            "npx -y @modelcontextprotocol/server-filesystem exited: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "npx install timed out"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(install);

    let state = tempfile::tempdir().unwrap();
    install_policies(state.path(), "");
    let d = Daemon::start_in(StateDir::Shared(state.path().to_owned()), &policy_config());
    let db = d.store();
    let digest = start_digest(&db);
    let server = ChildGuard(
        npx(work.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("npx"),
    );
    // npx execs `node /usr/bin/npx -y @modelcontextprotocol/server-filesystem DIR`.
    let start = Instant::now();
    let f = loop {
        let hit = findings(&db).into_iter().find(|r| {
            let c = r.context.as_ref().unwrap();
            c["rule_id"] == "mcp-server-launched"
                && c["process"]["pid"] == server.0.id()
                && c["process"]["argv"].as_array().is_some_and(|a| {
                    a.iter()
                        .any(|x| x == "@modelcontextprotocol/server-filesystem")
                })
        });
        if let Some(f) = hit {
            break f;
        }
        assert!(
            start.elapsed() < FINDING_WAIT,
            "no MCP finding: {:#?}",
            findings(&db)
                .iter()
                .map(|r| r.context.clone())
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // The npx exec (its shebang runs env, which execs node): the
    // executable hashed is whichever the process ran when enriched.
    let hash = f.context.as_ref().unwrap()["process"]["exe_sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let node = sha256_file(&std::fs::canonicalize("/usr/bin/node").unwrap());
    let env = sha256_file(Path::new("/usr/bin/env"));
    assert!(hash == node || hash == env, "{hash}");
    let chain = format!("unregistered:{}", &hash[7..23]);
    let ev = check_finding(
        &db,
        &f,
        Expect(&chain, "medium", &["AML.T0053"], &["LLM06", "LLM03"]),
        &digest,
        "process.exec",
    );
    let c = f.context.as_ref().unwrap();
    assert_eq!(
        c["matched"],
        json!({"indicator": "mcp_server", "launcher": "npm-modelcontextprotocol"})
    );
    assert_eq!(
        c["reason"],
        "an MCP server was launched; by a process that is not a registered agent"
    );
    let argv: Vec<&str> = p_ctx(&ev)["exec"]["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let dir = work.path().display().to_string();
    assert!(
        argv.ends_with(&[
            "-y",
            "@modelcontextprotocol/server-filesystem",
            dir.as_str()
        ]),
        "{argv:?}"
    );
    drop(server);
    d.stop();
    let report = verify_store(&db, &state.path().join("master.seed"), vec![]);
    assert!(report.ok(), "{:?}", report.first_failure());
}

fn wait_policy_event(db: &Path, event: &str, after: usize) -> Value {
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

#[test]
fn broken_policy_is_refused_and_the_old_one_keeps_working() {
    let state = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let dir = install_policies(state.path(), "");
    let d = Daemon::start_in(StateDir::Shared(state.path().to_owned()), &policy_config());
    let db = d.store();
    let digest = start_digest(&db);
    let rules = dir.join("rules.toml");
    let good = std::fs::read_to_string(&rules).unwrap();
    let anchor =
        "when = { event = [\"file_open\"], registered = false, indicator = \"model_file\" }";
    assert!(good.contains(anchor));
    let broken = good.replace(anchor, &anchor.replace("registered", "registerd"));
    std::fs::write(&rules, &broken).unwrap();
    let line = broken
        .lines()
        .position(|l| l.contains("registerd"))
        .unwrap()
        + 1;
    let col = broken
        .lines()
        .nth(line - 1)
        .unwrap()
        .find("registerd")
        .unwrap()
        + 1;
    let refused = wait_policy_event(&db, "policy_refused", 0);
    assert_eq!(refused["trigger"], "file_change");
    assert_eq!(
        refused["policy_digest"], digest,
        "the old set stays in force"
    );
    assert_eq!(
        refused["error"],
        format!(
            "{}:{line}:{col}: unknown field `registerd`, expected one of `event`, `registered`, `indicator`, `process_names`, `not_process_names`, `exe_paths`, `argv`, `ancestor_names`, `paths`, `ports`, `loopback`, `uids`, `credential_owner`, `outside_agent_scope`; did you mean `registered`?",
            rules.display()
        )
    );
    // The old rules still find.
    let gguf = work.path().join("m.gguf");
    write_file(&gguf, "GGUF");
    let pid = run(Command::new("/usr/bin/cat").arg(&gguf));
    let f = wait_finding(&db, "model-weights-unregistered", pid);
    assert_eq!(f.payload["detection_rules_digest"], digest);
    assert_eq!(f.payload["risk_class"], "medium");

    // A path the kernel does not report yet: dropped in the kernel.
    let probe = work.path().join("weights.obstest");
    write_file(&probe, "x");
    let before = run(Command::new("/usr/bin/cat").arg(&probe));

    // A valid edit (a new model-file suffix, a stricter risk), applied on
    // SIGHUP or by the file poll, whichever is first. The indicator file is
    // written while rules.toml is still broken, so no half-edited set loads.
    let models = dir.join("indicators/model_files.toml");
    let text = std::fs::read_to_string(&models).unwrap();
    let with_probe = text.replacen(
        "suffixes = [\".gguf\",",
        "suffixes = [\".obstest\", \".gguf\",",
        1,
    );
    assert_ne!(with_probe, text);
    std::fs::write(&models, with_probe).unwrap();
    let stricter = good.replacen(
        "risk = \"medium\"\nreason = \"model weights were opened",
        "risk = \"high\"\nreason = \"model weights were opened",
        1,
    );
    assert_ne!(stricter, good);
    std::fs::write(&rules, &stricter).unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    let reloaded = wait_policy_event(&db, "policy_reloaded", 0);
    assert_eq!(reloaded["previous_digest"], digest);
    let new_digest = reloaded["policy_digest"].as_str().unwrap().to_string();
    assert_ne!(new_digest, digest);
    // The new suffix was pushed into the kernel's filters.
    let after = run(Command::new("/usr/bin/cat").arg(&probe));
    let f = wait_finding(&db, "model-weights-unregistered", after);
    assert_eq!(f.payload["detection_rules_digest"], new_digest);
    assert_eq!(
        f.context.as_ref().unwrap()["matched"],
        json!({"indicator": "model_file", "path": probe.display().to_string()})
    );
    let opened = |pid: u32| {
        d.records()
            .iter()
            .any(|r| is_event(r, "file_open") && r["process"]["pid"] == pid)
    };
    assert!(opened(after));
    assert!(
        !opened(before),
        "before the reload the kernel dropped the open"
    );
    let gguf2 = work.path().join("m2.gguf");
    write_file(&gguf2, "GGUF");
    let pid = run(Command::new("/usr/bin/cat").arg(&gguf2));
    let f = wait_finding(&db, "model-weights-unregistered", pid);
    assert_eq!(f.payload["detection_rules_digest"], new_digest);
    assert_eq!(f.payload["risk_class"], "high");
    d.stop();
    let report = verify_store(&db, &state.path().join("master.seed"), vec![]);
    assert!(report.ok(), "{:?}", report.first_failure());
}

#[test]
fn check_policies_validates_without_running() {
    let out = Command::new(observerd())
        .arg("--check-policies")
        .arg(shipped())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("policies ok: sha256:") && stdout.contains("15 rules"),
        "{stdout}"
    );

    let state = tempfile::tempdir().unwrap();
    let dir = install_policies(
        state.path(),
        "[[agent]]\nid = \"x\"\nexecutable = [\"/usr/bin/x\"]\n",
    );
    let out = Command::new(observerd())
        .arg("--check-policies")
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = std::fs::read_to_string(dir.join("agents.toml")).unwrap();
    let line = text
        .lines()
        .position(|l| l.starts_with("executable ="))
        .unwrap()
        + 1;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(&format!(
            "{}:{line}:1: unknown field `executable`",
            dir.join("agents.toml").display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.trim_end().ends_with("did you mean `executables`?"),
        "{stderr}"
    );
}

#[test]
fn sighup_without_a_policy_directory_does_not_stop_the_daemon() {
    let d = Daemon::start("[files]\nprefixes = []\nsuffixes = []\n");
    d.signal(nix::sys::signal::Signal::SIGHUP);
    let start = Instant::now();
    while !d
        .stderr_text()
        .contains("SIGHUP: no policies_dir configured, nothing to reload")
    {
        assert!(start.elapsed() < WAIT, "{}", d.stderr_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    // Still running, and stops cleanly.
    let records = d.stop();
    assert!(records.iter().any(|r| r["kind"] == "observer_stop"));
}

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
        run(Command::new(host.trim()).args(["-m", "venv", OPENAI_VENV]));
        run(Command::new(Path::new(OPENAI_VENV).join("bin/pip")).args([
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

/// An agent registered while its process runs: after the reload, the
/// running process (found by its executable) and the child it starts are
/// the agent's; the `policy_reloaded` receipt lists the process, and the
/// child's read of an SSH key is a finding on the agent's chain.
#[test]
fn reload_attributes_a_running_process_to_a_new_agent() {
    use std::io::{BufRead, Write};
    let state = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let dir = install_policies(state.path(), "");
    let mut d = Daemon::start_in(StateDir::Shared(state.path().to_owned()), &policy_config());
    let db = d.store();
    let digest = start_digest(&db);
    let late = copy_executable("/usr/bin/bash", work.path(), "late-agent");
    std::fs::create_dir(work.path().join(".ssh")).unwrap();
    let key = work.path().join(".ssh/id_ed25519");
    write_file(&key, "secret");
    // Waits for a line, then runs cat on the key and prints its pid.
    let mut agent = ChildGuard(
        Command::new(&late)
            .args([
                "-c",
                "read -r _; /usr/bin/cat \"$0\" >/dev/null & echo $!; wait",
            ])
            .arg(&key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let pid = agent.0.id();
    // The daemon knows the process (its exec record) before the reload.
    let exec = d.wait_for(|r| is_event(r, "exec") && r["process"]["pid"] == pid);
    assert_eq!(exec["process"]["agent"], Value::Null);

    let agents = dir.join("agents.toml");
    let mut text = std::fs::read_to_string(&agents).unwrap();
    text.push_str(&format!(
        "\n[[agent]]\nid = \"late-agent\"\nexecutables = [{:?}]\n",
        late.display().to_string()
    ));
    std::fs::write(&agents, text).unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    let reloaded = wait_policy_event(&db, "policy_reloaded", 0);
    assert_eq!(reloaded["previous_digest"], digest);
    assert_eq!(reloaded["agents"], json!(["late-agent"]));
    assert_eq!(
        reloaded["attributed_running"],
        json!({"count": 1, "processes": [{"pid": pid, "agent": "late-agent"}]})
    );

    writeln!(agent.0.stdin.as_mut().unwrap(), "go").unwrap();
    let mut line = String::new();
    std::io::BufReader::new(agent.0.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let cat: u32 = line.trim().parse().unwrap();
    let f = wait_finding(&db, "agent-reads-other-secrets", cat);
    let new_digest = reloaded["policy_digest"].as_str().unwrap();
    let ev = check_finding(
        &db,
        &f,
        Expect("late-agent", "high", &["AML.T0055"], &["LLM06", "LLM02"]),
        new_digest,
        "file.open",
    );
    assert_eq!(p_ctx(&ev)["process"]["agent"], "late-agent");
    assert_eq!(p_ctx(&ev)["parents"][0]["pid"], pid);
    assert_eq!(agent.0.wait().unwrap().code(), Some(0));
    d.stop();
    let report = verify_store(&db, &state.path().join("master.seed"), vec![]);
    assert!(report.ok(), "{:?}", report.first_failure());
}

/// A cgroup v2 directory for one test, removed (with its processes gone)
/// when dropped.
struct TestCgroup(PathBuf);

impl TestCgroup {
    fn create() -> TestCgroup {
        let dir = Path::new("/sys/fs/cgroup/unified").join(unique("observer-test-cg"));
        std::fs::create_dir(&dir).unwrap();
        TestCgroup(dir)
    }

    /// The path as /proc/<pid>/cgroup and agents.toml name it.
    fn path(&self) -> String {
        format!("/{}", self.0.file_name().unwrap().to_str().unwrap())
    }

    fn adopt(&self, pid: u32) {
        std::fs::write(self.0.join("cgroup.procs"), pid.to_string()).unwrap();
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn an_agent_registered_by_cgroup_that_ran_before_the_daemon_is_attributed() {
    use std::io::{BufRead, Write};
    let state = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let cgroup = TestCgroup::create();
    let sh = copy_executable("/usr/bin/bash", work.path(), "service-agent");
    std::fs::create_dir(work.path().join(".ssh")).unwrap();
    let key = work.path().join(".ssh/id_ed25519");
    write_file(&key, "secret");
    // Started, and moved into its cgroup, before the daemon runs: only the
    // startup scan can see where it lives.
    let mut agent = ChildGuard(
        Command::new(&sh)
            .args([
                "-c",
                // The shell itself opens the key: no exec, so no kernel
                // event says which cgroup it is in.
                "read -r _; read -r _ < \"$0\"; echo done",
            ])
            .arg(&key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let pid = agent.0.id();
    cgroup.adopt(pid);
    install_policies(
        state.path(),
        &format!(
            "\n[[agent]]\nid = \"cgroup-agent\"\ncgroups = [{:?}]\n",
            cgroup.path()
        ),
    );
    let d = Daemon::start_in(StateDir::Shared(state.path().to_owned()), &policy_config());
    let db = d.store();

    writeln!(agent.0.stdin.as_mut().unwrap(), "go").unwrap();
    let mut line = String::new();
    std::io::BufReader::new(agent.0.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "done\n");
    let f = wait_finding(&db, "agent-reads-other-secrets", pid);
    let ev = check_finding(
        &db,
        &f,
        Expect("cgroup-agent", "high", &["AML.T0055"], &["LLM06", "LLM02"]),
        &start_digest(&db),
        "file.open",
    );
    assert_eq!(p_ctx(&ev)["process"]["agent"], "cgroup-agent");
    assert_eq!(p_ctx(&ev)["process"]["origin"], "proc_scan");
    assert_eq!(p_ctx(&ev)["process"]["cgroup"], cgroup.path());
    assert_eq!(agent.0.wait().unwrap().code(), Some(0));
    drop(d);
}
