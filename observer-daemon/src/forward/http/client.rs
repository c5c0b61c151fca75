//! The HTTP/1.1 POST client the `http` and `clickhouse` sinks share: one
//! keep-alive connection to the receiver over the TCP/TLS transport,
//! direct or through the proxy (a CONNECT tunnel for https://, the
//! absolute form for http://), and a response read within `response`'s
//! bounds before one deadline. What a request carries beyond that (its
//! path, content type, credentials) is the sink's.
use std::{io::Write, sync::Arc, time::Duration};

use rustls::ClientConfig;

use super::{
    proxy::Proxy,
    response::{read_response, Response},
    Url,
};
use crate::forward::{config::TlsConfig, sink::SendError, transport::Conn};

/// `SendError::maybe_delivered` of a failure after the whole request was
/// written: the caller replaces it with its batch's length (the receiver
/// may have stored the batch).
pub const AFTER_REQUEST: usize = usize::MAX;

/// How long a receiver that broke off a chunked request is given to say
/// why.
const EARLY_ANSWER_WAIT: Duration = Duration::from_millis(500);

pub struct Client {
    pub url: Url,
    tls: Option<Arc<ClientConfig>>,
    /// Checked against the server certificate (https:// only).
    tls_name: String,
    /// The proxy chosen at start (configuration, else environment).
    proxy: Option<Proxy>,
    timeout: Duration,
    conn: Option<Conn>,
}

impl Client {
    pub fn new(
        url: Url,
        tls: Option<Arc<ClientConfig>>,
        server_name: Option<String>,
        proxy: Option<Proxy>,
        timeout: Duration,
    ) -> Client {
        let tls_name = server_name.unwrap_or_else(|| url.host.clone());
        Client {
            url,
            tls,
            tls_name,
            proxy,
            timeout,
            conn: None,
        }
    }

    /// The client of a sink's settings: its `url`, `[tls]` (the server
    /// name) and `timeout_ms`.
    pub fn for_sink(
        url: &str,
        tls: Option<Arc<ClientConfig>>,
        settings: &TlsConfig,
        proxy: Option<Proxy>,
        timeout_ms: u64,
    ) -> Result<Client, String> {
        Ok(Client::new(
            Url::parse(url)?,
            tls,
            settings.server_name.clone(),
            proxy,
            Duration::from_millis(timeout_ms),
        ))
    }

    /// A connection to the receiver: direct, or through the proxy (a
    /// CONNECT tunnel for https://, a plain connection for http://).
    fn connect(&self) -> Result<Conn, SendError> {
        let tls = if self.url.https {
            self.tls.as_ref().map(|c| (c, self.tls_name.as_str()))
        } else {
            None
        };
        let Some(proxy) = &self.proxy else {
            return Conn::connect(&self.url.authority, tls, self.timeout)
                .map_err(|e| SendError::new("connect", e, 0));
        };
        let mut sock = crate::forward::transport::tcp(&proxy.authority, self.timeout)
            .map_err(|e| SendError::new("proxy", e, 0))?;
        if self.url.https {
            proxy
                .tunnel(&mut sock, &self.url.authority, self.timeout)
                .map_err(|e| SendError::new("proxy", e, 0))?;
        }
        Conn::over(sock, &self.url.authority, tls).map_err(|e| SendError::new("connect", e, 0))
    }

    /// POSTs `body` to `target` (path and query, from "/") with `headers`
    /// (complete lines, each ending in CRLF). A failure forgets the
    /// connection; so does an answer that closes it. A failure after the
    /// request was written has `maybe_delivered` [`AFTER_REQUEST`].
    pub fn post(
        &mut self,
        target: &str,
        headers: &str,
        body: &[u8],
    ) -> Result<Response, SendError> {
        let result = self.exchange(target, headers, body);
        match &result {
            Ok(r) if r.keep_alive => {}
            _ => self.conn = None,
        }
        result
    }

    fn exchange(
        &mut self,
        target: &str,
        headers: &str,
        body: &[u8],
    ) -> Result<Response, SendError> {
        let length = format!("Content-Length: {}\r\n", body.len());
        let timeout = self.timeout;
        let conn = self.write_head(target, &length, headers)?;
        conn.write_all(body)
            .and_then(|()| conn.flush())
            .map_err(|e| SendError::new("write", e, 0))?;
        // One deadline for the whole response: a receiver that trickles
        // bytes cannot hold the sink longer than the timeout.
        read_response(conn, timeout).map_err(|e| SendError::new("response", e, AFTER_REQUEST))
    }

    /// Connects if needed and writes a POST's head; `length` is its
    /// Content-Length or Transfer-Encoding line.
    fn write_head(
        &mut self,
        target: &str,
        length: &str,
        headers: &str,
    ) -> Result<&mut Conn, SendError> {
        if self.conn.is_none() {
            self.conn = Some(self.connect()?);
        }
        // Through a proxy without a tunnel (http://), the request names the
        // whole URL (absolute form) and carries the proxy's credentials.
        let (target, proxy_auth) = match &self.proxy {
            Some(p) if !self.url.https => (
                format!("http://{}{target}", self.url.authority),
                p.authorization_header(),
            ),
            _ => (target.to_string(), String::new()),
        };
        let head = format!(
            "POST {target} HTTP/1.1\r\nHost: {}\r\nUser-Agent: observerd/{}\r\n{length}Connection: keep-alive\r\n{proxy_auth}{headers}\r\n",
            self.url.authority,
            env!("CARGO_PKG_VERSION"),
        );
        let Some(conn) = self.conn.as_mut() else {
            return Err(SendError::new("connect", "no connection", 0));
        };
        conn.write_all(head.as_bytes())
            .map_err(|e| SendError::new("write", e, 0))?;
        Ok(conn)
    }

    /// Starts a POST whose body follows in pieces ([`Client::chunk`],
    /// then [`Client::finish_chunked`]): the receiver reads the body while
    /// it is being written. A failure forgets the connection.
    pub fn start_chunked(&mut self, target: &str, headers: &str) -> Result<(), SendError> {
        let result = self
            .write_head(target, "Transfer-Encoding: chunked\r\n", headers)
            .map(|_| ());
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    /// One piece of the body of the POST [`Client::start_chunked`]
    /// started. A receiver that refused the request while it was being
    /// written (and closed the connection) is asked for its answer, which
    /// becomes the error: an `http_status` error with its status and body,
    /// else the write error.
    pub fn chunk(&mut self, data: &[u8]) -> Result<(), SendError> {
        if data.is_empty() {
            // An empty chunk would end the body.
            return Ok(());
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(SendError::new("write", "no request under way", 0));
        };
        let written = conn
            .write_all(format!("{:x}\r\n", data.len()).as_bytes())
            .and_then(|()| conn.write_all(data))
            .and_then(|()| conn.write_all(b"\r\n"));
        let Err(e) = written else {
            return Ok(());
        };
        let early = read_response(conn, EARLY_ANSWER_WAIT).ok();
        self.conn = None;
        Err(match early {
            Some(r) => SendError::new(
                "http_status",
                format!(
                    "HTTP {} while the request was being sent: {}",
                    r.status,
                    String::from_utf8_lossy(&r.body[..r.body.len().min(300)]).trim()
                ),
                0,
            ),
            None => SendError::new("write", e, 0),
        })
    }

    /// Ends the body of the POST [`Client::start_chunked`] started and
    /// reads the answer, as [`Client::post`] does.
    pub fn finish_chunked(&mut self) -> Result<Response, SendError> {
        let result = match self.conn.as_mut() {
            None => Err(SendError::new("write", "no request under way", 0)),
            Some(conn) => match conn.write_all(b"0\r\n\r\n").and_then(|()| conn.flush()) {
                Err(e) => Err(SendError::new("write", e, 0)),
                Ok(()) => read_response(conn, self.timeout)
                    .map_err(|e| SendError::new("response", e, AFTER_REQUEST)),
            },
        };
        match &result {
            Ok(r) if r.keep_alive => {}
            _ => self.conn = None,
        }
        result
    }

    /// Forgets the connection; the next request reconnects.
    pub fn reset(&mut self) {
        self.conn = None;
    }
}

/// gzip of `raw` (fast: the sinks compress on their own thread, and a
/// batch is read, sent and confirmed before the next one).
pub fn gzip(raw: &[u8]) -> Result<Vec<u8>, SendError> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(raw)
        .and_then(|()| gz.finish())
        .map_err(|e| SendError::new("encode", e, 0))
}
