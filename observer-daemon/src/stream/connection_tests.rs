//! Tests of [`super`]: pieces as the plaintext ring delivers them.
use observer_common::EventKind;

use super::*;
use crate::stream::plaintext::{Call, Channel};

fn header(tgid: u32, ns: u64) -> Header {
    Header {
        kind: EventKind::TlsData,
        cpu: 0,
        seq: ns,
        boot_ns: ns,
        tgid,
        tid: tgid + 1,
        uid: 0,
        gid: 0,
        cgroup_id: 1,
        comm: "agent".into(),
    }
}

/// One call's bytes as a single piece.
fn call(tgid: u32, ssl: u64, ns: u64, call: Call, data: &[u8]) -> Plaintext {
    Plaintext {
        header: header(tgid, ns),
        conn: ConnId::Tls(ssl),
        call,
        descriptor: None,
        len: data.len() as u32,
        offset: 0,
        data: data.to_vec(),
    }
}

const REQ: &[u8] =
    b"POST /v1/messages HTTP/1.1\r\nHost: api.anthropic.com\r\nContent-Length: 2\r\n\r\n{}";
const RES: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 4\r\n\r\nnull";

fn exchanges(out: Vec<Finished>) -> Vec<Exchange> {
    out.into_iter()
        .filter_map(|f| match f {
            Finished::Exchange(e) => Some(*e),
            Finished::Http2 { .. } => None,
        })
        .collect()
}

#[test]
fn request_and_response_pair_in_order_per_connection() {
    let mut c = Connections::default();
    assert!(c
        .push(call(10, 0xa, 1, Call::SslWrite, &REQ[..20]))
        .is_empty());
    assert!(c
        .push(call(10, 0xa, 2, Call::SslWrite, &REQ[20..]))
        .is_empty());
    // Another connection of the same process in between.
    assert!(c.push(call(10, 0xb, 3, Call::SslWrite, REQ)).is_empty());
    let done = exchanges(c.push(call(10, 0xa, 4, Call::SslRead, RES)));
    assert_eq!(done.len(), 1);
    let e = &done[0];
    assert_eq!(
        (e.conn, e.header.boot_ns, e.header.tid),
        (ConnId::Tls(0xa), 1, 11)
    );
    assert_eq!(e.request.body, b"{}");
    let r = e.response.as_ref().unwrap();
    assert_eq!(
        (r.head.status, r.body.as_slice(), r.last_ns),
        (200, &b"null"[..], 4)
    );
    assert_eq!(c.len(), 2);
    // The other one goes out unanswered when its process exits.
    let left = exchanges(c.exited(10));
    assert_eq!(left.len(), 1);
    assert_eq!(
        (left[0].conn, left[0].response.is_none()),
        (ConnId::Tls(0xb), true)
    );
    assert!(c.is_empty());
}

#[test]
fn a_response_that_runs_to_the_close_ends_when_the_connection_idles() {
    let mut c = Connections::default();
    c.push(call(7, 1, 10, Call::SslWriteEx, REQ));
    assert!(c
        .push(call(
            7,
            1,
            20,
            Call::SslReadEx,
            b"HTTP/1.0 200 OK\r\n\r\nstreamed until close"
        ))
        .is_empty());
    assert!(c.expire(15).is_empty(), "active after 15");
    let done = exchanges(c.expire(21));
    assert_eq!(
        done[0].response.as_ref().unwrap().body,
        b"streamed until close"
    );
    assert!(done[0].response.as_ref().unwrap().complete);
}

#[test]
fn http2_is_reported_once_and_other_protocols_are_left_alone() {
    let mut c = Connections::default();
    let out = c.push(call(
        5,
        9,
        1,
        Call::SslWrite,
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04",
    ));
    assert!(matches!(
        &out[..],
        [Finished::Http2 {
            conn: ConnId::Tls(9),
            ..
        }]
    ));
    assert!(c
        .push(call(5, 9, 2, Call::SslWrite, b"\x00\x00\x08\x06"))
        .is_empty());
    assert!(c
        .push(call(5, 3, 3, Call::SslWrite, b"\x05\x01\x00 binary"))
        .is_empty());
    assert_eq!(c.not_http, 1);
    // TLS connections are not muted: their uprobes are per process.
    assert!(c.take_muted().is_empty());
}

/// One pipe or socket call's bytes as a single piece.
fn io(tgid: u32, ino: u64, ns: u64, call: Call, channel: Channel, data: &[u8]) -> Plaintext {
    Plaintext {
        header: header(tgid, ns),
        conn: ConnId::Io(ino),
        call,
        descriptor: Some(Descriptor { fd: 5, channel }),
        len: data.len() as u32,
        offset: 0,
        data: data.to_vec(),
    }
}

/// Plain HTTP on loopback pairs like TLS and names its socket; a pipe
/// that carries something else, or that the process only reads, is handed
/// back once to be muted in the kernel.
#[test]
fn local_streams_pair_or_are_muted() {
    let tcp = Channel::Tcp {
        remote: "127.0.0.1:11434".parse().unwrap(),
        local_port: 40000,
    };
    let mut c = Connections::default();
    c.push(io(8, 100, 1, Call::SendTo, tcp, REQ));
    let done = exchanges(c.push(io(8, 100, 2, Call::RecvFrom, tcp, RES)));
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].conn, ConnId::Io(100));
    assert_eq!(
        done[0].descriptor,
        Some(Descriptor {
            fd: 5,
            channel: tcp
        })
    );
    assert!(c.take_muted().is_empty());
    c.push(io(8, 200, 3, Call::Write, Channel::Pipe, b"total 0\n"));
    c.push(io(8, 200, 4, Call::Write, Channel::Pipe, b"more\n"));
    c.push(io(
        8,
        300,
        5,
        Call::Read,
        Channel::Pipe,
        b"GET / HTTP/1.1\r\n",
    ));
    assert_eq!(c.take_muted(), vec![(8, 200), (8, 300)]);
    assert!(c.take_muted().is_empty());
}

fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.extend([kind, flags]);
    f.extend(stream.to_be_bytes());
    f.extend(payload);
    f
}

/// The streams of an HTTP/2 connection come out as exchanges (the pieces'
/// gaps reach its parser); one it gives up is counted as abandoned, and
/// what is open when the connection closes is recorded.
#[test]
fn http2_streams_are_exchanges_and_what_is_given_up_is_counted() {
    let mut c = Connections::default();
    let block = |stream: u32| {
        let mut b = vec![0x83, 0x87, 0x44, 12];
        b.extend(b"/v1/messages");
        b.extend([0x41, 17]);
        b.extend(b"api.anthropic.com");
        h2_frame(1, 4, stream, &b)
    };
    let mut sent = H2_PREFACE.to_vec();
    sent.extend(block(1));
    sent.extend(h2_frame(0, 1, 1, b"{}"));
    let out = c.push(call(5, 9, 1, Call::SslWrite, &sent));
    assert!(matches!(
        &out[..],
        [Finished::Http2 {
            conn: ConnId::Tls(9),
            ..
        }]
    ));
    let done = exchanges(c.push(call(5, 9, 2, Call::SslRead, &h2_frame(1, 5, 1, &[0x88]))));
    assert_eq!(done.len(), 1);
    assert_eq!(
        done[0].request.head.header("host"),
        Some("api.anthropic.com")
    );
    assert_eq!(done[0].response.as_ref().unwrap().head.status, 200);
    // Stream 3 opens in a call whose last 9 bytes (a DATA frame's header)
    // the bound cut off; the next call brings the payload.
    let mut cut = call(5, 9, 3, Call::SslWrite, &block(3));
    cut.len += 9;
    assert!(c.push(cut).is_empty());
    let payload = &h2_frame(0, 1, 3, b"{}")[9..];
    assert!(c.push(call(5, 9, 4, Call::SslWrite, payload)).is_empty());
    assert_eq!(c.abandoned, 1);
    let open = exchanges(c.close_all());
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].request.head.target, "/v1/messages");
    assert!(!open[0].request.complete && open[0].response.is_none());
}

/// The bound cut a request's body: the pieces say how much was missed, the
/// request is marked incomplete and the next one parses.
#[test]
fn a_capture_gap_inside_a_body_is_skipped() {
    let mut c = Connections::default();
    let body = vec![b'x'; 100];
    let mut req =
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n".to_vec();
    req.extend_from_slice(&body);
    let cut = req.len() - 60;
    let mut first = call(3, 4, 1, Call::SslWrite, &req[..cut]);
    first.len = req.len() as u32;
    c.push(first);
    c.push(call(3, 4, 2, Call::SslWrite, REQ));
    let mut res = RES.to_vec();
    res.extend_from_slice(RES);
    let done = exchanges(c.push(call(3, 4, 3, Call::SslRead, &res)));
    assert_eq!(done.len(), 2);
    assert_eq!(
        (done[0].request.body_len, done[0].request.complete),
        (40, false)
    );
    assert!(done[1].request.complete);
}

#[test]
fn the_idlest_connection_closes_when_the_table_is_full() {
    let mut c = Connections::new(Limits {
        body_cap: 1024,
        max_connections: 2,
    });
    c.push(call(1, 1, 1, Call::SslWrite, REQ));
    c.push(call(1, 2, 2, Call::SslWrite, REQ));
    let out = exchanges(c.push(call(1, 3, 3, Call::SslWrite, REQ)));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].conn, ConnId::Tls(1));
    assert_eq!(c.len(), 2);
}

/// What the OpenAI SDK reads of a streamed answer: every event, `data:
/// [DONE]` last, but not the chunk that ends the body (it stops reading
/// there and closes); the call ends when its process is gone, once the
/// grace for pieces still in the ring is over, with all the body it read.
#[test]
fn a_stream_read_to_its_last_event_ends_when_its_process_is_gone() {
    const SSE_REQ: &[u8] = b"POST /v1/chat/completions HTTP/1.1\r\nHost: api.openai.com\r\nContent-Length: 2\r\n\r\n{}";
    const SSE_HEAD: &[u8] =
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
    const EVENT: &[u8] = b"16\r\ndata: {\"choices\":[]}\n\n\r\n";
    const DONE: &[u8] = b"e\r\ndata: [DONE]\n\n\r\n";
    let mut c = Connections::default();
    c.push(call(5, 0xc, 10, Call::SslWriteEx, SSE_REQ));
    c.push(call(5, 0xc, 11, Call::SslReadEx, SSE_HEAD));
    c.push(call(5, 0xc, 12, Call::SslReadEx, EVENT));
    assert!(c.push(call(5, 0xc, 13, Call::SslReadEx, DONE)).is_empty());
    // Alive: nothing ends.
    assert!(c.close_gone(|_| true, 100).is_empty());
    // Gone, but within the grace: its last pieces may still come.
    assert!(c.close_gone(|_| false, 13).is_empty());
    let done = exchanges(c.close_gone(|t| t != 5, 14));
    assert_eq!(done.len(), 1);
    let r = done[0].response.as_ref().unwrap();
    assert_eq!(
        r.body,
        b"data: {\"choices\":[]}\n\ndata: [DONE]\n\n".to_vec()
    );
    assert!(!r.complete);
    assert!(c.is_empty());
}
