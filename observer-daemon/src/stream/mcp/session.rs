//! One MCP session seen from its client: requests matched to their
//! answers by id, `initialize` read for the names and versions, each
//! `tools/call` made an `mcp_tool_call`, each `resources/read` and
//! `prompts/get` an `mcp_request`, each `tools/list` answer handed on for
//! the definition checks. Pure: messages in, records out.
use std::collections::HashMap;

use serde_json::Value;

use crate::{
    event::Header,
    stream::content::CONTENT_MAX,
    stream::mcp::{
        detail::{
            Channel, McpRequestDetail, McpSessionDetail, McpToolCallDetail, RawCall, RequestFacts,
            Server,
        },
        framing::Frame,
        jsonrpc::{Body, Message},
    },
};

/// Requests waiting for answers per session; past it the oldest goes out
/// unanswered (a client that never reads its answers cannot grow us).
const MAX_PENDING: usize = 1024;

/// What a session hands on.
#[derive(Debug, Clone, PartialEq)]
pub enum McpOut {
    Session(Header, Box<McpSessionDetail>),
    ToolCall(Header, Box<McpToolCallDetail>),
    Request(Header, Box<McpRequestDetail>),
    /// A whole `tools/list` answer: the tools as the server defined them.
    ToolsListed {
        header: Header,
        server: Server,
        channel: Channel,
        tools: Vec<Value>,
    },
}

struct Pending {
    header: Header,
    method: String,
    /// tools/call and prompts/get: the name; resources/read: the URI.
    name: Option<String>,
    /// initialize: the client's name and version.
    client: Option<(Option<String>, Option<String>)>,
    /// Kept for `capture_content` when small enough.
    arguments: Option<Value>,
    request: RequestFacts,
    first_ns: u64,
    order: u64,
}

pub struct Session {
    pub channel: Channel,
    pub server: Server,
    pending: HashMap<String, Pending>,
    /// Requests cut before their id: answered by the next answer whose id
    /// no request waits for, in order.
    anonymous: Vec<Pending>,
    order: u64,
    /// Tool calls seen (for the stop line).
    pub calls: u64,
}

impl Session {
    pub fn new(channel: Channel) -> Session {
        Session {
            channel,
            server: Server {
                name: "unknown".into(),
                ..Default::default()
            },
            pending: HashMap::new(),
            anonymous: Vec::new(),
            order: 0,
            calls: 0,
        }
    }

    /// A message the client sent, from `frame`.
    pub fn sent(&mut self, header: &Header, frame: &Frame, msg: Message, out: &mut Vec<McpOut>) {
        let Body::Call { method, params } = &msg.body else {
            // The client's answer to a server request (sampling, roots).
            return;
        };
        if msg.id.is_none() && !msg.truncated {
            return; // a notification
        }
        let arguments = match (method.as_str(), params) {
            ("tools/call" | "prompts/get", Some(p)) => {
                Some(p.get("arguments").unwrap_or(&Value::Null))
            }
            _ => None,
        };
        let arguments_sha256 = arguments.map(digest);
        // Content is kept (for `capture_content`) of tool calls only.
        let arguments = arguments
            .filter(|_| method == "tools/call" && frame.len <= CONTENT_MAX as u64)
            .cloned();
        let client = (method == "initialize").then(|| {
            let info = params.as_ref().and_then(|p| p.get("clientInfo"));
            (text(info, "name"), text(info, "version"))
        });
        self.order += 1;
        let pending = Pending {
            header: header.clone(),

            method: method.clone(),
            name: msg.name.as_deref().map(shown),
            client,
            arguments,
            request: RequestFacts {
                request_id: msg.id.clone(),
                arguments_sha256,
                request_sha256: format!("sha256:{}", hex::encode(frame.sha256)),
                request_bytes: frame.len,
                request_complete: !frame.gap,
                truncated: frame.truncated,
            },
            first_ns: frame.first_ns,
            order: self.order,
        };
        match msg.id {
            Some(id) => {
                if let Some(old) = self.pending.insert(id, pending) {
                    // An id used again before its answer: the first call
                    // will never be matched now.
                    self.unanswered(old, out);
                }
                if self.pending.len() > MAX_PENDING {
                    let oldest = self
                        .pending
                        .iter()
                        .min_by_key(|(_, p)| p.order)
                        .map(|(k, _)| k.clone());
                    if let Some(p) = oldest.and_then(|k| self.pending.remove(&k)) {
                        self.unanswered(p, out);
                    }
                }
            }
            None if self.anonymous.len() < MAX_PENDING => self.anonymous.push(pending),
            None => self.unanswered(pending, out),
        }
    }

    /// A message the client received (`at_ns`: when its last byte came).
    pub fn received(&mut self, msg: Message, at_ns: u64, out: &mut Vec<McpOut>) {
        if matches!(msg.body, Body::Call { .. }) {
            // A request or notification of the server (sampling,
            // list_changed, progress, log): not a call of the agent.
            return;
        }
        let found = match &msg.id {
            Some(id) => self.pending.remove(id),
            None => None,
        };
        // An answer whose id no request waits for may answer a request cut
        // before its id. One cut before its own id (a server that writes
        // `id` last, as the TypeScript SDK does) answers the oldest
        // request: clients of stdio servers mostly wait for each answer in
        // turn. A whole answer with a null id (a parse error) answers none.
        let cut = msg.truncated && msg.id.is_none();
        let Some(p) = found
            .or_else(|| {
                (!self.anonymous.is_empty() && (cut || msg.id.is_some()))
                    .then(|| self.anonymous.remove(0))
            })
            .or_else(|| cut.then(|| self.oldest()).flatten())
        else {
            return;
        };
        let latency_ms = Some(at_ns.saturating_sub(p.first_ns) / 1_000_000);
        match p.method.as_str() {
            "initialize" => {
                if let Body::Result(r) = &msg.body {
                    let info = r.get("serverInfo");
                    self.server.name = text(info, "name").unwrap_or_else(|| "unknown".into());
                    self.server.version = text(info, "version");
                    let (client_name, client_version) = p.client.clone().unwrap_or_default();
                    let mut caps: Vec<String> = r
                        .get("capabilities")
                        .and_then(Value::as_object)
                        .map(|o| o.keys().cloned().collect())
                        .unwrap_or_default();
                    caps.sort();
                    out.push(McpOut::Session(
                        p.header,
                        Box::new(McpSessionDetail {
                            server: self.server.clone(),
                            channel: self.channel.clone(),
                            protocol_version: text(Some(r), "protocolVersion"),
                            client_name,
                            client_version,
                            server_capabilities: caps,
                            latency_ms,
                        }),
                    ));
                }
            }
            "tools/list" => {
                if let Body::Result(r) = &msg.body {
                    if let Some(tools) = r.get("tools").and_then(Value::as_array) {
                        out.push(McpOut::ToolsListed {
                            header: p.header,
                            server: self.server.clone(),
                            channel: self.channel.clone(),
                            tools: tools.clone(),
                        });
                    }
                }
            }
            "tools/call" => self.call(p, Answer::of(msg, true, latency_ms), out),
            "resources/read" | "prompts/get" => {
                self.request(p, Answer::of(msg, false, latency_ms), out);
            }
            _ => {}
        }
    }

    /// The session ended: calls still waiting were never answered.
    pub fn end(&mut self, out: &mut Vec<McpOut>) {
        let mut waiting: Vec<Pending> = self.pending.drain().map(|(_, p)| p).collect();
        waiting.append(&mut self.anonymous);
        waiting.sort_by_key(|p| p.order);
        for p in waiting {
            self.unanswered(p, out);
        }
    }

    fn oldest(&mut self) -> Option<Pending> {
        let id = self
            .pending
            .iter()
            .min_by_key(|(_, p)| p.order)
            .map(|(k, _)| k.clone())?;
        self.pending.remove(&id)
    }

    /// A request with this id waits for its answer.
    pub fn waits_for(&self, id: &str) -> bool {
        self.pending.contains_key(id)
    }

    pub fn waiting(&self) -> usize {
        self.pending.len() + self.anonymous.len()
    }

    fn unanswered(&mut self, p: Pending, out: &mut Vec<McpOut>) {
        match p.method.as_str() {
            "tools/call" => self.call(p, Answer::none(), out),
            "resources/read" | "prompts/get" => self.request(p, Answer::none(), out),
            _ => {}
        }
    }

    /// A resources/read or prompts/get, answered or not.
    fn request(&mut self, p: Pending, a: Answer, out: &mut Vec<McpOut>) {
        let method = if p.method == "resources/read" {
            "resources/read"
        } else {
            "prompts/get"
        };
        out.push(McpOut::Request(
            p.header,
            Box::new(McpRequestDetail {
                server: self.server.clone(),
                method,
                target: p.name.unwrap_or_else(|| "unknown".into()),
                channel: self.channel.clone(),
                request: p.request,
                outcome: a.outcome,
                error_code: a.error_code,
                result_sha256: a.result_sha256,
                latency_ms: a.latency_ms,
            }),
        ));
    }

    fn call(&mut self, p: Pending, a: Answer, out: &mut Vec<McpOut>) {
        self.calls += 1;
        let raw = (p.arguments.is_some() || a.result.is_some()).then(|| {
            Box::new(RawCall {
                arguments: p.arguments,
                result: a.result,
            })
        });
        out.push(McpOut::ToolCall(
            p.header,
            Box::new(McpToolCallDetail {
                server: self.server.clone(),
                tool: p.name.unwrap_or_else(|| "unknown".into()),
                channel: self.channel.clone(),
                request: p.request,
                outcome: a.outcome,
                is_error: a.is_error,
                error_code: a.error_code,
                result_sha256: a.result_sha256,
                latency_ms: a.latency_ms,
                content: None,
                raw,
            }),
        ));
    }
}

/// How a tool call ended.
struct Answer {
    outcome: &'static str,
    is_error: Option<bool>,
    error_code: Option<i64>,
    result_sha256: Option<String>,
    /// Kept for `capture_content` when whole and small enough.
    result: Option<Value>,
    latency_ms: Option<u64>,
}

impl Answer {
    /// The answer `msg` to a tools/call (`tool_call`: its `isError` read,
    /// a small whole result kept for `capture_content`) or to another
    /// request (only the result's digest).
    fn of(msg: Message, tool_call: bool, latency_ms: Option<u64>) -> Answer {
        match msg.body {
            Body::Result(r) => {
                let whole = !msg.truncated;
                let is_error =
                    tool_call.then(|| r.get("isError").and_then(Value::as_bool).unwrap_or(false));
                Answer {
                    outcome: if is_error == Some(true) {
                        "tool_error"
                    } else {
                        "result"
                    },
                    is_error,
                    error_code: None,
                    result_sha256: whole.then(|| digest(&r)),
                    result: (tool_call && whole && msg.len <= CONTENT_MAX as u64).then_some(r),
                    latency_ms,
                }
            }
            Body::Error { code } => Answer {
                outcome: "error",
                error_code: Some(code),
                latency_ms,
                ..Answer::none()
            },
            // A cut answer: it came, what it said is unknown.
            _ => Answer {
                outcome: "result",
                latency_ms,
                ..Answer::none()
            },
        }
    }

    /// None came before the session ended.
    fn none() -> Answer {
        Answer {
            outcome: "no_answer",
            is_error: None,
            error_code: None,
            result_sha256: None,
            result: None,
            latency_ms: None,
        }
    }
}

/// `sha256:` of the JCS form of `v` (the arguments as the client sent
/// them, whatever the key order or spacing on the wire).
pub fn digest(v: &Value) -> String {
    match observer_receipts::jcs::canonical_sha256(v) {
        Ok(h) => format!("sha256:{}", hex::encode(h)),
        // Numbers JCS cannot represent: the digest of the compact form,
        // marked so it is not mistaken for JCS.
        Err(_) => format!(
            "sha256-json:{}",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(v.to_string()))
        ),
    }
}

fn text(v: Option<&Value>, key: &str) -> Option<String> {
    v.and_then(|v| v.get(key))
        .and_then(Value::as_str)
        .map(shown)
}

/// Characters kept of a name the peer chose (server, tool, client names
/// and versions).
const NAME_CHARS: usize = 256;

/// A name the other side wrote, as recorded: cut, and redacted like a
/// command line (a hostile server may put a key anywhere).
pub fn shown(name: &str) -> String {
    let cut: String = name.chars().take(NAME_CHARS).collect();
    crate::enrich::redact::redact_str(&cut).into_owned()
}
