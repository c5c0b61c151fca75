//! `http` sink: batched POSTs (gzip by default) in Splunk HEC event
//! format, Elastic `_bulk` NDJSON or a generic JSON array. A batch is
//! delivered when the receiver answers 2xx; anything else is retried with
//! backoff (the whole batch, so an error after the receiver stored part of
//! it yields duplicates, counted). A small HTTP/1.1 client over the same
//! TCP/TLS transport as syslog (`client`: keep-alive; responses parsed by
//! httparse within the bounds of `response`), optionally through an HTTP
//! proxy (`proxy`).
use std::sync::Arc;

use rustls::ClientConfig;
use serde_json::{json, Value};

use super::{
    config::{HttpConfig, HttpEncoding},
    sink::{SendError, Sink},
};
use crate::export::{self, Format, Item};

pub mod client;
pub mod proxy;
pub mod response;

use client::Client;
use proxy::Proxy;
use response::Response;

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
    format: Format,
    token: Option<String>,
    hostname: String,
    client: Client,
}

impl HttpSink {
    pub fn new(
        cfg: HttpConfig,
        format: Format,
        token: Option<String>,
        tls: Option<Arc<ClientConfig>>,
        hostname: String,
        proxy: Option<Proxy>,
    ) -> Result<HttpSink, String> {
        let client = Client::for_sink(&cfg.url, tls, &cfg.tls, proxy, cfg.timeout_ms)?;
        Ok(HttpSink {
            cfg,
            format,
            token,
            hostname,
            client,
        })
    }

    fn request(&mut self, body: &[u8]) -> Result<Response, SendError> {
        let content_type = match self.cfg.encoding {
            HttpEncoding::ElasticBulk => "application/x-ndjson",
            _ => "application/json",
        };
        let mut headers = format!("Content-Type: {content_type}\r\n");
        if self.cfg.gzip {
            headers.push_str("Content-Encoding: gzip\r\n");
        }
        if let Some(t) = &self.token {
            let scheme = match self.cfg.encoding {
                HttpEncoding::SplunkHec => "Splunk",
                _ => "Bearer",
            };
            headers.push_str(&format!("Authorization: {scheme} {t}\r\n"));
        }
        let target = self.client.url.path.clone();
        self.client.post(&target, &headers, body)
    }
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
            client::gzip(&raw)?
        } else {
            raw
        };
        let resp = self.request(&payload).map_err(|mut e| {
            // The request was complete: the receiver may have stored it.
            if e.maybe_delivered == client::AFTER_REQUEST {
                e.maybe_delivered = batch.len();
            }
            e
        })?;
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
        self.client.reset();
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

    #[test]
    fn http_through_a_proxy_uses_the_absolute_form_and_the_proxy_credentials() {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let proxy = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut r = BufReader::new(&s);
            let mut head = String::new();
            while !head.ends_with("\r\n\r\n") {
                assert!(r.read_line(&mut head).unwrap() > 0);
            }
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .unwrap()
                .parse()
                .unwrap();
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            (&s).write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                .unwrap();
            (head, body)
        });
        let cfg: HttpConfig = toml::from_str(
            "url = \"http://receiver.invalid:9200/_bulk\"\nencoding = \"json\"\ngzip = false\n",
        )
        .unwrap();
        let proxy_url = format!("http://bob:pw@127.0.0.1:{port}");
        let mut sink = HttpSink::new(
            cfg,
            Format::Receipt,
            Some("tok".into()),
            None,
            "h1".into(),
            Some(Proxy::parse(&proxy_url).unwrap()),
        )
        .unwrap();
        // receiver.invalid does not resolve: only the proxy can deliver.
        sink.send(&[Item::Receipt(exec_receipt())]).unwrap();
        let (head, body) = proxy.join().unwrap();
        assert!(
            head.starts_with(
                "POST http://receiver.invalid:9200/_bulk HTTP/1.1\r\nHost: receiver.invalid:9200\r\n"
            ),
            "{head}"
        );
        // base64("bob:pw")
        assert!(
            head.contains("\r\nProxy-Authorization: Basic Ym9iOnB3\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\nAuthorization: Bearer tok\r\n"), "{head}");
        let records: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(records[0]["log_index"], 12);
    }
}
