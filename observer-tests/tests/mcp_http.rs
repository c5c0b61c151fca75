//! MCP over the Streamable HTTP transport on loopback: the real `mcp` SDK
//! client (a registered agent) against the SDK's own server (not watched)
//! on 127.0.0.1. The client's socket calls carry HTTP POSTs of JSON-RPC
//! and answers as event streams; each tool call is one `mcp.tool_call`
//! receipt, as over stdio, with transport `http`.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]
mod llm_kit;
mod mcp_kit;
mod tls_kit;

use std::{
    net::{TcpListener, TcpStream},
    process::Command,
    time::{Duration, Instant},
};

use observer_testkit as common;
use serde_json::{json, Value};

use mcp_kit::{call, jcs_sha256, run_client, scripts};
use tls_kit::Kill;

#[test]
fn streamable_http_tool_calls_are_receipts() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _server = Kill(
        Command::new(llm_kit::sdk_python())
            .arg(scripts().join("http_server.py"))
            .arg(port.to_string())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the MCP HTTP server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let calls = [
        call("add", json!({"a": 2, "b": 3})),
        call("fail", json!({"reason": "refused"})),
    ];
    let plan = json!({"url": format!("http://127.0.0.1:{port}/mcp"), "calls": calls});
    let run = run_client("mcp-http-agent", &plan, "");

    let sessions = run.of("mcp_session");
    assert_eq!(sessions.len(), 1, "{sessions:#?}");
    let s = &sessions[0]["mcp_session"];
    assert_eq!(s["server"]["name"], "http-test-server");
    assert_eq!(s["transport"], "http");
    assert_eq!(s["session"], format!("http://127.0.0.1:{port}/mcp"));
    assert!(
        s["server_capabilities"]
            .as_array()
            .unwrap()
            .contains(&json!("tools")),
        "{s}"
    );
    let defs = run.of("mcp_tool_definition");
    assert_eq!(defs.len(), 1);
    assert_eq!(defs[0]["mcp_tool_definition"]["verdict"], "clean");
    let got = run.of("mcp_tool_call");
    // Exchanges on several connections finish in any order.
    let mut summary: Vec<(Value, Value, Value)> = got
        .iter()
        .map(|r| {
            let c = &r["mcp_tool_call"];
            (
                c["tool"].clone(),
                c["outcome"].clone(),
                c["arguments_sha256"].clone(),
            )
        })
        .collect();
    summary.sort_by_key(|c| c.0.to_string());
    assert_eq!(
        summary,
        [
            (
                json!("add"),
                json!("result"),
                json!(jcs_sha256(&calls[0]["arguments"]))
            ),
            (
                json!("fail"),
                json!("tool_error"),
                json!(jcs_sha256(&calls[1]["arguments"]))
            ),
        ]
    );
    for r in &got {
        assert_eq!(r["process"]["agent"], "mcp-http-agent");
        assert_eq!(
            r["mcp_tool_call"]["server"]["name"], "http-test-server",
            "{r}"
        );
        assert_eq!(r["mcp_tool_call"]["request_complete"], true);
    }
    let receipts = common::stored_receipts_of(&run.db, "mcp.tool_call");
    assert_eq!(receipts.len(), 2);
    let report = common::verify_store(&run.db, &run.seed, vec![]);
    assert!(report.ok(), "{:#?}", report.failures);
}
