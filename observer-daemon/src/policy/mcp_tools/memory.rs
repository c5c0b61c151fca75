//! Rug-pull detection: a tool's definition changing after it was first
//! seen.
use std::collections::{HashMap, VecDeque};

use serde_json::Value;

use super::{text::quote, tool_name, Risk, ToolFinding};

/// `sha256:<hex>` of the JCS canonical form of one tool definition. A
/// definition JCS refuses (an integer beyond ±2^53) is hashed as
/// serde_json's compact text, still stable for the same answer.
pub fn definition_digest(tool: &Value) -> String {
    match observer_receipts::jcs::canonical_sha256(tool) {
        Ok(hash) => format!("sha256:{}", hex::encode(hash)),
        Err(_) => format!(
            "sha256:{}",
            crate::receipt::payload::sha256_hex(tool.to_string().as_bytes())
        ),
    }
}

/// (server, tool) entries [`DefinitionMemory`] keeps. A server chooses its
/// tool names and may list new ones forever, so the memory is bounded;
/// past the bound the server seen first is forgotten whole (its tools count
/// as new again), which keeps every live server's tools comparable with
/// each other and costs only the oldest server's rug-pull baseline.
pub const MEMORY_LIMIT: usize = 10_000;

/// Remembers the first definition seen per (server, tool); a later
/// different definition is a rug pull (the server changed what the user
/// approved). Reported once per change: the same changed definition listed
/// again is not reported again, a return to the first is not reported.
#[derive(Debug, Default)]
pub struct DefinitionMemory {
    servers: HashMap<String, HashMap<String, Seen>>,
    /// Servers in the order first seen, for eviction.
    order: VecDeque<String>,
    entries: usize,
}

#[derive(Debug)]
struct Seen {
    first: String,
    last: String,
}

impl DefinitionMemory {
    pub fn observe(&mut self, server: &str, tools: &[Value]) -> Vec<ToolFinding> {
        let mut out = Vec::new();
        for tool in tools {
            let Some(name) = tool_name(tool) else {
                continue;
            };
            let digest = definition_digest(tool);
            if let Some(seen) = self.servers.get_mut(server).and_then(|m| m.get_mut(name)) {
                if digest != seen.last {
                    if digest != seen.first {
                        out.push(ToolFinding {
                            tool: quote(name),
                            check: "definition_changed",
                            risk: Risk::High,
                            reason: format!(
                                "definition of `{}` changed: {} first seen, now {digest}",
                                quote(name),
                                seen.first
                            ),
                        });
                    }
                    seen.last = digest;
                }
                continue;
            }
            self.remember(server, name, digest);
        }
        out
    }

    /// (server, tool) pairs remembered.
    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    fn remember(&mut self, server: &str, name: &str, digest: String) {
        while self.entries >= MEMORY_LIMIT {
            // The server seen first, unless it is this one: then the next.
            let Some(at) = self.order.iter().position(|s| s != server) else {
                // This server alone fills the memory: its further tools
                // are not remembered.
                return;
            };
            let oldest = self.order.remove(at).unwrap_or_default();
            self.entries -= self.servers.remove(&oldest).map_or(0, |m| m.len());
        }
        let tools = self.servers.entry(server.to_owned()).or_insert_with(|| {
            self.order.push_back(server.to_owned());
            HashMap::new()
        });
        tools.insert(
            name.to_owned(),
            Seen {
                first: digest.clone(),
                last: digest,
            },
        );
        self.entries += 1;
    }
}
