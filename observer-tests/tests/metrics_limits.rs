//! The metrics endpoint under clients that never finish: connections over
//! `metrics.max_connections` are closed at once, a request still open at
//! `metrics.request_timeout_ms` is cut, the daemon's descriptors stay
//! bounded and a normal scrape answers. Also: observerd raises its soft
//! open-files limit to the hard one at start.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

use observer_testkit::{config, Daemon, StateDir, WAIT};

const CAP: usize = 16;
const IDLE_CLIENTS: usize = 200;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// GET /metrics: the body, or None when the endpoint closed the
/// connection without an answer.
fn scrape(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    // A refused connection may be closed before the request is written.
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    if text.is_empty() {
        return None;
    }
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    Some(text.split_once("\r\n\r\n").unwrap().1.to_string())
}

fn sample(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .parse()
        .unwrap()
}

/// "Max open files  <soft>  <hard>  files" of /proc/PID/limits.
fn open_files_limit(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let fields: Vec<&str> = line["Max open files".len()..].split_whitespace().collect();
    (fields[0].to_string(), fields[1].to_string())
}

#[test]
fn idle_and_slow_clients_cannot_hold_the_daemons_descriptors() {
    let port = free_port();
    // Started with a low soft limit: the daemon raises it to the hard one.
    let d = Daemon::start_with(
        StateDir::Owned(tempfile::tempdir().unwrap()),
        &config(
            &[],
            &format!(
                "[metrics]\nlisten = \"127.0.0.1:{port}\"\nmax_connections = {CAP}\nrequest_timeout_ms = 2000\n"
            ),
        ),
        &["prlimit", "--nofile=512:8192", "--"],
        &[],
    );
    let pid = d.pid();
    assert_eq!(
        open_files_limit(pid),
        ("8192".to_string(), "8192".to_string())
    );

    let before = open_fds(pid);
    let idle: Vec<TcpStream> = (0..IDLE_CLIENTS)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    // Queued behind the idle clients: refused while they hold every slot.
    let mut failed_scrapes = 0u64;
    if scrape(port).is_none() {
        failed_scrapes += 1;
    }
    // Each accepted connection beyond the cap is closed before the next
    // accept, so at no time does the daemon hold more than CAP of them.
    let during = open_fds(pid);
    assert!(
        during <= before + CAP + 4,
        "{during} descriptors open with {IDLE_CLIENTS} idle clients, {before} before"
    );

    // A client that sends one byte every 100 ms never completes its
    // request head: the total deadline closes it all the same.
    let mut slow = loop {
        match scrape(port) {
            Some(_) => break TcpStream::connect(("127.0.0.1", port)).unwrap(),
            None => failed_scrapes += 1,
        }
        assert!(failed_scrapes < 1000, "the endpoint never answered again");
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut sent = 0;
    let closed_after = loop {
        if slow.write_all(b"G").is_err() || is_closed(&slow) {
            break sent;
        }
        sent += 1;
        assert!(sent < 200, "a trickling client kept its connection");
        std::thread::sleep(Duration::from_millis(100));
    };
    // 2 s at one byte per 100 ms (plus the reads' waits).
    assert!(closed_after < 60, "closed after {closed_after} bytes");

    // Every idle and slow client was refused or cut: a scrape answers and
    // counts each of them.
    let text = loop {
        if let Some(t) = scrape(port) {
            break t;
        }
        failed_scrapes += 1;
        std::thread::sleep(Duration::from_millis(100));
    };
    let refused = sample(&text, "observer_metrics_connections_refused_total");
    let timed_out = sample(&text, "observer_metrics_requests_timed_out_total");
    assert!(timed_out > CAP as u64, "timed out {timed_out}");
    assert_eq!(
        refused + timed_out,
        IDLE_CLIENTS as u64 + 1 + failed_scrapes,
        "refused {refused}, timed out {timed_out}, failed scrapes {failed_scrapes}"
    );
    drop(idle);
    drop(d);
}

/// Whether the peer closed: a zero-byte read without waiting.
fn is_closed(s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 1];
    let closed = matches!(s.peek(&mut buf), Ok(0))
        || matches!(s.peek(&mut buf), Err(e) if e.kind() != std::io::ErrorKind::WouldBlock);
    s.set_nonblocking(false).unwrap();
    closed
}
