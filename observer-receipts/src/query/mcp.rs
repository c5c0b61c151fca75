//! MCP use from the `mcp.*` receipts (`observerctl mcp`): per agent, the
//! servers it talked to, each tool they listed or it called, how often it
//! called it and how those calls ended, and the worst verdict of the
//! server's tool definitions.
use std::collections::BTreeMap;

use serde::Serialize;

use crate::store::Store;

use super::{sql_err, QueryError};

/// One tool of one server, as one agent saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct McpToolRow {
    /// The agent (MCP client).
    pub agent_id: String,
    /// The server's name; `?` when the receipt has no context to say.
    pub server: String,
    /// The tool's name; `?` when unknown.
    pub tool: String,
    /// The server listed it (a tools/list answer was seen).
    pub listed: bool,
    /// `mcp.tool_call` receipts of this tool in the window.
    pub calls: u64,
    /// Calls answered with `isError` or a JSON-RPC error.
    pub errors: u64,
    /// Calls that got no answer (outcome `no_answer`).
    pub no_answer: u64,
    /// The worst verdict of the server's listings (`clean`, `warning`,
    /// `dangerous`); None when no listing was seen.
    pub server_verdict: Option<String>,
}

/// Rows for the receipts issued in `[since_ns, until_ns]` of the agents
/// `agent` (a glob) names, by agent, server and tool.
pub fn mcp_tools(
    store: &Store,
    since_ns: Option<u64>,
    until_ns: Option<u64>,
    agent: Option<&str>,
) -> Result<Vec<McpToolRow>, QueryError> {
    rows(store.connection(), since_ns, until_ns, agent).map_err(sql_err(store))
}

fn rows(
    conn: &rusqlite::Connection,
    since_ns: Option<u64>,
    until_ns: Option<u64>,
    agent: Option<&str>,
) -> rusqlite::Result<Vec<McpToolRow>> {
    let params = rusqlite::params![
        since_ns.unwrap_or(0) as i64,
        until_ns.map_or(i64::MAX, |t| t as i64),
        agent.map(super::usage::glob_literal_brackets),
    ];
    const WINDOW: &str =
        "r.issued_ns >= ?1 AND r.issued_ns <= ?2 AND (?3 IS NULL OR r.agent_id GLOB ?3)";
    let mut out: BTreeMap<(String, String, String), McpToolRow> = BTreeMap::new();
    let mut verdicts: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut calls = conn.prepare(&format!(
        "SELECT r.agent_id,
                COALESCE(json_extract(c.context, '$.mcp_tool_call.server.name'), '?'),
                COALESCE(json_extract(c.context, '$.mcp_tool_call.tool'), '?'),
                COUNT(*),
                SUM(json_extract(c.context, '$.mcp_tool_call.outcome') IN ('tool_error', 'error')),
                SUM(json_extract(c.context, '$.mcp_tool_call.outcome') = 'no_answer')
         FROM receipts r LEFT JOIN contexts c ON c.leaf_index = r.leaf_index
         WHERE r.action_type = 'mcp.tool_call' AND {WINDOW}
         GROUP BY 1, 2, 3"
    ))?;
    let found = calls.query_map(params, |r| {
        let n = |i: usize| {
            r.get::<_, Option<i64>>(i)
                .map(|v| v.unwrap_or(0).max(0) as u64)
        };
        Ok(McpToolRow {
            agent_id: r.get(0)?,
            server: r.get(1)?,
            tool: r.get(2)?,
            calls: n(3)?,
            errors: n(4)?,
            no_answer: n(5)?,
            ..Default::default()
        })
    })?;
    for row in found {
        let row = row?;
        out.insert(
            (row.agent_id.clone(), row.server.clone(), row.tool.clone()),
            row,
        );
    }
    let mut listed = conn.prepare(&format!(
        "SELECT r.agent_id,
                COALESCE(json_extract(c.context, '$.mcp_tool_definition.server.name'), '?'),
                json_extract(c.context, '$.mcp_tool_definition.verdict'),
                t.value ->> '$.name'
         FROM receipts r JOIN contexts c ON c.leaf_index = r.leaf_index,
              json_each(c.context, '$.mcp_tool_definition.tools') t
         WHERE r.action_type = 'mcp.tool_definition' AND {WINDOW}"
    ))?;
    let found = listed.query_map(params, |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Option<String>>(2)?,
            r.get::<_, Option<String>>(3)?,
        ))
    })?;
    for row in found {
        let (agent, server, verdict, tool) = row?;
        if let Some(v) = verdict {
            let worst = verdicts.entry((agent.clone(), server.clone())).or_default();
            if rank(&v) > rank(worst) {
                *worst = v;
            }
        }
        let tool = tool.unwrap_or_else(|| "?".into());
        out.entry((agent.clone(), server.clone(), tool.clone()))
            .or_insert_with(|| McpToolRow {
                agent_id: agent,
                server,
                tool,
                ..Default::default()
            })
            .listed = true;
    }
    Ok(out
        .into_values()
        .map(|mut row| {
            row.server_verdict = verdicts
                .get(&(row.agent_id.clone(), row.server.clone()))
                .cloned();
            row
        })
        .collect())
}

fn rank(verdict: &str) -> u8 {
    match verdict {
        "dangerous" => 3,
        "warning" => 2,
        "clean" => 1,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;
    use serde_json::{json, Value};

    use super::*;

    fn db(rows: &[(i64, &str, &str, Value)]) -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE receipts (leaf_index INTEGER PRIMARY KEY, agent_id TEXT,
                                    action_type TEXT, issued_ns INTEGER);
             CREATE TABLE contexts (leaf_index INTEGER PRIMARY KEY, context TEXT NOT NULL);",
        )
        .unwrap();
        for (leaf, agent, action, context) in rows {
            conn.execute(
                "INSERT INTO receipts VALUES (?1, ?2, ?3, ?1)",
                rusqlite::params![leaf, agent, action],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO contexts VALUES (?1, ?2)",
                rusqlite::params![leaf, context.to_string()],
            )
            .unwrap();
        }
        conn
    }

    fn call(server: &str, tool: &str, outcome: &str) -> Value {
        json!({"mcp_tool_call": {"server": {"name": server}, "tool": tool, "outcome": outcome}})
    }

    #[test]
    fn tools_listed_and_called_per_agent_and_server() {
        let listing = |verdict: &str, tools: &[&str]| {
            json!({"mcp_tool_definition": {"server": {"name": "fs"}, "verdict": verdict,
                   "tools": tools.iter().map(|t| json!({"name": t, "sha256": "sha256:00"})).collect::<Vec<_>>()}})
        };
        let conn = db(&[
            (
                1,
                "a",
                "mcp.tool_definition",
                listing("clean", &["read", "write"]),
            ),
            (2, "a", "mcp.tool_call", call("fs", "read", "result")),
            (3, "a", "mcp.tool_call", call("fs", "read", "tool_error")),
            (4, "a", "mcp.tool_call", call("fs", "read", "no_answer")),
            (
                5,
                "a",
                "mcp.tool_definition",
                listing("dangerous", &["read"]),
            ),
            (6, "b", "mcp.tool_call", call("time", "now", "error")),
            (7, "a", "llm.request", json!({})),
        ]);
        let rows = rows(&conn, None, None, None).unwrap();
        let got: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    r.agent_id.as_str(),
                    r.server.as_str(),
                    r.tool.as_str(),
                    r.listed,
                    r.calls,
                    r.errors,
                    r.no_answer,
                    r.server_verdict.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("a", "fs", "read", true, 3, 1, 1, Some("dangerous")),
                ("a", "fs", "write", true, 0, 0, 0, Some("dangerous")),
                ("b", "time", "now", false, 1, 1, 0, None),
            ]
        );
        let only_b = rows_for(&conn, "b");
        assert_eq!(only_b.len(), 1);
        let window = super::rows(&conn, Some(2), Some(4), None).unwrap();
        assert_eq!(window.len(), 1);
        assert_eq!(window[0].calls, 3);
        assert!(!window[0].listed);
    }

    fn rows_for(conn: &Connection, agent: &str) -> Vec<McpToolRow> {
        super::rows(conn, None, None, Some(agent)).unwrap()
    }
}
