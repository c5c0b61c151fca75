//! MCP over HTTP (the Streamable HTTP transport, and the POSTs of the older
//! HTTP+SSE one): a client's JSON-RPC messages in POST bodies, the answers
//! a JSON body or an event stream of messages. Read from the exchanges the
//! HTTP layer pairs, so plain HTTP on loopback and HTTPS (TLS plaintext)
//! alike; one session per client process and server (host and path).
use std::collections::HashMap;

use crate::stream::{
    content,
    exchange::Exchange,
    http1::Message as HttpMessage,
    mcp::{
        detail::Channel,
        framing::Frame,
        jsonrpc::{parse_json, Message},
        methods::client_method,
        session::{McpOut, Session},
    },
    plaintext::ConnId,
    sse,
};

/// Exchanges held per session until the answer to its `initialize` is
/// read; past it they are read without (their server then `unknown`).
const MAX_HELD: usize = 256;

/// One client's session with one server over HTTP.
pub struct HttpSession {
    pub session: Session,
    /// Exchanges that finished before the answer to `initialize` was
    /// read: the HTTP layer finishes an exchange when its answer ends, and
    /// an answer streamed as events may end long after later ones on
    /// other connections (the client stops reading at the message it
    /// waited for).
    held: Vec<Exchange>,
}

impl HttpSession {
    /// The server's name is known (its answer to `initialize` was read).
    fn named(&self) -> bool {
        self.session.server.name != "unknown"
    }

    /// Reads what was held since before `before_ns` even though the
    /// server's name is still unknown (the capture began after the
    /// handshake, or its answer was lost).
    pub fn settle(&mut self, before_ns: u64, out: &mut Vec<McpOut>) -> u64 {
        let calls = self.session.calls;
        if self
            .held
            .first()
            .is_some_and(|e| e.request.first_ns < before_ns)
        {
            self.release(out);
        }
        self.session.calls - calls
    }

    /// The session ends: what was held is read, then calls still waiting
    /// go out unanswered.
    pub fn end(&mut self, out: &mut Vec<McpOut>) {
        self.release(out);
        self.session.end(out);
    }

    fn release(&mut self, out: &mut Vec<McpOut>) {
        let mut held = std::mem::take(&mut self.held);
        held.sort_by_key(|e| e.request.first_ns);
        for ex in held {
            if let Some(msgs) = client_messages(&ex) {
                feed(&mut self.session, &ex, msgs, out);
            }
        }
    }
}

/// HTTP sessions by (client tgid, `host/path`).
pub type HttpSessions = HashMap<(u32, String), HttpSession>;

/// Reads `ex` as MCP if it is: a POST of JSON-RPC that names MCP's
/// methods (or answers the server). Returns whether it was, and the tool
/// calls it completed.
pub fn exchange(sessions: &mut HttpSessions, ex: &Exchange, out: &mut Vec<McpOut>) -> (bool, u64) {
    let Some(msgs) = client_messages(ex) else {
        return (false, 0);
    };
    let req = &ex.request;
    let host = req.head.header("host").unwrap_or_default();
    let path = req.head.target.split('?').next().unwrap_or_default();
    let place = format!("{host}{path}");
    let s = sessions
        .entry((ex.header.tgid, place.clone()))
        .or_insert_with(|| {
            let scheme = if matches!(ex.conn, ConnId::Tls(_)) {
                "https"
            } else {
                "http"
            };
            HttpSession {
                session: Session::new(Channel {
                    transport: scheme,
                    session: format!("{scheme}://{place}"),
                }),
                held: Vec::new(),
            }
        });
    let before = s.session.calls;
    let init = msgs.iter().any(|m| m.method() == Some("initialize"));
    if !s.named() && !init && s.held.len() < MAX_HELD {
        s.held.push(ex.clone());
        return (true, 0);
    }
    feed(&mut s.session, ex, msgs, out);
    if s.named() {
        s.release(out);
    }
    (true, s.session.calls - before)
}

/// The client's messages in `ex`, if it is MCP.
fn client_messages(ex: &Exchange) -> Option<Vec<Message>> {
    let req = &ex.request;
    let json = req
        .head
        .header("content-type")
        .is_some_and(|t| t.to_ascii_lowercase().starts_with("application/json"));
    if req.head.method != "POST" || !json {
        return None;
    }
    let msgs = parse_json(&content::decoded_body(req), req.body_len).ok()?;
    msgs.iter().all(is_from_client).then_some(msgs)
}

/// The request's messages, then the answer's, into the session.
fn feed(session: &mut Session, ex: &Exchange, msgs: Vec<Message>, out: &mut Vec<McpOut>) {
    let req = &ex.request;
    let frame = Frame {
        bytes: Vec::new(),
        len: req.body_len,
        truncated: !req.complete,
        gap: !req.complete,
        sha256: req.body_sha256,
        first_ns: req.first_ns,
    };
    for m in msgs {
        session.sent(&ex.header, &frame, m, out);
    }
    if let Some(res) = &ex.response {
        for m in answers(res) {
            session.received(m, res.last_ns, out);
        }
    }
}

/// A message a client sends: a request or notification of the client's
/// methods, or an answer (to a server's request).
fn is_from_client(m: &Message) -> bool {
    match m.method() {
        Some(method) => client_method(method) == Some(true) || method.starts_with("notifications/"),
        None => true,
    }
}

/// The messages of an answer: a JSON body, or each event of a stream.
fn answers(res: &HttpMessage) -> Vec<Message> {
    let kind = res
        .head
        .header("content-type")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let body = content::decoded_body(res);
    if kind.starts_with("text/event-stream") {
        sse::events(&body)
            .into_iter()
            .filter_map(|e| parse_json(e.data.as_bytes(), e.data.len() as u64).ok())
            .flatten()
            .collect()
    } else if kind.starts_with("application/json") {
        parse_json(&body, res.body_len).unwrap_or_default()
    } else {
        Vec::new()
    }
}
