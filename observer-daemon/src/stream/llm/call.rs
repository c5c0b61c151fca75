//! One LLM API call as observer records it (`llm_request` events, the
//! `llm.request` receipt): what was asked and answered, digests of the
//! exact bodies, and never the content, a header or a key.
use serde::Serialize;

use crate::stream::{
    connection::Exchange,
    content::{self, CONTENT_MAX},
    http1::Message,
    llm::{answer::answered, endpoint::identify, request::asked, Usage},
    plaintext::{Channel, ConnId},
};

/// A body as it went over the connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BodyDigest {
    /// `sha256:<hex>` of the body as sent (chunk framing removed, content
    /// coding kept).
    pub sha256: String,
    pub bytes: u64,
    /// Every byte was seen.
    pub complete: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LlmRequestDetail {
    pub provider: &'static str,
    pub api: &'static str,
    /// The Host header.
    pub host: String,
    pub method: String,
    /// Path and query; query values that may be keys are `[REDACTED]`.
    pub path: String,
    /// The HTTP version of the request: "1.1" (or "1.0"), or "2".
    pub http_version: &'static str,
    pub model_requested: Option<String>,
    pub model_answered: Option<String>,
    /// The request asked for a stream.
    pub stream: bool,
    /// The HTTP status; None if no answer was seen.
    pub status: Option<u16>,
    pub finish_reason: Option<String>,
    pub usage: Usage,
    pub tools_offered: Vec<String>,
    pub tool_calls: Vec<String>,
    /// The provider's error type, for an error answer.
    pub error: Option<String>,
    /// From the request's first byte to the answer's last.
    pub latency_ms: Option<u64>,
    pub request_body: BodyDigest,
    pub response_body: Option<BodyDigest>,
    /// `tls` (read before encryption, from the TLS library), or `tcp` /
    /// `unix` (plain HTTP on a loopback or Unix socket, from the syscalls).
    pub transport: &'static str,
    /// What it went over: the client's SSL object (`0x...`) for TLS,
    /// followed by its socket (`0x... fd 5 203.0.113.7:443`) when a TLS call
    /// was seen writing or reading it; the descriptor and peer
    /// (`fd 7 127.0.0.1:11434`) for plain HTTP on a socket.
    pub connection: String,
    /// The bodies, when the agent's `capture_content` asks for them
    /// (`policy::content`), credentials always replaced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<serde_json::Value>,
    /// The decoded bodies until the writer decides what is kept (never
    /// serialised).
    #[serde(skip)]
    pub raw: Option<Box<RawContent>>,
}

/// The first [`CONTENT_MAX`] bytes of a decoded body and its length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawBody {
    pub bytes: Vec<u8>,
    pub len: usize,
}

impl RawBody {
    pub fn new(body: &[u8]) -> RawBody {
        RawBody {
            bytes: body[..body.len().min(CONTENT_MAX)].to_vec(),
            len: body.len(),
        }
    }
}

/// An LLM call's bodies as decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawContent {
    pub request: RawBody,
    pub response: Option<RawBody>,
}

/// The LLM API call in `ex`, if it was one.
pub fn llm_call(ex: &Exchange) -> Option<LlmRequestDetail> {
    let req = &ex.request;
    let host = req.head.header("host").unwrap_or_default().to_string();
    let endpoint = identify(&host, &req.head.target)?;
    let request_body = content::decoded_body(req);
    let a = asked(&endpoint, &req.head.target, &request_body);
    let mut raw_response = None;
    let (status, answer, response_body, latency_ms) = match &ex.response {
        Some(res) => {
            let body = content::decoded_body(res);
            let answer = answered(endpoint.api, res.head.header("content-type"), &body);
            let latency = res.last_ns.saturating_sub(req.first_ns) / 1_000_000;
            raw_response = Some(RawBody::new(&body));
            (
                Some(res.head.status),
                answer,
                Some(digest(res)),
                Some(latency),
            )
        }
        None => (None, Default::default(), None, None),
    };
    Some(LlmRequestDetail {
        provider: endpoint.provider,
        api: endpoint.api.name(),
        host,
        method: req.head.method.clone(),
        path: redact_query(&req.head.target),
        http_version: req.head.version,
        model_requested: a.model,
        model_answered: answer.model,
        stream: a.stream,
        status,
        finish_reason: answer.finish_reason,
        usage: answer.usage,
        tools_offered: a.tools,
        tool_calls: answer.tool_calls,
        error: answer.error,
        latency_ms,
        request_body: digest(req),
        response_body,
        transport: transport(ex),
        connection: connection(ex),
        content: None,
        raw: Some(Box::new(RawContent {
            request: RawBody::new(&request_body),
            response: raw_response,
        })),
    })
}

fn transport(ex: &Exchange) -> &'static str {
    match (ex.conn, &ex.descriptor) {
        (ConnId::Tls(_), _) => "tls",
        (ConnId::Io(_), Some(d)) => d.channel.transport(),
        (ConnId::Io(_), None) => "tcp",
    }
}

fn connection(ex: &Exchange) -> String {
    let socket = ex.descriptor.as_ref().map(|d| match d.channel {
        Channel::Tcp { remote, .. } => format!("fd {} {remote}", d.fd),
        Channel::Unix | Channel::Pipe => format!("fd {}", d.fd),
    });
    match (ex.conn, socket) {
        // The SSL object, then its socket when a call touched it.
        (ConnId::Tls(ssl), Some(s)) => format!("{ssl:#x} {s}"),
        (ConnId::Tls(ssl), None) => format!("{ssl:#x}"),
        (ConnId::Io(_), Some(s)) => s,
        (ConnId::Io(ino), None) => format!("{ino:#x}"),
    }
}

fn digest(m: &Message) -> BodyDigest {
    BodyDigest {
        sha256: format!("sha256:{}", hex::encode(m.body_sha256)),
        bytes: m.body_len,
        complete: m.complete,
    }
}

/// Query parameters whose values may be credentials (Gemini takes its API
/// key as `?key=`; Azure SAS tokens as `sig=`).
fn secret_param(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "key",
        "token",
        "sig",
        "secret",
        "password",
        "auth",
        "credential",
        "signature",
    ]
    .iter()
    .any(|s| n.contains(s))
}

/// `target` with the values of secret query parameters replaced.
pub fn redact_query(target: &str) -> String {
    let Some((path, query)) = target.split_once('?') else {
        return target.to_string();
    };
    let params: Vec<String> = query
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, _)) if secret_param(k) => format!("{k}=[REDACTED]"),
            _ => p.to_string(),
        })
        .collect();
    format!("{path}?{}", params.join("&"))
}

#[cfg(test)]
#[path = "call_tests.rs"]
mod tests;
