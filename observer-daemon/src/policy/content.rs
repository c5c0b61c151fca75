//! What of an agent's LLM bodies and MCP tool arguments and results is
//! kept, by its `capture_content`: nothing (the default: digests and the
//! parsed fields only), or the content with credentials replaced
//! (`full`), and with personal data replaced too (`redacted`). Credentials
//! go whatever the mode: a member whose name says secret (`api_key`,
//! `password`, `authorization`) loses its value, and every string passes
//! the command-line redaction (vendor key shapes, `Bearer ...`,
//! assignments, URL credentials).
use std::sync::LazyLock;

use regex::Regex;
use serde_json::{json, Value};

use crate::{
    enrich::redact::{is_secret_field, redact_str, REDACTED},
    policy::capture::CaptureContent,
    record::Detail,
    stream::{content::CONTENT_MAX, llm::call::RawBody},
};

/// Moves what the agent keeps from the detail's raw parts into `content`
/// and drops the rest.
pub fn keep(detail: &mut Detail, mode: CaptureContent) {
    match detail {
        Detail::LlmRequest(d) => {
            let raw = d.raw.take();
            if mode != CaptureContent::None {
                d.content = raw.map(|r| {
                    json!({
                        "request": body(&r.request, mode),
                        "response": r.response.as_ref().map(|b| body(b, mode)),
                    })
                });
            }
        }
        Detail::McpToolCall(d) => {
            let raw = d.raw.take();
            if mode != CaptureContent::None {
                d.content = raw.map(|r| {
                    json!({
                        "arguments": r.arguments.map(|v| value(v, mode)),
                        "result": r.result.map(|v| value(v, mode)),
                    })
                });
            }
        }
        _ => {}
    }
}

/// A body: its JSON, scrubbed, or its text (an event stream, a body
/// longer than kept) redacted and cut.
fn body(b: &RawBody, mode: CaptureContent) -> Value {
    if b.len <= CONTENT_MAX {
        if let Ok(v) = serde_json::from_slice::<Value>(&b.bytes) {
            return value(v, mode);
        }
    }
    let text = String::from_utf8_lossy(&b.bytes);
    let text = scrub_text(&text, mode);
    if b.len > b.bytes.len() {
        json!({"truncated": true, "bytes": b.len, "text": text})
    } else {
        Value::String(text)
    }
}

fn value(mut v: Value, mode: CaptureContent) -> Value {
    scrub(&mut v, mode, 0);
    v
}

/// Deeper than this, a value is replaced whole (hostile nesting).
const MAX_DEPTH: usize = 64;

fn scrub(v: &mut Value, mode: CaptureContent, depth: usize) {
    if depth > MAX_DEPTH {
        *v = Value::String(REDACTED.into());
        return;
    }
    match v {
        Value::String(s) => *s = scrub_text(s, mode),
        Value::Array(items) => items.iter_mut().for_each(|i| scrub(i, mode, depth + 1)),
        Value::Object(members) => {
            for (name, member) in members.iter_mut() {
                if is_secret_field(name) && !matches!(member, Value::Object(_) | Value::Array(_)) {
                    *member = Value::String(REDACTED.into());
                } else {
                    scrub(member, mode, depth + 1);
                }
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
        .expect("a fixed pattern")
});
/// International numbers written with their `+` and North American ones
/// in their usual groupings: not every run of digits (dates, ids, sums).
static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\+[1-9][0-9]{0,2}(?:[ .-]?\(?[0-9]{1,4}\)?){2,5}[0-9]|\(?\b[0-9]{3}\)?[ .-][0-9]{3}[ .-][0-9]{4}\b")
        .expect("a fixed pattern")
});

fn scrub_text(s: &str, mode: CaptureContent) -> String {
    let s = redact_str(s);
    if mode != CaptureContent::Redacted {
        return s.into_owned();
    }
    let s = EMAIL.replace_all(&s, "[EMAIL]");
    PHONE.replace_all(&s, "[PHONE]").into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_go_in_every_mode_personal_data_when_redacted() {
        let args = json!({
            "path": "/tmp/a.txt",
            "api_key": "plain-value-123",
            "max_tokens": 100,
            "note": "mail ana@example.org or call +33 6 12 34 56 78, key sk-ant-api03-Hx7Qm2Vt9Lp4Rz8Kc3Nw6Yb1Jd5Fg0SaTeUoIi7PqWs2XcBv",
            "nested": [{"password": "hunter2hunter2"}],
        });
        let full = value(args.clone(), CaptureContent::Full);
        assert_eq!(full["path"], "/tmp/a.txt");
        assert_eq!(full["api_key"], REDACTED);
        assert_eq!(full["max_tokens"], 100);
        assert_eq!(full["nested"][0]["password"], REDACTED);
        let note = full["note"].as_str().unwrap();
        assert!(!note.contains("Hx7Qm2Vt9"), "{note}");
        assert!(note.contains("ana@example.org"), "{note}");
        let red = value(args, CaptureContent::Redacted);
        let note = red["note"].as_str().unwrap();
        assert_eq!(
            note,
            format!(
                "mail [EMAIL] or call [PHONE], key {}",
                full["note"].as_str().unwrap().rsplit(' ').next().unwrap()
            )
        );
        // Dates and times are not phone numbers.
        assert_eq!(
            scrub_text(
                "2026-12-06T22:41:21+01:00 id 123456789",
                CaptureContent::Redacted
            ),
            "2026-12-06T22:41:21+01:00 id 123456789"
        );
    }

    #[test]
    fn a_body_longer_than_kept_is_cut_text_and_none_keeps_nothing() {
        let long = vec![b'a'; CONTENT_MAX + 10];
        let b = RawBody::new(&long);
        let v = body(&b, CaptureContent::Full);
        assert_eq!(v["truncated"], true);
        assert_eq!(v["bytes"], CONTENT_MAX + 10);
        assert_eq!(v["text"].as_str().unwrap().len(), CONTENT_MAX);
        let sse = RawBody::new(b"data: {\"x\":1}\n\ndata: [DONE]\n\n");
        assert_eq!(
            body(&sse, CaptureContent::Full),
            json!("data: {\"x\":1}\n\ndata: [DONE]\n\n")
        );
    }
}
