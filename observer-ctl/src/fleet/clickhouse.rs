//! Reading the fleet store: SELECTs over ClickHouse's HTTP interface, the
//! rows streamed as JSONEachRow (one JSON object per line) and handed to
//! the caller one at a time, so a host's whole log never sits in memory.
//! The connection is the sinks' own (TCP or TLS through the daemon's
//! transport); the password comes from a 0600 file as for the sink, and is
//! refused over http:// unless asked for.
use std::{
    io::{BufRead, BufReader, Read, Write},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use base64::Engine as _;
use rustls::ClientConfig;
use serde::de::DeserializeOwned;

use crate::CtlError;
use observer_daemon::forward::{
    config::TlsConfig, http::Url, read_secret, tls::client_config, transport::Conn,
};

/// Where the fleet store is and how to log in (the `--clickhouse` flags).
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// The HTTP interface, e.g. `http://127.0.0.1:8123` (a path and query
    /// string are kept: `?max_threads=2`).
    pub url: String,
    /// The database holding `receipts`, `checkpoints` and `keys`.
    pub database: String,
    /// The user; the server's default user when none.
    pub user: Option<String>,
    /// A 0600 file holding the password.
    pub password_file: Option<PathBuf>,
    /// Send the password over http:// (loopback, a test server).
    pub allow_password_over_http: bool,
    /// PEM CA certificates for https:// (default: the system bundle).
    pub ca_file: Option<PathBuf>,
}

/// A client of one ClickHouse server.
#[derive(Clone)]
pub struct ClickHouse {
    url: Url,
    database: String,
    authorization: Option<String>,
    tls: Option<Arc<ClientConfig>>,
    timeout: Duration,
}

/// Most bytes of a response head, and of an error answer read whole.
const MAX_HEAD: usize = 64 * 1024;

impl ClickHouse {
    pub fn new(s: &Settings) -> Result<ClickHouse, CtlError> {
        let url = Url::parse(&s.url).map_err(|e| CtlError::Usage(format!("--clickhouse {e}")))?;
        let password = match &s.password_file {
            Some(path) => Some(read_secret("--password-file", path).map_err(CtlError::Usage)?),
            None => None,
        };
        if password.is_some() && !url.https && !s.allow_password_over_http {
            return Err(CtlError::Usage(format!(
                "--clickhouse {}: a password over http:// travels in clear; use https:// or \
                 --allow-password-over-http",
                s.url
            )));
        }
        let authorization = match (&s.user, password) {
            (None, None) => None,
            (user, password) => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!(
                    "{}:{}",
                    user.as_deref().unwrap_or("default"),
                    password.unwrap_or_default()
                ))
            )),
        };
        let tls = if url.https {
            let cfg = TlsConfig {
                ca_file: s.ca_file.clone(),
                ..TlsConfig::default()
            };
            Some(client_config(&cfg).map_err(|e| CtlError::Usage(format!("--ca-file: {e}")))?)
        } else {
            None
        };
        Ok(ClickHouse {
            url,
            database: s.database.clone(),
            authorization,
            tls,
            timeout: Duration::from_secs(300),
        })
    }

    /// Runs `select` (without a FORMAT clause) and calls `f` with each
    /// row; returns how many rows there were.
    pub fn for_each_row<T: DeserializeOwned>(
        &self,
        select: &str,
        mut f: impl FnMut(T) -> Result<(), CtlError>,
    ) -> Result<u64, CtlError> {
        self.for_each_line(&format!("{select} FORMAT JSONEachRow"), |line, n| {
            if line.iter().all(u8::is_ascii_whitespace) {
                return Ok(false);
            }
            let row =
                serde_json::from_slice(line).map_err(|e| self.bad_row(line, n, &e.to_string()))?;
            f(row)?;
            Ok(true)
        })
    }

    /// Streams the rows of `select` as TabSeparated: each row's fields,
    /// unescaped, `None` for NULL. For the big columns (a host's envelopes
    /// and contexts, read by fleet verify) it is cheaper than JSONEachRow
    /// on both ends: the JSON inside them is sent as is, not escaped
    /// quote by quote (ClickHouse wrote a host's rows in 1.1 s against
    /// 1.65 s, on the CPUs the verifier needs).
    pub fn for_each_tsv_row(
        &self,
        select: &str,
        columns: usize,
        mut f: impl FnMut(Vec<Option<String>>) -> Result<(), CtlError>,
    ) -> Result<u64, CtlError> {
        self.for_each_line(&format!("{select} FORMAT TabSeparated"), |line, n| {
            let fields: Result<Vec<Option<String>>, String> =
                line.split(|&b| b == b'\t').map(unescape_tsv).collect();
            match fields {
                Ok(fields) if fields.len() == columns => f(fields).map(|()| true),
                _ => Err(self.bad_row(line, n, &format!("not {columns} TabSeparated fields"))),
            }
        })
    }

    /// Calls `f` with each line of the answer to `query` (without its
    /// newline) and the number the line would have as a row; `f` says
    /// whether it was one. Returns how many rows there were.
    fn for_each_line(
        &self,
        query: &str,
        mut f: impl FnMut(&[u8], u64) -> Result<bool, CtlError>,
    ) -> Result<u64, CtlError> {
        let mut body = self.send(query)?;
        let mut line = Vec::new();
        let mut rows = 0;
        loop {
            line.clear();
            let n = body
                .read_until(b'\n', &mut line)
                .map_err(|e| self.err(format!("reading the answer: {e}")))?;
            if n == 0 {
                return Ok(rows);
            }
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            if f(&line, rows + 1)? {
                rows += 1;
            }
        }
    }

    /// A line that is not a row: ClickHouse's own error when it met one
    /// while streaming (written into the body as text, `Code: 241,
    /// e.displayText() = ...`), else what is wrong with row `n`.
    fn bad_row(&self, line: &[u8], n: u64, what: &str) -> CtlError {
        let text = String::from_utf8_lossy(line);
        if text.starts_with("Code:") {
            self.err(text.trim().to_string())
        } else {
            self.err(format!("row {n}: {what}: {}", truncate(&text)))
        }
    }

    /// Every row of `select`, collected.
    pub fn rows<T: DeserializeOwned>(&self, select: &str) -> Result<Vec<T>, CtlError> {
        let mut out = Vec::new();
        self.for_each_row(select, |row| {
            out.push(row);
            Ok(())
        })?;
        Ok(out)
    }

    /// The database the tables are in (for `FROM db.receipts`).
    pub fn table(&self, name: &str) -> String {
        format!("{}.{name}", quote_ident(&self.database))
    }

    /// Sends one query; returns the body of a 200 answer as a reader.
    fn send(&self, sql: &str) -> Result<Box<dyn BufRead>, CtlError> {
        let tls = self.tls.as_ref().map(|c| (c, self.url.host.as_str()));
        let mut conn = Conn::connect(&self.url.authority, tls, Duration::from_secs(10))
            .map_err(|e| self.err(e.to_string()))?;
        conn.set_read_timeout(Some(self.timeout))
            .map_err(|e| self.err(e.to_string()))?;
        // 64-bit integers as JSON numbers rather than strings.
        let sep = if self.url.path.contains('?') {
            '&'
        } else {
            '?'
        };
        let mut head = format!(
            "POST {}{sep}database={}&output_format_json_quote_64bit_integers=0 HTTP/1.1\r\n\
             Host: {}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: {}\r\n",
            self.url.path,
            percent_encode(&self.database),
            self.url.authority,
            sql.len()
        );
        if let Some(auth) = &self.authorization {
            head.push_str(&format!("Authorization: {auth}\r\n"));
        }
        head.push_str("\r\n");
        conn.write_all(head.as_bytes())
            .and_then(|()| conn.write_all(sql.as_bytes()))
            .and_then(|()| conn.flush())
            .map_err(|e| self.err(format!("sending the query: {e}")))?;
        let mut reader = BufReader::with_capacity(256 * 1024, conn);
        let (status, chunked, length) = read_head(&mut reader).map_err(|e| self.err(e))?;
        let body: Box<dyn BufRead> = match (chunked, length) {
            (true, _) => Box::new(BufReader::with_capacity(256 * 1024, Chunked::new(reader))),
            (false, Some(n)) => Box::new(reader.take(n)),
            (false, None) => Box::new(reader),
        };
        if status != 200 {
            let mut text = String::new();
            let _ = body.take(MAX_HEAD as u64).read_to_string(&mut text);
            return Err(self.err(format!("answered {status}: {}", truncate(text.trim()))));
        }
        Ok(body)
    }

    fn err(&self, message: String) -> CtlError {
        CtlError::Store(format!(
            "fleet store {}://{}: {message}",
            if self.url.https { "https" } else { "http" },
            self.url.authority
        ))
    }
}

/// One TabSeparated field: `\N` is NULL; a backslash escapes the byte
/// after it (`\t`, `\n`, `\r`, `\b`, `\f`, `\0`, `\a`, `\v` are control
/// characters, any other byte stands for itself: `\\`, `\'`).
fn unescape_tsv(field: &[u8]) -> Result<Option<String>, String> {
    if field == b"\\N" {
        return Ok(None);
    }
    let bytes = if field.contains(&b'\\') {
        let mut out = Vec::with_capacity(field.len());
        let mut it = field.iter();
        while let Some(&b) = it.next() {
            if b != b'\\' {
                out.push(b);
                continue;
            }
            let Some(&e) = it.next() else {
                return Err("a field ends in a lone backslash".into());
            };
            out.push(match e {
                b't' => b'\t',
                b'n' => b'\n',
                b'r' => b'\r',
                b'b' => 0x08,
                b'f' => 0x0c,
                b'0' => 0,
                b'a' => 0x07,
                b'v' => 0x0b,
                other => other,
            });
        }
        out
    } else {
        field.to_vec()
    };
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|e| format!("not UTF-8: {e}"))
}

/// A string as a ClickHouse SQL literal.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("\\'"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A name as a ClickHouse identifier.
fn quote_ident(s: &str) -> String {
    format!("`{}`", s.replace('\\', "\\\\").replace('`', "\\`"))
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn truncate(s: &str) -> String {
    const MAX: usize = 500;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

/// The status, whether the body is chunked, and its Content-Length.
fn read_head(r: &mut impl BufRead) -> Result<(u16, bool, Option<u64>), String> {
    let mut head = Vec::new();
    loop {
        let n = r
            .read_until(b'\n', &mut head)
            .map_err(|e| format!("reading the answer: {e}"))?;
        if n == 0 {
            return Err("the connection closed before an answer".into());
        }
        if head.ends_with(b"\r\n\r\n") || head.ends_with(b"\n\n") {
            break;
        }
        if head.len() > MAX_HEAD {
            return Err(format!("an answer head over {MAX_HEAD} bytes"));
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Response::new(&mut headers);
    parsed
        .parse(&head)
        .map_err(|e| format!("not an HTTP answer: {e}"))?;
    let status = parsed.code.unwrap_or(0);
    let value = |name: &str| {
        parsed
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
    };
    let chunked = value("transfer-encoding").is_some_and(|v| v.contains("chunked"));
    let length = value("content-length").and_then(|v| v.parse().ok());
    Ok((status, chunked, length))
}

/// The body of a `Transfer-Encoding: chunked` answer.
struct Chunked<R> {
    inner: R,
    left: u64,
    done: bool,
}

impl<R: BufRead> Chunked<R> {
    fn new(inner: R) -> Self {
        Chunked {
            inner,
            left: 0,
            done: false,
        }
    }

    fn next_chunk(&mut self) -> std::io::Result<()> {
        let invalid = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
        let mut line = Vec::new();
        self.inner
            .by_ref()
            .take(1024)
            .read_until(b'\n', &mut line)?;
        // The CRLF that ends the previous chunk's data.
        if line == b"\r\n" {
            line.clear();
            self.inner
                .by_ref()
                .take(1024)
                .read_until(b'\n', &mut line)?;
        }
        if line.is_empty() {
            return Err(invalid("the answer ended inside a chunked body".into()));
        }
        match httparse::parse_chunk_size(&line) {
            Ok(httparse::Status::Complete((_, 0))) => self.done = true,
            Ok(httparse::Status::Complete((_, n))) => self.left = n,
            _ => {
                return Err(invalid(format!(
                    "a bad chunk size line {:?}",
                    String::from_utf8_lossy(&line)
                )))
            }
        }
        Ok(())
    }
}

impl<R: BufRead> Read for Chunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 && !self.done {
            self.next_chunk()?;
        }
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunked_body_reads_whole_across_chunk_edges() {
        let wire = b"5\r\n{\"a\":\r\n3;ext=1\r\n1}\n\r\n0\r\n\r\n";
        let mut out = String::new();
        Chunked::new(&wire[..]).read_to_string(&mut out).unwrap();
        assert_eq!(out, "{\"a\":1}\n");
        let cut = b"5\r\n{\"a\"";
        let err = Chunked::new(&cut[..]).read_to_string(&mut String::new());
        assert!(err.is_err());
    }

    #[test]
    fn a_tab_separated_field_is_unescaped_byte_for_byte() {
        // Escapes as ClickHouse writes them: backslashes before a quote and
        // a letter, a tab, a newline, a quote, NUL.
        let field = br#"{"argv":["a\\\"b","c\\d"],"x":"\t\n\'\0"}"#;
        assert_eq!(
            unescape_tsv(field).unwrap().unwrap(),
            "{\"argv\":[\"a\\\"b\",\"c\\d\"],\"x\":\"\t\n'\0\"}"
        );
        assert_eq!(unescape_tsv(b"\\N").unwrap(), None);
        assert_eq!(unescape_tsv(b"\\\\N").unwrap().unwrap(), "\\N");
        assert_eq!(unescape_tsv(b"").unwrap().unwrap(), "");
        assert!(unescape_tsv(b"ab\\").is_err());
        assert!(unescape_tsv(b"\xff").is_err());
    }

    #[test]
    fn literals_cannot_leave_their_quotes() {
        assert_eq!(quote("a'b\\c"), "'a\\'b\\\\c'");
        assert_eq!(quote_ident("ob`s"), "`ob\\`s`");
        assert_eq!(percent_encode("a b&c"), "a%20b%26c");
    }

    #[test]
    fn the_answer_head_names_status_and_framing() {
        let mut r = &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nrest"[..];
        assert_eq!(read_head(&mut r).unwrap(), (200, true, None));
        assert_eq!(r, b"rest");
        let mut r = &b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 12\r\n\r\n"[..];
        assert_eq!(read_head(&mut r).unwrap(), (401, false, Some(12)));
    }
}
