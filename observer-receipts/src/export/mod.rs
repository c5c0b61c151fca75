//! Record formats for forwarding and export: `receipt` (the signed envelope
//! and its context), `cloudevents` (CloudEvents 1.0 JSON) and `ocsf` (OCSF
//! 1.3 classes). Every record states `capture_topology: "passive_telemetry"`
//! and carries what a receiver needs to verify it (receipt hash, signature,
//! chain position). Checkpoints are exported too: a receiver holding them
//! detects a truncated host log.
use serde::Deserialize;
use serde_json::{json, Value};

pub mod cloudevents;
mod json_out;
pub mod ocsf;
mod ocsf_agent;
pub(crate) mod ocsf_fields;
pub mod ocsf_text;
pub mod receipt;
pub mod stored;

/// Stated on every forwarded record (docs/RECEIPTS.md, the guard).
pub const CAPTURE_TOPOLOGY: &str = "passive_telemetry";

/// A stored receipt as the spool reads it.
#[derive(Debug, Clone, Default)]
pub struct ReceiptItem {
    /// Position in the host-wide log (Merkle leaf index), from 0.
    pub leaf_index: u64,
    /// SHA-256 of JCS(envelope) as stored.
    pub receipt_hash: [u8; 32],
    /// The chain.
    pub issuer_id: String,
    /// Position in the chain, from 1.
    pub seq: u64,
    /// The chain's agent.
    pub agent_id: String,
    /// The payload's `action_type`.
    pub action_type: String,
    /// Event time (`issued_at`), ns since the Unix epoch.
    pub issued_ns: u64,
    /// The payload's `risk_class` wire value.
    pub risk_class: String,
    /// The envelope's exact JCS bytes as stored.
    pub envelope: String,
    /// The JCS context, absent in hash-only mode.
    pub context: Option<String>,
}

/// A stored signed checkpoint (C2SP signed note).
#[derive(Debug, Clone)]
pub struct CheckpointItem {
    /// Tree size: the number of leaves covered.
    pub size: u64,
    /// Merkle root of the first `size` leaves, 32 raw bytes.
    pub root: Vec<u8>,
    /// The signed note text, signature line included.
    pub note: String,
    /// When the writer signed it, RFC 3339 UTC.
    pub created_at: String,
}

impl CheckpointItem {
    /// The note's first line: the log's origin.
    pub fn origin(&self) -> &str {
        self.note.lines().next().unwrap_or("")
    }
}

/// One record of the forwarded stream, in log order: receipts by log
/// index, each checkpoint of size `n` right after receipt `n - 1`.
#[derive(Debug, Clone)]
pub enum Item {
    /// A committed receipt with its context.
    Receipt(ReceiptItem),
    /// A signed checkpoint.
    Checkpoint(CheckpointItem),
}

/// A record format of export and forwarding (its configured name in
/// lower case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `receipt`: the envelope as stored and its context ([`receipt`]).
    Receipt,
    /// `cloudevents`: CloudEvents 1.0 structured JSON ([`cloudevents`]).
    Cloudevents,
    /// `ocsf`: OCSF 1.3.0 events ([`ocsf`]).
    Ocsf,
}

impl Format {
    /// The format's configured name: `receipt`, `cloudevents` or `ocsf`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Receipt => "receipt",
            Format::Cloudevents => "cloudevents",
            Format::Ocsf => "ocsf",
        }
    }
}

/// Formats one record as a JSON value.
pub fn to_json(item: &Item, format: Format) -> Value {
    match format {
        Format::Receipt => receipt::format(item),
        Format::Cloudevents => cloudevents::format(item),
        Format::Ocsf => ocsf::format(item),
    }
}

/// Formats one record as one line of JSON text. The `receipt` and
/// `cloudevents` formats embed the stored envelope and context bytes as
/// they are (checked to be JSON, not parsed into a tree) instead of
/// parsing and re-serialising several KiB per receipt: export and
/// forwarding throughput is dominated by that work.
pub fn to_json_text(item: &Item, format: Format) -> String {
    match (item, format) {
        (Item::Receipt(r), Format::Receipt) => {
            let mut out = String::with_capacity(r.envelope.len() + 1600);
            out.push_str("{\"capture_topology\":\"");
            out.push_str(CAPTURE_TOPOLOGY);
            out.push_str("\",\"record\":\"receipt\",\"log_index\":");
            out.push_str(&r.leaf_index.to_string());
            out.push_str(",\"receipt_hash\":\"");
            out.push_str(&hex::encode(r.receipt_hash));
            out.push_str("\",\"receipt\":");
            push_stored_json(&mut out, Some(&r.envelope));
            out.push_str(",\"context\":");
            push_stored_json(&mut out, r.context.as_deref());
            out.push('}');
            out
        }
        (Item::Receipt(r), Format::Cloudevents) => cloudevents::receipt_text(r),
        (Item::Receipt(r), Format::Ocsf) => {
            let mut out = Vec::with_capacity(2 * r.envelope.len() + 4096);
            ocsf_text::push_receipt(&mut out, r);
            // The writer only writes UTF-8; keep the line valid regardless.
            String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into())
        }
        // serde_json's writer, not Display: Display goes through
        // fmt::Formatter for every fragment, measurably slower on KiB-sized
        // records.
        _ => serde_json::to_string(&to_json(item, format)).unwrap_or_else(|_| "null".into()),
    }
}

/// Appends one record's JSON text (as [`to_json_text`] gives it) to
/// `out`: an export reuses one buffer for every record, and OCSF events are
/// written into it directly.
pub fn push_json_text(out: &mut Vec<u8>, item: &Item, format: Format) {
    match (item, format) {
        (Item::Receipt(r), Format::Ocsf) => ocsf_text::push_receipt(out, r),
        _ => out.extend_from_slice(to_json_text(item, format).as_bytes()),
    }
}

/// Appends stored JSON text as it is, as `parse_or_string` would give it:
/// a row that is not JSON becomes a JSON string (the receiver still gets
/// its bytes), an absent one `null`. Checking is far cheaper than parsing
/// into a tree.
pub(crate) fn push_stored_json(out: &mut String, text: Option<&str>) {
    match text {
        None => out.push_str("null"),
        // As strict as a `Value` parse: a row that parse rejects (possible
        // only in a tampered store) goes as a string, like the Value path.
        Some(t)
            if serde_json::from_str::<&serde_json::value::RawValue>(t).is_ok()
                && ocsf_fields::check_strict(t).is_ok() =>
        {
            out.push_str(t.trim());
        }
        Some(t) => push_json_string(out, t),
    }
}

/// Appends `s` as a JSON string literal.
pub(crate) fn push_json_string(out: &mut String, s: &str) {
    match serde_json::to_string(s) {
        Ok(quoted) => out.push_str(&quoted),
        // A &str always serialises; keep the line valid regardless.
        Err(_) => out.push_str("null"),
    }
}

/// Parses stored JSON; a row that does not parse is forwarded as a string
/// rather than dropped (the receiver still gets the signed bytes).
pub(crate) fn parse_or_string(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

/// The checkpoint as every format embeds it.
pub(crate) fn checkpoint_json(c: &CheckpointItem) -> Value {
    json!({
        "origin": c.origin(),
        "size": c.size,
        "root": hex::encode(&c.root),
        "note": c.note,
        "created_at": c.created_at,
    })
}

/// RFC 3339 UTC with nanoseconds, as receipts state `issued_at`.
pub fn rfc3339_ns(unix_ns: u64) -> String {
    crate::payload::issued_at(unix_ns)
}

/// One receipt and one checkpoint in the shapes the store holds, for the
/// tests of the formats here and of the daemon's sinks (feature
/// `fixtures`).
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures {
    use super::*;

    /// A `process.exec` receipt of agent `claude` (seq 7, log index 12)
    /// with its context; the signature is a placeholder, not valid.
    pub fn exec_receipt() -> ReceiptItem {
        let context = json!({
            "event": "exec",
            "time": "2026-11-22T18:00:00.123456789Z",
            "process": {"pid": 4242, "ppid": 4000, "uid": 0, "user": "root", "gid": 0,
                        "comm": "sh", "exe": "/usr/bin/sh", "exe_sha256": "sha256:ab",
                        "argv": ["sh", "-c", "true"], "cgroup": "/user.slice", "agent": "claude"},
            "parents": [{"pid": 4000, "comm": "bash", "exe": "/usr/bin/bash"}],
            "exec": {"filename": "/usr/bin/true", "argv": ["/usr/bin/true"], "result": 0},
        });
        let envelope = json!({
            "payload": {"v": 1, "type": "protectmcp:observation", "agent_id": "claude",
                        "action_type": "process.exec", "seq": 7, "risk_class": "medium",
                        "issuer_id": "did:web:x/host/h/agent/claude",
                        "issued_at": "2026-11-22T18:00:00.123456789Z",
                        "previousReceiptHash": "11".repeat(32)},
            "signature": {"alg": "ML-DSA-65", "kid": "k1", "sig": "c2ln"},
        });
        ReceiptItem {
            leaf_index: 12,
            receipt_hash: [0xab; 32],
            issuer_id: "did:web:x/host/h/agent/claude".into(),
            seq: 7,
            agent_id: "claude".into(),
            action_type: "process.exec".into(),
            issued_ns: 1_795_370_400_123_456_789,
            risk_class: "medium".into(),
            envelope: envelope.to_string(),
            context: Some(context.to_string()),
        }
    }

    /// A checkpoint of size 13; its signature is a placeholder, not valid.
    pub fn checkpoint() -> CheckpointItem {
        CheckpointItem {
            size: 13,
            root: vec![0xcd; 32],
            note: "did:web:x/host/h\n13\nzc3Nzc3N\n\n— did:web:x/host/h c2ln\n".into(),
            created_at: "2026-11-22T18:00:01.000000000Z".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_json_is_embedded_only_when_a_value_parse_takes_it() {
        let embed = |text: &str| {
            let mut out = String::new();
            push_stored_json(&mut out, Some(text));
            out
        };
        assert_eq!(embed("{\"a\":[1,\"x\"]}"), "{\"a\":[1,\"x\"]}");
        // What a Value parse rejects goes as a string, as parse_or_string does.
        for odd in [
            "{\"s\":\"\\ud800\"}",
            "{\"n\":1e400}",
            "{\"a\":",
            "not json",
        ] {
            assert_eq!(embed(odd), serde_json::to_string(odd).unwrap(), "{odd}");
            assert_eq!(parse_or_string(odd), Value::String(odd.into()), "{odd}");
        }
    }
}
