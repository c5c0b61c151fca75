//! The JSON records `observerd --events-jsonl` writes, one per line. Field
//! names are a stable schema (documented in docs/events.md).
use std::collections::BTreeMap;

use serde::Serialize;

use crate::enrich::process_table::Origin;

/// One line of output.
#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    /// The probes are attached and the startup /proc scan is done.
    ObserverStart(StartRecord),
    Event(Box<EnrichedEvent>),
    /// Events were lost since the previous loss record; counts are deltas.
    Loss(LossRecord),
    /// Totals at shutdown.
    ObserverStop(StatsRecord),
}

#[derive(Debug, Serialize)]
pub struct StartRecord {
    pub time: String,
    pub pid: u32,
    pub probes: Vec<String>,
    pub processes_scanned: usize,
    pub config: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct EnrichedEvent {
    /// exec, fork, exit, connect, accept, bind, listen, file_open.
    pub event: &'static str,
    /// RFC 3339 wall-clock time derived from `boot_ns`.
    pub time: String,
    pub boot_ns: u64,
    pub cpu: u32,
    /// Per-CPU kernel sequence number (a gap on one CPU is a lost event).
    pub seq: u64,
    pub process: ProcessView,
    /// Parent chain, nearest first.
    pub parents: Vec<Ancestor>,
    #[serde(flatten)]
    pub detail: Detail,
}

#[derive(Debug, Serialize)]
pub struct ProcessView {
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub user: Option<String>,
    pub gid: u32,
    pub group: Option<String>,
    pub loginuid: Option<u32>,
    pub comm: String,
    pub exe: Option<String>,
    /// `sha256:<hex>` of the executable file.
    pub exe_sha256: Option<String>,
    /// Secrets replaced by `[REDACTED]`.
    pub argv: Vec<String>,
    /// Names (never values) of environment variables of interest.
    pub env_names: Vec<String>,
    pub cgroup_id: u64,
    pub cgroup: Option<String>,
    pub unit: Option<String>,
    pub container_id: Option<String>,
    pub origin: Origin,
    pub watched: bool,
    /// The registered agent whose process tree this process is in.
    pub agent: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Ancestor {
    pub pid: u32,
    pub comm: String,
    pub exe: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Detail {
    Exec(ExecDetail),
    Fork(ForkDetail),
    Exit(ExitDetail),
    Connect(NetDetail),
    Accept(NetDetail),
    Bind(NetDetail),
    Listen(NetDetail),
    FileOpen(OpenDetail),
    /// A DNS answer the process received (event `dns_answer`).
    DnsAnswer(DnsAnswerDetail),
    /// An LLM API call the process made (event `llm_request`).
    LlmRequest(Box<crate::stream::llm::call::LlmRequestDetail>),
    /// The process (an MCP client) initialized a session with a server
    /// (event `mcp_session`).
    McpSession(Box<crate::stream::mcp::detail::McpSessionDetail>),
    /// A `tools/call` the process made (event `mcp_tool_call`).
    McpToolCall(Box<crate::stream::mcp::detail::McpToolCallDetail>),
    /// A `resources/read` or `prompts/get` the process made (event
    /// `mcp_request`).
    McpRequest(Box<crate::stream::mcp::detail::McpRequestDetail>),
    /// The tools a server listed to the process, checked (event
    /// `mcp_tool_definition`).
    McpToolDefinition(Box<crate::stream::mcp::detail::McpToolDefinitionDetail>),
}

/// A DNS response received by a socket of the process (docs/names.md).
#[derive(Debug, Serialize)]
pub struct DnsAnswerDetail {
    /// udp or tcp.
    pub transport: &'static str,
    pub server_addr: String,
    pub server_port: u16,
    pub local_addr: String,
    pub local_port: u16,
    pub id: u16,
    /// NOERROR, NXDOMAIN, ...
    pub rcode: String,
    /// The server set TC, or the message was longer than the capture.
    pub truncated: bool,
    pub question: crate::names::dns::Question,
    /// A, AAAA and CNAME records of the answer section.
    pub answers: Vec<crate::names::dns::Answer>,
    /// The question name, then each CNAME target in order.
    pub cname_chain: Vec<String>,
    /// Addresses of the chain's names: each now carries every chain name.
    pub addresses: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct ExecDetail {
    /// The path as passed to execve.
    pub filename: String,
    pub argv: Vec<String>,
    pub argv_truncated: bool,
    /// The kernel had no argv for this exec (it did not enter through
    /// execve, or the entry probe was not attached yet or any more).
    pub argv_missing: bool,
    /// 0 on success, otherwise the negative errno.
    pub result: i32,
    /// errno name of a failed exec (ENOENT, EACCES, ...).
    pub error: Option<String>,
    pub execveat: bool,
}

#[derive(Debug, Serialize)]
pub struct ForkDetail {
    pub parent_pid: u32,
    pub child_pid: u32,
}

#[derive(Debug, Serialize)]
pub struct ExitDetail {
    /// Exit status when the process exited normally.
    pub exit_code: Option<i32>,
    /// Terminating signal number when it was killed.
    pub signal: Option<i32>,
    pub core_dumped: bool,
    /// Raw wait(2) status.
    pub status: u32,
}

#[derive(Debug, Serialize)]
pub struct NetDetail {
    pub fd: i32,
    /// Syscall result: 0 or the accepted fd, or the negative errno.
    pub result: i32,
    pub error: Option<String>,
    /// inet or inet6.
    pub family: &'static str,
    /// stream, dgram, raw, seqpacket or the number.
    pub socket_type: String,
    pub local_addr: String,
    pub local_port: u16,
    pub remote_addr: String,
    pub remote_port: u16,
    /// Names the remote address is known by, each with where it was seen
    /// (connect only; empty when none is known). Policies match names,
    /// not addresses: AI APIs share CDN addresses.
    pub dst_names: Vec<DstName>,
}

/// A name for a connection's remote address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DstName {
    pub name: String,
    pub source: NameSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NameSource {
    /// A DNS answer this host received (A/AAAA, or a CNAME leading to one).
    Dns,
    /// The server name in the TLS ClientHello the process sent.
    Sni,
}

#[derive(Debug, Serialize)]
pub struct OpenDetail {
    pub path: String,
    /// The fd, or the negative errno.
    pub result: i32,
    pub error: Option<String>,
    pub flags: u32,
    /// Symbolic flags: O_RDONLY|O_CLOEXEC ...
    pub flags_text: String,
    pub mode: u32,
    /// Why the kernel reported it: watched, prefix, suffix.
    pub reasons: Vec<&'static str>,
    pub openat2: bool,
    /// The path is relative to a directory fd other than the cwd.
    pub dfd: i32,
}

#[derive(Debug, Default, Serialize, Clone)]
pub struct KernelKindLoss {
    pub ringbuf_full: u64,
    pub read_error: u64,
}

#[derive(Debug, Serialize)]
pub struct LossRecord {
    pub time: String,
    /// Kernel-side drops by event kind.
    pub kernel: BTreeMap<&'static str, KernelKindLoss>,
    /// User-space drops by reason (`channel_full:<kind>`, `decode_*`).
    pub user: BTreeMap<String, u64>,
    /// Program runs the kernel skipped (another tracing program was running
    /// on that CPU), by program.
    pub kernel_skipped: BTreeMap<&'static str, u64>,
    pub total: u64,
}

#[derive(Debug, Default, Serialize, Clone)]
pub struct KernelKindStats {
    pub emitted: u64,
    pub dropped_ringbuf_full: u64,
    pub dropped_read_error: u64,
    pub suppressed: u64,
}

#[derive(Debug, Serialize)]
pub struct StatsRecord {
    pub time: String,
    pub kernel: BTreeMap<&'static str, KernelKindStats>,
    pub user_drops: BTreeMap<String, u64>,
    pub kernel_skipped: BTreeMap<&'static str, u64>,
    pub events_written: u64,
    /// The names stage's counters (docs/names.md): parse failures by
    /// reason, SNI joined or not, connect records that waited.
    pub names: BTreeMap<&'static str, u64>,
}
