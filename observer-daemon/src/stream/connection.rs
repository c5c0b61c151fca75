//! A watched process's connections, keyed by (tgid, SSL pointer) for TLS
//! and (tgid, inode) for pipes and local sockets: each direction's pieces
//! joined into a byte stream (capture gaps noted), parsed as HTTP/1.1,
//! and requests paired with their responses in order. An HTTP/2
//! connection is recognised by its preface, reported once, and its
//! streams parsed by `http2`. A pipe or socket that carries nothing
//! parsed is handed back to be muted in the kernel.
use std::collections::{HashMap, VecDeque};

use crate::{
    event::Header,
    stream::{
        http1::{Message, Parser, Side},
        http2::{Http2, PREFACE as H2_PREFACE},
        plaintext::{ConnId, Descriptor, Direction, Plaintext},
    },
};

pub use crate::stream::exchange::Exchange;

/// What a connection turned out to carry.
#[derive(Debug, Clone)]
pub enum Finished {
    Exchange(Box<Exchange>),
    /// An HTTP/2 connection began (its streams come as exchanges).
    Http2 {
        header: Header,
        conn: ConnId,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Unknown,
    Http1,
    Http2,
    /// Neither: not followed.
    Other,
}

struct Conn {
    proto: Proto,
    descriptor: Option<Descriptor>,
    requests: Parser,
    responses: Parser,
    /// The streams of an HTTP/2 connection.
    h2: Option<Box<Http2>>,
    /// Requests parsed, waiting for their responses, with their sender.
    waiting: VecDeque<(Header, Message)>,
    /// The header of the piece that began the request being parsed.
    request_header: Option<Header>,
    /// Per direction: where the next piece of the current call should
    /// start, and the bytes of that call still owed.
    next: [(u32, u32); 2],
    last_ns: u64,
}

/// Limits of the connection table.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Body bytes kept per message for parsing.
    pub body_cap: usize,
    /// Connections followed at once; past it the idlest is closed.
    pub max_connections: usize,
}

#[derive(Default)]
pub struct Connections {
    conns: HashMap<(u32, ConnId), Conn>,
    limits: Option<Limits>,
    /// Connections that were not HTTP (counted, not followed).
    pub not_http: u64,
    /// Streams given up after a parse error or a gap outside a body (for
    /// HTTP/2: directions of a connection).
    pub abandoned: u64,
    /// Pipes and sockets (tgid, inode) found to carry nothing parsed, not
    /// yet handed to the kernel to mute.
    muted: Vec<(u32, u64)>,
}

impl Connections {
    pub fn new(limits: Limits) -> Connections {
        Connections {
            limits: Some(limits),
            ..Default::default()
        }
    }

    fn limits(&self) -> Limits {
        self.limits.unwrap_or(Limits {
            body_cap: 4 << 20,
            max_connections: 4096,
        })
    }

    /// The piece's connection is followed here already.
    pub fn follows(&self, piece: &Plaintext) -> bool {
        self.conns.contains_key(&(piece.header.tgid, piece.conn))
    }

    /// Takes one piece; returns what it finished.
    pub fn push(&mut self, piece: Plaintext) -> Vec<Finished> {
        let limits = self.limits();
        let key = (piece.header.tgid, piece.conn);
        let mut out = Vec::new();
        if !self.conns.contains_key(&key) && self.conns.len() >= limits.max_connections {
            if let Some(idlest) = self
                .conns
                .iter()
                .min_by_key(|(_, c)| c.last_ns)
                .map(|(k, _)| *k)
            {
                out.extend(self.close(idlest));
            }
        }
        let conn = self.conns.entry(key).or_insert_with(|| Conn {
            proto: Proto::Unknown,
            descriptor: piece.descriptor,
            requests: Parser::new(Side::Request, limits.body_cap),
            responses: Parser::new(Side::Response, limits.body_cap),
            h2: None,
            waiting: VecDeque::new(),
            request_header: None,
            next: [(0, 0); 2],
            last_ns: 0,
        });
        conn.last_ns = piece.header.boot_ns;
        // A TLS connection's socket is known from the first call that
        // touched it (not one served from the library's buffer).
        if conn.descriptor.is_none() {
            conn.descriptor = piece.descriptor;
        }
        let dir = piece.call.direction();
        let missed = piece.missed_since(&mut conn.next[dir as usize]);
        if conn.proto == Proto::Unknown {
            if dir == Direction::Received {
                // The server spoke first: not a protocol we follow.
                conn.proto = Proto::Other;
                not_followed(&mut self.muted, key);
            } else if piece.data.starts_with(H2_PREFACE) || H2_PREFACE.starts_with(&piece.data) {
                conn.proto = Proto::Http2;
                conn.h2 = Some(Box::new(Http2::new(
                    piece.conn,
                    piece.descriptor,
                    limits.body_cap,
                )));
                out.push(Finished::Http2 {
                    header: piece.header.clone(),
                    conn: piece.conn,
                });
            } else if looks_like_request(&piece.data) {
                conn.proto = Proto::Http1;
            } else {
                conn.proto = Proto::Other;
                self.not_http += 1;
                not_followed(&mut self.muted, key);
            }
        }
        if let Some(h2) = conn.h2.as_mut() {
            let done = h2.push(&piece.header, dir, u64::from(missed), &piece.data);
            out.extend(done.into_iter().map(|e| Finished::Exchange(Box::new(e))));
            self.abandoned += h2.take_given_up();
            return out;
        }
        if conn.proto != Proto::Http1 {
            return out;
        }
        let at = piece.header.boot_ns;
        match dir {
            Direction::Sent => {
                if missed > 0 {
                    conn.requests.gap(u64::from(missed));
                }
                if conn.request_header.is_none() {
                    conn.request_header = Some(piece.header.clone());
                }
                for m in conn.requests.push(&piece.data, at) {
                    // The first completes the request this header began; a
                    // later one in the same piece began in this piece.
                    let header = conn
                        .request_header
                        .take()
                        .unwrap_or_else(|| piece.header.clone());
                    conn.responses
                        .head_requests
                        .push_back(m.head.method == "HEAD");
                    conn.waiting.push_back((header, m));
                }
                if !conn.requests.idle() && conn.request_header.is_none() {
                    conn.request_header = Some(piece.header.clone());
                }
            }
            Direction::Received => {
                if missed > 0 {
                    conn.responses.gap(u64::from(missed));
                }
                for m in conn.responses.push(&piece.data, at) {
                    if let Some((header, request)) = conn.waiting.pop_front() {
                        out.push(Finished::Exchange(Box::new(Exchange {
                            header,
                            conn: piece.conn,
                            descriptor: conn.descriptor,
                            request,
                            response: Some(m),
                        })));
                    }
                }
            }
        }
        if conn.requests.failed().is_some() || conn.responses.failed().is_some() {
            self.abandoned += 1;
            out.extend(self.close(key));
        }
        out
    }

    /// Closes connections idle since before `before_ns`: a response that
    /// runs to the close ends, requests still waiting go out unanswered.
    pub fn expire(&mut self, before_ns: u64) -> Vec<Finished> {
        let idle: Vec<_> = self
            .conns
            .iter()
            .filter(|(_, c)| c.last_ns < before_ns)
            .map(|(k, _)| *k)
            .collect();
        idle.into_iter().flat_map(|k| self.close(k)).collect()
    }

    /// Closes the connections of processes that are gone (`alive` says
    /// no) and quiet since before `before_ns` (their last pieces may still
    /// be on the way through the ring): a client that stops reading at a
    /// stream's last event (the OpenAI SDK at `data: [DONE]`) never reads
    /// the chunk that ends the body, and its call would otherwise wait for
    /// the idle timeout long after the process exited.
    pub fn close_gone(&mut self, alive: impl Fn(u32) -> bool, before_ns: u64) -> Vec<Finished> {
        let gone: Vec<_> = self
            .conns
            .iter()
            .filter(|(k, c)| c.last_ns < before_ns && !alive(k.0))
            .map(|(k, _)| *k)
            .collect();
        gone.into_iter().flat_map(|k| self.close(k)).collect()
    }

    /// Some connection of `tgid` is still followed.
    pub fn has_process(&self, tgid: u32) -> bool {
        self.conns.keys().any(|k| k.0 == tgid)
    }

    /// Closes every connection of `tgid` (it exited).
    pub fn exited(&mut self, tgid: u32) -> Vec<Finished> {
        let keys: Vec<_> = self.conns.keys().filter(|k| k.0 == tgid).copied().collect();
        keys.into_iter().flat_map(|k| self.close(k)).collect()
    }

    /// Closes everything (the daemon stops).
    pub fn close_all(&mut self) -> Vec<Finished> {
        let keys: Vec<_> = self.conns.keys().copied().collect();
        keys.into_iter().flat_map(|k| self.close(k)).collect()
    }

    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Pipes and sockets found to carry nothing parsed since the last
    /// call, as (tgid, inode): the kernel need not copy them any more.
    pub fn take_muted(&mut self) -> Vec<(u32, u64)> {
        std::mem::take(&mut self.muted)
    }

    fn close(&mut self, key: (u32, ConnId)) -> Vec<Finished> {
        let Some(mut conn) = self.conns.remove(&key) else {
            return Vec::new();
        };
        if let Some(h2) = conn.h2.take() {
            let done = h2.finish();
            return done
                .into_iter()
                .map(|e| Finished::Exchange(Box::new(e)))
                .collect();
        }
        let mut out = Vec::new();
        let mut last = conn.responses.finish();
        // An unfinished request is still a request that was made.
        if let Some(m) = conn.requests.finish() {
            let header = conn.request_header.take();
            if let Some(h) = header {
                conn.waiting.push_back((h, m));
            }
        }
        for (header, request) in conn.waiting.drain(..) {
            out.push(Finished::Exchange(Box::new(Exchange {
                header,
                conn: key.1,
                descriptor: conn.descriptor,
                request,
                response: last.take(),
            })));
        }
        out
    }
}

/// Notes a pipe or socket that carries nothing parsed, to be muted.
fn not_followed(muted: &mut Vec<(u32, u64)>, key: (u32, ConnId)) {
    if let (tgid, ConnId::Io(ino)) = key {
        muted.push((tgid, ino));
    }
}

/// An HTTP/1.x method and a space: the start of a request line.
fn looks_like_request(data: &[u8]) -> bool {
    const METHODS: [&[u8]; 9] = [
        b"GET ",
        b"POST ",
        b"PUT ",
        b"PATCH ",
        b"DELETE ",
        b"HEAD ",
        b"OPTIONS ",
        b"CONNECT ",
        b"TRACE ",
    ];
    METHODS
        .iter()
        .any(|m| data.starts_with(m) || (data.len() < m.len() && m.starts_with(data)))
}

#[cfg(test)]
#[path = "connection_tests.rs"]
mod tests;
