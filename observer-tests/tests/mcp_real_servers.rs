//! Real MCP servers as agents launch them, through the runners people use
//! (`uvx`, `npx`), offline from the caches `cargo xtask test` fills: the
//! time server (Python) and the filesystem server (Node). The server
//! process is a grandchild of the agent that reads and writes the pipes
//! it inherited (under other fd numbers, in worker threads); the calls
//! are still one receipt each, with their outcome.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]
mod llm_kit;
mod mcp_kit;
mod tls_kit;

use observer_testkit as common;
use serde_json::{json, Value};

use mcp_kit::{call, jcs_sha256, run_client, McpRun};

/// As xtask/src/setup.rs installs them.
const UVX: &str = "/var/cache/observer-tests/llm-sdks/bin/uvx";
const TIME_SERVER: &str = "mcp-server-time==2026.10.19";
const TIME_UV_CACHE: &str = "/var/cache/observer-tests/mcp-time/uv-cache";
const TIME_CONSTRAINTS: &str = "/var/cache/observer-tests/mcp-time/constraints.txt";
const FILESYSTEM_SERVER: &str = "@modelcontextprotocol/server-filesystem@2026.8.31";
const NPM_CACHE: &str = "/var/cache/observer-tests/npm";

/// The calls as recorded, in order: (tool, outcome, is_error).
fn outcomes(run: &McpRun) -> Vec<(String, String, Value)> {
    run.of("mcp_tool_call")
        .iter()
        .map(|r| {
            let c = &r["mcp_tool_call"];
            (
                c["tool"].as_str().unwrap().to_string(),
                c["outcome"].as_str().unwrap().to_string(),
                c["is_error"].clone(),
            )
        })
        .collect()
}

/// What every run must show: one session with `server`, one clean
/// listing, the calls' digests, the chain.
fn check_common(run: &McpRun, agent: &str, server: &str, calls: &[Value], command_has: &str) {
    let sessions = run.of("mcp_session");
    assert_eq!(sessions.len(), 1, "{sessions:#?}");
    let s = &sessions[0]["mcp_session"];
    assert_eq!(s["server"]["name"], server, "{s}");
    assert_eq!(s["transport"], "stdio");
    let command = s["server"]["command"].to_string();
    assert!(command.contains(command_has), "{s}");
    let defs = run.of("mcp_tool_definition");
    assert_eq!(defs.len(), 1);
    let d = &defs[0]["mcp_tool_definition"];
    assert_eq!(d["verdict"], "clean", "{}", d["findings"]);
    let got = run.of("mcp_tool_call");
    assert_eq!(got.len(), calls.len(), "{got:#?}");
    for (record, sent) in got.iter().zip(calls) {
        let c = &record["mcp_tool_call"];
        assert_eq!(record["process"]["agent"], agent);
        assert_eq!(c["server"]["name"], server);
        assert_eq!(c["server"]["pid"], s["server"]["pid"]);
        assert_eq!(c["arguments_sha256"], jcs_sha256(&sent["arguments"]), "{c}");
    }
    let receipts = common::stored_receipts_of(&run.db, "mcp.tool_call");
    assert_eq!(receipts.len(), calls.len());
    let report = common::verify_store(&run.db, &run.seed, vec![]);
    assert!(report.ok(), "{:#?}", report.failures);
    // As OCSF: one API Activity event per session, listing and call.
    let api = run.ocsf_api_events();
    assert_eq!(api.len(), 2 + calls.len(), "{api:#?}");
    assert!(api.iter().all(|ev| ev["api"]["service"]["name"] == server));
}

#[test]
fn the_time_server_through_uvx() {
    let calls = [
        call("get_current_time", json!({"timezone": "Europe/Paris"})),
        call(
            "convert_time",
            json!({"source_timezone": "Mars/Olympus", "time": "12:00", "target_timezone": "UTC"}),
        ),
    ];
    let plan = json!({
        "command": [UVX, "--offline", "--no-config", "--python", "/usr/bin/python3",
                    "--constraints", TIME_CONSTRAINTS, TIME_SERVER],
        "env": {"UV_CACHE_DIR": TIME_UV_CACHE, "UV_PYTHON_DOWNLOADS": "never"},
        "calls": calls,
    });
    let run = run_client("mcp-time-agent", &plan, "");
    check_common(
        &run,
        "mcp-time-agent",
        "mcp-time",
        &calls,
        "mcp-server-time",
    );
    assert_eq!(
        outcomes(&run),
        [
            ("get_current_time".into(), "result".into(), json!(false)),
            ("convert_time".into(), "tool_error".into(), json!(true)),
        ]
    );
}

#[test]
fn the_filesystem_server_through_npx() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    std::fs::write(root.join("a.txt"), "observer\n").unwrap();
    let root = root.display().to_string();
    let calls = [
        call("list_directory", json!({"path": root})),
        call("read_text_file", json!({"path": format!("{root}/a.txt")})),
        // Outside the allowed directory: refused as an isError result.
        call("read_text_file", json!({"path": "/etc/passwd"})),
    ];
    let plan = json!({
        "command": ["/usr/bin/npx", "--yes", "--offline", "--cache", NPM_CACHE,
                    FILESYSTEM_SERVER, root],
        "env": {"npm_config_update_notifier": "false"},
        "calls": calls,
    });
    let run = run_client("mcp-fs-agent", &plan, "");
    check_common(
        &run,
        "mcp-fs-agent",
        "secure-filesystem-server",
        &calls,
        "mcp-server-filesystem",
    );
    assert_eq!(
        outcomes(&run),
        [
            ("list_directory".into(), "result".into(), json!(false)),
            ("read_text_file".into(), "result".into(), json!(false)),
            ("read_text_file".into(), "tool_error".into(), json!(true)),
        ]
    );
}
