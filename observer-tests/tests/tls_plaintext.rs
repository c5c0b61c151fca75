//! TLS plaintext on the real kernel: the uprobes on libssl, attached for
//! one process only, put the exact bytes a real client sent and received
//! into the plaintext ring. Real clients (curl with `SSL_write`/`SSL_read`,
//! CPython's ssl module with the `_ex` calls, node's fetch through the
//! node executable itself) talk to a real TLS server (CPython's ssl) that
//! records what it got; the ring must hold exactly those bytes, and
//! nothing of the unwatched server; with the socket calls read too, each
//! TLS call that wrote or read the socket names it and its peer.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]
mod tls_kit;

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use observer_daemon::{
    kernel::{loader, tls_attach::TlsAttacher},
    stream::plaintext::{Call, Channel, ConnId, Direction, Plaintext},
};
use tls_kit::*;

/// curl (plain SSL_write / SSL_read), hooked through the system libssl
/// attached before curl even exec'd: the probe is on the file, the
/// process maps it later.
#[test]
fn curl_request_and_answer_are_in_the_ring_byte_for_byte() {
    let fx = Fixture::new(ANSWER);
    let (_server, port) = fx.server();
    let nonce = format!("nonce-{}", std::process::id());
    let (pid, chunks) = curl_through(
        load(observer_common::TLS_CAPTURE_DEFAULT),
        &fx,
        port,
        &nonce,
    );
    assert!(!chunks.is_empty(), "no plaintext records");
    assert!(chunks.iter().all(|c| c.header.tgid == pid), "{chunks:?}");
    let sent: Vec<&Plaintext> = chunks
        .iter()
        .filter(|c| c.call.direction() == Direction::Sent)
        .collect();
    let received: Vec<&Plaintext> = chunks
        .iter()
        .filter(|c| c.call.direction() == Direction::Received)
        .collect();
    assert!(sent.iter().all(|c| c.call == Call::SslWrite));
    assert!(received.iter().all(|c| c.call == Call::SslRead));
    assert_eq!(joined(&sent), fx.server_got());
    assert!(String::from_utf8_lossy(&joined(&sent)).contains(&nonce));
    assert_eq!(joined(&received), ANSWER);
    // One connection: one SSL pointer; nothing cut short; no socket named
    // (the socket calls are not read without local stream capture).
    assert!(chunks
        .iter()
        .all(|c| c.conn == sent[0].conn && c.conn != ConnId::Tls(0) && c.descriptor.is_none()));
    assert!(chunks
        .iter()
        .all(|c| c.offset == 0 && c.remaining() == 0 && c.len as usize == c.data.len()));
    assert_eq!(chunks[0].header.comm, "curl");
}

/// With the socket calls read too, a TLS call names the socket the
/// library wrote its records to or read them from: curl's descriptor and
/// the server's address and port (what ties the plaintext to a connect).
#[test]
fn a_tls_call_names_its_socket_and_peer() {
    let fx = Fixture::new(ANSWER);
    let (_server, port) = fx.server();
    let probes = load_io(observer_common::TLS_CAPTURE_DEFAULT, 65536);
    let (_, chunks) = curl_through(probes, &fx, port, "socket");
    let tls: Vec<&Plaintext> = chunks.iter().filter(|c| c.call.is_tls()).collect();
    let sent: Vec<&Plaintext> = chunks.iter().filter(|c| c.call == Call::SslWrite).collect();
    assert!(!sent.is_empty(), "{chunks:?}");
    let peer: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    for c in &sent {
        let d = c
            .descriptor
            .expect("a write of a TLS record names its socket");
        assert!(d.fd >= 3, "{d:?}");
        assert!(
            matches!(d.channel, Channel::Tcp { remote, local_port } if remote == peer && local_port != 0),
            "{d:?}"
        );
        assert!(matches!(c.conn, ConnId::Tls(p) if p != 0));
    }
    // Reads name the same socket when they read it (one served from the
    // library's buffer names none).
    let fds: std::collections::BTreeSet<i32> = tls
        .iter()
        .filter_map(|c| c.descriptor.map(|d| d.fd))
        .collect();
    assert_eq!(fds.len(), 1, "{tls:?}");
    assert_eq!(joined(&sent), fx.server_got());
}

/// Runs curl against the fixture's server with the system libssl hooked
/// and the process watched; its pid and every plaintext record.
fn curl_through(
    mut probes: loader::Probes,
    fx: &Fixture,
    port: u16,
    nonce: &str,
) -> (u32, Vec<Plaintext>) {
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "read _; exec curl -sS --cacert {} -H 'X-Observer-Test: {nonce}' https://127.0.0.1:{port}/v1/observer-probe",
            fx.path("cert.pem").display()
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    watch(&mut probes.process_flags, pid);
    let mut attacher = TlsAttacher::new(
        probes.ebpf,
        &[PathBuf::from("/usr/lib/x86_64-linux-gnu/libssl.so.3")],
    )
    .unwrap();
    attacher.attach_process(pid);
    let seen = attacher.visibility(pid).unwrap().clone();
    assert_eq!(
        seen.hooked,
        [PathBuf::from("/usr/lib/x86_64-linux-gnu/libssl.so.3")]
    );
    let body = release(child);
    assert_eq!(body, &ANSWER[ANSWER.len() - ANSWER_BODY..]);
    (pid, drain(&mut probes.plaintext))
}

/// CPython (SSL_write_ex / SSL_read_ex): libssl found in /proc/PID/maps
/// (nothing attached eagerly), a capture bound of 16 bytes: each record
/// holds the first 16 bytes and the call's full length.
#[test]
fn python_ex_calls_found_through_maps_and_cut_at_the_bound() {
    let fx = Fixture::new(ANSWER);
    let (_server, port) = fx.server();
    let mut probes = load(16);
    let request = b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\n{}";
    std::fs::write(fx.path("request"), request).unwrap();
    let mut child = client(&fx, port, Command::new("python3").args(["-c", PY_CLIENT]));
    let pid = child.id();
    // Wait until the ssl module (and libssl) is loaded.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap()
        .contains("libssl.so")
    {
        assert!(Instant::now() < deadline, "python never mapped libssl");
        assert!(child.try_wait().unwrap().is_none());
        std::thread::sleep(Duration::from_millis(20));
    }
    watch(&mut probes.process_flags, pid);
    let mut attacher = TlsAttacher::new(probes.ebpf, &[]).unwrap();
    attacher.attach_process(pid);
    let seen = attacher.visibility(pid).unwrap().clone();
    assert_eq!(seen.hooked.len(), 1, "{seen:?}");
    assert!(
        seen.hooked[0].to_string_lossy().contains("libssl.so.3"),
        "{seen:?}"
    );
    // python3 itself defines no TLS functions.
    assert!(
        seen.without_symbols
            .iter()
            .any(|p| p.to_string_lossy().contains("python3")),
        "{seen:?}"
    );

    assert_eq!(release(child), ANSWER);
    assert_eq!(fx.server_got(), request);
    let chunks = drain(&mut probes.plaintext);
    assert!(chunks.iter().all(|c| c.header.tgid == pid));
    let sent: Vec<&Plaintext> = chunks
        .iter()
        .filter(|c| c.call == Call::SslWriteEx)
        .collect();
    assert_eq!(sent.len(), 1, "{chunks:?}");
    assert_eq!(sent[0].len as usize, request.len());
    assert_eq!(sent[0].data, &request[..16]);
    assert_eq!(sent[0].remaining() as usize, request.len() - 16);
    let received: Vec<&Plaintext> = chunks
        .iter()
        .filter(|c| c.call == Call::SslReadEx)
        .collect();
    assert!(!received.is_empty());
    assert_eq!(
        received.iter().map(|c| c.len as usize).sum::<usize>(),
        ANSWER.len()
    );
    assert_eq!(received[0].data, &ANSWER[..16]);
    assert!(received
        .iter()
        .all(|c| c.data.len() == (c.len as usize).min(16)));
    assert_eq!(
        chunks.len(),
        sent.len() + received.len(),
        "only the _ex calls fire"
    );
}

/// A call longer than one record's room (40 000 bytes in one
/// SSL_write_ex) comes as pieces of 16 KiB, offsets ascending, that join
/// to exactly what the server received.
#[test]
fn a_long_write_comes_in_pieces_that_join_to_the_request() {
    let fx = Fixture::new(ANSWER);
    let (_server, port) = fx.server();
    let mut probes = load(observer_common::TLS_CAPTURE_DEFAULT);
    let body = "x".repeat(40_000 - 70);
    let mut request = format!(
        "POST /v1/responses HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body.as_bytes());
    std::fs::write(fx.path("request"), &request).unwrap();
    let child = client(&fx, port, Command::new("python3").args(["-c", PY_CLIENT]));
    let pid = child.id();
    watch(&mut probes.process_flags, pid);
    let mut attacher = TlsAttacher::new(
        probes.ebpf,
        &[PathBuf::from("/usr/lib/x86_64-linux-gnu/libssl.so.3")],
    )
    .unwrap();
    attacher.attach_process(pid);
    assert_eq!(release(child), ANSWER);
    assert_eq!(fx.server_got(), request);
    let chunks = drain(&mut probes.plaintext);
    let sent: Vec<&Plaintext> = chunks
        .iter()
        .filter(|c| c.call == Call::SslWriteEx)
        .collect();
    let offsets: Vec<(u32, usize, u32)> = sent
        .iter()
        .map(|c| (c.offset, c.data.len(), c.len))
        .collect();
    let len = request.len() as u32;
    assert_eq!(
        offsets,
        [
            (0, 16384, len),
            (16384, 16384, len),
            (32768, request.len() - 32768, len)
        ]
    );
    assert_eq!(joined(&sent), request);
}

/// Node (the runtime of Gemini CLI and other agents) links OpenSSL into
/// its own executable and exports SSL_write/SSL_read: with no library
/// attached eagerly, the executable itself is found in /proc/PID/maps and
/// hooked, and its built-in fetch (undici) shows up byte for byte.
#[test]
fn node_fetch_is_seen_through_the_node_executable_itself() {
    const NODE_CLIENT: &str = r#"
const [port, requestBody] = process.argv.slice(1);
process.stdin.once("data", async () => {
  const res = await fetch(`https://127.0.0.1:${port}/v1/messages`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: requestBody,
  });
  process.stdout.write(await res.text());
  process.exit(0);
});
"#;
    let fx = Fixture::new(ANSWER);
    let (_server, port) = fx.server();
    let mut probes = load(observer_common::TLS_CAPTURE_DEFAULT);
    let body = r#"{"model":"claude-haiku-4-5","max_tokens":5,"messages":[]}"#;
    let child = Command::new("node")
        .args(["-e", NODE_CLIENT, &port.to_string(), body])
        .env("NODE_EXTRA_CA_CERTS", fx.path("cert.pem"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // The executable is mapped from the start.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap()
        .contains("/usr/bin/node")
    {
        assert!(Instant::now() < deadline, "node never mapped itself");
        std::thread::sleep(Duration::from_millis(20));
    }
    watch(&mut probes.process_flags, pid);
    let mut attacher = TlsAttacher::new(probes.ebpf, &[]).unwrap();
    attacher.attach_process(pid);
    let seen = attacher.visibility(pid).unwrap().clone();
    assert_eq!(seen.hooked, [PathBuf::from("/usr/bin/node")], "{seen:?}");

    assert_eq!(release(child), &ANSWER[ANSWER.len() - ANSWER_BODY..]);
    let got = fx.server_got();
    assert!(got.ends_with(body.as_bytes()));
    let chunks = drain(&mut probes.plaintext);
    assert!(chunks.iter().all(|c| c.header.tgid == pid));
    let sent: Vec<&Plaintext> = chunks
        .iter()
        .filter(|c| c.call.direction() == Direction::Sent)
        .collect();
    let received: Vec<&Plaintext> = chunks
        .iter()
        .filter(|c| c.call.direction() == Direction::Received)
        .collect();
    assert_eq!(joined(&sent), got);
    assert_eq!(joined(&received), ANSWER);
}
