//! The MCP side of the stream layer: pipes and local sockets of watched
//! processes that carry newline-delimited JSON-RPC, sorted into client and
//! server ends, joined into sessions seen from the client, and read by
//! `Session`.
//!
//! A socket carries both directions, so the client's end is the whole
//! session. A stdio session is two pipes: the client writes requests into
//! one and reads answers from the other. The server process (a watched
//! child of the agent) tells which two belong together: it reads the
//! requests of one and writes the answers into the other. Its own copy of
//! the bytes is not needed beyond that, so its ends are muted in the
//! kernel once it has said so. Until a client's answer pipe is known to
//! belong to a session, what the client reads from it is held.
use std::collections::{HashMap, VecDeque};

use crate::{
    event::Header,
    stream::{
        mcp::{
            detail::Channel as SessionChannel,
            framing::{Frame, Lines},
            http::HttpSessions,
            jsonrpc::{parse, Body, Message},
            methods::client_method,
            session::{McpOut, Session},
        },
        plaintext::{Channel, ConnId, Direction, Plaintext},
    },
};

/// Messages held per unlinked answer pipe; past it the oldest go.
const MAX_HELD: usize = 256;
/// Pipe and socket ends followed at once; past it new ones are muted
/// (counted), so a process opening pipes without end cannot grow us.
const MAX_ENDS: usize = 8192;
/// JSON-RPC messages an end may carry without showing MCP methods
/// before it is taken for another JSON-RPC protocol and muted.
const MAX_UNKNOWN: u32 = 16;
/// How long answers wait for their pipe's session to be known before the
/// request ids decide alone.
const HOLD_NS: u64 = 2_000_000_000;
/// How long an HTTP session's exchanges wait for the answer to its
/// initialize: longer than the HTTP layer's idle close (30 s), which ends
/// an event-stream answer the client stopped reading.
const HTTP_HOLD_NS: u64 = 35_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Unknown,
    Client,
    Server,
    /// Not JSON-RPC: muted.
    Ignored,
}

struct End {
    role: Role,
    /// Messages seen while the role was unknown.
    unknown: u32,
    channel: Channel,
    lines: [Lines; 2],
    next: [(u32, u32); 2],
    last_ns: u64,
}

/// What the MCP side counts (the stop line).
#[derive(Debug, Default, Clone, Copy)]
pub struct McpCounts {
    pub sessions: u64,
    pub tool_calls: u64,
    /// Pipes and sockets that began with JSON but were not JSON-RPC.
    pub not_rpc: u64,
    /// Answers dropped: held too long or too many on a pipe no session
    /// was found for.
    pub unmatched: u64,
    /// Ends not followed because `MAX_ENDS` were (muted instead).
    pub over_limit: u64,
}

pub struct McpStreams {
    cap: usize,
    ends: HashMap<(u32, u64), End>,
    /// By (client tgid, inode of the pipe or socket it sends requests on).
    sessions: HashMap<(u32, u64), Session>,
    /// Answer pipe inode -> request pipe inode.
    links: HashMap<u64, u64>,
    /// Request pipe inode -> the server process reading it.
    server_of: HashMap<u64, u32>,
    /// Server processes: the pipes they read requests from and write
    /// answers to.
    servers: HashMap<u32, (Vec<u64>, Vec<u64>)>,
    /// Messages a client read from a pipe not yet linked, with when.
    held: HashMap<(u32, u64), VecDeque<(Message, u64)>>,
    /// Sessions over HTTP (`mcp::http`).
    http: HttpSessions,
    muted: Vec<(u32, u64)>,
    pub counts: McpCounts,
}

impl McpStreams {
    /// `cap`: bytes kept per message.
    pub fn new(cap: usize) -> McpStreams {
        McpStreams {
            cap,
            ends: HashMap::new(),
            sessions: HashMap::new(),
            links: HashMap::new(),
            server_of: HashMap::new(),
            servers: HashMap::new(),
            held: HashMap::new(),
            http: HttpSessions::new(),
            muted: Vec::new(),
            counts: McpCounts::default(),
        }
    }

    /// The piece belongs here: its stream is followed already, or it is a
    /// pipe or socket whose first bytes open a JSON value.
    pub fn wants(&self, piece: &Plaintext) -> bool {
        let ConnId::Io(ino) = piece.conn else {
            return false;
        };
        self.ends.contains_key(&(piece.header.tgid, ino))
            || (piece.offset == 0 && crate::stream::mcp::framing::starts_value(&piece.data))
    }

    /// Takes one piece of a stream `wants` accepted.
    pub fn push(&mut self, piece: Plaintext, out: &mut Vec<McpOut>) {
        let (ConnId::Io(ino), Some(desc)) = (piece.conn, piece.descriptor) else {
            return;
        };
        let key = (piece.header.tgid, ino);
        if !self.ends.contains_key(&key) && self.ends.len() >= MAX_ENDS {
            self.counts.over_limit += 1;
            self.muted.push(key);
            return;
        }
        let cap = self.cap;
        let end = self.ends.entry(key).or_insert_with(|| End {
            role: Role::Unknown,
            unknown: 0,
            channel: desc.channel,
            lines: [Lines::new(cap), Lines::new(cap)],
            next: [(0, 0); 2],
            last_ns: 0,
        });
        end.last_ns = piece.header.boot_ns;
        if end.role == Role::Ignored {
            return;
        }
        let dir = piece.call.direction();
        let missed = piece.missed_since(&mut end.next[dir as usize]);
        let lines = &mut end.lines[dir as usize];
        lines.gap(u64::from(missed));
        let frames = lines.push(&piece.data, piece.header.boot_ns);
        for frame in frames {
            self.frame(key, dir, &piece.header, frame, out);
        }
    }

    fn frame(
        &mut self,
        key: (u32, u64),
        dir: Direction,
        header: &Header,
        frame: Frame,
        out: &mut Vec<McpOut>,
    ) {
        let Some(end) = self.ends.get_mut(&key) else {
            return;
        };
        let msgs = match parse(&frame) {
            Ok(m) => m,
            // An end already known to speak JSON-RPC keeps going past a
            // stray line (a server that logs to stdout).
            Err(_) if end.role != Role::Unknown => return,
            Err(_) => {
                end.role = Role::Ignored;
                self.counts.not_rpc += 1;
                self.muted.push(key);
                return;
            }
        };
        for msg in msgs {
            let Some(end) = self.ends.get_mut(&key) else {
                return;
            };
            if end.role == Role::Unknown {
                end.role = match role_of(&msg, dir) {
                    Some(r) => r,
                    None => {
                        end.unknown += 1;
                        if end.unknown >= MAX_UNKNOWN {
                            // JSON-RPC, but not MCP's methods.
                            end.role = Role::Ignored;
                            self.counts.not_rpc += 1;
                            self.muted.push(key);
                            return;
                        }
                        continue;
                    }
                };
            }
            let (role, channel) = (end.role, end.channel);
            match role {
                Role::Client => self.client(key, channel, dir, header, &frame, msg, out),
                Role::Server => self.server(key, channel, dir),
                Role::Unknown | Role::Ignored => {}
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn client(
        &mut self,
        key: (u32, u64),
        channel: Channel,
        dir: Direction,
        header: &Header,
        frame: &Frame,
        msg: Message,
        out: &mut Vec<McpOut>,
    ) {
        let (tgid, ino) = key;
        let at = header.boot_ns;
        let request_end = match (channel, dir) {
            (Channel::Pipe, Direction::Received) => match self.link_for(tgid, ino) {
                Some(a) => a,
                None => {
                    let q = self.held.entry(key).or_default();
                    if q.len() >= MAX_HELD {
                        q.pop_front();
                        self.counts.unmatched += 1;
                    }
                    q.push_back((msg, at));
                    return;
                }
            },
            _ => ino,
        };
        let session = self.session(tgid, request_end, channel);
        match dir {
            Direction::Sent => {
                let before = session.calls;
                session.sent(header, frame, msg, out);
                self.counts.tool_calls += session.calls - before;
            }
            Direction::Received => {
                let before = session.calls;
                session.received(msg, at, out);
                self.counts.tool_calls += session.calls - before;
            }
        }
    }

    fn session(&mut self, tgid: u32, request_end: u64, channel: Channel) -> &mut Session {
        let counts = &mut self.counts;
        let server_of = &self.server_of;
        self.sessions.entry((tgid, request_end)).or_insert_with(|| {
            counts.sessions += 1;
            let mut s = Session::new(SessionChannel {
                transport: match channel {
                    Channel::Pipe => "stdio",
                    Channel::Unix => "unix",
                    Channel::Tcp { .. } => "tcp",
                },
                session: match channel {
                    Channel::Pipe => format!("pipe:[{request_end}]"),
                    _ => format!("socket:[{request_end}]"),
                },
            });
            s.server.pid = server_of.get(&request_end).copied();
            s
        })
    }

    /// The request pipe of the session whose answers `tgid` reads from
    /// pipe `ino`: told by the server, or, when the client has one stdio
    /// session without a known answer pipe, that one.
    fn link_for(&mut self, tgid: u32, ino: u64) -> Option<u64> {
        if let Some(a) = self.links.get(&ino) {
            return Some(*a);
        }
        let linked: Vec<u64> = self.links.values().copied().collect();
        let mut open = self
            .sessions
            .iter()
            .filter(|((t, a), s)| {
                *t == tgid && s.channel.transport == "stdio" && !linked.contains(a)
            })
            .map(|((_, a), _)| *a);
        let only = open.next()?;
        if open.next().is_some() {
            return None;
        }
        self.links.insert(ino, only);
        Some(only)
    }

    /// A server end: notes which pipes the server reads and writes, and
    /// once one of each is known, links them and mutes both.
    fn server(&mut self, key: (u32, u64), channel: Channel, dir: Direction) {
        let (tgid, ino) = key;
        if channel != Channel::Pipe {
            // The client's end of a socket holds the whole session.
            self.mute(key);
            return;
        }
        let (reads, writes) = self.servers.entry(tgid).or_default();
        let list = match dir {
            Direction::Received => reads,
            Direction::Sent => writes,
        };
        if !list.contains(&ino) {
            list.push(ino);
        }
        if dir == Direction::Received {
            self.server_of.insert(ino, tgid);
            for ((_, a), s) in &mut self.sessions {
                if *a == ino && s.server.pid.is_none() {
                    s.server.pid = Some(tgid);
                }
            }
        }
        let (reads, writes) = &self.servers[&tgid];
        if let ([a], [b]) = (reads.as_slice(), writes.as_slice()) {
            let (a, b) = (*a, *b);
            self.links.insert(b, a);
            self.mute((tgid, a));
            self.mute((tgid, b));
        }
    }

    fn mute(&mut self, key: (u32, u64)) {
        if let Some(end) = self.ends.get_mut(&key) {
            if end.role != Role::Ignored {
                end.role = Role::Ignored;
                self.muted.push(key);
            }
        }
    }

    /// Hands held answers to their sessions where the pipe is now known,
    /// or, after `HOLD_NS`, where the request ids say which session.
    pub fn settle(&mut self, now_ns: u64, out: &mut Vec<McpOut>) {
        self.settle_of(None, now_ns, out);
        for s in self.http.values_mut() {
            self.counts.tool_calls += s.settle(now_ns.saturating_sub(HTTP_HOLD_NS), out);
        }
    }

    /// `settle` for the answers held for `tgid` (all when None).
    fn settle_of(&mut self, tgid: Option<u32>, now_ns: u64, out: &mut Vec<McpOut>) {
        let keys: Vec<(u32, u64)> = self
            .held
            .keys()
            .filter(|k| tgid.is_none_or(|t| k.0 == t))
            .copied()
            .collect();
        for (tgid, b) in keys {
            let a = match self.links.get(&b) {
                Some(a) => Some(*a),
                None => {
                    let oldest = self.held[&(tgid, b)].front().map_or(now_ns, |m| m.1);
                    if now_ns.saturating_sub(oldest) < HOLD_NS {
                        continue;
                    }
                    self.by_ids(tgid, b)
                }
            };
            let Some(q) = self.held.remove(&(tgid, b)) else {
                continue;
            };
            let Some(a) = a else {
                self.counts.unmatched += q.len() as u64;
                continue;
            };
            self.links.insert(b, a);
            let Some(session) = self.sessions.get_mut(&(tgid, a)) else {
                continue;
            };
            let before = session.calls;
            for (msg, at) in q {
                session.received(msg, at, out);
            }
            self.counts.tool_calls += session.calls - before;
        }
    }

    /// The one stdio session of `tgid` waiting for every id among the
    /// answers held for pipe `b`.
    fn by_ids(&self, tgid: u32, b: u64) -> Option<u64> {
        let ids: Vec<&str> = self.held[&(tgid, b)]
            .iter()
            .filter_map(|(m, _)| m.id.as_deref())
            .collect();
        let mut fits = self.sessions.iter().filter(|((t, _), s)| {
            *t == tgid && s.channel.transport == "stdio" && ids.iter().all(|id| s.waits_for(id))
        });
        let (key, _) = fits.next()?;
        fits.next().is_none().then_some(key.1)
    }

    /// Reads an HTTP exchange as MCP if it is one (`mcp::http`); false
    /// when it is not.
    pub fn exchange(
        &mut self,
        ex: &crate::stream::exchange::Exchange,
        out: &mut Vec<McpOut>,
    ) -> bool {
        let before = self.http.len();
        let (mcp, calls) = crate::stream::mcp::http::exchange(&mut self.http, ex, out);
        self.counts.tool_calls += calls;
        self.counts.sessions += (self.http.len() - before) as u64;
        mcp
    }

    /// Ends the sessions and streams of processes `alive` says are gone
    /// and that were quiet since `before_ns`.
    pub fn close_gone(
        &mut self,
        alive: impl Fn(u32) -> bool,
        before_ns: u64,
        out: &mut Vec<McpOut>,
    ) {
        let gone: Vec<u32> = {
            let mut t: Vec<u32> = self
                .ends
                .iter()
                .filter(|(k, e)| e.last_ns < before_ns && !alive(k.0))
                .map(|(k, _)| k.0)
                .chain(self.http.keys().map(|k| k.0).filter(|t| !alive(*t)))
                .collect();
            t.sort_unstable();
            t.dedup();
            t
        };
        for tgid in gone {
            self.exited(tgid, out);
        }
    }

    /// Ends everything of `tgid`: its client sessions' waiting calls go
    /// out unanswered.
    pub fn exited(&mut self, tgid: u32, out: &mut Vec<McpOut>) {
        self.settle_of(Some(tgid), u64::MAX, out);
        self.ends.retain(|k, _| k.0 != tgid);
        self.held.retain(|k, _| k.0 != tgid);
        if let Some((reads, writes)) = self.servers.remove(&tgid) {
            for a in reads {
                self.server_of.remove(&a);
            }
            for b in writes {
                self.links.remove(&b);
            }
        }
        let over_http: Vec<_> = self.http.keys().filter(|k| k.0 == tgid).cloned().collect();
        for k in over_http {
            if let Some(mut s) = self.http.remove(&k) {
                let before = s.session.calls;
                s.end(out);
                self.counts.tool_calls += s.session.calls - before;
            }
        }
        let keys: Vec<_> = self
            .sessions
            .keys()
            .filter(|k| k.0 == tgid)
            .copied()
            .collect();
        for k in keys {
            if let Some(mut s) = self.sessions.remove(&k) {
                let before = s.calls;
                s.end(out);
                self.counts.tool_calls += s.calls - before;
            }
            self.links.retain(|_, a| *a != k.1);
        }
    }

    /// Ends everything (the daemon stops).
    pub fn close_all(&mut self, out: &mut Vec<McpOut>) {
        let mut tgids: Vec<u32> = self.ends.keys().map(|k| k.0).collect();
        tgids.extend(self.sessions.keys().map(|k| k.0));
        tgids.extend(self.http.keys().map(|k| k.0));
        tgids.sort_unstable();
        tgids.dedup();
        for t in tgids {
            self.exited(t, out);
        }
    }

    /// Ends to mute in the kernel since the last call, as (tgid, inode).
    pub fn take_muted(&mut self) -> Vec<(u32, u64)> {
        std::mem::take(&mut self.muted)
    }

    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }
}

/// Which end a first message shows: the client sends requests of the
/// client's methods and reads answers; the server the other way round.
fn role_of(msg: &Message, dir: Direction) -> Option<Role> {
    let from_client = match &msg.body {
        Body::Call { method, .. } => client_method(method)?,
        // Answers go mostly from server to client.
        Body::Result(_) | Body::Error { .. } | Body::Unknown => false,
    };
    Some(match (from_client, dir) {
        (true, Direction::Sent) | (false, Direction::Received) => Role::Client,
        (true, Direction::Received) | (false, Direction::Sent) => Role::Server,
    })
}

#[cfg(test)]
#[path = "streams_tests.rs"]
mod tests;
