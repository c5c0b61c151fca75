//! Reading an HTTP/1.1 response from a receiver or a proxy that may be
//! hostile: httparse parses the status line, headers and chunk sizes; this
//! file bounds what is read. The head (status line and headers) may hold at
//! most `MAX_HEAD` bytes and `MAX_HEADERS` headers, the body at most
//! `MAX_BODY` bytes (the rest is not read: the connection is closed), and
//! the whole response must arrive before one deadline, so a receiver that
//! trickles bytes cannot hold the sink longer than its `timeout_ms`.
use std::{
    io::{self, Read},
    net::TcpStream,
    time::{Duration, Instant},
};

use super::super::transport::Conn;

/// Most bytes of a status line plus headers (and of a chunked body's trailers).
pub const MAX_HEAD: usize = 64 * 1024;
/// Most headers in a head.
pub const MAX_HEADERS: usize = 64;
/// Most body bytes read; receivers answer a few hundred bytes.
pub const MAX_BODY: usize = 1 << 20;
/// Most bytes of a chunk-size line (size, extensions, CRLF).
const MAX_CHUNK_LINE: usize = 1024;

/// A stream whose read timeout can be set before each read.
pub trait TimedRead: Read {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
}

impl TimedRead for Conn {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        Conn::set_read_timeout(self, timeout)
    }
}

impl TimedRead for TcpStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// False when the connection cannot carry another request: the server
    /// said so, the body was cut at `MAX_BODY`, or it ended with the
    /// connection.
    pub keep_alive: bool,
    /// At most `MAX_BODY` bytes.
    pub body: Vec<u8>,
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Buffered input read before a deadline.
pub struct Input<'a, S: TimedRead> {
    stream: &'a mut S,
    deadline: Instant,
    timeout: Duration,
    buf: Vec<u8>,
    pos: usize,
}

impl<'a, S: TimedRead> Input<'a, S> {
    /// Everything must be read within `timeout` from now.
    pub fn new(stream: &'a mut S, timeout: Duration) -> Self {
        Input {
            stream,
            deadline: Instant::now() + timeout,
            timeout,
            buf: Vec::new(),
            pos: 0,
        }
    }

    fn available(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
    }

    /// Reads more bytes; 0 at the end of the stream.
    fn fill(&mut self) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        let too_slow = || {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "no complete response within {} ms",
                    self.timeout.as_millis()
                ),
            )
        };
        if left.is_zero() {
            return Err(too_slow());
        }
        self.stream.set_read_timeout(Some(left))?;
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        let mut chunk = [0u8; 8192];
        let n = loop {
            match self.stream.read(&mut chunk) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(too_slow())
                }
                Err(e) => return Err(e),
            }
        };
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Reads up to `n` body bytes into `out`; false if the stream ended first.
    fn body_bytes(&mut self, out: &mut Vec<u8>, n: usize) -> io::Result<bool> {
        let mut left = n;
        while left > 0 {
            if self.available().is_empty() && self.fill()? == 0 {
                return Ok(false);
            }
            let take = self.available().len().min(left);
            out.extend_from_slice(&self.available()[..take]);
            self.consume(take);
            left -= take;
        }
        Ok(true)
    }

    /// Bytes received past the end of the response.
    pub fn leftover(&self) -> usize {
        self.available().len()
    }
}

/// What the head says about the body.
pub struct Head {
    pub status: u16,
    pub keep_alive: bool,
    content_length: Option<u64>,
    chunked: bool,
    /// Transfer-Encoding other than chunked: the body ends with the connection.
    until_close: bool,
}

/// Reads one response head (status line and headers).
pub fn read_head<S: TimedRead>(input: &mut Input<'_, S>) -> io::Result<Head> {
    loop {
        let parsed = {
            let data = input.available();
            let data = &data[..data.len().min(MAX_HEAD)];
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(data) {
                Ok(httparse::Status::Complete(n)) => Some((n, head_of(&resp)?)),
                Ok(httparse::Status::Partial) if data.len() >= MAX_HEAD => {
                    return Err(bad(format!(
                        "the response head is longer than {MAX_HEAD} bytes"
                    )))
                }
                Ok(httparse::Status::Partial) => None,
                Err(httparse::Error::TooManyHeaders) => {
                    return Err(bad(format!(
                        "the response has more than {MAX_HEADERS} headers"
                    )))
                }
                Err(e) => return Err(bad(format!("malformed response head: {e}"))),
            }
        };
        match parsed {
            Some((n, head)) => {
                input.consume(n);
                return Ok(head);
            }
            None => {
                let had = input.available().len();
                if input.fill()? == 0 {
                    return Err(bad(if had == 0 {
                        "the server closed the connection".to_string()
                    } else {
                        format!(
                            "the server closed the connection after {had} bytes of a response head"
                        )
                    }));
                }
            }
        }
    }
}

fn head_of(resp: &httparse::Response<'_, '_>) -> io::Result<Head> {
    let status = resp.code.unwrap_or(0);
    let mut keep_alive = resp.version == Some(1);
    let mut content_length = None;
    let mut chunked = false;
    let mut until_close = false;
    for h in resp.headers.iter() {
        let value = std::str::from_utf8(h.value)
            .map_err(|_| bad(format!("header {} is not text", h.name)))?
            .trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            // Digits only ("+1" and "1,1" are refused): a length two
            // parsers read differently is an attack, not an answer.
            let n = (!value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()))
                .then(|| value.parse::<u64>().ok())
                .flatten()
                .ok_or_else(|| bad(format!("bad Content-Length {value:?}")))?;
            if content_length.is_some_and(|m| m != n) {
                return Err(bad("two different Content-Length headers"));
            }
            content_length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let last = value.rsplit(',').next().unwrap_or("").trim();
            chunked = last.eq_ignore_ascii_case("chunked");
            until_close = !chunked;
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case("keep-alive") && resp.version == Some(0) {
                    keep_alive = true;
                }
            }
        }
    }
    Ok(Head {
        status,
        keep_alive,
        content_length,
        chunked,
        until_close,
    })
}

/// Reads a response to a request: interim 1xx answers are skipped, the
/// body is read as its head says, within the bounds above.
pub fn read_response<S: TimedRead>(stream: &mut S, timeout: Duration) -> io::Result<Response> {
    let mut input = Input::new(stream, timeout);
    let mut head = read_head(&mut input)?;
    while (100..200).contains(&head.status) {
        head = read_head(&mut input)?;
    }
    let mut body = Vec::new();
    let mut keep_alive = head.keep_alive;
    if head.status == 204 || head.status == 304 {
        // No body by definition.
    } else if head.chunked {
        keep_alive &= read_chunked(&mut input, &mut body)?;
    } else if let (Some(n), false) = (head.content_length, head.until_close) {
        let take = n.min(MAX_BODY as u64) as usize;
        if !input.body_bytes(&mut body, take)? {
            return Err(bad(format!(
                "the response body ended after {} of {n} bytes",
                body.len()
            )));
        }
        // The rest is not read: the connection cannot be reused.
        keep_alive &= n == take as u64;
    } else {
        // The body ends with the connection (or is cut at MAX_BODY).
        input.body_bytes(&mut body, MAX_BODY)?;
        keep_alive = false;
    }
    // Bytes past the response mean the stream is out of step.
    keep_alive &= input.leftover() == 0;
    Ok(Response {
        status: head.status,
        keep_alive,
        body,
    })
}

/// Reads a chunked body into `body` (at most `MAX_BODY` bytes); false if
/// it stopped there, leaving the connection unusable.
fn read_chunked<S: TimedRead>(input: &mut Input<'_, S>, body: &mut Vec<u8>) -> io::Result<bool> {
    loop {
        let size = loop {
            let data = input.available();
            match httparse::parse_chunk_size(&data[..data.len().min(MAX_CHUNK_LINE)]) {
                Ok(httparse::Status::Complete((n, size))) => {
                    input.consume(n);
                    break size;
                }
                Ok(httparse::Status::Partial) if data.len() >= MAX_CHUNK_LINE => {
                    return Err(bad(format!(
                        "a chunk-size line is longer than {MAX_CHUNK_LINE} bytes"
                    )))
                }
                Ok(httparse::Status::Partial) => {
                    if input.fill()? == 0 {
                        return Err(bad("the connection closed inside a chunked body"));
                    }
                }
                Err(_) => return Err(bad("bad chunk size")),
            }
        };
        if size == 0 {
            read_trailers(input)?;
            return Ok(true);
        }
        let room = (MAX_BODY - body.len()) as u64;
        if size > room {
            // Keep what fits, read no further.
            if !input.body_bytes(body, room as usize)? {
                return Err(bad("the connection closed inside a chunk"));
            }
            return Ok(false);
        }
        if !input.body_bytes(body, size as usize)? {
            return Err(bad("the connection closed inside a chunk"));
        }
        // The CRLF after the chunk data.
        let mut crlf = Vec::with_capacity(2);
        if !input.body_bytes(&mut crlf, 2)? || crlf != b"\r\n" {
            return Err(bad("no CRLF after a chunk"));
        }
    }
}

/// Trailer fields after the last chunk, up to the empty line (ignored).
fn read_trailers<S: TimedRead>(input: &mut Input<'_, S>) -> io::Result<()> {
    loop {
        let data = input.available();
        let data = &data[..data.len().min(MAX_HEAD)];
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        match httparse::parse_headers(data, &mut headers) {
            Ok(httparse::Status::Complete((n, _))) => {
                input.consume(n);
                return Ok(());
            }
            Ok(httparse::Status::Partial) if data.len() >= MAX_HEAD => {
                return Err(bad(format!(
                    "the trailers are longer than {MAX_HEAD} bytes"
                )))
            }
            Ok(httparse::Status::Partial) => {
                if input.fill()? == 0 {
                    return Err(bad("the connection closed inside the trailers"));
                }
            }
            Err(e) => return Err(bad(format!("malformed trailers: {e}"))),
        }
    }
}

#[cfg(test)]
#[path = "response_tests.rs"]
mod tests;
