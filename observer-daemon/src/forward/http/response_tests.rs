//! Hostile receivers on loopback: each test serves bytes from a real TCP
//! socket and reads them with `read_response` as the sink does.
use std::{
    io::{ErrorKind, Write},
    net::{TcpListener, TcpStream},
    time::Duration,
};

use super::*;

/// A server that writes `parts` (pausing `pause` between them), then
/// keeps the connection open until the client closes it.
fn serve(parts: Vec<Vec<u8>>, pause: Duration) -> TcpStream {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        for p in parts {
            if s.write_all(&p).is_err() {
                return;
            }
            std::thread::sleep(pause);
        }
        // Hold the connection until the client goes away.
        let mut b = [0u8; 1];
        let _ = std::io::Read::read(&mut s, &mut b);
    });
    TcpStream::connect(addr).unwrap()
}

/// A server that writes `head` then repeats `unit` until the client
/// closes (an endless response).
fn serve_endless(head: &'static [u8], unit: &'static [u8]) -> TcpStream {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let _ = s.write_all(head);
        let many = unit.repeat(4096 / unit.len() + 1);
        while s.write_all(&many).is_ok() {}
    });
    TcpStream::connect(addr).unwrap()
}

/// A server that writes `bytes` and closes.
fn serve_and_close(bytes: &[u8]) -> TcpStream {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let bytes = bytes.to_vec();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let _ = s.write_all(&bytes);
    });
    TcpStream::connect(addr).unwrap()
}

const T: Duration = Duration::from_secs(5);

fn err_of(r: std::io::Result<Response>) -> std::io::Error {
    match r {
        Ok(r) => panic!("expected an error, got {r:?}"),
        Err(e) => e,
    }
}

#[test]
fn content_length_and_chunked_bodies_and_keep_alive() {
    let mut s = serve_and_close(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    );
    let r = read_response(&mut s, T).unwrap();
    assert_eq!(
        (r.status, r.keep_alive, r.body.as_slice()),
        (200, true, &b"hello"[..])
    );

    let mut s = serve_and_close(
        b"HTTP/1.1 400 Bad\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n",
    );
    let r = read_response(&mut s, T).unwrap();
    assert_eq!(
        (r.status, r.keep_alive, r.body.as_slice()),
        (400, true, &b"hello world"[..])
    );

    let mut s = serve_and_close(b"HTTP/1.0 200 OK\r\n\r\nuntil close");
    let r = read_response(&mut s, T).unwrap();
    assert_eq!(
        (r.status, r.keep_alive, r.body.as_slice()),
        (200, false, &b"until close"[..])
    );

    let mut s = serve_and_close(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
    let r = read_response(&mut s, T).unwrap();
    assert_eq!((r.status, r.keep_alive, r.body.len()), (204, false, 0));

    // Bytes past the response: the stream is out of step, not reused.
    let mut s =
        serve_and_close(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n");
    let r = read_response(&mut s, T).unwrap();
    assert_eq!(
        (r.status, r.keep_alive, r.body.as_slice()),
        (200, false, &b"ok"[..])
    );
}

#[test]
fn huge_content_lengths_neither_allocate_nor_panic() {
    // The old reader allocated the announced length: i64::MAX aborted the
    // process, u64::MAX panicked the sink thread.
    for len in ["9223372036854775807", "18446744073709551615"] {
        let mut s = serve_and_close(
            format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n{{}}").as_bytes(),
        );
        let e = err_of(read_response(&mut s, T));
        assert_eq!(e.kind(), ErrorKind::InvalidData);
        assert_eq!(
            e.to_string(),
            format!("the response body ended after 2 of {len} bytes")
        );
    }
    // Past u64: refused, not wrapped.
    let mut s = serve_and_close(b"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551616\r\n\r\n");
    assert_eq!(
        err_of(read_response(&mut s, T)).to_string(),
        "bad Content-Length \"18446744073709551616\""
    );
    for (headers, msg) in [
        ("Content-Length: +2\r\n", "bad Content-Length \"+2\""),
        (
            "Content-Length: 2\r\nContent-Length: 3\r\n",
            "two different Content-Length headers",
        ),
    ] {
        let mut s = serve_and_close(format!("HTTP/1.1 200 OK\r\n{headers}\r\nok").as_bytes());
        assert_eq!(err_of(read_response(&mut s, T)).to_string(), msg);
    }
}

#[test]
fn a_body_longer_than_the_bound_is_cut_and_the_connection_dropped() {
    let mut s = serve_endless(
        b"HTTP/1.1 200 OK\r\nContent-Length: 9223372036854775807\r\n\r\n",
        b"x",
    );
    let r = read_response(&mut s, T).unwrap();
    assert_eq!(
        (r.status, r.keep_alive, r.body.len()),
        (200, false, MAX_BODY)
    );
    assert!(r.body.iter().all(|b| *b == b'x'));

    let mut s = serve_endless(b"HTTP/1.1 200 OK\r\n\r\n", b"y");
    let r = read_response(&mut s, T).unwrap();
    assert_eq!((r.keep_alive, r.body.len()), (false, MAX_BODY));

    // One chunk announcing more than the bound.
    let mut s = serve_endless(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n",
        b"z",
    );
    let r = read_response(&mut s, T).unwrap();
    assert_eq!((r.keep_alive, r.body.len()), (false, MAX_BODY));

    // Endless small chunks.
    let mut s = serve_endless(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"1\r\nw\r\n",
    );
    let r = read_response(&mut s, T).unwrap();
    assert_eq!((r.keep_alive, r.body.len()), (false, MAX_BODY));

    // A chunk size past u64 and an endless chunk-size line.
    let mut s = serve_and_close(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\n",
    );
    assert_eq!(
        err_of(read_response(&mut s, T)).to_string(),
        "bad chunk size"
    );
    let mut s = serve_endless(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;",
        b"e",
    );
    assert_eq!(
        err_of(read_response(&mut s, T)).to_string(),
        "a chunk-size line is longer than 1024 bytes"
    );
}

#[test]
fn endless_status_lines_and_headers_are_refused() {
    let mut s = serve_endless(b"HTTP/1.1 200 ", b"O");
    assert_eq!(
        err_of(read_response(&mut s, T)).to_string(),
        "the response head is longer than 65536 bytes"
    );
    let mut s = serve_endless(b"HTTP/1.1 200 OK\r\n", b"X-A: b\r\n");
    assert_eq!(
        err_of(read_response(&mut s, T)).to_string(),
        "the response has more than 64 headers"
    );
    let mut s = serve_endless(b"HTTP/1.1 200 OK\r\nX-Long: ", b"v");
    assert_eq!(
        err_of(read_response(&mut s, T)).to_string(),
        "the response head is longer than 65536 bytes"
    );
    let mut s = serve_endless(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n",
        b"T: t\r\n",
    );
    let e = err_of(read_response(&mut s, T)).to_string();
    assert!(
        e.starts_with("malformed trailers") || e.starts_with("the trailers are longer"),
        "{e}"
    );
    let mut s = serve_and_close(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n");
    assert_eq!(
        err_of(read_response(&mut s, T)).to_string(),
        "the server closed the connection after 36 bytes of a response head"
    );
    let mut s = serve_and_close(b"");
    assert_eq!(
        err_of(read_response(&mut s, T)).to_string(),
        "the server closed the connection"
    );
    let mut s = serve_and_close(b"SSH-2.0-OpenSSH\r\n\r\n");
    assert!(err_of(read_response(&mut s, T))
        .to_string()
        .starts_with("malformed response head"));
}

#[test]
fn a_slow_body_hits_one_deadline_for_the_whole_response() {
    // Every byte arrives well within the timeout of a single read, but the
    // body as a whole takes 40 x 50 ms = 2 s: the 300 ms deadline ends it.
    let mut parts = vec![b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n".to_vec()];
    parts.extend((0..40).map(|_| b"s".to_vec()));
    let mut s = serve(parts, Duration::from_millis(50));
    let e = err_of(read_response(&mut s, Duration::from_millis(300)));
    assert_eq!(e.kind(), ErrorKind::TimedOut);
    assert_eq!(e.to_string(), "no complete response within 300 ms");
    // A slow head too.
    let parts = b"HTTP/1.1 200 OK\r\n".iter().map(|b| vec![*b]).collect();
    let mut s = serve(parts, Duration::from_millis(50));
    let e = err_of(read_response(&mut s, Duration::from_millis(300)));
    assert_eq!(e.kind(), ErrorKind::TimedOut);
}
