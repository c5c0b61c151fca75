//! `http` sink: batched POSTs (gzip by default) in Splunk HEC event
//! format, Elastic `_bulk` NDJSON or a generic JSON array. A batch is
//! delivered when the receiver answers 2xx; anything else is retried with
//! backoff (the whole batch, so an error after the receiver stored part of
//! it yields duplicates, counted). A small HTTP/1.1 client over the same
//! TCP/TLS transport as syslog (keep-alive, Content-Length or chunked
//! responses): no extra HTTP stack to pin and audit.
use std::{
    io::{BufRead, BufReader, Read, Write},
    sync::Arc,
    time::Duration,
};

use rustls::ClientConfig;
use serde_json::{json, Value};

use super::{
    config::{HttpConfig, HttpEncoding},
    sink::{SendError, Sink},
    transport::Conn,
};
use crate::export::{self, Format, Item};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub https: bool,
    /// host:port for connecting.
    pub authority: String,
    pub host: String,
    pub path: String,
}

impl Url {
    pub fn parse(url: &str) -> Result<Url, String> {
        let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!("{url:?}: only http:// and https:// URLs"));
        };
        let (auth, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if auth.is_empty() || auth.contains('@') {
            return Err(format!("{url:?}: no host (user info is not supported)"));
        }
        let has_port = match auth.rfind(']') {
            Some(b) => auth[b..].contains(':'),
            None => auth.contains(':'),
        };
        let authority = if has_port {
            auth.to_string()
        } else {
            format!("{auth}:{}", if https { 443 } else { 80 })
        };
        let host = super::transport::host_of(&authority).to_string();
        Ok(Url {
            https,
            authority,
            host,
            path: path.to_string(),
        })
    }
}

/// The request body for a batch.
pub fn body(
    batch: &[Item],
    encoding: HttpEncoding,
    format: Format,
    index: Option<&str>,
    host: &str,
) -> Vec<u8> {
    let mut out = Vec::new();
    match encoding {
        HttpEncoding::SplunkHec => {
            for item in batch {
                let (time, source) = match item {
                    Item::Receipt(r) => (r.issued_ns as f64 / 1e9, r.issuer_id.as_str()),
                    Item::Checkpoint(c) => (
                        humantime::parse_rfc3339(&c.created_at)
                            .ok()
                            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                            .map_or(0.0, |d| d.as_secs_f64()),
                        c.origin(),
                    ),
                };
                let mut ev = json!({
                    "time": (time * 1000.0).round() / 1000.0,
                    "host": host,
                    "source": source,
                    "sourcetype": format!("observer:{}", format.as_str()),
                    "event": export::to_json(item, format),
                });
                if let Some(i) = index {
                    ev["index"] = json!(i);
                }
                let _ = serde_json::to_writer(&mut out, &ev);
                out.push(b'\n');
            }
        }
        HttpEncoding::ElasticBulk => {
            for item in batch {
                let id = match item {
                    Item::Receipt(r) => hex::encode(r.receipt_hash),
                    Item::Checkpoint(c) => format!("checkpoint-{}", c.size),
                };
                // `create` with the receipt hash as _id: a re-sent duplicate
                // is refused by Elastic instead of stored twice.
                let mut action = json!({"create": {"_id": id}});
                if let Some(i) = index {
                    action["create"]["_index"] = json!(i);
                }
                let _ = serde_json::to_writer(&mut out, &action);
                out.push(b'\n');
                out.extend_from_slice(export::to_json_text(item, format).as_bytes());
                out.push(b'\n');
            }
        }
        HttpEncoding::Json => {
            let all: Vec<Value> = batch.iter().map(|i| export::to_json(i, format)).collect();
            let _ = serde_json::to_writer(&mut out, &all);
        }
    }
    out
}

pub struct HttpSink {
    cfg: HttpConfig,
    url: Url,
    format: Format,
    token: Option<String>,
    tls: Option<Arc<ClientConfig>>,
    hostname: String,
    conn: Option<Conn>,
}

/// Status, and whether the server keeps the connection open.
struct Response {
    status: u16,
    keep_alive: bool,
    body: Vec<u8>,
}

impl HttpSink {
    pub fn new(
        cfg: HttpConfig,
        format: Format,
        token: Option<String>,
        tls: Option<Arc<ClientConfig>>,
        hostname: String,
    ) -> Result<HttpSink, String> {
        let url = Url::parse(&cfg.url)?;
        Ok(HttpSink {
            cfg,
            url,
            format,
            token,
            tls,
            hostname,
            conn: None,
        })
    }

    fn request(&mut self, body: &[u8]) -> Result<Response, SendError> {
        if self.conn.is_none() {
            let name = self
                .cfg
                .tls
                .server_name
                .clone()
                .unwrap_or_else(|| self.url.host.clone());
            let tls = if self.url.https {
                self.tls.as_ref().map(|c| (c, name.as_str()))
            } else {
                None
            };
            let conn = Conn::connect(
                &self.url.authority,
                tls,
                Duration::from_millis(self.cfg.timeout_ms),
            )
            .map_err(|e| SendError::new("connect", e, 0))?;
            self.conn = Some(conn);
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(SendError::new("connect", "no connection", 0));
        };
        let content_type = match self.cfg.encoding {
            HttpEncoding::ElasticBulk => "application/x-ndjson",
            _ => "application/json",
        };
        let mut head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: observerd/{}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: keep-alive\r\n",
            self.url.path,
            self.url.authority,
            env!("CARGO_PKG_VERSION"),
            body.len()
        );
        if self.cfg.gzip {
            head.push_str("Content-Encoding: gzip\r\n");
        }
        if let Some(t) = &self.token {
            let scheme = match self.cfg.encoding {
                HttpEncoding::SplunkHec => "Splunk",
                _ => "Bearer",
            };
            head.push_str(&format!("Authorization: {scheme} {t}\r\n"));
        }
        head.push_str("\r\n");
        conn.write_all(head.as_bytes())
            .and_then(|_| conn.write_all(body))
            .and_then(|_| conn.flush())
            .map_err(|e| SendError::new("write", e, 0))?;
        read_response(conn).map_err(|e| SendError::new("response", e, usize::MAX))
    }
}

fn bad(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.into())
}

fn read_response(conn: &mut Conn) -> std::io::Result<Response> {
    let mut r = BufReader::new(conn);
    let mut line = String::new();
    r.read_line(&mut line)?;
    if line.is_empty() {
        return Err(bad("the server closed the connection"));
    }
    let mut parts = line.split_whitespace();
    let version = parts.next().unwrap_or("");
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {line:?}")))?;
    let mut keep_alive = version == "HTTP/1.1";
    let mut length = None;
    let mut chunked = false;
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let Some((k, v)) = l.split_once(':') else {
            return Err(bad(format!("bad header {l:?}")));
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        match k.as_str() {
            "content-length" => {
                length = Some(v.parse::<usize>().map_err(|_| bad("content-length"))?)
            }
            "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
            "connection" => keep_alive = !v.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| bad("chunk size"))?;
            if size == 0 {
                // Trailers until the empty line.
                loop {
                    line.clear();
                    r.read_line(&mut line)?;
                    if line.trim_end().is_empty() {
                        break;
                    }
                }
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..])?;
            line.clear();
            r.read_line(&mut line)?;
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    } else {
        r.read_to_end(&mut body)?;
        keep_alive = false;
    }
    Ok(Response {
        status,
        keep_alive,
        body,
    })
}

impl Sink for HttpSink {
    fn send(&mut self, batch: &[Item]) -> Result<(), SendError> {
        let raw = body(
            batch,
            self.cfg.encoding,
            self.format,
            self.cfg.index.as_deref(),
            &self.hostname,
        );
        let payload = if self.cfg.gzip {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&raw)
                .and_then(|_| gz.finish())
                .map_err(|e| SendError::new("encode", e, 0))?
        } else {
            raw
        };
        let resp = self.request(&payload).map_err(|mut e| {
            self.conn = None;
            // The request was complete: the receiver may have stored it.
            if e.maybe_delivered == usize::MAX {
                e.maybe_delivered = batch.len();
            }
            e
        })?;
        if !resp.keep_alive {
            self.conn = None;
        }
        match resp.status {
            200..=299 => {
                if self.cfg.encoding == HttpEncoding::ElasticBulk {
                    bulk_errors(&resp.body)?;
                }
                Ok(())
            }
            401 | 403 => Err(SendError::new(
                "unauthorized",
                format!("HTTP {} from {}", resp.status, self.cfg.url),
                0,
            )),
            s => Err(SendError::new(
                "http_status",
                format!(
                    "HTTP {s} from {}: {}",
                    self.cfg.url,
                    String::from_utf8_lossy(&resp.body[..resp.body.len().min(200)])
                ),
                0,
            )),
        }
    }

    fn reset(&mut self) {
        self.conn = None;
    }
}

/// `_bulk` answers 200 even when items failed; a failure other than
/// "already exists" (409: a duplicate of a re-sent record) fails the batch.
fn bulk_errors(body: &[u8]) -> Result<(), SendError> {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return Ok(());
    };
    if v["errors"] != Value::Bool(true) {
        return Ok(());
    }
    let failed = v["items"].as_array().into_iter().flatten().find(|i| {
        let status = i["create"]["status"].as_u64().unwrap_or(0);
        !(200..300).contains(&status) && status != 409
    });
    match failed {
        Some(item) => Err(SendError::new(
            "bulk_item",
            format!("_bulk item failed: {item}"),
            0,
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::fixtures::{checkpoint, exec_receipt};

    #[test]
    fn urls() {
        let u = Url::parse("https://splunk.example:8088/services/collector/event").unwrap();
        assert_eq!(
            (
                u.https,
                u.authority.as_str(),
                u.host.as_str(),
                u.path.as_str()
            ),
            (
                true,
                "splunk.example:8088",
                "splunk.example",
                "/services/collector/event"
            )
        );
        let u = Url::parse("http://[::1]/_bulk").unwrap();
        assert_eq!((u.authority.as_str(), u.host.as_str()), ("[::1]:80", "::1"));
        assert!(Url::parse("ftp://x/").is_err());
    }

    #[test]
    fn bodies() {
        let batch = [
            Item::Receipt(exec_receipt()),
            Item::Checkpoint(checkpoint()),
        ];
        let hec = body(
            &batch,
            HttpEncoding::SplunkHec,
            Format::Receipt,
            Some("obs"),
            "h1",
        );
        let lines: Vec<Value> = String::from_utf8(hec)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["host"], "h1");
        assert_eq!(lines[0]["index"], "obs");
        assert_eq!(lines[0]["sourcetype"], "observer:receipt");
        assert_eq!(lines[0]["event"]["log_index"], 12);
        assert_eq!(lines[1]["event"]["checkpoint"]["size"], 13);
        let bulk = String::from_utf8(body(
            &batch,
            HttpEncoding::ElasticBulk,
            Format::Ocsf,
            None,
            "h1",
        ))
        .unwrap();
        let lines: Vec<Value> = bulk
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0]["create"]["_id"], "ab".repeat(32));
        assert_eq!(lines[1]["class_uid"], 1007);
        assert_eq!(lines[2]["create"]["_id"], "checkpoint-13");
        let arr: Value = serde_json::from_slice(&body(
            &batch,
            HttpEncoding::Json,
            Format::Cloudevents,
            None,
            "h1",
        ))
        .unwrap();
        assert_eq!(arr.as_array().unwrap().len(), 2);
        assert!(bulk_errors(br#"{"errors":true,"items":[{"create":{"status":409}}]}"#).is_ok());
        assert!(bulk_errors(br#"{"errors":true,"items":[{"create":{"status":400}}]}"#).is_err());
    }
}
