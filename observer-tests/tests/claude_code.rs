//! The real Claude Code (a Bun single-file executable, BoringSSL linked in
//! without symbols) as a registered agent: observer finds its SSL_write and
//! SSL_read by BoringSSL's code signature for its Bun version, and its real
//! `claude -p` call to a local Messages API server becomes one
//! `llm_request` record and one signed `llm.request` receipt, without its
//! API key anywhere.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]
mod tls_kit;

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use observer_daemon::kernel::tls_signatures::{error_site, find_bun_tls, BunTls};
use observer_testkit as common;
use tls_kit::{wait_visible, Fixture, Kill};

/// The Claude Code release whose Bun signature is known (observer-daemon's
/// `KNOWN_BUN`); pinned so the test does not move under a new release.
const CLAUDE_CODE: &str = "2.1.332";
/// Where it is installed once (idempotent: an installed binary is reused).
const INSTALL: &str = "/var/tmp/observer-test-claude-code";
const NPM_CACHE: &str = "/var/tmp/observer-test-npm";

/// The real `claude` binary of [`CLAUDE_CODE`], installed from the npm
/// registry on first use (the platform package the `claude` wrapper
/// package would pick on linux-x64). Once per test binary (its tests run
/// as threads); into a scratch directory renamed into place, so a run
/// killed mid-download leaves nothing half installed.
fn claude() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = Path::new(INSTALL).join(CLAUDE_CODE);
        let rel = "node_modules/@anthropic-ai/claude-code-linux-x64/claude";
        if !dir.join(rel).exists() {
            let scratch = Path::new(INSTALL).join(format!("{CLAUDE_CODE}.{}", std::process::id()));
            std::fs::create_dir_all(&scratch).unwrap();
            let out = Command::new("npm")
                .args([
                    "install",
                    "--no-save",
                    "--no-audit",
                    "--no-fund",
                    "--prefix",
                ])
                .arg(&scratch)
                .args(["--cache", NPM_CACHE])
                .arg(format!("@anthropic-ai/claude-code-linux-x64@{CLAUDE_CODE}"))
                .output()
                .expect("npm runs");
            assert!(
                out.status.success() && scratch.join(rel).exists(),
                "npm install of Claude Code {CLAUDE_CODE} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            // Another test binary may have won the race: keep its copy.
            if std::fs::rename(&scratch, &dir).is_err() {
                let _ = std::fs::remove_dir_all(&scratch);
            }
        }
        dir.join(rel)
    })
    .clone()
}

/// A Messages API server over TLS (HTTP/1.1 only in ALPN), keep-alive, one
/// thread per connection, that holds every connection before its handshake
/// until the file `go` exists (so the probes are attached before Claude
/// Code writes a byte). A streamed `/v1/messages` call gets an SSE answer
/// with the model it asked for and fixed usage; anything else a plain
/// answer. Each request's method, path, model and stream flag is logged.
const SERVER: &str = r#"
import json, os, socket, ssl, sys, threading, time
cert, key, log, go = sys.argv[1:5]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
ctx.set_alpn_protocols(["http/1.1"])
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen(16)
print(ls.getsockname()[1], flush=True)
lock = threading.Lock()

def sse(model):
    events = [
        ("message_start", {"type": "message_start", "message": {"id": "msg_observer", "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": None, "usage": {"input_tokens": 17, "output_tokens": 1}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hello from observer"}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 5}}),
        ("message_stop", {"type": "message_stop"}),
    ]
    return b"".join(b"event: %s\ndata: %s\n\n" % (n.encode(), json.dumps(d).encode()) for n, d in events)

def serve(conn):
    while not os.path.exists(go):
        time.sleep(0.02)
    s = ctx.wrap_socket(conn, server_side=True)
    buf = b""
    while True:
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                return
            buf += chunk
        head, buf = buf.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        method, path = lines[0].decode().split(" ")[:2]
        length = 0
        for line in lines[1:]:
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        while len(buf) < length:
            buf += s.recv(65536)
        body, buf = buf[:length], buf[length:]
        try:
            req = json.loads(body) if body else {}
        except ValueError:
            req = {}
        with lock:
            with open(log, "a") as f:
                f.write(json.dumps({"method": method, "path": path, "model": req.get("model"), "stream": req.get("stream")}) + "\n")
        p = path.split("?")[0]
        ctype = b"application/json"
        if method == "POST" and p == "/v1/messages" and req.get("stream"):
            data, ctype = sse(req.get("model", "?")), b"text/event-stream"
        elif method == "POST" and p == "/v1/messages":
            data = json.dumps({"id": "msg_observer", "type": "message", "role": "assistant", "model": req.get("model", "?"), "content": [{"type": "text", "text": "hello"}], "stop_reason": "end_turn", "usage": {"input_tokens": 3, "output_tokens": 1}}).encode()
        elif p == "/v1/messages/count_tokens":
            data = b'{"input_tokens": 3}'
        else:
            data = b"{}"
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n" % (ctype, len(data)) + data)

while True:
    conn, _ = ls.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"#;

/// The signature for the pinned release finds both functions, at the
/// offsets its disassembly shows (`SSL_write` at 0x3531300, `SSL_read` at
/// 0x35314b0: text is loaded 0x201000 above its file offset).
#[test]
fn the_signature_finds_ssl_write_and_ssl_read_in_the_real_claude_code() {
    let elf = std::fs::read(claude()).unwrap();
    match find_bun_tls(&elf) {
        BunTls::Found { bun, offsets } => {
            assert_eq!(bun, "1.4.6");
            assert_eq!(
                offsets.offsets,
                [Some(0x3330300), None, Some(0x33304b0), None]
            );
        }
        other => panic!("not found: {other:?}"),
    }
    // Another Bun version: not trusted, and said so.
    let mut other = elf.clone();
    let at = find(&other, b"Bun v1.4.6 (");
    other[at..at + 12].copy_from_slice(b"Bun v1.4.9 (");
    let BunTls::NotFound { bun, reason } = find_bun_tls(&other) else {
        panic!("an unknown Bun version was trusted")
    };
    assert_eq!(bun, "1.4.9");
    assert_eq!(reason, "Bun executable (Bun v1.4.9, BoringSSL linked in, no symbols): BoringSSL signature for this version not known");
    // The known version with SSL_read's error site changed: no match.
    let mut broken = elf;
    let site = error_site(0xd47d7f, 66, 933);
    let at = find(&broken, &site);
    broken[at + site.len() - 4] = 0xa6;
    let BunTls::NotFound { reason, .. } = find_bun_tls(&broken) else {
        panic!("a broken signature matched")
    };
    assert!(
        reason.ends_with(
            "BoringSSL signature did not match (SSL_read: no error site at ssl_lib.cc:933)"
        ),
        "{reason}"
    );
}

/// A Claude Code whose Bun version has no known signature (the real
/// binary with its version string changed, standing for a new release):
/// `observerctl status` lists it NOT visible with that reason, and its
/// connection to the API server is still recorded.
#[test]
fn an_unknown_bun_version_is_not_visible_with_the_reason() {
    let fx = Fixture::new(b"");
    let mut elf = std::fs::read(claude()).unwrap();
    let at = find(&elf, b"Bun v1.4.6 (");
    elf[at..at + 12].copy_from_slice(b"Bun v1.4.9 (");
    let bin = fx.path("claude");
    std::fs::write(&bin, &elf).unwrap();
    drop(elf);
    std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // No `go`: the server holds the connection, so claude stays up.
    let (_server, port) = server(&fx);
    let config = format!(
        "[plaintext]\nenabled = true\n[[agents]]\nid = \"new-claude\"\nexecutables = [{:?}]\n",
        bin.display().to_string()
    );
    let mut d = common::Daemon::start(&config);
    let child = claude_p(&bin, &fx, port, "sk-ant-observer-test-unseen");
    let pid = child.0.id();
    d.wait_for(|r| {
        common::is_event(r, "connect")
            && r["process"]["pid"] == pid
            && r["connect"]["remote_port"] == port
    });
    let socket = d.socket();
    let deadline = Instant::now() + Duration::from_secs(30);
    let hidden = loop {
        let r = common::ctl(common::CtlTarget::Socket(&socket), &["status", "--json"]);
        let h = r.json()["plaintext"]["agents"]["new-claude"]["not_visible"][0].clone();
        if !h.is_null() {
            break h;
        }
        assert!(Instant::now() < deadline, "never listed: {}", r.stdout);
        std::thread::sleep(Duration::from_millis(100));
    };
    let why = "Bun executable (Bun v1.4.9, BoringSSL linked in, no symbols): BoringSSL signature for this version not known";
    assert_eq!(hidden["executable"], bin.display().to_string());
    assert_eq!(hidden["reason"], why);
    let table = common::ctl(common::CtlTarget::Socket(&socket), &["status"]);
    assert!(
        table.stdout.contains(&format!(
            "new-claude       {} NOT visible: {why}",
            bin.display()
        )),
        "{}",
        table.stdout
    );
    drop(child);
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).position(|w| w == needle).unwrap()
}

/// `claude -p hi`, the real binary as a registered agent, against a local
/// Messages API server: status shows it visible through its own
/// executable, and its streamed call is one `llm_request` record and one
/// `llm.request` receipt with the model and usage the server streamed;
/// the API key is in none of the store, the events and the daemon's log.
#[test]
fn a_real_claude_code_call_is_an_llm_request_receipt() {
    let bin = claude();
    let fx = Fixture::new(b"");
    let (_server, port) = server(&fx);
    let config = format!(
        "[plaintext]\nenabled = true\n[[agents]]\nid = \"claude-code\"\nexecutables = [{:?}]\n",
        bin.display().to_string()
    );
    let state = fx.path("daemon");
    std::fs::create_dir(&state).unwrap();
    let mut d = common::Daemon::start_in(common::StateDir::Shared(state), &config);
    let key = format!("sk-ant-observer-test-{}", std::process::id());
    let child = claude_p(&bin, &fx, port, &key);
    let pid = child.0.id();
    wait_visible(&d.socket(), "claude-code");
    let status = common::ctl(
        common::CtlTarget::Socket(&d.socket()),
        &["status", "--json"],
    );
    assert_eq!(
        status.json()["plaintext"]["agents"]["claude-code"]["visible"][0]["through"],
        serde_json::json!([bin.display().to_string()])
    );
    std::fs::write(fx.path("go"), b"").unwrap();
    let out = wait_output(child);
    assert!(
        out.status.success(),
        "claude failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "hello from observer"
    );
    let record = d.wait_for(|r| {
        common::is_event(r, "llm_request")
            && r["process"]["pid"] == pid
            && r["llm_request"]["stream"] == true
    });
    let db = d.store();
    let seed = d.master_seed();
    let stderr_path = d.stderr.clone();
    let events_path = d.events.clone();
    d.stop();

    // The streamed Messages call Claude Code made, as the server saw it.
    let log = std::fs::read_to_string(fx.path("requests.log")).unwrap();
    let asked: serde_json::Value = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["stream"] == true)
        .unwrap_or_else(|| panic!("no streamed call: {log}"));
    let call = &record["llm_request"];
    assert_eq!(record["process"]["agent"], "claude-code");
    assert_eq!(call["provider"], "anthropic_compatible");
    assert_eq!(call["api"], "messages");
    assert_eq!(call["host"], format!("127.0.0.1:{port}"));
    assert_eq!(call["method"], "POST");
    assert_eq!(call["path"], asked["path"]);
    assert_eq!(call["model_requested"], asked["model"]);
    assert_eq!(call["model_answered"], asked["model"]);
    assert_eq!(call["status"], 200);
    assert_eq!(call["finish_reason"], "end_turn");
    assert_eq!(
        call["usage"],
        serde_json::json!({"input_tokens": 17, "output_tokens": 5})
    );
    assert_eq!(call["response_body"]["complete"], true);
    assert!(call["request_body"]["sha256"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    let receipts = common::stored_receipts_of(&db, "llm.request");
    let ours: Vec<_> = receipts
        .iter()
        .filter(|r| r.context.as_ref().unwrap()["llm_request"] == *call)
        .collect();
    assert_eq!(ours.len(), 1, "{receipts:?}");
    assert_eq!(ours[0].payload["agent_id"], "claude-code");
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
}

/// Starts the Messages API server (holding connections until `go`);
/// returns it and its port.
fn server(fx: &Fixture) -> (Kill, u16) {
    let mut server = Command::new("python3")
        .args(["-c", SERVER])
        .args([
            fx.path("cert.pem"),
            fx.path("key.pem"),
            fx.path("requests.log"),
            fx.path("go"),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (Kill(server), line.trim().parse().unwrap())
}

/// `bin -p hi` against the fixture's server, with a fresh HOME, the test
/// CA, `key`, and no traffic but the call (no telemetry, no updater).
fn claude_p(bin: &Path, fx: &Fixture, port: u16, key: &str) -> Kill {
    let home = fx.path("home");
    std::fs::create_dir_all(&home).unwrap();
    let child = Command::new(bin)
        .args(["-p", "hi"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", &home)
        .env("ANTHROPIC_BASE_URL", format!("https://127.0.0.1:{port}"))
        .env("NODE_EXTRA_CA_CERTS", fx.path("cert.pem"))
        .env("ANTHROPIC_API_KEY", key)
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_TELEMETRY", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .current_dir(&home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Kill(child)
}

/// Waits (bounded) for `child` to exit and returns its output.
fn wait_output(mut child: Kill) -> std::process::Output {
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "claude did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut out = std::process::Output {
        status: child.0.wait().unwrap(),
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    use std::io::Read;
    child
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut out.stdout)
        .unwrap();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_end(&mut out.stderr)
        .unwrap();
    out
}
