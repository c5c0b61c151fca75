//! Tests of [`super`]: byte streams as clients and servers write them,
//! fed whole and byte by byte.
use super::*;

fn sha(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Feeds `stream` in pieces of `step` bytes.
fn parse(side: Side, stream: &[u8], step: usize) -> (Vec<Message>, Parser) {
    let mut p = Parser::new(side, 1 << 20);
    let mut out = Vec::new();
    for (i, piece) in stream.chunks(step).enumerate() {
        out.extend(p.push(piece, i as u64));
    }
    (out, p)
}

const REQUEST: &[u8] = b"POST /v1/messages?beta=true HTTP/1.1\r\nHost: api.anthropic.com\r\nx-api-key: sk-ant-xyz\r\nContent-Type: application/json\r\nContent-Length: 27\r\n\r\n{\"model\":\"claude-x\",\"a\":1}\n";

#[test]
fn a_request_with_content_length_whole_or_byte_by_byte() {
    for step in [REQUEST.len(), 1, 7] {
        let (msgs, p) = parse(Side::Request, REQUEST, step);
        assert_eq!(msgs.len(), 1, "step {step}");
        let m = &msgs[0];
        assert_eq!(
            (m.head.method.as_str(), m.head.target.as_str()),
            ("POST", "/v1/messages?beta=true")
        );
        assert_eq!(m.head.header("HOST"), Some("api.anthropic.com"));
        assert_eq!(m.body, b"{\"model\":\"claude-x\",\"a\":1}\n");
        assert_eq!((m.body_len, m.complete), (27, true));
        assert_eq!(m.body_sha256, sha(&m.body));
        assert!(!p.in_message() && p.failed().is_none());
    }
}

#[test]
fn two_requests_on_one_connection_and_a_bodiless_get() {
    let mut stream = REQUEST.to_vec();
    stream.extend_from_slice(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n");
    stream.extend_from_slice(REQUEST);
    let (msgs, _) = parse(Side::Request, &stream, 5);
    let targets: Vec<&str> = msgs.iter().map(|m| m.head.target.as_str()).collect();
    assert_eq!(
        targets,
        [
            "/v1/messages?beta=true",
            "/v1/models",
            "/v1/messages?beta=true"
        ]
    );
    assert_eq!(msgs[1].body_len, 0);
}

#[test]
fn a_chunked_response_with_a_trailer_and_a_continue_before_it() {
    let stream = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream\r\n\r\n5\r\nhello\r\n1a;ext=1\r\n, streamed in three chunks\r\n0\r\nX-Trailer: t\r\n\r\n";
    for step in [stream.len(), 1, 3] {
        let (msgs, p) = parse(Side::Response, stream, step);
        assert_eq!(msgs.len(), 1, "step {step}");
        let m = &msgs[0];
        assert_eq!(m.head.status, 200);
        assert_eq!(m.body, b"hello, streamed in three chunks");
        assert_eq!(m.body_sha256, sha(b"hello, streamed in three chunks"));
        assert!(m.complete);
        assert!(!p.in_message());
    }
}

#[test]
fn a_response_without_length_runs_to_the_close() {
    let (msgs, mut p) = parse(Side::Response, b"HTTP/1.0 200 OK\r\n\r\npartial body", 4);
    assert!(msgs.is_empty());
    assert!(p.in_message());
    let m = p.finish().unwrap();
    assert_eq!(
        (m.body.as_slice(), m.complete),
        (&b"partial body"[..], true)
    );
}

#[test]
fn a_response_to_head_and_a_204_have_no_body() {
    let mut p = Parser::new(Side::Response, 1024);
    p.head_requests.push_back(true);
    p.head_requests.push_back(false);
    let msgs = p.push(
        b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\nHTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        0,
    );
    let got: Vec<(u16, u64)> = msgs.iter().map(|m| (m.head.status, m.body_len)).collect();
    assert_eq!(got, [(200, 0), (204, 0), (200, 2)]);
}

#[test]
fn the_kept_body_is_capped_but_the_digest_covers_all() {
    let body = vec![b'a'; 5000];
    let mut stream =
        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    stream.extend_from_slice(&body);
    let mut p = Parser::new(Side::Response, 100);
    let msgs = p.push(&stream, 0);
    assert_eq!(msgs[0].body.len(), 100);
    assert_eq!(msgs[0].body_len, 5000);
    assert_eq!(msgs[0].body_sha256, sha(&body));
    assert!(msgs[0].complete);
}

#[test]
fn a_gap_inside_a_sized_body_is_skipped_and_marked() {
    let mut p = Parser::new(Side::Request, 1024);
    assert!(p
        .push(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc", 0)
        .is_empty());
    p.gap(4);
    let msgs = p.push(b"xyz", 1);
    assert_eq!(msgs.len(), 1);
    assert_eq!(
        (msgs[0].body.as_slice(), msgs[0].body_len, msgs[0].complete),
        (&b"abcxyz"[..], 6, false)
    );
    // The next message parses again.
    let next = p.push(b"GET / HTTP/1.1\r\n\r\n", 2);
    assert_eq!(next.len(), 1);
}

#[test]
fn garbage_and_a_gap_outside_a_body_stop_the_stream() {
    let (msgs, p) = parse(Side::Request, b"\x16\x03\x01 not http\r\n\r\n", 64);
    assert!(msgs.is_empty());
    assert!(matches!(
        p.failed(),
        Some(Http1Error::Head(Side::Request, _))
    ));
    let mut p = Parser::new(Side::Request, 1024);
    p.gap(10);
    assert!(p.failed().is_some());
    assert!(p.push(REQUEST, 0).is_empty());
    let (_, p) = parse(
        Side::Response,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        64,
    );
    assert_eq!(p.failed(), Some(&Http1Error::Chunk));
    let (_, p) = parse(
        Side::Response,
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        64,
    );
    assert_eq!(p.failed(), Some(&Http1Error::Length));
}

#[test]
fn debug_shows_no_header_value_query_or_body() {
    let (msgs, _) = parse(Side::Request, REQUEST, REQUEST.len());
    let shown = format!("{:?}", msgs[0]);
    assert!(
        shown.contains("x-api-key") && shown.contains("/v1/messages"),
        "{shown}"
    );
    for secret in ["sk-ant-xyz", "beta=true", "claude-x"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
}
