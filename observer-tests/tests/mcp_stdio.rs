//! MCP tool calls over stdio, read from the pipes between a registered
//! agent (the real `mcp` Python SDK) and the servers it launches: one
//! `mcp.tool_call` receipt per call with the server, the tool, the digest
//! of JCS(arguments) and the outcome; an `mcp.session` per initialize; an
//! `mcp.tool_definition` per tools/list, checked, with a finding when a
//! server offers dangerous definitions and when one changes mid-session;
//! an `mcp.request` per resources/read and prompts/get.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]
mod llm_kit;
mod mcp_kit;
mod tls_kit;

use observer_testkit as common;
use serde_json::{json, Value};

use mcp_kit::{call, jcs_sha256, run_client, run_client_with, scripts};

/// The key hostile_server.py puts in a tool description.
const DESCRIPTION_KEY: &str = "sk-ant-api03-Hx7Qm2Vt9Lp4Rz8Kc3Nw6Yb1Jd5Fg0SaTeUoIi7PqWs2XcBv";

fn assert_absent(run: &mcp_kit::McpRun, secret: &str) {
    llm_kit::assert_key_absent(secret, &run.state, &run.written);
}

#[test]
fn a_hostile_servers_calls_are_receipts_and_its_tool_definitions_findings() {
    let args_key = format!("sk-proj-mcpArgsKey{}abcdefghijklmnop", std::process::id());
    let server = scripts().join("hostile_server.py");
    let calls = [
        call("add", json!({"a": 2, "b": 3})),
        call(
            "bassh",
            json!({"script": format!("export OPENAI_API_KEY={args_key}")}),
        ),
        call("nope", json!({})),
    ];
    let plan = json!({
        "command": ["/usr/bin/python3", server.display().to_string()],
        "calls": calls,
        "list_tools_twice": true,
    });
    let run = run_client("mcp-hostile-agent", &plan, "builtin_policies = true");
    let outcomes: Vec<(Value, Value)> = run
        .client
        .iter()
        .filter(|e| e["event"] == "call")
        .map(|e| (e["is_error"].clone(), e["error_code"].clone()))
        .collect();
    assert_eq!(
        outcomes,
        [
            (json!(false), Value::Null),
            (json!(true), Value::Null),
            (json!(true), json!(-32602))
        ],
        "{:?}",
        run.client
    );

    let sessions = run.of("mcp_session");
    assert_eq!(sessions.len(), 1, "{sessions:#?}");
    let s = &sessions[0]["mcp_session"];
    assert_eq!(s["server"]["name"], "hostile-test-server");
    assert_eq!(s["server"]["version"], "6.6.6");
    assert_eq!(s["transport"], "stdio");
    assert_eq!(s["client_name"], "mcp");
    assert_eq!(s["server_capabilities"], json!(["tools"]));
    let command = s["server"]["command"].as_array().unwrap();
    assert_eq!(command[0], "/usr/bin/python3", "{s}");
    assert_eq!(command[1], server.display().to_string());
    let session = s["session"].as_str().unwrap();
    assert!(session.starts_with("pipe:["), "{session}");

    let got = run.of("mcp_tool_call");
    assert_eq!(got.len(), 3, "{got:#?}");
    let expected = [
        ("add", "result", json!(false), Value::Null),
        ("bassh", "tool_error", json!(true), Value::Null),
        ("nope", "error", Value::Null, json!(-32602)),
    ];
    for ((record, want), sent) in got.iter().zip(&expected).zip(&calls) {
        let c = &record["mcp_tool_call"];
        assert_eq!(record["process"]["agent"], "mcp-hostile-agent");
        assert_eq!(c["server"]["name"], "hostile-test-server");
        assert_eq!(c["tool"], want.0, "{c}");
        assert_eq!(c["outcome"], want.1, "{c}");
        assert_eq!(c["is_error"], want.2, "{c}");
        assert_eq!(c["error_code"], want.3, "{c}");
        assert_eq!(c["session"], session);
        assert_eq!(c["arguments_sha256"], jcs_sha256(&sent["arguments"]), "{c}");
        assert_eq!(c["truncated"], false);
        assert_eq!(c["request_complete"], true);
        assert!(c["latency_ms"].as_u64().is_some(), "{c}");
    }

    // The same session, calls and listings as OCSF API Activity events.
    let api = run.ocsf_api_events();
    let operations: Vec<&str> = api
        .iter()
        .map(|ev| ev["api"]["operation"].as_str().unwrap())
        .collect();
    assert_eq!(
        operations,
        [
            "initialize",
            "tools/list",
            "add",
            "bassh",
            "nope",
            "tools/list"
        ],
        "{api:#?}"
    );
    for ev in &api {
        assert_eq!(ev["api"]["service"]["name"], "hostile-test-server");
        assert_eq!(ev["api"]["service"]["version"], "6.6.6");
        assert_eq!(ev["src_endpoint"], json!({"name": "stdio", "uid": session}));
        assert_eq!(ev["actor"]["process"]["pid"], run.pid);
    }
    let call_event = |tool: &str| {
        api.iter()
            .find(|ev| ev["api"]["operation"] == tool)
            .unwrap()
    };
    assert_eq!(call_event("add")["status_id"], 1);
    assert_eq!(
        call_event("add")["api"]["response"],
        json!({"message": "result"})
    );
    assert_eq!(call_event("bassh")["status"], "Failure");
    assert_eq!(call_event("bassh")["status_detail"], "tool_error");
    assert_eq!(
        call_event("nope")["api"]["response"],
        json!({"message": "error", "code": -32602, "error": "JSON-RPC error"})
    );

    // Both listings checked; the second names the changed `add`.
    let defs = run.of("mcp_tool_definition");
    assert_eq!(defs.len(), 2, "{defs:#?}");
    let first = &defs[0]["mcp_tool_definition"];
    assert_eq!(first["verdict"], "dangerous", "{first}");
    let checks = |d: &Value| -> Vec<String> {
        let mut c: Vec<String> = d["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["check"].as_str().unwrap().to_string())
            .collect();
        c.sort();
        c.dedup();
        c
    };
    assert_eq!(
        checks(first),
        [
            "dangerous_input",
            "embedded_secret",
            "hidden_character",
            "injection_phrase",
            "typosquat"
        ],
        "{first}"
    );
    let names: Vec<&str> = first["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "ignore_notes",
            "hidden\u{200b}char",
            "run_shell",
            "bassh",
            "key_holder",
            "add"
        ]
    );
    let second = &defs[1]["mcp_tool_definition"];
    let add_digest = |d: &Value| d["tools"][5]["sha256"].as_str().unwrap().to_string();
    let (before, after) = (add_digest(first), add_digest(second));
    assert_ne!(before, after);
    let changed: Vec<&Value> = second["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == "definition_changed")
        .collect();
    assert_eq!(changed.len(), 1, "{second}");
    assert_eq!(changed[0]["tool"], "add");
    assert_eq!(changed[0]["risk"], "high");
    let reason = changed[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains(&before) && reason.contains(&after),
        "{reason}"
    );

    // Receipts on the agent's chain, each carrying its record.
    for (action, event, n) in [
        ("mcp.session", "mcp_session", 1),
        ("mcp.tool_call", "mcp_tool_call", 3),
        ("mcp.tool_definition", "mcp_tool_definition", 2),
    ] {
        let receipts: Vec<_> = common::stored_receipts_of(&run.db, action)
            .into_iter()
            .filter(|r| r.payload["agent_id"] == "mcp-hostile-agent")
            .collect();
        assert_eq!(receipts.len(), n, "{action}");
        for (r, record) in receipts.iter().zip(run.of(event)) {
            assert_eq!(r.context.as_ref().unwrap()[event], record[event]);
        }
    }
    let findings: Vec<_> = common::stored_receipts_of(&run.db, "shadow_ai.finding")
        .into_iter()
        .filter(|r| r.context.as_ref().unwrap()["rule_id"] == "mcp-tool-definition-dangerous")
        .collect();
    assert_eq!(findings.len(), 2, "one per dangerous listing");
    let matched = &findings[1].context.as_ref().unwrap()["matched"];
    assert_eq!(matched["server"], "hostile-test-server");
    assert_eq!(findings[0].payload["risk_class"], "high");
    assert!(
        findings[0].payload["mitre_atlas"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{}",
        findings[0].payload
    );
    let report = common::verify_store(&run.db, &run.seed, vec![]);
    assert!(report.ok(), "{:#?}", report.failures);

    // observerctl: each call as `server tool outcome`; per server its
    // tools, the calls and the worst verdict.
    let listed = common::ctl(
        common::CtlTarget::Db(&run.db),
        &["receipts", "--action", "mcp.tool_call"],
    );
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    for line in [
        "hostile-test-server add result",
        "hostile-test-server bassh tool_error",
        "hostile-test-server nope error -32602",
    ] {
        assert!(listed.stdout.contains(line), "{line}: {}", listed.stdout);
    }
    let mcp = common::ctl(
        common::CtlTarget::Db(&run.db),
        &["--json", "mcp", "--agent", "mcp-hostile-agent"],
    );
    assert_eq!(mcp.code, 0, "{}", mcp.stderr);
    let row = |tool: &str, listed: bool, calls: u64, errors: u64| {
        json!({"agent_id": "mcp-hostile-agent", "server": "hostile-test-server", "tool": tool,
               "listed": listed, "calls": calls, "errors": errors, "no_answer": 0,
               "server_verdict": "dangerous"})
    };
    assert_eq!(
        mcp.json(),
        json!({"mcp": [
            row("add", true, 1, 0),
            row("bassh", true, 1, 1),
            row("hidden\u{200b}char", true, 0, 0),
            row("ignore_notes", true, 0, 0),
            row("key_holder", true, 0, 0),
            row("nope", false, 1, 1),
            row("run_shell", true, 0, 0),
        ]})
    );

    // No key reached any byte the daemon wrote.
    assert_absent(&run, &args_key);
    assert_absent(&run, DESCRIPTION_KEY);
    let log = std::fs::read_to_string(&run.written[1]).unwrap();
    assert!(
        log.contains("1 MCP sessions, 3 MCP tool calls"),
        "{}",
        log.lines()
            .find(|l| l.contains("plaintext: read"))
            .unwrap_or(&log)
    );
}

/// A 1.5 MiB argument: more than a message keeps (1 MiB), and more than
/// the kernel copies of one write: still one call, flagged truncated,
/// answered, with no arguments digest.
#[test]
fn a_call_too_large_to_keep_is_still_a_flagged_receipt() {
    let server = scripts().join("hostile_server.py");
    let plan = json!({
        "command": ["/usr/bin/python3", server.display().to_string()],
        "calls": [
            call("add", json!({"a": 1, "b": 2, "pad": "x".repeat(3 << 19)})),
            call("add", json!({"a": 3, "b": 4})),
        ],
    });
    let run = run_client("mcp-big-agent", &plan, "");
    let got = run.of("mcp_tool_call");
    assert_eq!(got.len(), 2, "{got:#?}");
    let big = &got[0]["mcp_tool_call"];
    assert_eq!(big["tool"], "add");
    assert_eq!(big["truncated"], true, "{big}");
    assert_eq!(big["arguments_sha256"], Value::Null);
    assert_eq!(big["outcome"], "result", "{big}");
    assert!(big["request_bytes"].as_u64().unwrap() > 3 << 19, "{big}");
    let small = &got[1]["mcp_tool_call"];
    assert_eq!(small["truncated"], false);
    assert_eq!(
        small["arguments_sha256"],
        jcs_sha256(&json!({"a": 3, "b": 4}))
    );
    assert_eq!(small["outcome"], "result");
}

/// `capture_content = "redacted"`: the arguments and results are kept,
/// credentials and personal data replaced; the key is still nowhere.
#[test]
fn redacted_content_keeps_arguments_and_results_without_secrets() {
    let key = format!(
        "sk-proj-mcpContentKey{}abcdefghijklmnop",
        std::process::id()
    );
    let server = scripts().join("hostile_server.py");
    let calls = [
        call("add", json!({"a": 2, "b": 3})),
        call(
            "bassh",
            json!({"script": format!("curl -H 'Authorization: Bearer {key}' https://x"),
                   "api_key": key, "mail": "ops@example.org"}),
        ),
    ];
    let plan = json!({
        "command": ["/usr/bin/python3", server.display().to_string()],
        "calls": calls,
    });
    let run = run_client_with(
        "mcp-content-agent",
        &plan,
        "",
        "capture_content = \"redacted\"",
    );
    let got = run.of("mcp_tool_call");
    assert_eq!(got.len(), 2, "{got:#?}");
    let add = &got[0]["mcp_tool_call"]["content"];
    assert_eq!(
        add,
        &json!({"arguments": {"a": 2, "b": 3},
                "result": {"content": [{"type": "text", "text": "5"}], "isError": false}})
    );
    let bassh = &got[1]["mcp_tool_call"]["content"]["arguments"];
    assert_eq!(bassh["api_key"], "[REDACTED]", "{bassh}");
    assert_eq!(bassh["mail"], "[EMAIL]", "{bassh}");
    let script = bassh["script"].as_str().unwrap();
    assert!(
        script.starts_with("curl -H 'Authorization: ") && script.contains("[REDACTED]"),
        "{script}"
    );
    // The digest is still of the arguments as sent.
    assert_eq!(
        got[1]["mcp_tool_call"]["arguments_sha256"],
        jcs_sha256(&calls[1]["arguments"])
    );
    let receipts = common::stored_receipts_of(&run.db, "mcp.tool_call");
    assert_eq!(
        receipts[0].context.as_ref().unwrap()["mcp_tool_call"]["content"],
        *add
    );
    assert_absent(&run, &key);
}

/// resources/read and prompts/get of the official SDK's client against a
/// server built on the official SDK: one `mcp_request` record and
/// `mcp.request` receipt each, with the URI or the prompt's name, the
/// digest of the prompt's arguments, the outcome and a failed read's
/// JSON-RPC code; observerctl summarises them and OCSF names the resource.
#[test]
fn resource_reads_and_prompt_gets_are_receipts() {
    let server = scripts().join("resource_server.py");
    let plan = json!({
        "command": [llm_kit::sdk_python().display().to_string(), server.display().to_string()],
        "read_resources": ["notes://today", "notes://missing"],
        "get_prompts": [{"name": "review", "arguments": {"lang": "rust"}}],
        "calls": [call("add", json!({"a": 2, "b": 3}))],
    });
    let run = run_client("mcp-resource-agent", &plan, "");
    let seen: Vec<(&Value, &Value)> = run
        .client
        .iter()
        .filter(|e| e["event"] == "resource" || e["event"] == "prompt")
        .map(|e| (&e["text"], &e["error_code"]))
        .collect();
    assert_eq!(
        seen,
        [
            (&json!("buy milk"), &Value::Null),
            (&json!("Unknown resource: notes://missing"), &json!(-32602)),
            (&json!("Review this rust code."), &Value::Null),
        ],
        "{:?}",
        run.client
    );

    let got = run.of("mcp_request");
    let fields: Vec<_> = got
        .iter()
        .map(|r| {
            let d = &r["mcp_request"];
            (
                d["server"]["name"].clone(),
                d["method"].clone(),
                d["target"].clone(),
                d["outcome"].clone(),
                d["error_code"].clone(),
                d["arguments_sha256"].clone(),
            )
        })
        .collect();
    let server_name = json!("resource-test-server");
    assert_eq!(
        fields,
        [
            (
                server_name.clone(),
                json!("resources/read"),
                json!("notes://today"),
                json!("result"),
                Value::Null,
                Value::Null
            ),
            (
                server_name.clone(),
                json!("resources/read"),
                json!("notes://missing"),
                json!("error"),
                json!(-32602),
                Value::Null
            ),
            (
                server_name,
                json!("prompts/get"),
                json!("review"),
                json!("result"),
                Value::Null,
                json!(jcs_sha256(&json!({"lang": "rust"})))
            ),
        ],
        "{got:#?}"
    );
    // An answer is proven by its digest, never stored.
    let answered = &got[0]["mcp_request"];
    assert!(answered["result_sha256"]
        .as_str()
        .is_some_and(|h| h.starts_with("sha256:") && h.len() == 71));
    assert!(!answered.to_string().contains("buy milk"), "{answered}");
    assert_eq!(got[1]["mcp_request"]["result_sha256"], Value::Null);
    assert_eq!(got[0]["mcp_request"]["transport"], "stdio");

    let receipts: Vec<_> = common::stored_receipts_of(&run.db, "mcp.request")
        .into_iter()
        .filter(|r| r.payload["agent_id"] == "mcp-resource-agent")
        .collect();
    assert_eq!(receipts.len(), 3);
    for (r, record) in receipts.iter().zip(&got) {
        assert_eq!(
            r.context.as_ref().unwrap()["mcp_request"],
            record["mcp_request"]
        );
    }
    let report = common::verify_store(&run.db, &run.seed, vec![]);
    assert!(report.ok(), "{:#?}", report.failures);

    let listed = common::ctl(
        common::CtlTarget::Db(&run.db),
        &["receipts", "--action", "mcp.request"],
    );
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    for line in [
        "resource-test-server resources/read notes://today result",
        "resource-test-server resources/read notes://missing error -32602",
        "resource-test-server prompts/get review result",
    ] {
        assert!(listed.stdout.contains(line), "{line}: {}", listed.stdout);
    }
    // A failed request is status Failure; an answered one has no status.
    let ocsf: Vec<(Value, Value, Value)> = run
        .ocsf_api_events()
        .into_iter()
        .filter(|ev| ev["resources"].is_array())
        .map(|ev| {
            (
                ev["api"]["operation"].clone(),
                ev["resources"].clone(),
                ev["status"].clone(),
            )
        })
        .collect();
    assert_eq!(
        ocsf,
        [
            (
                json!("resources/read"),
                json!([{"type": "resource", "name": "notes://today"}]),
                Value::Null
            ),
            (
                json!("resources/read"),
                json!([{"type": "resource", "name": "notes://missing"}]),
                json!("Failure")
            ),
            (
                json!("prompts/get"),
                json!([{"type": "prompt", "name": "review"}]),
                Value::Null
            ),
        ]
    );
}
