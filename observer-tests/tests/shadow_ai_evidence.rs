//! Shadow-AI findings end to end: the real daemon with the shipped policies,
//! real processes on the real kernel (a fake Ollama, a real MCP server
//! launched by npx), and every finding resting on evidence receipts read
//! back from the signed store.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]
mod shadow_ai_kit;

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use observer_testkit::*;
use serde_json::json;
use shadow_ai_kit::*;

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
    let neg_open = run_pid(Command::new("/usr/bin/cat").arg(&bin));
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
    let cat_pid = run_pid(Command::new("/usr/bin/cat").arg(&gguf));
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
    let claude_pid = run_pid(Command::new(&claude).arg("--dangerously-skip-permissions"));
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
    let cred_pid = run_pid(
        Command::new("/bin/sh")
            .args([
                "-c",
                "exec /usr/bin/cat \"$HOME/.claude/.credentials.json\"",
            ])
            .env("HOME", home.path()),
    );
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
    let agent_pid = run_pid(Command::new(&agentcat).arg(&key));
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
