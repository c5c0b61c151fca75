//! What the real-SDK tests share: the pinned `openai` and `anthropic`
//! Python SDKs (a venv `cargo xtask test` makes), a TLS server that
//! answers like a provider (a JSON body, gzip-coded or not, or server-sent
//! events in chunked transfer coding, over one kept-alive connection) and
//! writes down every request body it read and every response body it
//! sent, and one run of an SDK script as a registered agent through the
//! real daemon.
// Each test binary of the topic compiles this module and uses part of it.
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use observer_testkit as common;
use serde_json::Value;

use crate::tls_kit::{release, sha256, wait_visible, Fixture, Kill};

#[path = "../ocsf/exported.rs"]
pub mod ocsf_exported;

/// The venv xtask/src/setup.rs (ensure_llm_sdk_venv) makes, and the
/// requirements it stamps it with.
const VENV: &str = "/var/cache/observer-tests/llm-sdks";
const REQUIREMENTS: &str = include_str!("../../llm_sdks/requirements.txt");

/// The venv's python, with the pinned SDKs; a test that finds another
/// set fails (`cargo xtask test` installs them).
pub fn sdk_python() -> PathBuf {
    let stamp = Path::new(VENV).join("observer-requirements.txt");
    let installed = std::fs::read_to_string(&stamp).unwrap_or_default();
    assert_eq!(
        installed,
        REQUIREMENTS,
        "{VENV} does not hold observer-tests/llm_sdks/requirements.txt: `cargo xtask test` installs them"
    );
    Path::new(VENV).join("bin/python")
}

/// Answers the requests of one kept-alive connection (a new connection
/// is accepted when the client closes one) in order, one answer file
/// each: `*.json` with Content-Length, `*.json.gz` the same gzip-coded
/// (the file holds the coded bytes), `*.sse` as text/event-stream in
/// chunked transfer coding, one chunk per event, the last one in the same
/// write as the chunk that ends the body (an SDK stops reading at the
/// stream's last event: a terminating chunk in a later TLS record is never
/// read, and the body is rightly not seen complete). Writes `request.N` (head
/// and body as read), `request_body.N` and `response_body.N` (as sent,
/// without the chunk framing). Its arguments: cert and key (`-` for plain
/// HTTP), the output directory, the port (0: any), the answers.
pub const SERVER: &str = r#"
import socket, ssl, sys
cert, key, out, port = sys.argv[1:5]
answers = sys.argv[5:]
ctx = None
if cert != "-":
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", int(port)))
ls.listen()
print(ls.getsockname()[1], flush=True)
n = 0
while n < len(answers):
    conn, _ = ls.accept()
    s = ctx.wrap_socket(conn, server_side=True) if ctx else conn
    buf = b""
    while n < len(answers):
        while b"\r\n\r\n" not in buf:
            more = s.recv(65536)
            if not more:
                break
            buf += more
        if b"\r\n\r\n" not in buf:
            break
        head, buf = buf.split(b"\r\n\r\n", 1)
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            assert name != b"transfer-encoding", line
            if name == b"content-length":
                length = int(value)
        while len(buf) < length:
            buf += s.recv(65536)
        body, buf = buf[:length], buf[length:]
        open(f"{out}/request.{n}", "wb").write(head + b"\r\n\r\n" + body)
        open(f"{out}/request_body.{n}", "wb").write(body)
        answer = open(answers[n], "rb").read()
        open(f"{out}/response_body.{n}", "wb").write(answer)
        if answers[n].endswith(".sse"):
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
                      b"Transfer-Encoding: chunked\r\nCache-Control: no-cache\r\n\r\n")
            events = answer.split(b"\n\n")[:-1]
            for i, event in enumerate(events):
                event += b"\n\n"
                last = b"0\r\n\r\n" if i == len(events) - 1 else b""
                s.sendall(b"%x\r\n%s\r\n%s" % (len(event), event, last))
        else:
            coding = b"Content-Encoding: gzip\r\n" if answers[n].endswith(".gz") else b""
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n%s"
                      b"Content-Length: %d\r\n\r\n%s" % (coding, len(answer), answer))
        n += 1
    s.close()
"#;

/// One exchange the server had: what it read and what it sent.
pub struct Exchange {
    pub request: Vec<u8>,
    pub request_body: Vec<u8>,
    pub response_body: Vec<u8>,
}

/// What [`run_agent`] saw: the `llm_request` records of the agent (in the
/// order of the server's exchanges), the exchanges, and the store.
pub struct Run {
    pub records: Vec<Value>,
    pub exchanges: Vec<Exchange>,
    pub receipts: Vec<common::StoredReceipt>,
    pub port: u16,
    pub stdout: String,
}

/// `script` (Python; its arguments: port, API key; it reads a line on
/// stdin before its first call) run with the SDK venv as the registered
/// agent `agent` of a daemon with `[plaintext]` on, against the server
/// answering `answers` (name, bytes; the name's suffix says how). Checks
/// what every such run must show: one `llm_request` record per exchange,
/// matched by the digest of the request body the server read, each with
/// the digest of the response body it sent; one `llm.request` receipt per
/// record on the agent's chain, carrying it; the store verifies; the API
/// key is in no file the daemon wrote (store, WAL, events, stderr).
pub fn run_agent(agent: &str, script: &str, answers: &[(&str, &[u8])]) -> Run {
    run_agent_over(agent, script, answers, Over::Tls)
}

/// How the agent reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Over {
    /// TLS on a port the kernel picks (the script's first argument).
    Tls,
    /// Plain HTTP on this loopback port, where a local inference server
    /// listens (Ollama 11434): read from the agent's socket calls.
    Plain(u16),
}

/// [`run_agent`] with the transport chosen.
pub fn run_agent_over(agent: &str, script: &str, answers: &[(&str, &[u8])], over: Over) -> Run {
    let python = sdk_python();
    let fx = Fixture::new(b"");
    let out = fx.path("exchanges");
    std::fs::create_dir(&out).unwrap();
    let mut server = Command::new("python3");
    server.args(["-c", SERVER]);
    match over {
        Over::Tls => server
            .arg(fx.path("cert.pem"))
            .arg(fx.path("key.pem"))
            .arg(&out)
            .arg("0"),
        Over::Plain(port) => server.args(["-", "-"]).arg(&out).arg(port.to_string()),
    };
    for (name, bytes) in answers {
        let path = fx.path(name);
        std::fs::write(&path, bytes).unwrap();
        server.arg(path);
    }
    let mut child = server.stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _server = Kill(child);
    let port: u16 = line.trim().parse().unwrap();

    let exe = fx.path(format!("{agent}.py").as_str());
    common::write_executable(&exe, &format!("#!{}\n{script}", python.display()));
    let key = format!("sk-observer-sdk-{}-{}", agent, std::process::id());
    let config = format!(
        "[plaintext]\nenabled = true\n[[agents]]\nid = {agent:?}\nexecutables = [{:?}]\n",
        exe.display().to_string()
    );
    let state = fx.path("daemon");
    std::fs::create_dir(&state).unwrap();
    let mut d = common::Daemon::start_in(common::StateDir::Shared(state.clone()), &config);
    let client = Command::new(&exe)
        .arg(port.to_string())
        .arg(&key)
        // httpx (under both SDKs) trusts the system's CAs and this file.
        .env("SSL_CERT_FILE", fx.path("cert.pem"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = client.id();
    wait_visible(&d.socket(), agent);
    let stdout = String::from_utf8(release(client)).unwrap();

    let exchanges: Vec<Exchange> = (0..answers.len())
        .map(|n| Exchange {
            request: std::fs::read(out.join(format!("request.{n}"))).unwrap(),
            request_body: std::fs::read(out.join(format!("request_body.{n}"))).unwrap(),
            response_body: std::fs::read(out.join(format!("response_body.{n}"))).unwrap(),
        })
        .collect();
    let mut records = Vec::new();
    for ex in &exchanges {
        let digest = sha256(&ex.request_body);
        let record = d.wait_for(|r| {
            common::is_event(r, "llm_request")
                && r["process"]["pid"] == pid
                && r["llm_request"]["request_body"]["sha256"] == digest.as_str()
        });
        records.push(record);
    }
    let db = d.store();
    let seed = d.master_seed();
    let written = [d.events.clone(), d.stderr.clone()];
    // The key in no file the daemon wrote, the WAL included (read while
    // the daemon runs, before the stop checkpoints it).
    assert_key_absent(&key, &state, &written);
    let all = d.stop();
    assert_key_absent(&key, &state, &written);
    assert!(
        exchanges
            .iter()
            .all(|ex| ex.request.windows(key.len()).any(|w| w == key.as_bytes())),
        "the SDK did not send the key"
    );

    let calls: Vec<&Value> = all
        .iter()
        .filter(|r| common::is_event(r, "llm_request"))
        .collect();
    assert_eq!(calls.len(), exchanges.len(), "{calls:#?}");
    for (record, ex) in records.iter().zip(&exchanges) {
        assert_eq!(record["process"]["agent"], agent);
        let call = &record["llm_request"];
        assert_eq!(call["host"], format!("127.0.0.1:{port}"));
        assert_eq!(call["method"], "POST");
        assert_eq!(call["request_body"]["bytes"], ex.request_body.len());
        assert_eq!(call["request_body"]["complete"], true);
        assert_eq!(call["response_body"]["sha256"], sha256(&ex.response_body));
        assert_eq!(call["response_body"]["bytes"], ex.response_body.len());
        assert_eq!(call["response_body"]["complete"], true);
        assert_eq!(call["status"], 200);
    }
    let receipts = common::stored_receipts_of(&db, "llm.request");
    assert_eq!(receipts.len(), exchanges.len());
    for record in &records {
        let r = receipts
            .iter()
            .find(|r| r.context.as_ref().unwrap()["llm_request"] == record["llm_request"])
            .unwrap_or_else(|| panic!("no receipt carries {}", record["llm_request"]));
        assert_eq!(r.payload["agent_id"], agent);
        assert!(r.chain.ends_with(&format!("/agent/{agent}")), "{}", r.chain);
    }
    let report = common::verify_store(&db, &seed, vec![]);
    assert!(report.ok(), "{:#?}", report.failures);
    // The same calls as OCSF HTTP Activity events, valid against the schema.
    let http: Vec<Value> = ocsf_exported::checked_ocsf_events(&db)
        .into_iter()
        .filter(|ev| ev["class_uid"] == 4002)
        .collect();
    assert_eq!(http.len(), exchanges.len());
    for ev in &http {
        assert_eq!(ev["type_uid"], 400206, "HTTP Activity: Post");
        assert_eq!(ev["actor"]["process"]["pid"], pid);
        let request = &ev["http_request"];
        assert_eq!(request["http_method"], "POST");
        assert_eq!(request["url"]["hostname"], "127.0.0.1");
        assert_eq!(request["url"]["port"], port);
        let scheme = if over == Over::Tls { "https" } else { "http" };
        assert_eq!(request["url"]["scheme"], scheme);
        let context = &ev["unmapped"]["observer"]["context"]["llm_request"];
        assert_eq!(request["url"]["path"], context["path"]);
        assert_eq!(ev["http_response"]["code"], 200);
        assert_eq!(ev["dst_endpoint"]["port"], port);
        assert!(
            !ev.to_string().contains(&key),
            "the API key is in no OCSF byte"
        );
    }
    Run {
        records,
        exchanges,
        receipts,
        port,
        stdout,
    }
}

pub fn assert_key_absent(key: &str, state: &Path, written: &[PathBuf]) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(state)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.extend(written.iter().cloned());
    for file in files {
        let bytes = std::fs::read(&file).unwrap_or_default();
        assert!(
            !bytes.windows(key.len()).any(|w| w == key.as_bytes()),
            "the API key is in {}",
            file.display()
        );
    }
}

/// `bytes` gzip-coded, as a provider sends a JSON answer to a client that
/// accepts it.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}
