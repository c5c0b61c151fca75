//! TLS plaintext on the real kernel: the uprobes on libssl, attached for
//! one process only, put the exact bytes a real client sent and received
//! into the plaintext ring. Real clients (curl with `SSL_write`/`SSL_read`,
//! CPython's ssl module with the `_ex` calls) talk to a real TLS server
//! (CPython's ssl) that records what it got; the ring must hold exactly
//! those bytes, and nothing of the unwatched server.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]

use observer_testkit as common;

use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use aya::maps::{HashMap, MapData, RingBuf};
use observer_daemon::{
    kernel::{
        kernel_config::{kernel_config, Tunables},
        loader::{self, LoadOptions},
        tls_attach::TlsAttacher,
    },
    stream::plaintext::{decode, Direction, Plaintext, TlsCall},
};

const SERVER: &str = r#"
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
const PY_CLIENT: &str = r#"
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

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(answer: &[u8]) -> Fixture {
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

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts the server; returns it and its port.
    fn server(&self) -> (Kill, u16) {
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
    fn server_got(&self) -> Vec<u8> {
        std::fs::read(self.path("got")).unwrap()
    }
}

fn load(capture: u32) -> loader::Probes {
    let kernel = kernel_config(
        Path::new("/sys/kernel/btf/vmlinux"),
        &Tunables {
            wakeup_bytes: 0,
            open_dedup_ns: 0,
            watch_enabled: true,
            tls_capture_bytes: capture,
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

fn watch(flags: &mut HashMap<MapData, u32, u32>, pid: u32) {
    flags
        .insert(pid, observer_common::PROCESS_WATCHED, 0)
        .unwrap();
}

/// Starts a client of the fixture's server (the Python client's arguments:
/// CA, port, request file), waiting on stdin until [`release`]d.
fn client(fx: &Fixture, port: u16, command: &mut Command) -> Child {
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
fn drain(ring: &mut RingBuf<MapData>) -> Vec<Plaintext> {
    let mut out = Vec::new();
    while let Some(item) = ring.next() {
        out.push(decode(&item).unwrap());
    }
    out
}

fn joined(chunks: &[&Plaintext]) -> Vec<u8> {
    chunks.iter().flat_map(|c| c.data.iter().copied()).collect()
}

/// Lets the child go (it waits on a line), then waits for it; returns its
/// stdout.
fn release(mut child: Child) -> Vec<u8> {
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
const ANSWER_BODY: usize = 133;
const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 133\r\nConnection: close\r\n\r\n{\"model\":\"observer-test-model\",\"choices\":[{\"finish_reason\":\"stop\",\"message\":{}}],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":3}}\n";

/// curl (plain SSL_write / SSL_read), hooked through the system libssl
/// attached before curl even exec'd: the probe is on the file, the
/// process maps it later.
#[test]
fn curl_request_and_answer_are_in_the_ring_byte_for_byte() {
    let fx = Fixture::new(ANSWER);
    let (_server, port) = fx.server();
    let mut probes = load(observer_common::TLS_CAPTURE_DEFAULT);
    let nonce = format!("nonce-{}", std::process::id());
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
    let chunks = drain(&mut probes.plaintext);
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
    assert!(sent.iter().all(|c| c.call == TlsCall::Write));
    assert!(received.iter().all(|c| c.call == TlsCall::Read));
    assert_eq!(joined(&sent), fx.server_got());
    assert!(String::from_utf8_lossy(&joined(&sent)).contains(&nonce));
    assert_eq!(joined(&received), ANSWER);
    // One connection: one SSL pointer; nothing cut short.
    assert!(chunks.iter().all(|c| c.ssl == sent[0].ssl && c.ssl != 0));
    assert!(chunks
        .iter()
        .all(|c| c.offset == 0 && c.remaining() == 0 && c.len as usize == c.data.len()));
    assert_eq!(chunks[0].header.comm, "curl");
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
        .filter(|c| c.call == TlsCall::WriteEx)
        .collect();
    assert_eq!(sent.len(), 1, "{chunks:?}");
    assert_eq!(sent[0].len as usize, request.len());
    assert_eq!(sent[0].data, &request[..16]);
    assert_eq!(sent[0].remaining() as usize, request.len() - 16);
    let received: Vec<&Plaintext> = chunks
        .iter()
        .filter(|c| c.call == TlsCall::ReadEx)
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
        .filter(|c| c.call == TlsCall::WriteEx)
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

/// A registered agent that talks TLS when the test says so (a line on
/// stdin), once `observerctl status` shows its libssl hooked: the Python
/// client as an executable script.
fn py_agent() -> String {
    format!("#!/usr/bin/python3\n{PY_CLIENT}")
}

/// observerd with `[plaintext]` on: the registered agent's exec gets its
/// libssl hooked (logged as visible); its request and the answer become
/// one `llm_request` record and one signed `llm.request` receipt on the
/// agent's chain, with digests of the exact bodies; the API key it sent is
/// nowhere: not in the records, not in the store.
#[test]
fn the_daemon_turns_a_registered_agents_call_into_an_llm_request_receipt() {
    let fx = Fixture::new(ANSWER);
    let (_server, port) = fx.server();
    let agent = fx.path("tls-agent.py");
    common::write_executable(&agent, &py_agent());
    let key = format!("sk-observer-test-{}", std::process::id());
    let body = br#"{"messages":[{"role":"user","content":"hi"}],"model":"gpt-4o-mini","tools":[{"type":"function","function":{"name":"get_weather"}}]}"#;
    let mut request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    std::fs::write(fx.path("request"), &request).unwrap();
    let config = format!(
        "[plaintext]\nenabled = true\n[[agents]]\nid = \"tls-agent\"\nexecutables = [{:?}]\n",
        agent.display().to_string()
    );
    let state = fx.path("daemon");
    std::fs::create_dir(&state).unwrap();
    let mut d = common::Daemon::start_in(common::StateDir::Shared(state.clone()), &config);
    let child = client(&fx, port, &mut Command::new(&agent));
    let pid = child.id();
    wait_visible(&d.socket(), "tls-agent");
    assert_eq!(release(child), ANSWER);
    assert_eq!(fx.server_got(), request);
    let record = d.wait_for(|r| common::is_event(r, "llm_request") && r["process"]["pid"] == pid);
    let db = d.store();
    let seed = d.master_seed();
    let stderr_path = d.stderr.clone();
    let events_path = d.events.clone();
    d.stop();

    let call = &record["llm_request"];
    assert_eq!(record["process"]["agent"], "tls-agent");
    assert_eq!(call["provider"], "openai_compatible");
    assert_eq!(call["api"], "chat.completions");
    assert_eq!(call["host"], format!("127.0.0.1:{port}"));
    assert_eq!(
        (call["method"].as_str(), call["path"].as_str()),
        (Some("POST"), Some("/v1/chat/completions"))
    );
    assert_eq!(call["model_requested"], "gpt-4o-mini");
    assert_eq!(call["model_answered"], "observer-test-model");
    assert_eq!(call["status"], 200);
    assert_eq!(call["stream"], false);
    assert_eq!(call["tools_offered"], serde_json::json!(["get_weather"]));
    let answer_body = &ANSWER[ANSWER.len() - ANSWER_BODY..];
    assert_eq!(call["request_body"]["sha256"], sha256(body));
    assert_eq!(call["request_body"]["bytes"], body.len());
    assert_eq!(call["response_body"]["sha256"], sha256(answer_body));
    assert_eq!(call["response_body"]["complete"], true);

    assert_eq!(call["finish_reason"], "stop");
    assert_eq!(
        call["usage"],
        serde_json::json!({"input_tokens": 11, "output_tokens": 3})
    );
    let listed = common::ctl(
        common::CtlTarget::Db(&db),
        &["receipts", "--action", "llm.request"],
    );
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert!(
        listed
            .stdout
            .contains("openai_compatible observer-test-model 11/3 tokens 200 stop"),
        "{}",
        listed.stdout
    );
    let receipts = common::stored_receipts_of(&db, "llm.request");
    assert_eq!(receipts.len(), 1);
    assert_eq!(receipts[0].payload["agent_id"], "tls-agent");
    assert!(
        receipts[0].chain.ends_with("/agent/tls-agent"),
        "{}",
        receipts[0].chain
    );
    let context = receipts[0].context.as_ref().unwrap();
    assert_eq!(context["llm_request"], *call);
    let report = common::verify_store(&db, &seed, vec![]);
    assert!(report.ok(), "{:#?}", report.failures);

    for file in [&db, &events_path, &stderr_path] {
        let bytes = std::fs::read(file).unwrap();
        assert!(
            !bytes.windows(key.len()).any(|w| w == key.as_bytes()),
            "the API key is in {}",
            file.display()
        );
    }
    let log = std::fs::read_to_string(stderr_path).unwrap();
    assert!(
        log.contains("TLS through /usr/lib/x86_64-linux-gnu/libssl.so.3 is visible"),
        "{log}"
    );
    let bytes = request.len() + ANSWER.len();
    let intake = log
        .lines()
        .find(|l| l.contains("plaintext: read "))
        .unwrap_or_else(|| panic!("no intake line: {log}"));
    assert!(
        intake.contains(&format!(
            " chunks of {bytes} bytes (0 cut short); 1 HTTP requests, 1 LLM API calls"
        )),
        "{intake}"
    );
}

/// Polls `observerctl status` until `agent` has an executable whose TLS
/// is visible (the attacher works off the agent's exec record).
fn wait_visible(socket: &Path, agent: &str) {
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

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
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

/// `observerctl status` says, per agent, whose TLS traffic is read and
/// through what, and whose is not and why: a Python agent that loaded
/// libssl is visible through it; an agent whose executable maps no TLS
/// library and has no SSL symbols (here a copy of `sleep`, standing for a
/// Go or rustls binary) is listed as not visible, not left out.
#[test]
fn status_lists_visible_and_invisible_agents() {
    let dir = tempfile::tempdir().unwrap();
    let py = dir.path().join("ssl-idle.py");
    common::write_executable(
        &py,
        "#!/usr/bin/python3\nimport ssl, time\ntime.sleep(60)\n",
    );
    let sleeper = common::copy_executable("/usr/bin/sleep", dir.path(), "static-tls-agent");
    let config = format!(
        "[plaintext]\nenabled = true\n[[agents]]\nid = \"py-agent\"\nexecutables = [{:?}]\n[[agents]]\nid = \"opaque-agent\"\nexecutables = [{:?}]\n",
        py.display().to_string(),
        sleeper.display().to_string()
    );
    let d = common::Daemon::start(&config);
    let _py = Kill(Command::new(&py).spawn().unwrap());
    let _sleeper = Kill(Command::new(&sleeper).arg("60").spawn().unwrap());
    let socket = d.socket();
    let deadline = Instant::now() + Duration::from_secs(20);
    let shown = loop {
        let r = common::ctl(common::CtlTarget::Socket(&socket), &["status", "--json"]);
        let p = r.json()["plaintext"].clone();
        let ready = p["agents"]["py-agent"]["visible"]
            .as_array()
            .is_some_and(|v| !v.is_empty())
            && p["agents"]["opaque-agent"]["not_visible"]
                .as_array()
                .is_some_and(|v| !v.is_empty());
        if ready {
            break p;
        }
        assert!(Instant::now() < deadline, "status never showed both: {p}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(shown["enabled"], true);
    assert_eq!(
        shown["agents"]["py-agent"]["visible"][0]["through"],
        serde_json::json!(["/usr/lib/x86_64-linux-gnu/libssl.so.3"])
    );
    let hidden = &shown["agents"]["opaque-agent"]["not_visible"][0];
    assert_eq!(hidden["executable"], sleeper.display().to_string());
    assert!(
        hidden["reason"]
            .as_str()
            .unwrap()
            .contains("no SSL_write/SSL_read"),
        "{hidden}"
    );
    let table = common::ctl(common::CtlTarget::Socket(&socket), &["status"]);
    assert!(
        table.stdout.contains(&format!(
            "opaque-agent     {} NOT visible: no TLS library mapped",
            sleeper.display()
        )),
        "{}",
        table.stdout
    );
    assert!(
        table.stdout.contains("py-agent         /usr/bin/python3.11 visible through /usr/lib/x86_64-linux-gnu/libssl.so.3"),
        "{}",
        table.stdout
    );
}

/// Shadow AI at the request level: a process that is not a registered
/// agent (watched because its executable is listed in `[watch]`) calls an
/// LLM API; the call is a `shadow_ai.finding` naming provider and model,
/// resting on the `llm.request` receipt of the call on its
/// `unregistered:` chain.
#[test]
fn an_unregistered_llm_request_is_a_finding_naming_provider_and_model() {
    let fx = Fixture::new(ANSWER);
    let (_server, port) = fx.server();
    let script = fx.path("shadow-client.py");
    common::write_executable(&script, &py_agent());
    let body = br#"{"model":"gpt-4o-mini","messages":[]}"#;
    let mut request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    std::fs::write(fx.path("request"), &request).unwrap();
    // The shipped rules (the kit turns them off unless asked).
    let config = format!(
        "builtin_policies = true\n[plaintext]\nenabled = true\n[watch]\nexecutables = [{:?}]\n",
        script.display().to_string()
    );
    let state = fx.path("daemon");
    std::fs::create_dir(&state).unwrap();
    let mut d = common::Daemon::start_in(common::StateDir::Shared(state), &config);
    let child = client(&fx, port, &mut Command::new(&script));
    let pid = child.id();
    wait_visible(&d.socket(), "unregistered");
    assert_eq!(release(child), ANSWER);
    d.wait_for(|r| common::is_event(r, "llm_request") && r["process"]["pid"] == pid);
    let db = d.store();
    let seed = d.master_seed();
    d.stop();
    let findings = common::stored_receipts_of(&db, "shadow_ai.finding");
    let finding = findings
        .iter()
        .find(|f| f.context.as_ref().unwrap()["rule_id"] == "llm-request-unregistered")
        .unwrap_or_else(|| {
            let all: Vec<String> = common::stored_receipts(&db)
                .iter()
                .map(|r| format!("{} {}", r.payload["action_type"], r.payload["agent_id"]))
                .collect();
            panic!("no llm-request-unregistered finding among {all:?}")
        });
    let c = finding.context.as_ref().unwrap();
    assert_eq!(
        c["reason"],
        "a process that is not a registered agent made an LLM API request (openai_compatible observer-test-model)"
    );
    assert_eq!(c["process"]["pid"], pid);
    assert_eq!(c["registered"], false);
    assert_eq!(
        c["matched"],
        serde_json::json!({
            "provider": "openai_compatible",
            "api": "chat.completions",
            "host": format!("127.0.0.1:{port}"),
            "model_requested": "gpt-4o-mini",
            "model_answered": "observer-test-model",
        })
    );
    let calls = common::stored_receipts_of(&db, "llm.request");
    assert_eq!(calls.len(), 1);
    assert_eq!(c["evidence"][0]["action_type"], "llm.request");
    assert_eq!(c["evidence"][0]["leaf_index"], calls[0].leaf);
    assert!(calls[0].payload["agent_id"]
        .as_str()
        .unwrap()
        .starts_with("unregistered:"));
    let report = common::verify_store(&db, &seed, vec![]);
    assert!(report.ok(), "{:#?}", report.failures);
}
