//! Tests of [`super`]: HTTP/2 connections built by hand, frame by frame,
//! with HPACK blocks written out byte by byte (static and dynamic table
//! references, literals, Huffman strings from RFC 7541 Appendix C).
use observer_common::EventKind;
use sha2::{Digest, Sha256};

use super::*;
use crate::stream::{llm::call::llm_call, sse};

const SECRET: &str = "sk-observer-h2-secret";

fn hdr(ns: u64) -> Header {
    Header {
        kind: EventKind::TlsData,
        cpu: 0,
        seq: ns,
        boot_ns: ns,
        tgid: 7,
        tid: 7,
        uid: 0,
        gid: 0,
        cgroup_id: 1,
        comm: "node".into(),
    }
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.extend([kind, flags]);
    f.extend(stream.to_be_bytes());
    f.extend(payload);
    f
}

/// An HPACK string literal, not Huffman-coded (length under 127).
fn string(s: &str) -> Vec<u8> {
    assert!(s.len() < 127);
    let mut v = vec![s.len() as u8];
    v.extend(s.as_bytes());
    v
}

/// Indexed header field (RFC 7541 6.1).
fn indexed(i: u8) -> Vec<u8> {
    vec![0x80 | i]
}

/// Literal with incremental indexing, name from table entry `i` (6.2.1):
/// the field enters the dynamic table.
fn indexing(i: u8, value: &str) -> Vec<u8> {
    let mut v = vec![0x40 | i];
    v.extend(string(value));
    v
}

/// Literal never indexed with a new name (6.2.3), as clients send
/// credentials.
fn never(name: &str, value: &str) -> Vec<u8> {
    let mut v = vec![0x10];
    v.extend(string(name));
    v.extend(string(value));
    v
}

/// Client SETTINGS with a header table size and an initial window.
fn settings() -> Vec<u8> {
    frame(
        SETTINGS,
        0,
        0,
        &[0, 1, 0, 0, 0x10, 0, 0, 4, 0, 0, 0xff, 0xff],
    )
}

/// The first request's block: POST, https, a path and authority that
/// enter the dynamic table, content-type, the key never indexed.
fn request_block(path: &str) -> Vec<u8> {
    [
        indexed(3),
        indexed(7),
        indexing(4, path),
        indexing(1, "api.openai.com"),
        indexing(31, "application/json"),
        never("authorization", &format!("Bearer {SECRET}")),
    ]
    .concat()
}

const BODY: &[u8] = br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
const ANSWER: &[u8] = br#"{"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":2}}"#;

fn sha(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn client_start() -> Vec<u8> {
    [PREFACE.to_vec(), settings()].concat()
}

/// The server's first bytes: its SETTINGS and the ACK of the client's.
fn server_start() -> Vec<u8> {
    [settings(), frame(SETTINGS, ACK, 0, &[])].concat()
}

fn json_response(stream: u32, body: &[u8]) -> Vec<u8> {
    let block = [indexed(8), indexing(31, "application/json")].concat();
    [
        frame(HEADERS, END_HEADERS, stream, &block),
        frame(DATA, END_STREAM, stream, body),
    ]
    .concat()
}

fn push_all(h: &mut Http2, dir: Direction, bytes: &[u8], ns: u64) -> Vec<Exchange> {
    h.push(&hdr(ns), dir, 0, bytes)
}

#[test]
fn a_post_and_its_answer_are_one_exchange_and_the_same_llm_call_as_http1() {
    let mut h = Http2::new(ConnId::Tls(0xa), None, 1 << 20);
    let sent = [
        client_start(),
        frame(
            HEADERS,
            END_HEADERS,
            1,
            &request_block("/v1/chat/completions"),
        ),
        frame(DATA, END_STREAM, 1, BODY),
    ]
    .concat();
    assert!(push_all(&mut h, Direction::Sent, &sent, 10).is_empty());
    let received = [server_start(), json_response(1, ANSWER)].concat();
    let done = push_all(&mut h, Direction::Received, &received, 30_000_010);
    assert_eq!(done.len(), 1);
    let ex = &done[0];
    assert_eq!(ex.conn, ConnId::Tls(0xa));
    let req = &ex.request;
    assert_eq!(
        (req.head.method.as_str(), req.head.target.as_str()),
        ("POST", "/v1/chat/completions")
    );
    assert_eq!(req.head.version, "2");
    assert_eq!(req.head.header("host"), Some("api.openai.com"));
    assert_eq!(req.head.header("content-type"), Some("application/json"));
    assert_eq!(req.head.header("authorization"), None);
    assert!(req.head.headers.iter().all(|(n, _)| !n.starts_with(':')));
    assert_eq!(
        (req.body.as_slice(), req.body_len),
        (BODY, BODY.len() as u64)
    );
    assert_eq!(req.body_sha256, sha(BODY));
    assert!(req.complete);
    let res = ex.response.as_ref().unwrap();
    assert_eq!((res.head.status, res.body.as_slice()), (200, ANSWER));
    assert!(res.complete);
    assert!(!format!("{done:?}").contains(SECRET));

    let call = llm_call(ex).unwrap();
    assert_eq!((call.provider, call.api), ("openai", "chat.completions"));
    assert_eq!(call.http_version, "2");
    assert_eq!(call.host, "api.openai.com");
    assert_eq!(call.model_requested.as_deref(), Some("gpt-4o-mini"));
    assert_eq!(
        call.model_answered.as_deref(),
        Some("gpt-4o-mini-2024-07-18")
    );
    assert_eq!(call.status, Some(200));
    assert_eq!(call.finish_reason.as_deref(), Some("stop"));
    assert_eq!(
        (call.usage.input_tokens, call.usage.output_tokens),
        (Some(9), Some(2))
    );
    assert_eq!(call.latency_ms, Some(30));
    assert_eq!(
        call.request_body.sha256,
        format!("sha256:{}", hex::encode(sha(BODY)))
    );
    assert!(call.response_body.unwrap().complete);
}

/// The second request names its path and authority by dynamic table
/// index (62 is the newest entry), in a block split over HEADERS and two
/// CONTINUATION frames; fed one byte per piece, the result is the same.
#[test]
fn dynamic_table_entries_and_continuation_frames_one_byte_at_a_time() {
    let second = [
        indexed(3),
        indexed(7),
        indexed(64),
        indexed(63),
        indexed(62),
        never("x-api-key", SECRET),
    ]
    .concat();
    let sent = [
        client_start(),
        frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            1,
            &request_block("/v1/embeddings"),
        ),
        frame(HEADERS, 0, 3, &second[..2]),
        frame(CONTINUATION, 0, 3, &second[2..4]),
        frame(CONTINUATION, END_HEADERS, 3, &second[4..]),
        frame(DATA, END_STREAM, 3, BODY),
    ]
    .concat();
    let received = [
        server_start(),
        json_response(1, b"{}"),
        json_response(3, ANSWER),
    ]
    .concat();
    let mut h = Http2::new(ConnId::Tls(0xb), None, 1 << 20);
    for b in &sent {
        assert!(push_all(&mut h, Direction::Sent, &[*b], 1).is_empty());
    }
    let mut done = Vec::new();
    for b in &received {
        done.extend(push_all(&mut h, Direction::Received, &[*b], 2));
    }
    assert_eq!(done.len(), 2);
    let (first, second) = (&done[0].request, &done[1].request);
    assert_eq!(first.head.target, "/v1/embeddings");
    assert!(first.complete && first.body.is_empty());
    assert_eq!(second.head.target, "/v1/embeddings");
    assert_eq!(second.head.header("host"), Some("api.openai.com"));
    assert_eq!(second.head.header("content-type"), Some("application/json"));
    assert_eq!(second.head.header("x-api-key"), None);
    assert_eq!(second.body, BODY);
    assert_eq!(done[1].response.as_ref().unwrap().body, ANSWER);
    assert_eq!(h.take_given_up(), 0);
}

/// RFC 7541 C.4: Huffman-coded literals and a dynamic table built over
/// three requests.
#[test]
fn huffman_strings_and_the_rfc_example_table() {
    let blocks: [&[u8]; 3] = [
        &[
            0x82, 0x86, 0x84, 0x41, 0x8c, 0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab,
            0x90, 0xf4, 0xff,
        ],
        &[
            0x82, 0x86, 0x84, 0xbe, 0x58, 0x86, 0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf,
        ],
        &[
            0x82, 0x87, 0x85, 0xbf, 0x40, 0x88, 0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xa9, 0x7d, 0x7f,
            0x89, 0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xb8, 0xe8, 0xb4, 0xbf,
        ],
    ];
    let mut sent = client_start();
    for (i, b) in blocks.iter().enumerate() {
        sent.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            1 + 2 * i as u32,
            b,
        ));
    }
    let mut h = Http2::new(ConnId::Tls(1), None, 1024);
    assert!(push_all(&mut h, Direction::Sent, &sent, 1).is_empty());
    let done = h.finish();
    let heads: Vec<_> = done.iter().map(|e| &e.request.head).collect();
    assert_eq!(heads.len(), 3);
    assert!(heads
        .iter()
        .all(|h| h.method == "GET" && h.header("host") == Some("www.example.com")));
    assert_eq!(heads[1].header("cache-control"), Some("no-cache"));
    assert_eq!(heads[2].target, "/index.html");
    assert_eq!(heads[2].header("custom-key"), Some("custom-value"));
    assert!(done
        .iter()
        .all(|e| e.response.is_none() && e.request.complete));
}

/// Padding on HEADERS and DATA, a priority field, two streams whose
/// frames interleave both ways; the second answer is server-sent events.
#[test]
fn padded_frames_and_two_interleaved_streams_one_streamed() {
    let padded_headers = |stream: u32, block: &[u8]| {
        let mut p = vec![3];
        p.extend([0, 0, 0, 0, 16]);
        p.extend(block);
        p.extend([0; 3]);
        frame(HEADERS, END_HEADERS | PADDED | PRIORITY, stream, &p)
    };
    let padded_data = |stream: u32, flags: u8, data: &[u8]| {
        let mut p = vec![5];
        p.extend(data);
        p.extend([0; 5]);
        frame(DATA, flags | PADDED, stream, &p)
    };
    let second = [indexed(3), indexed(7), indexed(64), indexed(63)].concat();
    let sent = [
        client_start(),
        padded_headers(1, &request_block("/v1/chat/completions")),
        padded_headers(3, &second),
        padded_data(3, 0, &BODY[..10]),
        padded_data(1, END_STREAM, BODY),
        padded_data(3, END_STREAM, &BODY[10..]),
    ]
    .concat();
    let events = b"data: {\"model\":\"m-2\",\"choices\":[{\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\ndata: {\"model\":\"m-2\",\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":1}}\n\ndata: [DONE]\n\n";
    let sse_head = [indexed(8), indexing(31, "text/event-stream")].concat();
    let received = [
        server_start(),
        frame(HEADERS, END_HEADERS, 3, &sse_head),
        frame(
            HEADERS,
            END_HEADERS,
            1,
            &[indexed(8), indexing(31, "application/json")].concat(),
        ),
        padded_data(3, 0, &events[..40]),
        frame(DATA, END_STREAM, 1, ANSWER),
        padded_data(3, END_STREAM, &events[40..]),
    ]
    .concat();
    let mut h = Http2::new(ConnId::Tls(2), None, 1 << 20);
    assert!(push_all(&mut h, Direction::Sent, &sent, 1).is_empty());
    let done = push_all(&mut h, Direction::Received, &received, 2);
    assert_eq!(done.len(), 2);
    assert_eq!(done[0].request.body, BODY);
    assert_eq!(done[0].response.as_ref().unwrap().body, ANSWER);
    let streamed = &done[1];
    assert_eq!(streamed.request.body, BODY);
    let res = streamed.response.as_ref().unwrap();
    assert_eq!(res.body, events);
    assert_eq!(res.body_sha256, sha(events));
    assert_eq!(sse::events(&res.body).len(), 3);
    let call = llm_call(streamed).unwrap();
    assert_eq!(call.model_answered.as_deref(), Some("m-2"));
    assert_eq!(call.finish_reason.as_deref(), Some("stop"));
    assert_eq!(
        (call.usage.input_tokens, call.usage.output_tokens),
        (Some(4), Some(1))
    );
}

/// A stream the server resets is recorded at once, without an answer;
/// GOAWAY ends the streams the server never took; a late frame of a
/// closed stream is ignored.
#[test]
fn a_reset_stream_and_streams_past_goaway_are_recorded_as_they_stand() {
    let second = [indexed(3), indexed(7), indexed(64), indexed(63)].concat();
    let sent = [
        client_start(),
        frame(
            HEADERS,
            END_HEADERS,
            1,
            &request_block("/v1/chat/completions"),
        ),
        frame(DATA, END_STREAM, 1, BODY),
        frame(HEADERS, END_HEADERS, 3, &second),
        frame(HEADERS, END_HEADERS, 5, &second),
    ]
    .concat();
    let mut h = Http2::new(ConnId::Tls(3), None, 1 << 20);
    assert!(push_all(&mut h, Direction::Sent, &sent, 1).is_empty());
    let reset = push_all(
        &mut h,
        Direction::Received,
        &[server_start(), frame(RST_STREAM, 0, 1, &[0, 0, 0, 8])].concat(),
        2,
    );
    assert_eq!(reset.len(), 1);
    assert!(reset[0].request.complete && reset[0].response.is_none());
    let goaway = frame(GOAWAY, 0, 0, &[0, 0, 0, 3, 0, 0, 0, 0]);
    let gone = push_all(&mut h, Direction::Received, &goaway, 3);
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].request.head.target, "/v1/chat/completions");
    assert!(
        !gone[0].request.complete,
        "stream 5 never ended its request"
    );
    // Stream 1's late answer has nothing to join; stream 3 goes on.
    let late = [json_response(1, b"{}"), json_response(3, ANSWER)].concat();
    let done = push_all(&mut h, Direction::Received, &late, 4);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].response.as_ref().unwrap().body, ANSWER);
    assert!(h.finish().is_empty());
}

/// A gap inside a DATA payload is skipped (the body is marked
/// incomplete, the stream goes on); a gap at a frame boundary loses the
/// direction: counted, its open request flagged incomplete and still
/// recorded when its answer ends it.
#[test]
fn a_gap_in_a_body_is_skipped_and_one_elsewhere_gives_the_direction_up() {
    let mut h = Http2::new(ConnId::Tls(4), None, 1 << 20);
    let sent = [
        client_start(),
        frame(
            HEADERS,
            END_HEADERS,
            1,
            &request_block("/v1/chat/completions"),
        ),
    ]
    .concat();
    assert!(push_all(&mut h, Direction::Sent, &sent, 1).is_empty());
    let data = frame(DATA, END_STREAM, 1, BODY);
    // The middle 20 body bytes never reached the ring.
    assert!(push_all(&mut h, Direction::Sent, &data[..30], 2).is_empty());
    assert!(h.push(&hdr(3), Direction::Sent, 20, &data[50..]).is_empty());
    assert_eq!(h.take_given_up(), 0);
    // Stream 3's request starts, then bytes between frames are missing.
    let second = [indexed(3), indexed(7), indexed(64), indexed(63)].concat();
    let open = frame(HEADERS, END_HEADERS, 3, &second);
    assert!(push_all(&mut h, Direction::Sent, &open, 4).is_empty());
    assert!(h
        .push(&hdr(5), Direction::Sent, 9, &frame(DATA, 0, 3, b"x"))
        .is_empty());
    assert_eq!(h.take_given_up(), 1);
    let received = [
        server_start(),
        json_response(1, ANSWER),
        json_response(3, b"{}"),
    ]
    .concat();
    let done = push_all(&mut h, Direction::Received, &received, 6);
    assert_eq!(done.len(), 2);
    let first = &done[0].request;
    assert!(!first.complete);
    assert_eq!(first.body_len, BODY.len() as u64 - 20);
    assert_eq!(first.body, [&BODY[..21], &BODY[41..]].concat());
    assert!(done[0].response.as_ref().unwrap().complete);
    assert_eq!(done[1].request.head.target, "/v1/chat/completions");
    assert!(!done[1].request.complete);
    assert_eq!(done[1].response.as_ref().unwrap().head.status, 200);
}

/// A table size update to 0 empties the dynamic table; a block that then
/// names an evicted entry does not decode: the HPACK state is lost and
/// the direction given up, but the stream is still a request made, with
/// an unknown head. Losing the answers records every open stream at once.
#[test]
fn a_table_size_update_evicts_and_a_lost_table_gives_up() {
    let mut h = Http2::new(ConnId::Tls(5), None, 1 << 20);
    let sent = [
        client_start(),
        frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            1,
            &request_block("/v1/chat/completions"),
        ),
    ]
    .concat();
    assert!(push_all(&mut h, Direction::Sent, &sent, 1).is_empty());
    let evicted = [vec![0x20], indexed(3), indexed(62)].concat();
    let bad = frame(HEADERS, END_HEADERS | END_STREAM, 3, &evicted);
    assert!(push_all(&mut h, Direction::Sent, &bad, 2).is_empty());
    assert_eq!(h.take_given_up(), 1);
    let lost = h.push(&hdr(3), Direction::Received, 5, &server_start());
    assert_eq!(h.take_given_up(), 1);
    assert_eq!(lost.len(), 2);
    assert!(lost[0].request.complete);
    assert!(lost.iter().all(|e| e.response.is_none()));
    let unread = &lost[1].request;
    assert!(!unread.complete);
    assert_eq!(
        (unread.head.method.as_str(), unread.head.version),
        ("", "2")
    );
    assert!(h.finish().is_empty());
}

/// A size update beyond the table size the peer allowed (its SETTINGS)
/// is an HPACK error, not an allocation.
#[test]
fn a_table_larger_than_the_peer_allowed_is_refused() {
    let mut h = Http2::new(ConnId::Tls(6), None, 1 << 20);
    // 0x3f e1 ff 03: a table size update to 65536 (the client allowed 4096).
    let update = [vec![0x3f, 0xe1, 0xff, 0x03], indexed(8)].concat();
    assert!(push_all(&mut h, Direction::Sent, &client_start(), 1).is_empty());
    let received = [server_start(), frame(HEADERS, END_HEADERS, 1, &update)].concat();
    assert!(push_all(&mut h, Direction::Received, &received, 2).is_empty());
    assert_eq!(h.take_given_up(), 1);
}

/// Not an HTTP/2 client preface after all, or a frame that breaks the
/// framing rules: given up, never a panic.
#[test]
fn broken_framing_gives_up() {
    let mut h = Http2::new(ConnId::Tls(7), None, 1 << 20);
    assert!(push_all(
        &mut h,
        Direction::Sent,
        b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n",
        1
    )
    .is_empty());
    assert_eq!(h.take_given_up(), 1);
    for bad in [
        frame(DATA, END_STREAM, 0, b"x"),
        frame(DATA, PADDED, 1, &[9, 0]),
        frame(HEADERS, END_HEADERS | PADDED, 1, &[200]),
        frame(CONTINUATION, END_HEADERS, 1, &[0x82]),
        [frame(HEADERS, 0, 1, &[0x82]), frame(DATA, 0, 1, b"x")].concat(),
        frame(HEADERS, END_HEADERS, 1, &[0x3f]),
    ] {
        let mut h = Http2::new(ConnId::Tls(8), None, 1 << 20);
        let sent = [client_start(), bad].concat();
        assert!(push_all(&mut h, Direction::Sent, &sent, 1).is_empty());
        assert_eq!(h.take_given_up(), 1);
    }
}
