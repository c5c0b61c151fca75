//! What the TLS plaintext and LLM request tests share: a real TLS server
//! (CPython's ssl) that records the request it got and sends a fixed
//! answer, real clients that wait for a go, the probes loaded with the
//! plaintext ring, and helpers to read the ring and the daemon's status.
// Each test binary of the topic compiles this module and uses part of it.
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use aya::maps::{Array, MapData, RingBuf};
use observer_daemon::{
    kernel::{
        kernel_config::{kernel_config, Tunables},
        loader::{self, LoadOptions},
    },
    stream::plaintext::{decode, Plaintext},
};
use observer_testkit as common;

pub const SERVER: &str = r#"
import socket, ssl, sys
cert, key, got, answer = sys.argv[1:5]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen()
print(ls.getsockname()[1], flush=True)
conn, _ = ls.accept()
s = ctx.wrap_socket(conn, server_side=True)
req = b""
while b"\r\n\r\n" not in req:
    req += s.recv(65536)
head = req.split(b"\r\n\r\n")[0].lower()
length = 0
for line in head.split(b"\r\n")[1:]:
    if line.startswith(b"content-length:"):
        length = int(line.split(b":")[1])
while len(req) - len(head) - 4 < length:
    req += s.recv(65536)
open(got, "wb").write(req)
s.sendall(open(answer, "rb").read())
s.close()
"#;

/// Waits on stdin first, so the test can attach before a byte is sent;
/// `ssl` is imported before that, so libssl is already mapped.
pub const PY_CLIENT: &str = r#"
import socket, ssl, sys
ca, port, request = sys.argv[1], int(sys.argv[2]), open(sys.argv[3], "rb").read()
ctx = ssl.create_default_context(cafile=ca)
sys.stdin.readline()
with socket.create_connection(("127.0.0.1", port)) as raw:
    with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
        s.sendall(request)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
sys.stdout.buffer.write(data)
"#;

pub struct Kill(pub Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new(answer: &[u8]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args([
                "-subj",
                "/CN=observer-test",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ])
            .arg("-keyout")
            .arg(dir.path().join("key.pem"))
            .arg("-out")
            .arg(dir.path().join("cert.pem"))
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::write(dir.path().join("answer"), answer).unwrap();
        Fixture { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts the server; returns it and its port.
    pub fn server(&self) -> (Kill, u16) {
        let mut child = Command::new("python3")
            .args(["-c", SERVER])
            .args([
                self.path("cert.pem"),
                self.path("key.pem"),
                self.path("got"),
                self.path("answer"),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        (Kill(child), line.trim().parse().unwrap())
    }

    /// The request bytes the server read.
    pub fn server_got(&self) -> Vec<u8> {
        std::fs::read(self.path("got")).unwrap()
    }
}

pub fn load(capture: u32) -> loader::Probes {
    load_io(capture, 0)
}

/// The probes with pipe and local socket capture too (`io_capture`
/// bytes per call; 0 leaves those programs unattached).
pub fn load_io(capture: u32, io_capture: u32) -> loader::Probes {
    let kernel = kernel_config(
        Path::new("/sys/kernel/btf/vmlinux"),
        &Tunables {
            wakeup_bytes: 0,
            open_dedup_ns: 0,
            watch_enabled: true,
            tls_capture_bytes: capture,
            io_capture_bytes: io_capture,
        },
    )
    .unwrap();
    loader::load(&LoadOptions {
        kernel,
        ring_buffer_bytes: 1 << 20,
        prefixes: &[],
        suffixes: &[],
        watched_executables: &[],
        names: None,
        plaintext_ring_bytes: Some(1 << 22),
    })
    .unwrap()
}

pub fn watch(flags: &mut Array<MapData, u8>, pid: u32) {
    flags.set(pid, observer_common::PROCESS_WATCHED, 0).unwrap();
}

/// Starts a client of the fixture's server (the Python client's arguments:
/// CA, port, request file), waiting on stdin until [`release`]d.
pub fn client(fx: &Fixture, port: u16, command: &mut Command) -> Child {
    command
        .arg(fx.path("cert.pem"))
        .arg(port.to_string())
        .arg(fx.path("request"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Every plaintext record in the ring now.
pub fn drain(ring: &mut RingBuf<MapData>) -> Vec<Plaintext> {
    let mut out = Vec::new();
    while let Some(item) = ring.next() {
        out.push(decode(&item).unwrap());
    }
    out
}

pub fn joined(chunks: &[&Plaintext]) -> Vec<u8> {
    chunks.iter().flat_map(|c| c.data.iter().copied()).collect()
}

/// Lets the child go (it waits on a line), then waits for it; returns its
/// stdout.
pub fn release(mut child: Child) -> Vec<u8> {
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "client did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "client failed: {:?}", out.status);
    out.stdout
}

/// The answer body's length (the last bytes of `ANSWER`).
pub const ANSWER_BODY: usize = 133;
pub const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 133\r\nConnection: close\r\n\r\n{\"model\":\"observer-test-model\",\"choices\":[{\"finish_reason\":\"stop\",\"message\":{}}],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":3}}\n";

/// A registered agent that talks TLS when the test says so (a line on
/// stdin), once `observerctl status` shows its libssl hooked: the Python
/// client as an executable script.
pub fn py_agent() -> String {
    format!("#!/usr/bin/python3\n{PY_CLIENT}")
}

/// Polls `observerctl status` until `agent` has an executable whose TLS
/// is visible (the attacher works off the agent's exec record).
pub fn wait_visible(socket: &Path, agent: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = common::ctl(common::CtlTarget::Socket(socket), &["status", "--json"]);
        let v = r.json();
        if v["plaintext"]["agents"][agent]["visible"]
            .as_array()
            .is_some_and(|v| !v.is_empty())
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{agent} never visible: {}",
            v["plaintext"]
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}
