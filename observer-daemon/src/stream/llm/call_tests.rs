//! Tests of [`super`]: whole exchanges as the connection layer pairs them.
use observer_common::EventKind;
use sha2::{Digest, Sha256};

use super::*;
use crate::{
    event::Header,
    stream::http1::{Parser, Side},
};

fn message(side: Side, bytes: &[u8], ns: u64) -> Message {
    let mut p = Parser::new(side, 1 << 20);
    let mut got = p.push(bytes, ns);
    assert_eq!(got.len(), 1, "{}", String::from_utf8_lossy(bytes));
    got.remove(0)
}

fn exchange(req: &[u8], res: Option<&[u8]>) -> Exchange {
    Exchange {
        header: Header {
            kind: EventKind::TlsData,
            cpu: 0,
            seq: 1,
            boot_ns: 1_000_000_000,
            tgid: 42,
            tid: 42,
            uid: 1000,
            gid: 1000,
            cgroup_id: 1,
            comm: "python3".into(),
        },
        conn: ConnId::Tls(0x55aa),
        descriptor: None,
        request: message(Side::Request, req, 1_000_000_000),
        response: res.map(|r| message(Side::Response, r, 1_250_000_000)),
    }
}

fn sha(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

#[test]
fn an_anthropic_stream_becomes_one_call_without_content_or_key() {
    let body = br#"{"model":"claude-sonnet-4-5","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"secret prompt"}],"tools":[{"name":"Bash","input_schema":{}}]}"#;
    let mut req = format!(
        "POST /v1/messages?beta=true HTTP/1.1\r\nHost: api.anthropic.com\r\nx-api-key: sk-ant-api03-SECRET\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    let events = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-sonnet-4-5-20250929\",\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":7}}\n\n";
    let res = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{events}\r\n0\r\n\r\n",
        events.len()
    );
    let d = llm_call(&exchange(&req, Some(res.as_bytes()))).unwrap();
    assert_eq!(
        (d.provider, d.api, d.host.as_str()),
        ("anthropic", "messages", "api.anthropic.com")
    );
    assert_eq!(
        (d.method.as_str(), d.path.as_str()),
        ("POST", "/v1/messages?beta=true")
    );
    assert_eq!(d.model_requested.as_deref(), Some("claude-sonnet-4-5"));
    assert_eq!(
        d.model_answered.as_deref(),
        Some("claude-sonnet-4-5-20250929")
    );
    assert_eq!(
        (d.stream, d.status, d.finish_reason.as_deref()),
        (true, Some(200), Some("end_turn"))
    );
    assert_eq!(
        (d.usage.input_tokens, d.usage.output_tokens),
        (Some(12), Some(7))
    );
    assert_eq!(
        (d.tools_offered.as_slice(), d.tool_calls.len()),
        (&["Bash".to_string()][..], 0)
    );
    assert_eq!(d.latency_ms, Some(250));
    assert_eq!(
        d.request_body,
        BodyDigest {
            sha256: sha(body),
            bytes: body.len() as u64,
            complete: true
        }
    );
    assert_eq!(
        d.response_body.as_ref().unwrap().sha256,
        sha(events.as_bytes())
    );
    assert_eq!((d.transport, d.connection.as_str()), ("tls", "0x55aa"));
    let shown = serde_json::to_string(&d).unwrap();
    for secret in ["sk-ant", "SECRET", "secret prompt"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
}

#[test]
fn a_gzip_answer_is_read_and_digested_as_sent() {
    use std::io::Write;
    let json = br#"{"model":"gpt-4o-2024-08-06","choices":[{"finish_reason":"stop","message":{}}],"usage":{"prompt_tokens":5,"completion_tokens":2}}"#;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(json).unwrap();
    let gz = gz.finish().unwrap();
    let mut res = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
        gz.len()
    )
    .into_bytes();
    res.extend_from_slice(&gz);
    let req = b"POST /v1/chat/completions HTTP/1.1\r\nHost: api.openai.com\r\nAuthorization: Bearer sk-proj-x\r\nContent-Length: 18\r\n\r\n{\"model\":\"gpt-4o\"}";
    let d = llm_call(&exchange(req, Some(&res))).unwrap();
    assert_eq!(d.model_requested.as_deref(), Some("gpt-4o"));
    assert_eq!(d.model_answered.as_deref(), Some("gpt-4o-2024-08-06"));
    assert_eq!(d.finish_reason.as_deref(), Some("stop"));
    assert_eq!(d.response_body.unwrap().sha256, sha(&gz));
}

#[test]
fn gemini_key_in_the_query_is_redacted_and_an_unanswered_call_still_counts() {
    let req = b"POST /v1beta/models/gemini-2.5-flash:generateContent?key=AIzaSECRET&alt=json HTTP/1.1\r\nHost: generativelanguage.googleapis.com\r\nContent-Length: 2\r\n\r\n{}";
    let d = llm_call(&exchange(req, None)).unwrap();
    assert_eq!(
        d.path,
        "/v1beta/models/gemini-2.5-flash:generateContent?key=[REDACTED]&alt=json"
    );
    assert_eq!(d.model_requested.as_deref(), Some("gemini-2.5-flash"));
    assert_eq!(
        (d.status, d.response_body, d.latency_ms),
        (None, None, None)
    );
}

#[test]
fn other_http_is_not_an_llm_call() {
    let req = b"GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n";
    assert!(llm_call(&exchange(req, None)).is_none());
}

/// Plain HTTP to a local Ollama, read from the socket: the provider from
/// the loopback port, the socket named in the record.
#[test]
fn a_local_ollama_call_over_a_socket_names_its_transport() {
    let body =
        br#"{"model":"llama3.2","messages":[{"role":"user","content":"hi"}],"stream":false}"#;
    let mut req = format!(
        "POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1:11434\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    let json = br#"{"model":"llama3.2","message":{"role":"assistant","content":"hello"},"done":true,"done_reason":"stop","prompt_eval_count":26,"eval_count":3}"#;
    let mut res = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        json.len()
    )
    .into_bytes();
    res.extend_from_slice(json);
    let mut ex = exchange(&req, Some(&res));
    ex.conn = ConnId::Io(4242);
    ex.descriptor = Some(crate::stream::plaintext::Descriptor {
        fd: 7,
        channel: Channel::Tcp {
            remote: "127.0.0.1:11434".parse().unwrap(),
            local_port: 51000,
        },
    });
    let d = llm_call(&ex).unwrap();
    assert_eq!((d.provider, d.api), ("ollama", "ollama.chat"));
    assert_eq!(d.model_answered.as_deref(), Some("llama3.2"));
    assert_eq!(
        (d.usage.input_tokens, d.usage.output_tokens),
        (Some(26), Some(3))
    );
    assert_eq!(
        (d.transport, d.connection.as_str()),
        ("tcp", "fd 7 127.0.0.1:11434")
    );
}
