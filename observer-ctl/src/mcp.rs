//! `observerctl mcp`: the MCP servers each agent talked to, their tools
//! and the agent's calls of them (observer_receipts::query::mcp_tools), as
//! rows and a table.
use std::io::Write;

use observer_receipts::{query::mcp_tools, store::Store};
use serde_json::Value;

use crate::{output, CtlError, Output};

/// One row per agent, server and tool, in that order.
pub fn tools(
    store: &Store,
    since_ns: Option<u64>,
    until_ns: Option<u64>,
    agent: Option<&str>,
) -> Result<Vec<Value>, CtlError> {
    output::json_rows(&mcp_tools(store, since_ns, until_ns, agent)?)
}

fn s(r: &Value, key: &str) -> String {
    output::cell(r, key, "-")
}

/// `--json`: `{"mcp": [rows]}`; the table: one line per row.
pub fn print(out: &mut impl Write, mode: Output, rows: &[Value]) -> Result<(), CtlError> {
    output::write_list(
        out,
        mode,
        "mcp",
        rows,
        &[
            ("AGENT", |r| s(r, "agent_id")),
            ("SERVER", |r| s(r, "server")),
            ("VERDICT", |r| s(r, "server_verdict")),
            ("TOOL", |r| s(r, "tool")),
            ("LISTED", |r| s(r, "listed")),
            ("CALLS", |r| s(r, "calls")),
            ("ERRORS", |r| s(r, "errors")),
            ("NO_ANSWER", |r| s(r, "no_answer")),
        ],
    )
}
