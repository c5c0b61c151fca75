//! Completes the MCP records where the policy and the process table are
//! (the writer): a listed server's tool definitions checked against the
//! policy's lists and against what the same server listed before (a rug
//! pull), and a stdio server's command line from the process table.
use crate::{
    enrich::{process_table::ProcessTable, redact::redact_str},
    policy::{
        mcp_tools::{definition_digest, verdict, DefinitionMemory},
        Policy,
    },
    record::Detail,
    stream::mcp::{
        detail::{Server, ToolDigest},
        session::shown,
    },
};

/// What has been seen of each server's tools, across sessions.
#[derive(Default)]
pub struct Definitions {
    memory: DefinitionMemory,
}

impl Definitions {
    /// Fills in what the stream layer could not know.
    pub fn complete(&mut self, detail: &mut Detail, policy: &Policy, table: &ProcessTable) {
        match detail {
            Detail::McpSession(d) => command(&mut d.server, table),
            Detail::McpToolCall(d) => command(&mut d.server, table),
            Detail::McpRequest(d) => command(&mut d.server, table),
            Detail::McpToolDefinition(d) => {
                command(&mut d.server, table);
                let tools = std::mem::take(&mut d.unchecked);
                d.tools = tools
                    .iter()
                    .map(|t| ToolDigest {
                        name: shown(t.get("name").and_then(|n| n.as_str()).unwrap_or_default()),
                        sha256: definition_digest(t),
                    })
                    .collect();
                let mut findings = policy.indicators.mcp_tools.check(&tools);
                findings.extend(self.memory.observe(&d.server.name, &tools));
                // Names the server chose are quoted in findings: redacted
                // like every name it wrote.
                for f in &mut findings {
                    f.tool = shown(&f.tool);
                    f.reason = redact_str(&f.reason).into_owned();
                }
                d.verdict = verdict(&findings);
                d.findings = findings;
            }
            _ => {}
        }
    }
}

/// The server's command line (already redacted in the table), while its
/// process is known.
fn command(server: &mut Server, table: &ProcessTable) {
    if server.command.is_some() {
        return;
    }
    if let Some(p) = server.pid.and_then(|pid| table.get(pid)) {
        server.command = Some(p.image.argv.clone());
    }
}
