//! A registered agent's LLM use through the real daemon: a request for a
//! model outside its `allowed_models` is an `llm-request-out-of-scope`
//! finding naming provider and model, one for an allowed model is not;
//! `observerctl usage` then sums the requests and tokens of the store the
//! daemon wrote, per agent, provider and model.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]
mod tls_kit;

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use observer_testkit as common;
use serde_json::json;
use tls_kit::*;

/// An answer naming `model` with these token counts.
fn answer(model: &str, input: u64, output: u64, cached: u64) -> Vec<u8> {
    let body = format!(
        "{{\"model\":\"{model}\",\"choices\":[{{\"finish_reason\":\"stop\",\"message\":{{}}}}],\"usage\":{{\"prompt_tokens\":{input},\"completion_tokens\":{output},\"prompt_tokens_details\":{{\"cached_tokens\":{cached}}}}}}}\n"
    );
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Writes a chat request for `model` where the fixture's client reads it.
fn ask(fx: &Fixture, port: u16, model: &str) {
    let body = format!(r#"{{"model":"{model}","messages":[]}}"#);
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    std::fs::write(fx.path("request"), request).unwrap();
}

/// Polls status until no process of `agent` is watched any more (the
/// previous client's exit is processed): the next one's hooks are its own.
fn wait_gone(socket: &Path, agent: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = common::ctl(common::CtlTarget::Socket(socket), &["status", "--json"]);
        if r.json()["plaintext"]["agents"][agent].is_null() {
            return;
        }
        assert!(Instant::now() < deadline, "{agent} still shown");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn out_of_scope_models_are_findings_and_usage_sums_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let agent = dir.path().join("scope-agent.py");
    common::write_executable(&agent, &py_agent());
    let policies = common::install_policies(
        dir.path(),
        &format!(
            "[[agent]]\nid = \"scope-agent\"\nexecutables = [{:?}]\nallowed_models = [\"gpt-4o*\"]\n",
            agent.display().to_string()
        ),
    );
    let config = format!(
        "policies_dir = {:?}\n[plaintext]\nenabled = true\n",
        policies.display().to_string()
    );
    let state = dir.path().join("daemon");
    std::fs::create_dir(&state).unwrap();
    let mut d = common::Daemon::start_in(common::StateDir::Shared(state), &config);
    let socket = d.socket();
    let mut pids = Vec::new();
    for (model, answered) in [
        ("gpt-4o-mini", answer("gpt-4o-mini-2024-07-18", 11, 3, 0)),
        ("o3-mini", answer("o3-mini-2025-01-31", 20, 5, 8)),
        ("gpt-4o", answer("gpt-4o-mini-2024-07-18", 100, 40, 64)),
    ] {
        let fx = Fixture::new(&answered);
        let (_server, port) = fx.server();
        ask(&fx, port, model);
        let child = client(&fx, port, &mut Command::new(&agent));
        let pid = child.id();
        wait_visible(&socket, "scope-agent");
        assert_eq!(release(child), answered);
        d.wait_for(|r| common::is_event(r, "llm_request") && r["process"]["pid"] == pid);
        wait_gone(&socket, "scope-agent");
        pids.push(pid);
    }
    let db = d.store();
    let seed = d.master_seed();
    d.stop();

    let findings: Vec<_> = common::stored_receipts_of(&db, "shadow_ai.finding")
        .into_iter()
        .filter(|f| f.context.as_ref().unwrap()["rule_id"] == "llm-request-out-of-scope")
        .collect();
    assert_eq!(
        findings.len(),
        1,
        "only the o3-mini request is out of scope"
    );
    let c = findings[0].context.as_ref().unwrap();
    assert_eq!(
        c["reason"],
        "a registered agent made an LLM API request outside its declared providers and models (openai_compatible o3-mini-2025-01-31): model o3-mini is not in allowed_models"
    );
    assert_eq!(findings[0].payload["agent_id"], "scope-agent");
    assert_eq!(c["process"]["pid"], pids[1]);
    assert_eq!(c["registered"], true);
    assert_eq!(c["matched"]["outside_agent_scope"], true);
    assert_eq!(c["matched"]["model_requested"], "o3-mini");
    assert_eq!(c["evidence"][0]["action_type"], "llm.request");
    let report = common::verify_store(&db, &seed, vec![]);
    assert!(report.ok(), "{:#?}", report.failures);

    // usage: the three requests, two models, summed from the store.
    let usage = common::ctl(
        common::CtlTarget::Db(&db),
        &["--json", "usage", "--agent", "scope-agent"],
    );
    assert_eq!(usage.code, 0, "{}", usage.stderr);
    let row = |model: &str, requests: u64, input: u64, output: u64, cached: u64| {
        json!({"agent_id": "scope-agent", "provider": "openai_compatible", "model": model,
            "requests": requests, "input_tokens": input, "output_tokens": output,
            "cached_input_tokens": cached, "requests_without_usage": 0})
    };
    assert_eq!(
        usage.json(),
        json!({"usage": [
            row("gpt-4o-mini-2024-07-18", 2, 111, 43, 64),
            row("o3-mini-2025-01-31", 1, 20, 5, 8),
        ]})
    );
    let table = common::ctl(common::CtlTarget::Db(&db), &["usage"]);
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(lines[0].starts_with("AGENT"), "{}", table.stdout);
    let cells: Vec<Vec<&str>> = lines[1..]
        .iter()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        cells,
        [
            [
                "scope-agent",
                "openai_compatible",
                "gpt-4o-mini-2024-07-18",
                "2",
                "111",
                "43",
                "64",
                "0"
            ],
            [
                "scope-agent",
                "openai_compatible",
                "o3-mini-2025-01-31",
                "1",
                "20",
                "5",
                "8",
                "0"
            ],
        ]
    );
    let none = common::ctl(
        common::CtlTarget::Db(&db),
        &["--json", "usage", "--agent", "other-*"],
    );
    assert_eq!(none.json(), json!({"usage": []}));
    let later = common::ctl(
        common::CtlTarget::Db(&db),
        &["--json", "usage", "--since", "2099-01-01"],
    );
    assert_eq!(later.json(), json!({"usage": []}));
}
