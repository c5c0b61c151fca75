//! The stream layer's intake: plaintext pieces from the reader go to the
//! MCP side (pipes and sockets that speak JSON-RPC) or the HTTP side
//! (everything else), and what they finish goes to the writer as records
//! of the calling process: `llm_request`, `mcp_session`, `mcp_tool_call`,
//! `mcp_tool_definition`. Streams found to carry nothing parsed are
//! muted in the kernel.
use std::{sync::Arc, time::Duration};

use tokio::sync::mpsc;

use observer_common::{EventKind, IoStreamKey};

use crate::{
    format::BootClock,
    pipeline::{
        inbox::{Msg, StreamRecord},
        reader::UserDrops,
    },
    record::Detail,
    stream::{
        connection::{Connections, Finished, Limits},
        llm::call::llm_call,
        mcp::{
            detail::McpToolDefinitionDetail,
            session::McpOut,
            streams::{McpCounts, McpStreams},
        },
        plaintext::{ConnId, Plaintext},
    },
};

/// The kernel's map of muted pipes and local sockets.
pub type IoMuted = aya::maps::HashMap<aya::maps::MapData, IoStreamKey, u8>;

/// How long a connection may stay silent before its open messages end.
const IDLE: Duration = Duration::from_secs(30);
/// How long the connections of a process that exited wait for pieces
/// still in the ring before their open messages end.
const GONE_GRACE: Duration = Duration::from_secs(1);

/// Chunks and bytes of one kind.
#[derive(Debug, Default, Clone, Copy)]
pub struct Taken {
    pub chunks: u64,
    pub bytes: u64,
    /// Calls the capture bound cut short.
    pub truncated: u64,
}

/// What the stream layer did this run (reported at stop).
#[derive(Debug, Default, Clone, Copy)]
pub struct Intake {
    /// TLS library calls.
    pub tls: Taken,
    /// Pipe and local socket calls.
    pub local: Taken,
    /// HTTP requests seen (with their answers or not).
    pub exchanges: u64,
    /// Of them, LLM API calls (each an `llm_request` record).
    pub llm_calls: u64,
    /// HTTP/2 connections (their streams are among `exchanges`).
    pub http2: u64,
    /// Pipes and local sockets muted in the kernel (nothing parsed, or
    /// the server's copy of an MCP session).
    pub muted: u64,
    /// Streams the parsers gave up (a parse error or a capture gap they
    /// could not pass; for HTTP/2 a direction of a connection).
    pub abandoned: u64,
    /// Connections that were neither HTTP/1.x nor HTTP/2 (not followed).
    pub not_http: u64,
    pub mcp: McpCounts,
}

/// What the intake needs besides the pieces.
pub struct IntakeSetup {
    pub writer: mpsc::Sender<Msg>,
    pub drops: Arc<UserDrops>,
    pub muted: IoMuted,
    /// The per-call capture bound (to tell calls cut short).
    pub bound: u32,
    pub limits: Limits,
    /// Bytes kept per MCP message.
    pub mcp_message_bytes: usize,
}

pub async fn take_in(mut rx: mpsc::Receiver<Plaintext>, mut s: IntakeSetup) -> Intake {
    let mut intake = Intake::default();
    let mut conns = Connections::new(s.limits);
    let mut mcp = McpStreams::new(s.mcp_message_bytes);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let mut calls = Vec::new();
        let finished = tokio::select! {
            chunk = rx.recv() => match chunk {
                Some(chunk) => {
                    let taken = if chunk.call.is_tls() { &mut intake.tls } else { &mut intake.local };
                    taken.chunks += 1;
                    taken.bytes += chunk.data.len() as u64;
                    // The last piece the bound allowed, with bytes after it.
                    let end = u64::from(chunk.offset) + chunk.data.len() as u64;
                    taken.truncated += u64::from(chunk.remaining() > 0 && end == u64::from(s.bound));
                    if !conns.follows(&chunk) && mcp.wants(&chunk) {
                        mcp.push(chunk, &mut calls);
                        Vec::new()
                    } else {
                        conns.push(chunk)
                    }
                }
                None => {
                    let last = conns.close_all();
                    send(last, &s, &mut intake, &mut mcp, &mut calls);
                    mcp.close_all(&mut calls);
                    send_mcp(calls, &s);
                    intake.abandoned = conns.abandoned;
                    intake.not_http = conns.not_http;
                    intake.mcp = mcp.counts;
                    return intake;
                }
            },
            _ = tick.tick() => {
                let now = BootClock::boot_ns_now();
                let alive = |tgid: u32| std::path::Path::new(&format!("/proc/{tgid}")).exists();
                let before = now.saturating_sub(GONE_GRACE.as_nanos() as u64);
                let mut done = conns.expire(now.saturating_sub(IDLE.as_nanos() as u64));
                done.extend(conns.close_gone(alive, before));
                // Exchanges first: one may be the answer to an MCP
                // session's initialize that its held calls wait for.
                send(done, &s, &mut intake, &mut mcp, &mut calls);
                mcp.settle(now, &mut calls);
                // A gone client's MCP-over-HTTP sessions end only once its
                // connections have: the exchange still open may be the
                // answer to `initialize` that names the server of the
                // calls held for it.
                mcp.close_gone(|t| alive(t) || conns.has_process(t), before, &mut calls);
                Vec::new()
            }
        };
        send(finished, &s, &mut intake, &mut mcp, &mut calls);
        send_mcp(calls, &s);
        for (tgid, ino) in conns.take_muted().into_iter().chain(mcp.take_muted()) {
            intake.muted += 1;
            let key = IoStreamKey { tgid, _pad: 0, ino };
            if let Err(e) = s.muted.insert(key, 1, 0) {
                // Not fatal: the stream's bytes keep coming and are
                // ignored here.
                log::debug!("plaintext: muting pid {tgid} inode {ino}: {e}");
            }
        }
    }
}

/// Hands a record to the writer without waiting: a full inbox loses it,
/// counted as `channel_full` of the kind it came from.
fn hand_on(s: &IntakeSetup, record: StreamRecord, kind: EventKind) {
    if s.writer.try_send(Msg::Stream(record)).is_err() {
        s.drops.count_channel_full(kind);
    }
}

/// LLM API calls among the HTTP exchanges; MCP over HTTP goes to `mcp`.
fn send(
    finished: Vec<Finished>,
    s: &IntakeSetup,
    intake: &mut Intake,
    mcp: &mut McpStreams,
    calls: &mut Vec<McpOut>,
) {
    for f in finished {
        let ex = match f {
            Finished::Exchange(ex) => ex,
            Finished::Http2 { header, conn } => {
                intake.http2 += 1;
                log::info!(
                    "plaintext: pid {} ({}) opened an HTTP/2 connection ({conn:?})",
                    header.tgid,
                    header.comm
                );
                continue;
            }
        };
        intake.exchanges += 1;
        let Some(detail) = llm_call(&ex) else {
            mcp.exchange(&ex, calls);
            continue;
        };
        intake.llm_calls += 1;
        let kind = if matches!(ex.conn, ConnId::Tls(_)) {
            EventKind::TlsData
        } else {
            EventKind::IoData
        };
        let record = StreamRecord {
            header: ex.header,
            event: "llm_request",
            detail: Detail::LlmRequest(Box::new(detail)),
        };
        hand_on(s, record, kind);
    }
}

/// MCP sessions, tool calls, other requests and checked tool definitions.
fn send_mcp(out: Vec<McpOut>, s: &IntakeSetup) {
    for o in out {
        let record = match o {
            McpOut::Session(header, d) => StreamRecord {
                header,
                event: "mcp_session",
                detail: Detail::McpSession(d),
            },
            McpOut::ToolCall(header, d) => StreamRecord {
                header,
                event: "mcp_tool_call",
                detail: Detail::McpToolCall(d),
            },
            McpOut::Request(header, d) => StreamRecord {
                header,
                event: "mcp_request",
                detail: Detail::McpRequest(d),
            },
            McpOut::ToolsListed {
                header,
                server,
                channel,
                tools,
            } => StreamRecord {
                header,
                event: "mcp_tool_definition",
                // Checked by the writer, where the policy is.
                detail: Detail::McpToolDefinition(Box::new(McpToolDefinitionDetail {
                    server,
                    channel,
                    tools: Vec::new(),
                    verdict: crate::policy::mcp_verdict::Verdict::Clean,
                    findings: Vec::new(),
                    unchecked: tools,
                })),
            },
        };
        hand_on(s, record, EventKind::IoData);
    }
}
