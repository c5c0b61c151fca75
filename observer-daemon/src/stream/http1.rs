//! HTTP/1.1 messages from one direction of a connection's plaintext:
//! heads through `httparse`, bodies by Content-Length, chunked transfer
//! coding or the end of the connection. Incremental (bytes come as the
//! process reads and writes them) and bounded: the body kept for parsing
//! is capped, the digest and the length cover all of it.
use sha2::{Digest, Sha256};

/// Header lines a head may have.
const MAX_HEADERS: usize = 64;
/// A head longer than this is not HTTP we can follow.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Which side wrote the messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Request,
    Response,
}

/// The start line and headers. Header values are kept as bytes: they may
/// hold secrets, and only the stream layer's redaction decides what is
/// shown of them.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Head {
    /// Requests: method and target (path and query).
    pub method: String,
    pub target: String,
    /// Responses: the status code.
    pub status: u16,
    /// The protocol version it came in: "1.0", "1.1" or "2".
    pub version: &'static str,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Head {
    /// The first value of header `name` (case-insensitive) as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
            .map(str::trim)
    }
}

/// One message, whole or as much of it as was seen.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    pub head: Head,
    /// The body after transfer decoding (chunk framing removed), still in
    /// its content coding, up to the parser's cap.
    pub body: Vec<u8>,
    /// Bytes of the whole body (beyond the cap too).
    pub body_len: u64,
    /// SHA-256 of the whole body as framed above.
    pub body_sha256: [u8; 32],
    /// Every body byte was seen (no capture gap, not cut by the end of the
    /// stream).
    pub complete: bool,
    /// Boot-time nanoseconds of the first and the last byte.
    pub first_ns: u64,
    pub last_ns: u64,
}

// Printed without header values, query or body: they may hold keys and
// prompts, and a Debug print ends up in logs and panic messages.
impl std::fmt::Debug for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = self.target.split('?').next().unwrap_or_default();
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Head")
            .field("method", &self.method)
            .field("path", &path)
            .field("status", &self.status)
            .field("version", &self.version)
            .field("header_names", &names)
            .finish()
    }
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("head", &self.head)
            .field("body_len", &self.body_len)
            .field("kept", &self.body.len())
            .field("complete", &self.complete)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    /// In a chunk with this many bytes left, or between chunks (0).
    Chunked {
        left: u64,
        in_trailer: bool,
    },
    /// Until the connection ends (a response without length).
    UntilClose,
}

struct Open {
    head: Head,
    framing: Framing,
    body: Vec<u8>,
    body_len: u64,
    hash: Sha256,
    gap: bool,
    first_ns: u64,
    last_ns: u64,
}

/// Why the parser stopped following a stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Http1Error {
    #[error("not an HTTP/1.x {0:?} head: {1}")]
    Head(Side, String),
    #[error("head longer than {MAX_HEAD_BYTES} bytes")]
    HeadTooLong,
    #[error("bad chunk size line")]
    Chunk,
    #[error("bad Content-Length")]
    Length,
}

/// Parses one direction's bytes into messages.
pub struct Parser {
    side: Side,
    body_cap: usize,
    pending: Vec<u8>,
    open: Option<Open>,
    /// Set by the first error: the rest of the stream is not followed.
    failed: Option<Http1Error>,
    /// The request method of each response still to come (a response to
    /// HEAD has no body); responses only.
    pub head_requests: std::collections::VecDeque<bool>,
}

impl Parser {
    pub fn new(side: Side, body_cap: usize) -> Parser {
        Parser {
            side,
            body_cap,
            pending: Vec::new(),
            open: None,
            failed: None,
            head_requests: Default::default(),
        }
    }

    pub fn failed(&self) -> Option<&Http1Error> {
        self.failed.as_ref()
    }

    /// Nothing begun: no message open, no bytes of a head waiting.
    pub fn idle(&self) -> bool {
        self.open.is_none() && self.pending.is_empty()
    }

    /// A message has begun and not ended.
    pub fn in_message(&self) -> bool {
        self.open.is_some()
    }

    /// Takes `bytes` seen at `at_ns`; returns the messages they completed.
    pub fn push(&mut self, bytes: &[u8], at_ns: u64) -> Vec<Message> {
        let mut done = Vec::new();
        if self.failed.is_some() {
            return done;
        }
        self.pending.extend_from_slice(bytes);
        loop {
            let progressed = match self.step(at_ns, &mut done) {
                Ok(p) => p,
                Err(e) => {
                    self.failed = Some(e);
                    self.pending.clear();
                    break;
                }
            };
            if !progressed {
                break;
            }
        }
        done
    }

    /// `n` bytes of the stream were not captured. Inside a body of known
    /// length they are skipped (the message is marked incomplete); anywhere
    /// else the stream cannot be followed further.
    pub fn gap(&mut self, n: u64) {
        match &mut self.open {
            Some(open) => {
                open.gap = true;
                match &mut open.framing {
                    Framing::Length(left) if *left >= n && self.pending.is_empty() => *left -= n,
                    Framing::UntilClose => {}
                    _ => self.failed = Some(Http1Error::Chunk),
                }
            }
            None if n > 0 => self.failed = Some(Http1Error::Head(self.side, "capture gap".into())),
            None => {}
        }
    }

    /// The stream ended: a body that runs until the close is complete, any
    /// other open message is returned incomplete.
    pub fn finish(&mut self) -> Option<Message> {
        let open = self.open.take()?;
        let whole = open.framing == Framing::UntilClose && !open.gap;
        Some(close(open, whole))
    }

    fn step(&mut self, at_ns: u64, done: &mut Vec<Message>) -> Result<bool, Http1Error> {
        let Some(open) = &mut self.open else {
            return self.start(at_ns);
        };
        open.last_ns = at_ns;
        match open.framing {
            Framing::Length(left) => {
                let take = (left as usize).min(self.pending.len());
                feed(open, &self.pending[..take], self.body_cap);
                self.pending.drain(..take);
                open.framing = Framing::Length(left - take as u64);
                if left - take as u64 == 0 {
                    let open = self.open.take().expect("open");
                    let whole = !open.gap;
                    done.push(close(open, whole));
                    return Ok(true);
                }
                Ok(false)
            }
            Framing::UntilClose => {
                let bytes = std::mem::take(&mut self.pending);
                feed(open, &bytes, self.body_cap);
                Ok(false)
            }
            Framing::Chunked { left, in_trailer } => {
                if in_trailer {
                    // Trailer lines end with an empty line.
                    let Some(end) = find(&self.pending, b"\r\n") else {
                        return Ok(false);
                    };
                    let empty = end == 0;
                    self.pending.drain(..end + 2);
                    if empty {
                        let open = self.open.take().expect("open");
                        let whole = !open.gap;
                        done.push(close(open, whole));
                    }
                    return Ok(true);
                }
                if left > 0 {
                    let take = (left as usize).min(self.pending.len());
                    if take == 0 {
                        return Ok(false);
                    }
                    feed(open, &self.pending[..take], self.body_cap);
                    self.pending.drain(..take);
                    open.framing = Framing::Chunked {
                        left: left - take as u64,
                        in_trailer: false,
                    };
                    return Ok(true);
                }
                // Between chunks: the CRLF after a chunk's data, then a size.
                if self.pending.starts_with(b"\r\n") && open.body_len > 0 {
                    self.pending.drain(..2);
                }
                match httparse::parse_chunk_size(&self.pending) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        self.pending.drain(..used);
                        open.framing = Framing::Chunked {
                            left: size,
                            in_trailer: size == 0,
                        };
                        Ok(true)
                    }
                    Ok(httparse::Status::Partial) => Ok(false),
                    Err(_) => Err(Http1Error::Chunk),
                }
            }
        }
    }

    /// Parses a head from `pending`, if a whole one is there.
    fn start(&mut self, at_ns: u64) -> Result<bool, Http1Error> {
        if self.pending.is_empty() {
            return Ok(false);
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let (used, head, framing) = match self.side {
            Side::Request => {
                let mut req = httparse::Request::new(&mut headers);
                let used = match req.parse(&self.pending) {
                    Ok(httparse::Status::Complete(n)) => n,
                    Ok(httparse::Status::Partial) => return self.partial(),
                    Err(e) => return Err(Http1Error::Head(self.side, e.to_string())),
                };
                let head = Head {
                    method: req.method.unwrap_or_default().to_string(),
                    target: req.path.unwrap_or_default().to_string(),
                    status: 0,
                    version: version(req.version),
                    headers: own(req.headers),
                };
                let framing = framing(&head, false, true)?;
                (used, head, framing)
            }
            Side::Response => {
                let mut res = httparse::Response::new(&mut headers);
                let used = match res.parse(&self.pending) {
                    Ok(httparse::Status::Complete(n)) => n,
                    Ok(httparse::Status::Partial) => return self.partial(),
                    Err(e) => return Err(Http1Error::Head(self.side, e.to_string())),
                };
                let status = res.code.unwrap_or_default();
                let head = Head {
                    status,
                    version: version(res.version),
                    headers: own(res.headers),
                    ..Head::default()
                };
                // 1xx answers come before the real one and are skipped.
                if (100..200).contains(&status) {
                    self.pending.drain(..used);
                    return Ok(true);
                }
                let to_head = self.head_requests.pop_front().unwrap_or(false);
                let no_body = to_head || status == 204 || status == 304;
                (used, head.clone(), framing(&head, no_body, false)?)
            }
        };
        self.pending.drain(..used);
        self.open = Some(Open {
            head,
            framing,
            body: Vec::new(),
            body_len: 0,
            hash: Sha256::new(),
            gap: false,
            first_ns: at_ns,
            last_ns: at_ns,
        });
        Ok(true)
    }

    fn partial(&self) -> Result<bool, Http1Error> {
        if self.pending.len() > MAX_HEAD_BYTES {
            return Err(Http1Error::HeadTooLong);
        }
        Ok(false)
    }
}

/// httparse's minor version as the version's name.
fn version(minor: Option<u8>) -> &'static str {
    match minor {
        Some(0) => "1.0",
        _ => "1.1",
    }
}

fn own(headers: &[httparse::Header]) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .map(|h| (h.name.to_string(), h.value.to_vec()))
        .collect()
}

/// How the body of `head` ends (RFC 9112 section 6.3).
fn framing(head: &Head, no_body: bool, request: bool) -> Result<Framing, Http1Error> {
    if no_body {
        return Ok(Framing::Length(0));
    }
    let chunked = head
        .header("transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().trim_end().ends_with("chunked"));
    if chunked {
        return Ok(Framing::Chunked {
            left: 0,
            in_trailer: false,
        });
    }
    match head.header("content-length") {
        Some(n) => n
            .parse()
            .map(Framing::Length)
            .map_err(|_| Http1Error::Length),
        // A request without either has no body; a response runs to the close.
        None if request => Ok(Framing::Length(0)),
        None => Ok(Framing::UntilClose),
    }
}

fn feed(open: &mut Open, bytes: &[u8], cap: usize) {
    open.hash.update(bytes);
    open.body_len += bytes.len() as u64;
    let room = cap.saturating_sub(open.body.len());
    open.body.extend_from_slice(&bytes[..room.min(bytes.len())]);
}

fn close(open: Open, whole: bool) -> Message {
    Message {
        head: open.head,
        complete: whole,
        body: open.body,
        body_len: open.body_len,
        body_sha256: open.hash.finalize().into(),
        first_ns: open.first_ns,
        last_ns: open.last_ns,
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
#[path = "http1_tests.rs"]
mod tests;
