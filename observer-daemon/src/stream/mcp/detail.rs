//! What an MCP session and its tool calls become as records (`mcp_session`,
//! `mcp_tool_call`, `mcp_request`, `mcp_tool_definition` events; the
//! `mcp.*` receipts):
//! names, digests and outcomes, never arguments, results or keys.
use serde::Serialize;

/// The server of a session, as the client saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Server {
    /// `serverInfo.name` from the initialize answer; `unknown` when the
    /// capture began after it.
    pub name: String,
    pub version: Option<String>,
    /// The process that read the requests (a stdio server), when watched.
    pub pid: Option<u32>,
    /// Its command line, secrets redacted (filled in from the process
    /// table when the record is written).
    pub command: Option<Vec<String>>,
}

/// Where the session runs, seen from the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Channel {
    /// `stdio` (pipes), `unix` or `tcp`.
    pub transport: &'static str,
    /// The session's name: the client's request pipe or socket,
    /// `pipe:[inode]` / `socket:[inode]` as /proc/PID/fd shows it.
    pub session: String,
}

/// `mcp_session`: the client initialized a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct McpSessionDetail {
    pub server: Server,
    #[serde(flatten)]
    pub channel: Channel,
    pub protocol_version: Option<String>,
    pub client_name: Option<String>,
    pub client_version: Option<String>,
    /// The capability names the server declared (tools, resources, ...).
    pub server_capabilities: Vec<String>,
    /// From the initialize request to its answer.
    pub latency_ms: Option<u64>,
}

/// What a tool call and an `mcp_request` record of the request message
/// itself (flattened into both, in this order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestFacts {
    /// The JSON-RPC id, as compact JSON.
    pub request_id: Option<String>,
    /// `sha256:` of JCS(arguments) of a tools/call or prompts/get (of
    /// `null` when none were sent); None for resources/read and when the
    /// request was cut (see `truncated`).
    pub arguments_sha256: Option<String>,
    /// `sha256:` and length of the request message as sent (newline
    /// excluded); `request_complete` false when the capture missed bytes.
    pub request_sha256: String,
    pub request_bytes: u64,
    pub request_complete: bool,
    /// The request was longer than what is kept of a message, or cut by
    /// the capture: the arguments were not read whole.
    pub truncated: bool,
}

/// `mcp_tool_call`: one `tools/call`, answered or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct McpToolCallDetail {
    pub server: Server,
    pub tool: String,
    #[serde(flatten)]
    pub channel: Channel,
    #[serde(flatten)]
    pub request: RequestFacts,
    /// `result`, `tool_error` (a result with `isError: true`), `error` (a
    /// JSON-RPC error) or `no_answer` (none before the session ended).
    pub outcome: &'static str,
    pub is_error: Option<bool>,
    pub error_code: Option<i64>,
    /// `sha256:` of JCS(result), for a whole result.
    pub result_sha256: Option<String>,
    pub latency_ms: Option<u64>,
    /// The arguments and result, when the agent's `capture_content` asks
    /// for them (`policy::content`), credentials always replaced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<serde_json::Value>,
    /// Them as parsed, until the writer decides what is kept (never
    /// serialised). None for a call too large to keep.
    #[serde(skip)]
    pub raw: Option<Box<RawCall>>,
}

/// `mcp_request`: a `resources/read` or `prompts/get` the client sent,
/// answered or not: what the agent took from the server besides tool
/// results (a resource's content, a prompt's messages).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct McpRequestDetail {
    pub server: Server,
    /// `resources/read` or `prompts/get`.
    pub method: &'static str,
    /// The resource's URI or the prompt's name, as the client sent it,
    /// cut and redacted like a command line; `unknown` when the request
    /// was cut before it.
    pub target: String,
    #[serde(flatten)]
    pub channel: Channel,
    #[serde(flatten)]
    pub request: RequestFacts,
    /// `result`, `error` (a JSON-RPC error) or `no_answer` (none before
    /// the session ended).
    pub outcome: &'static str,
    pub error_code: Option<i64>,
    /// `sha256:` of JCS(result), for a whole result: what the agent was
    /// given, provable without storing it.
    pub result_sha256: Option<String>,
    pub latency_ms: Option<u64>,
}

/// A tool call's arguments and result as parsed (each None when cut).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawCall {
    pub arguments: Option<serde_json::Value>,
    pub result: Option<serde_json::Value>,
}

/// One tool of a `tools/list` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ToolDigest {
    pub name: String,
    /// `sha256:` of JCS(the tool's definition).
    pub sha256: String,
}

/// `mcp_tool_definition`: the tools a server listed, each digested, and
/// what the definition checks found in them (`policy::mcp_definitions`
/// fills `verdict` and `findings` where the policy is, in the writer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct McpToolDefinitionDetail {
    pub server: Server,
    #[serde(flatten)]
    pub channel: Channel,
    pub tools: Vec<ToolDigest>,
    /// `clean`, `warning` or `dangerous`.
    pub verdict: crate::policy::mcp_verdict::Verdict,
    pub findings: Vec<crate::policy::mcp_verdict::ToolFinding>,
    /// The definitions as listed, until they are checked (never stored).
    #[serde(skip)]
    pub unchecked: Vec<serde_json::Value>,
}
