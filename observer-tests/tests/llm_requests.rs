//! LLM API calls through the real daemon: with `[plaintext]` on, a
//! watched process's call to a real TLS server becomes an `llm_request`
//! record and a signed `llm.request` receipt (never its content or key),
//! `observerctl status` says whose TLS is visible, and a call by a process
//! outside the registry is a shadow-AI finding naming provider and model.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]
mod tls_kit;

use std::{
    process::Command,
    time::{Duration, Instant},
};

use observer_testkit as common;
use tls_kit::*;

/// observerd with `[plaintext]` on: the registered agent's exec gets its
/// libssl hooked (status shows it visible); its request and the answer become
/// one `llm_request` record and one signed `llm.request` receipt on the
/// agent's chain, with digests of the exact bodies; the API key it sent is
/// nowhere: not in the records, not in the store.
#[test]
fn the_daemon_turns_a_registered_agents_call_into_an_llm_request_receipt() {
    let fx = Fixture::new(ANSWER);
    let (_server, port) = fx.server();
    let agent = fx.path("tls-agent.py");
    common::write_executable(&agent, &py_agent());
    let key = format!("sk-observer-test-{}", std::process::id());
    let body = br#"{"messages":[{"role":"user","content":"hi"}],"model":"gpt-4o-mini","tools":[{"type":"function","function":{"name":"get_weather"}}]}"#;
    let mut request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    std::fs::write(fx.path("request"), &request).unwrap();
    // TLS only: the byte count below is of the TLS calls (the agent's
    // pipes would add theirs; llm_local_http.rs tests those).
    let config = format!(
        "[plaintext]\nenabled = true\n[[agents]]\nid = \"tls-agent\"\nexecutables = [{:?}]\n",
        agent.display().to_string()
    );
    let state = fx.path("daemon");
    std::fs::create_dir(&state).unwrap();
    let mut d = common::Daemon::start_in(common::StateDir::Shared(state.clone()), &config);
    let child = client(&fx, port, &mut Command::new(&agent));
    let pid = child.id();
    wait_visible(&d.socket(), "tls-agent");
    assert_eq!(release(child), ANSWER);
    assert_eq!(fx.server_got(), request);
    let record = d.wait_for(|r| common::is_event(r, "llm_request") && r["process"]["pid"] == pid);
    let db = d.store();
    let seed = d.master_seed();
    let stderr_path = d.stderr.clone();
    let events_path = d.events.clone();
    d.stop();

    let call = &record["llm_request"];
    assert_eq!(record["process"]["agent"], "tls-agent");
    assert_eq!(call["provider"], "openai_compatible");
    assert_eq!(call["api"], "chat.completions");
    assert_eq!(call["host"], format!("127.0.0.1:{port}"));
    assert_eq!(
        (call["method"].as_str(), call["path"].as_str()),
        (Some("POST"), Some("/v1/chat/completions"))
    );
    assert_eq!(call["model_requested"], "gpt-4o-mini");
    assert_eq!(call["model_answered"], "observer-test-model");
    assert_eq!(call["status"], 200);
    assert_eq!(call["stream"], false);
    assert_eq!(call["tools_offered"], serde_json::json!(["get_weather"]));
    let answer_body = &ANSWER[ANSWER.len() - ANSWER_BODY..];
    assert_eq!(call["request_body"]["sha256"], sha256(body));
    assert_eq!(call["request_body"]["bytes"], body.len());
    assert_eq!(call["response_body"]["sha256"], sha256(answer_body));
    assert_eq!(call["response_body"]["complete"], true);

    assert_eq!(call["finish_reason"], "stop");
    assert_eq!(
        call["usage"],
        serde_json::json!({"input_tokens": 11, "output_tokens": 3})
    );
    let listed = common::ctl(
        common::CtlTarget::Db(&db),
        &["receipts", "--action", "llm.request"],
    );
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert!(
        listed
            .stdout
            .contains("openai_compatible observer-test-model 11/3 tokens 200 stop"),
        "{}",
        listed.stdout
    );
    let receipts = common::stored_receipts_of(&db, "llm.request");
    assert_eq!(receipts.len(), 1);
    assert_eq!(receipts[0].payload["agent_id"], "tls-agent");
    assert!(
        receipts[0].chain.ends_with("/agent/tls-agent"),
        "{}",
        receipts[0].chain
    );
    let context = receipts[0].context.as_ref().unwrap();
    assert_eq!(context["llm_request"], *call);
    let report = common::verify_store(&db, &seed, vec![]);
    assert!(report.ok(), "{:#?}", report.failures);

    for file in [&db, &events_path, &stderr_path] {
        let bytes = std::fs::read(file).unwrap();
        assert!(
            !bytes.windows(key.len()).any(|w| w == key.as_bytes()),
            "the API key is in {}",
            file.display()
        );
    }
    let log = std::fs::read_to_string(stderr_path).unwrap();
    let bytes = request.len() + ANSWER.len();
    let intake = log
        .lines()
        .find(|l| l.contains("plaintext: read "))
        .unwrap_or_else(|| panic!("no intake line: {log}"));
    assert!(
        intake.contains(&format!(" chunks of {bytes} bytes (0 cut short), local "))
            && intake.contains("; 1 HTTP requests, 1 LLM API calls"),
        "{intake}"
    );
}

/// `observerctl status` says, per agent, whose TLS traffic is read and
/// through what, and whose is not and why: a Python agent that loaded
/// libssl is visible through it; an agent whose executable maps no TLS
/// library and has no SSL symbols (here a copy of `sleep`, standing for a
/// Go or rustls binary) is listed as not visible, not left out.
#[test]
fn status_lists_visible_and_invisible_agents() {
    let dir = tempfile::tempdir().unwrap();
    let py = dir.path().join("ssl-idle.py");
    common::write_executable(
        &py,
        "#!/usr/bin/python3\nimport ssl, time\ntime.sleep(60)\n",
    );
    let sleeper = common::copy_executable("/usr/bin/sleep", dir.path(), "static-tls-agent");
    let config = format!(
        "[plaintext]\nenabled = true\n[[agents]]\nid = \"py-agent\"\nexecutables = [{:?}]\n[[agents]]\nid = \"opaque-agent\"\nexecutables = [{:?}]\n",
        py.display().to_string(),
        sleeper.display().to_string()
    );
    let d = common::Daemon::start(&config);
    let _py = Kill(Command::new(&py).spawn().unwrap());
    let _sleeper = Kill(Command::new(&sleeper).arg("60").spawn().unwrap());
    let socket = d.socket();
    let deadline = Instant::now() + Duration::from_secs(20);
    let shown = loop {
        let r = common::ctl(common::CtlTarget::Socket(&socket), &["status", "--json"]);
        let p = r.json()["plaintext"].clone();
        let ready = p["agents"]["py-agent"]["visible"]
            .as_array()
            .is_some_and(|v| !v.is_empty())
            && p["agents"]["opaque-agent"]["not_visible"]
                .as_array()
                .is_some_and(|v| !v.is_empty());
        if ready {
            break p;
        }
        assert!(Instant::now() < deadline, "status never showed both: {p}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(shown["enabled"], true);
    assert_eq!(
        shown["agents"]["py-agent"]["visible"][0]["through"],
        serde_json::json!(["/usr/lib/x86_64-linux-gnu/libssl.so.3"])
    );
    let hidden = &shown["agents"]["opaque-agent"]["not_visible"][0];
    assert_eq!(hidden["executable"], sleeper.display().to_string());
    assert!(
        hidden["reason"]
            .as_str()
            .unwrap()
            .contains("no SSL_write/SSL_read"),
        "{hidden}"
    );
    let table = common::ctl(common::CtlTarget::Socket(&socket), &["status"]);
    assert!(
        table.stdout.contains(&format!(
            "opaque-agent     {} NOT visible: no TLS library mapped",
            sleeper.display()
        )),
        "{}",
        table.stdout
    );
    assert!(
        table.stdout.contains("py-agent         /usr/bin/python3.11 visible through /usr/lib/x86_64-linux-gnu/libssl.so.3"),
        "{}",
        table.stdout
    );
}

/// Shadow AI at the request level: a process that is not a registered
/// agent (watched because its executable is listed in `[watch]`) calls an
/// LLM API; the call is a `shadow_ai.finding` naming provider and model,
/// resting on the `llm.request` receipt of the call on its
/// `unregistered:` chain.
#[test]
fn an_unregistered_llm_request_is_a_finding_naming_provider_and_model() {
    let fx = Fixture::new(ANSWER);
    let (_server, port) = fx.server();
    let script = fx.path("shadow-client.py");
    common::write_executable(&script, &py_agent());
    let body = br#"{"model":"gpt-4o-mini","messages":[]}"#;
    let mut request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    std::fs::write(fx.path("request"), &request).unwrap();
    // The shipped rules (the kit turns them off unless asked).
    let config = format!(
        "builtin_policies = true\n[plaintext]\nenabled = true\n[watch]\nexecutables = [{:?}]\n",
        script.display().to_string()
    );
    let state = fx.path("daemon");
    std::fs::create_dir(&state).unwrap();
    let mut d = common::Daemon::start_in(common::StateDir::Shared(state), &config);
    let child = client(&fx, port, &mut Command::new(&script));
    let pid = child.id();
    wait_visible(&d.socket(), "unregistered");
    assert_eq!(release(child), ANSWER);
    d.wait_for(|r| common::is_event(r, "llm_request") && r["process"]["pid"] == pid);
    let db = d.store();
    let seed = d.master_seed();
    d.stop();
    let findings = common::stored_receipts_of(&db, "shadow_ai.finding");
    let finding = findings
        .iter()
        .find(|f| f.context.as_ref().unwrap()["rule_id"] == "llm-request-unregistered")
        .unwrap_or_else(|| {
            let all: Vec<String> = common::stored_receipts(&db)
                .iter()
                .map(|r| format!("{} {}", r.payload["action_type"], r.payload["agent_id"]))
                .collect();
            panic!("no llm-request-unregistered finding among {all:?}")
        });
    let c = finding.context.as_ref().unwrap();
    assert_eq!(
        c["reason"],
        "a process that is not a registered agent made an LLM API request (openai_compatible observer-test-model)"
    );
    assert_eq!(c["process"]["pid"], pid);
    assert_eq!(c["registered"], false);
    assert_eq!(
        c["matched"],
        serde_json::json!({
            "provider": "openai_compatible",
            "api": "chat.completions",
            "host": format!("127.0.0.1:{port}"),
            "model_requested": "gpt-4o-mini",
            "model_answered": "observer-test-model",
        })
    );
    let calls = common::stored_receipts_of(&db, "llm.request");
    assert_eq!(calls.len(), 1);
    assert_eq!(c["evidence"][0]["action_type"], "llm.request");
    assert_eq!(c["evidence"][0]["leaf_index"], calls[0].leaf);
    assert!(calls[0].payload["agent_id"]
        .as_str()
        .unwrap()
        .starts_with("unregistered:"));
    let report = common::verify_store(&db, &seed, vec![]);
    assert!(report.ok(), "{:#?}", report.failures);
}
