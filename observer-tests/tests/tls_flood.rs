//! Loss under a plaintext flood, counted exactly and kept apart: a
//! registered agent writes many large TLS records while the daemon's
//! readers are stopped, into a one-page plaintext ring. Every plaintext
//! record the probes produced was either read (the stream layer's intake)
//! or counted as `tls_data` `ringbuf_full`, in the loss records and the
//! stop totals alike; and the execs, connects and file opens that other
//! processes made during the flood, which go through the event ring, are
//! every one recorded: the flood costs plaintext, never events.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]
mod tls_kit;

use std::{
    io::{BufRead, BufReader, Write},
    net::{TcpListener, TcpStream},
    process::{Command, Stdio},
};

use nix::sys::signal::Signal;
use observer_testkit as common;
use tls_kit::{wait_visible, Fixture, Kill};

/// Writes: each one SSL_write of 64 KiB, one plaintext record of
/// `capture_bytes` (one piece: under 16 KiB).
const WRITES: u64 = 200;
/// Each of exec, connect and file open done during the flood.
const OTHER: usize = 40;

/// Reads until the client closes; prints how many bytes it got.
const SINK: &str = r#"
import socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
# No session tickets: the client, which reads nothing, closes with nothing
# unread (else its close resets the connection and loses what we had yet
# to read).
ctx.num_tickets = 0
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen()
print(ls.getsockname()[1], flush=True)
s = ctx.wrap_socket(ls.accept()[0], server_side=True)
n = 0
while True:
    b = s.recv(65536)
    if not b:
        break
    n += len(b)
print(n, flush=True)
"#;

/// The agent: connects, waits for a go, writes, closes; reads nothing.
const FLOODER: &str = r#"
import socket, ssl, sys
ca, port, writes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ctx = ssl.create_default_context(cafile=ca)
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="127.0.0.1")
block = b"f" * 65536
sys.stdin.readline()
for _ in range(writes):
    s.sendall(block)
s.close()
"#;

#[test]
fn a_plaintext_flood_is_counted_exactly_and_loses_no_events() {
    let fx = Fixture::new(b"");
    let mut sink = Command::new("python3")
        .args(["-c", SINK])
        .arg(fx.path("cert.pem"))
        .arg(fx.path("key.pem"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut sink_out = BufReader::new(sink.stdout.take().unwrap());
    let _sink = Kill(sink);
    let mut line = String::new();
    sink_out.read_line(&mut line).unwrap();
    let port: u16 = line.trim().parse().unwrap();

    let agent = fx.path("flooder.py");
    common::write_executable(&agent, &format!("#!/usr/bin/python3\n{FLOODER}"));
    let suffix = format!(".{}-flood", common::unique("f"));
    let extra = format!(
        "[kernel]\ncounters_interval_ms = 200\n[plaintext]\nenabled = true\nring_buffer_bytes = 4096\ncapture_bytes = 1024\n# Only TLS here: its pipes would share the ring (local_streams.rs tests them).\nlocal_streams = false\n[[agents]]\nid = \"flooder\"\nexecutables = [{:?}]\n",
        agent.display().to_string()
    );
    // Written before the daemon starts: their opens for the flood are
    // not folded into these.
    let files: Vec<_> = (0..OTHER)
        .map(|i| fx.path(&format!("other{i}{suffix}")))
        .collect();
    for f in &files {
        common::write_file(f, "x");
    }
    let state = fx.path("daemon");
    std::fs::create_dir(&state).unwrap();
    let mut d = common::Daemon::start_in(
        common::StateDir::Shared(state),
        &common::config(&[&suffix], &extra),
    );
    let mut flooder = Command::new(&agent)
        .arg(fx.path("cert.pem"))
        .arg(port.to_string())
        .arg(WRITES.to_string())
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    wait_visible(&d.socket(), "flooder");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let other_port = listener.local_addr().unwrap().port();
    let marker = common::unique("flood-exec");

    // Readers stopped: the plaintext ring holds a few records, the rest
    // of the flood is dropped in the kernel, and counted.
    d.freeze();
    flooder.stdin.take().unwrap().write_all(b"go\n").unwrap();
    for (i, file) in files.iter().enumerate() {
        let status = Command::new("/bin/true")
            .arg(format!("{marker}-{i}"))
            .status()
            .unwrap();
        assert!(status.success());
        drop(TcpStream::connect(("127.0.0.1", other_port)).unwrap());
        drop(listener.accept().unwrap());
        std::fs::File::open(file).unwrap();
    }
    assert!(flooder.wait().unwrap().success());
    d.signal(Signal::SIGCONT);
    line.clear();
    sink_out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), (WRITES * 65536).to_string());
    d.wait_for(|r| {
        r["kind"] == "loss" && r["kernel"]["tls_data"]["ringbuf_full"].as_u64().is_some()
    });
    let me = std::process::id();
    let stderr_path = d.stderr.clone();
    let records = d.stop();

    // Plaintext: read + dropped = produced, and the loss records add up to
    // the stop totals.
    let losses: Vec<_> = records.iter().filter(|r| r["kind"] == "loss").collect();
    let dropped: u64 = losses
        .iter()
        .map(|r| {
            r["kernel"]["tls_data"]["ringbuf_full"]
                .as_u64()
                .unwrap_or(0)
        })
        .sum();
    let stop = records
        .iter()
        .find(|r| r["kind"] == "observer_stop")
        .unwrap();
    let totals = &stop["kernel"]["tls_data"];
    assert_eq!(totals["dropped_ringbuf_full"], dropped, "{stop}");
    assert_eq!(totals["dropped_read_error"], 0, "{stop}");
    let log = std::fs::read_to_string(stderr_path).unwrap();
    let intake = log
        .lines()
        .find(|l| l.contains("plaintext: read "))
        .unwrap_or_else(|| panic!("no intake line: {log}"));
    let read: u64 = intake
        .split("plaintext: read ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(totals["emitted"], read, "{intake}");
    assert!(read > 0 && dropped > 0, "read {read}, dropped {dropped}");
    assert_eq!(read + dropped, WRITES, "read {read}, dropped {dropped}");
    assert!(
        intake.contains(&format!(
            "TLS {read} chunks of {} bytes ({read} cut short)",
            read * 1024
        )),
        "{intake}"
    );

    // Events: not one lost, not one missing.
    for kind in ["exec", "connect", "file_open"] {
        let lost: u64 = losses
            .iter()
            .map(|r| {
                r["kernel"][kind]["ringbuf_full"].as_u64().unwrap_or(0)
                    + r["kernel"][kind]["read_error"].as_u64().unwrap_or(0)
            })
            .sum();
        assert_eq!(lost, 0, "{kind} lost: {losses:?}");
    }
    let count =
        |pred: &dyn Fn(&serde_json::Value) -> bool| records.iter().filter(|r| pred(r)).count();
    let execs = count(&|r| {
        common::is_event(r, "exec")
            && r["exec"]["argv"][1]
                .as_str()
                .is_some_and(|a| a.starts_with(&format!("{marker}-")))
    });
    let connects = count(&|r| {
        common::is_event(r, "connect")
            && r["connect"]["remote_port"] == other_port
            && r["process"]["pid"] == me
    });
    let opens = count(&|r| {
        common::is_event(r, "file_open")
            && r["file_open"]["path"]
                .as_str()
                .is_some_and(|p| p.ends_with(&suffix))
            && r["process"]["pid"] == me
    });
    assert_eq!((execs, connects, opens), (OTHER, OTHER, OTHER));
}
