//! `syslog` sink: RFC 5424 messages over TCP with octet-counting framing
//! (RFC 6587), over TLS (RFC 5425, same framing) or over UDP (RFC 5426).
//! Structured data `[receipt@32473 ...]` carries the receipt hash, chain,
//! agent, seq, log index and risk; checkpoints carry
//! `[checkpoint@32473 size root]`. The MSG is the formatted record (JSON).
use std::{io::Write, net::UdpSocket, sync::Arc, time::Duration};

use rustls::ClientConfig;

use super::{
    config::{SyslogConfig, SyslogTransport},
    sink::{SendError, Sink},
    transport::{host_of, Conn},
};
use crate::export::{self, Format, Item};

/// 32473 is the private enterprise number RFC 5612 reserves for
/// documentation; SD-IDs with it are valid RFC 5424 names.
pub const SD_RECEIPT: &str = "receipt@32473";
pub const SD_CHECKPOINT: &str = "checkpoint@32473";

pub fn facility_code(name: &str) -> Option<u8> {
    Some(match name {
        "kern" => 0,
        "user" => 1,
        "daemon" => 3,
        "auth" => 4,
        "authpriv" => 10,
        "local0" => 16,
        "local1" => 17,
        "local2" => 18,
        "local3" => 19,
        "local4" => 20,
        "local5" => 21,
        "local6" => 22,
        "local7" => 23,
        _ => return None,
    })
}

/// Severity by risk: high warning (4), medium notice (5), else info (6).
fn severity(risk: &str) -> u8 {
    match risk {
        "high" => 4,
        "medium" => 5,
        _ => 6,
    }
}

/// SD-PARAM value escaping (RFC 5424 6.3.3): `"`, `\` and `]`.
fn sd_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// RFC 5424 TIMESTAMP: at most 6 fractional digits.
fn timestamp(rfc3339_ns: &str) -> String {
    match rfc3339_ns.split_once('.') {
        Some((secs, frac)) => {
            let digits: String = frac
                .chars()
                .take_while(char::is_ascii_digit)
                .take(6)
                .collect();
            format!("{secs}.{digits}Z")
        }
        None => rfc3339_ns.to_string(),
    }
}

/// A header field: printable US-ASCII without spaces, at most `max`, or "-".
fn header_field(v: &str, max: usize) -> String {
    let s: String = v
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if s.is_empty() {
        "-".into()
    } else {
        s
    }
}

pub struct MessageContext {
    pub facility: u8,
    pub hostname: String,
    pub app_name: String,
    pub procid: String,
    pub format: Format,
}

/// One RFC 5424 message (without framing).
pub fn message(item: &Item, m: &MessageContext) -> String {
    let body = export::to_json_text(item, m.format);
    let (sev, time, msgid, sd) = match item {
        Item::Receipt(r) => (
            severity(&r.risk_class),
            export::rfc3339_ns(r.issued_ns),
            r.action_type.as_str(),
            format!(
                "[{SD_RECEIPT} hash=\"{}\" chain=\"{}\" agent=\"{}\" seq=\"{}\" index=\"{}\" risk=\"{}\"]",
                hex::encode(r.receipt_hash),
                sd_escape(&r.issuer_id),
                sd_escape(&r.agent_id),
                r.seq,
                r.leaf_index,
                sd_escape(&r.risk_class)
            ),
        ),
        Item::Checkpoint(c) => (
            5,
            c.created_at.clone(),
            "observer.checkpoint",
            format!(
                "[{SD_CHECKPOINT} size=\"{}\" root=\"{}\" origin=\"{}\"]",
                c.size,
                hex::encode(&c.root),
                sd_escape(c.origin())
            ),
        ),
    };
    format!(
        "<{}>1 {} {} {} {} {} {} {}",
        u16::from(m.facility) * 8 + u16::from(sev),
        timestamp(&time),
        header_field(&m.hostname, 255),
        header_field(&m.app_name, 48),
        header_field(&m.procid, 128),
        header_field(msgid, 32),
        sd,
        body
    )
}

pub struct SyslogSink {
    cfg: SyslogConfig,
    msg: MessageContext,
    tls: Option<Arc<ClientConfig>>,
    conn: Option<Conn>,
    udp: Option<UdpSocket>,
    buf: Vec<u8>,
    /// Records of the last batch one datagram could not carry (see
    /// `Sink::take_unsendable`).
    unsendable: u64,
}

impl SyslogSink {
    pub fn new(
        cfg: SyslogConfig,
        msg: MessageContext,
        tls: Option<Arc<ClientConfig>>,
    ) -> SyslogSink {
        SyslogSink {
            cfg,
            msg,
            tls,
            conn: None,
            udp: None,
            buf: Vec::new(),
            unsendable: 0,
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.timeout_ms)
    }

    fn send_udp(&mut self, batch: &[Item]) -> Result<(), SendError> {
        if self.udp.is_none() {
            let sock = UdpSocket::bind(if self.cfg.address.starts_with('[') {
                "[::]:0"
            } else {
                "0.0.0.0:0"
            })
            .and_then(|s| s.connect(&self.cfg.address).map(|()| s))
            .map_err(|e| SendError::new("connect", format!("{}: {e}", self.cfg.address), 0))?;
            self.udp = Some(sock);
        }
        let Some(sock) = self.udp.as_ref() else {
            return Ok(());
        };
        for (i, item) in batch.iter().enumerate() {
            let m = message(item, &self.msg);
            match sock.send(m.as_bytes()) {
                Ok(_) => {}
                // Larger than a datagram can be (65,507 bytes over IPv4):
                // no retry will ever carry it, and retrying would stall
                // every record behind it. RFC 5426 lets a sender truncate,
                // but a cut receipt is not evidence; skip it, name it, and
                // count it. It stays in the store (observerctl, exports).
                Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => {
                    log::warn!(
                        sink = "syslog", bytes = m.len();
                        "syslog sink ({}): a {}-byte message is larger than one UDP datagram can carry; not forwarded ({})",
                        self.cfg.address,
                        m.len(),
                        describe(item)
                    );
                    self.unsendable += 1;
                }
                Err(e) => return Err(SendError::new("write", e, i)),
            }
        }
        Ok(())
    }
}

impl Sink for SyslogSink {
    fn send(&mut self, batch: &[Item]) -> Result<(), SendError> {
        if self.cfg.transport == SyslogTransport::Udp {
            return self.send_udp(batch);
        }
        if self.conn.as_ref().is_some_and(|c| !c.established()) {
            self.conn = None;
        }
        if self.conn.is_none() {
            let name = self
                .cfg
                .tls
                .server_name
                .clone()
                .unwrap_or_else(|| host_of(&self.cfg.address).to_string());
            let tls = self.tls.as_ref().map(|c| (c, name.as_str()));
            let conn = Conn::connect(&self.cfg.address, tls, self.timeout()).map_err(|e| {
                let reason = match e {
                    super::transport::ConnectError::Handshake(..)
                    | super::transport::ConnectError::ServerName(..) => "tls",
                    _ => "connect",
                };
                SendError::new(reason, e, 0)
            })?;
            self.conn = Some(conn);
        }
        self.buf.clear();
        for item in batch {
            let m = message(item, &self.msg);
            // RFC 6587 octet counting: MSG-LEN SP SYSLOG-MSG.
            let _ = write!(self.buf, "{} ", m.len());
            self.buf.extend_from_slice(m.as_bytes());
        }
        let timeout = self.timeout();
        let Some(conn) = self.conn.as_mut() else {
            return Err(SendError::new("connect", "no connection", 0));
        };
        // A partial write may have reached the collector: all of the batch
        // counts as possibly delivered.
        conn.write_all(&self.buf)
            .and_then(|()| conn.flush())
            .map_err(|e| SendError::new("write", e, batch.len()))?;
        conn.wait_acked(timeout)
            .map_err(|e| SendError::new("unacknowledged", e, batch.len()))
    }

    fn confirm_after(&self) -> Duration {
        match self.cfg.transport {
            SyslogTransport::Udp => Duration::ZERO,
            _ => Duration::from_millis(self.cfg.ack_delay_ms),
        }
    }

    fn healthy(&mut self) -> bool {
        match self.cfg.transport {
            SyslogTransport::Udp => true,
            _ => self.conn.as_ref().is_some_and(Conn::established),
        }
    }

    fn reset(&mut self) {
        self.conn = None;
        self.udp = None;
    }

    fn take_unsendable(&mut self) -> u64 {
        std::mem::take(&mut self.unsendable)
    }
}

/// Names a record in a log line: the receipt's hash and chain position, or
/// the checkpoint's size.
fn describe(item: &Item) -> String {
    match item {
        Item::Receipt(r) => format!(
            "receipt {} of {} seq {}",
            hex::encode(r.receipt_hash),
            r.issuer_id,
            r.seq
        ),
        Item::Checkpoint(c) => format!("checkpoint of size {}", c.size),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::fixtures::{checkpoint, exec_receipt};

    #[test]
    fn rfc5424_header_and_structured_data() {
        let m = MessageContext {
            facility: 16,
            hostname: "host-1".into(),
            app_name: "observerd".into(),
            procid: "99".into(),
            format: Format::Receipt,
        };
        let text = message(&Item::Receipt(exec_receipt()), &m);
        let expected = format!(
            "<133>1 2026-11-22T18:00:00.123456Z host-1 observerd 99 process.exec \
             [receipt@32473 hash=\"{}\" chain=\"did:web:x/host/h/agent/claude\" agent=\"claude\" seq=\"7\" index=\"12\" risk=\"medium\"] {{",
            "ab".repeat(32)
        );
        assert!(text.starts_with(&expected), "{text}");
        let body: serde_json::Value =
            serde_json::from_str(text.split_once("] ").unwrap().1).unwrap();
        assert_eq!(body["receipt_hash"], "ab".repeat(32));
        let c = message(&Item::Checkpoint(checkpoint()), &m);
        assert!(
            c.starts_with(&format!(
                "<133>1 2026-11-22T18:00:01.000000Z host-1 observerd 99 observer.checkpoint [checkpoint@32473 size=\"13\" root=\"{}\" origin=\"did:web:x/host/h\"] ",
                "cd".repeat(32)
            )),
            "{c}"
        );
        assert!(!c.contains('\n'), "the note's newlines stay JSON-escaped");
        assert_eq!(sd_escape(r#"a"b\c]"#), r#"a\"b\\c\]"#);
    }

    /// A record larger than a datagram is skipped and counted; the records
    /// around it reach the receiver, and the batch does not fail (it was
    /// retried forever before).
    #[test]
    fn udp_skips_and_counts_a_record_no_datagram_can_carry() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let cfg: SyslogConfig = serde_json::from_value(serde_json::json!({
            "address": receiver.local_addr().unwrap().to_string(),
            "transport": "udp",
        }))
        .unwrap();
        let msg = MessageContext {
            facility: 16,
            hostname: "host-1".into(),
            app_name: "observerd".into(),
            procid: "99".into(),
            format: Format::Receipt,
        };
        let mut sink = SyslogSink::new(cfg, msg, None);
        let mut huge = exec_receipt();
        huge.seq = 8;
        huge.receipt_hash = [0xcd; 32];
        huge.context = Some(format!("{{\"pad\":\"{}\"}}", "x".repeat(70_000)));
        let mut after = exec_receipt();
        after.seq = 9;
        let batch = [
            Item::Receipt(exec_receipt()),
            Item::Receipt(huge),
            Item::Receipt(after),
        ];
        sink.send(&batch).unwrap();
        assert_eq!(sink.take_unsendable(), 1);
        assert_eq!(sink.take_unsendable(), 0, "taken once");
        let mut buf = vec![0u8; 70_000];
        let mut seqs = Vec::new();
        for _ in 0..2 {
            let n = receiver.recv(&mut buf).unwrap();
            let text = std::str::from_utf8(&buf[..n]).unwrap();
            let seq = text
                .split("seq=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            seqs.push(seq.to_string());
        }
        assert_eq!(seqs, ["7", "9"]);
        receiver.set_nonblocking(true).unwrap();
        assert!(receiver.recv(&mut buf).is_err(), "nothing else arrived");
    }
}
