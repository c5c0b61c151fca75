//! Names for connections on the real kernel: a network namespace whose
//! resolv.conf points at a real dnsmasq inside it, a real `openssl
//! s_server` with a certificate from a test CA, and real curl. Each test
//! uses its own subnet so concurrently running daemons (which see every
//! socket on the host) cannot mix up their names.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use observer_testkit::{netns::*, *};
use serde_json::{json, Value};

fn curl(ns: &Netns, dir: &Path, url: &str) -> u32 {
    curl_with(ns, dir, &[], url)
}

fn name(n: &str, source: &str) -> Value {
    json!({"name": n, "source": source})
}

fn connect_of(d: &mut Daemon, pid: u32, addr: &str) -> Value {
    d.wait_for(|r| {
        is_event(r, "connect")
            && r["process"]["pid"] == pid
            && r["connect"]["remote_addr"] == addr
            && r["connect"]["remote_port"] == 443
    })
}

fn dns_answer_of(d: &mut Daemon, pid: u32, question: &str) -> Value {
    d.wait_for(|r| {
        is_event(r, "dns_answer")
            && r["process"]["pid"] == pid
            && r["dns_answer"]["question"]["name"] == question
            && r["dns_answer"]["question"]["type"] == "A"
    })
}

#[test]
fn curl_connections_carry_dns_and_sni_names() {
    let subnet = "10.213.77";
    let ns = Netns::new(subnet);
    let dir = tempfile::tempdir().expect("tempdir");
    make_certs(dir.path(), &format!("{subnet}.2"));
    let _dns = start_dnsmasq(&ns, dir.path(), subnet);
    let _tls = start_tls_server(&ns, dir.path());
    let mut d = Daemon::start(&config(&[], "[receipts]\nenabled = false\n"));

    // A name from DNS, and the same name in the ClientHello.
    let pid = curl(&ns, dir.path(), "https://api.openai.com/v1/models");
    let c = connect_of(&mut d, pid, &format!("{subnet}.1"));
    assert_eq!(c["process"]["comm"], "curl");
    assert_eq!(c["connect"]["socket_type"], "stream");
    assert_eq!(
        c["connect"]["dst_names"],
        json!([name("api.openai.com", "dns"), name("api.openai.com", "sni")])
    );
    let a = dns_answer_of(&mut d, pid, "api.openai.com");
    assert_eq!(a["process"]["comm"], "curl");
    let a = &a["dns_answer"];
    assert_eq!(a["transport"], "udp");
    assert_eq!(a["server_addr"], format!("{subnet}.1"));
    assert_eq!(a["server_port"], 53);
    assert_eq!(a["rcode"], "NOERROR");
    assert_eq!(a["truncated"], false);
    assert_eq!(
        a["answers"],
        json!([{"name": "api.openai.com", "ttl": 0, "type": "A", "data": format!("{subnet}.1")}])
    );
    assert_eq!(a["cname_chain"], json!(["api.openai.com"]));
    assert_eq!(a["addresses"], json!([format!("{subnet}.1")]));

    // A CNAME chain: every name of it names the final address.
    let pid = curl(&ns, dir.path(), "https://api.anthropic.com/v1/messages");
    let c = connect_of(&mut d, pid, &format!("{subnet}.3"));
    assert_eq!(
        c["connect"]["dst_names"],
        json!([
            name("api.anthropic.com", "dns"),
            name("edge.anthropic-cdn.test", "dns"),
            name("api.anthropic.com", "sni")
        ])
    );
    let a = dns_answer_of(&mut d, pid, "api.anthropic.com");
    let a = &a["dns_answer"];
    assert_eq!(
        a["cname_chain"],
        json!(["api.anthropic.com", "edge.anthropic-cdn.test"])
    );
    assert_eq!(a["answers"][0]["type"], "CNAME");
    assert_eq!(a["answers"][0]["data"], "edge.anthropic-cdn.test");
    assert_eq!(a["addresses"], json!([format!("{subnet}.3")]));

    // An address no DNS answer named, and no SNI (curl sends none for an
    // IP literal): no names at all.
    let pid = curl(&ns, dir.path(), &format!("https://{subnet}.2/"));
    let c = connect_of(&mut d, pid, &format!("{subnet}.2"));
    assert_eq!(c["connect"]["dst_names"], json!([]));

    // An unconnected UDP socket (sendto), as dig and DNS libraries use:
    // the owner is recorded on its first send.
    let script = format!(
        r#"
import socket
q = bytes.fromhex("abcd01000001000000000000") + b"\x03api\x06openai\x03com\x00\x00\x01\x00\x01"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(q, ("{subnet}.1", 53))
s.recvfrom(512)
"#
    );
    let child = ns
        .command(&["/usr/bin/python3", "-c", &script])
        .spawn()
        .expect("spawn python3");
    let pid = child.id();
    assert!(child.wait_with_output().expect("python3").status.success());
    let a = dns_answer_of(&mut d, pid, "api.openai.com");
    assert_eq!(a["dns_answer"]["id"], 0xabcd);
    assert_eq!(a["dns_answer"]["addresses"], json!([format!("{subnet}.1")]));

    // IPv6, the name from the ClientHello only (curl was told the
    // address, no DNS answer names it).
    let v6 = format!("{}::1", v6_prefix(subnet));
    let pid = curl_with(
        &ns,
        dir.path(),
        &["--resolve", &format!("api.openai.com:443:[{v6}]")],
        "https://api.openai.com/v1/models",
    );
    let c = connect_of(&mut d, pid, &v6);
    assert_eq!(c["connect"]["family"], "inet6");
    assert_eq!(c["connect"]["local_addr"], v6.as_str());
    assert_eq!(
        c["connect"]["dst_names"],
        json!([name("api.openai.com", "sni")])
    );

    let records = d.stop();
    let stop = records
        .iter()
        .find(|r| r["kind"] == "observer_stop")
        .expect("observer_stop");
    let names = &stop["names"];
    assert!(names["sni_joined"].as_u64().unwrap() >= 3, "{names}");
    assert!(names["dns_answers"].as_u64().unwrap() >= 2, "{names}");
    assert_eq!(stop["kernel"]["tls_hello"]["dropped_ringbuf_full"], 0);
}

/// `name{labels}`'s value on the daemon's metrics endpoint, 0 when absent.
fn metric(port: u16, series: &str) -> u64 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0, |v| v.parse().unwrap())
}

/// Malformed DNS messages from port 53, a malformed ClientHello and one
/// split across two segments before its server_name (a real client
/// writing it in two pieces with TCP_NODELAY): counted by reason, on the
/// metrics endpoint while running and in `observer_stop`; no record names
/// anything, the daemon runs on.
#[test]
fn malformed_dns_and_tls_are_counted_and_name_nothing() {
    let subnet = "10.214.77";
    let ns = Netns::new(subnet);
    let mport = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut d = Daemon::start(&config(
        &[],
        &format!("[receipts]\nenabled = false\n[metrics]\nlisten = \"127.0.0.1:{mport}\"\n"),
    ));
    let truncated = |c: &str| metric(mport, &format!("observer_names_total{{counter=\"{c}\"}}"));
    let before = truncated("sni_truncated");
    let script = format!(
        r#"
import socket
ip = "{subnet}.1"
srv = socket.socket(); srv.bind((ip, 443)); srv.listen()
c = socket.create_connection((ip, 443))
a, _ = srv.accept()
body = b"\x03\x03" + bytes(32) + b"\xff" + bytes(40)   # session id length 255
hs = b"\x01" + len(body).to_bytes(3, "big") + body
c.sendall(b"\x16\x03\x01" + len(hs).to_bytes(2, "big") + hs)
a.recv(4096)
# A valid ClientHello written in two pieces: the first segment ends before
# the server_name extension.
name = b"api.openai.com"
entry = b"\x00" + len(name).to_bytes(2, "big") + name
sni = (0).to_bytes(2, "big") + (len(entry) + 2).to_bytes(2, "big") + len(entry).to_bytes(2, "big") + entry
exts = sni
body = b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00" + len(exts).to_bytes(2, "big") + exts
hs = b"\x01" + len(body).to_bytes(3, "big") + body
hello = b"\x16\x03\x01" + len(hs).to_bytes(2, "big") + hs
s2 = socket.create_connection((ip, 443))
s2.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
b2, _ = srv.accept()
s2.sendall(hello[:30])
import time; time.sleep(0.1)
s2.sendall(hello[30:])
got = b""
while len(got) < len(hello):
    got += b2.recv(4096)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind((ip, 53))
q = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); q.connect((ip, 53))
q.send(b"query")
_, peer = u.recvfrom(100)
loop = bytes.fromhex("000181800001000000000000") + b"\xc0\x0c\x00\x01\x00\x01"
query = bytes.fromhex("000201000001000000000000") + b"\x01a\x07example\x00\x00\x01\x00\x01"
for m in (loop, query):
    u.sendto(m, peer)
    q.recv(2048)
"#
    );
    let child = ns
        .command(&["/usr/bin/python3", "-c", &script])
        .spawn()
        .expect("spawn python3");
    let pid = child.id();
    let out = child.wait_with_output().expect("python3");
    assert!(out.status.success(), "python3: {}", out.status);
    connect_of(&mut d, pid, &format!("{subnet}.1"));
    // Published on the processor's 200 ms tick.
    let start = std::time::Instant::now();
    while truncated("sni_truncated") <= before {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "sni_truncated did not move on the metrics endpoint"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(truncated("sni_malformed") >= 1);
    let records = d.stop();
    let connects: Vec<&Value> = records
        .iter()
        .filter(|r| is_event(r, "connect") && r["process"]["pid"] == pid)
        .filter(|r| r["connect"]["remote_port"] == 443)
        .collect();
    assert_eq!(connects.len(), 2, "the malformed and the split hello");
    for c in connects {
        assert_eq!(c["connect"]["dst_names"], json!([]), "{c}");
    }
    assert!(
        !records
            .iter()
            .any(|r| is_event(r, "dns_answer") && r["process"]["pid"] == pid),
        "a malformed answer became a dns_answer record"
    );
    let stop = records
        .iter()
        .find(|r| r["kind"] == "observer_stop")
        .expect("observer_stop");
    let names = &stop["names"];
    for reason in [
        "sni_malformed",
        "sni_truncated",
        "dns_bad_name",
        "dns_not_response",
    ] {
        assert!(names[reason].as_u64().unwrap() >= 1, "{reason}: {names}");
    }
    assert!(stop["kernel"]["dns_message"]["emitted"].as_u64().unwrap() >= 2);
}

/// A registered agent's lookup and connection become `dns.resolve` and
/// `network.connect` receipts carrying the answer and the names.
#[test]
fn an_agents_lookup_and_named_connection_become_receipts() {
    let subnet = "10.215.77";
    let ns = Netns::new(subnet);
    let dir = tempfile::tempdir().expect("tempdir");
    make_certs(dir.path(), &format!("{subnet}.2"));
    let _dns = start_dnsmasq(&ns, dir.path(), subnet);
    let _tls = start_tls_server(&ns, dir.path());
    let state = tempfile::tempdir().expect("tempdir");
    let exe = copy_executable("/usr/bin/curl", state.path(), &unique("agent-curl"));
    let mut d = Daemon::start_in(
        StateDir::Shared(state.path().to_owned()),
        &agent_config("names-agent", &exe, ""),
    );
    let program = exe.display().to_string();
    let pid = run_curl(
        &ns,
        dir.path(),
        &program,
        &[],
        "https://api.openai.com/v1/models",
    );
    let c = connect_of(&mut d, pid, &format!("{subnet}.1"));
    assert_eq!(c["process"]["agent"], "names-agent");
    let db = d.store();
    d.stop();
    let resolves = stored_receipts_of(&db, "dns.resolve");
    let ours: Vec<&Value> = resolves
        .iter()
        .filter_map(|r| r.context.as_ref())
        .filter(|c| c["process"]["pid"] == pid)
        .collect();
    assert!(
        ours.iter().any(|c| c["dns_answer"]["question"]
            == json!({"name": "api.openai.com", "type": "A"})
            && c["dns_answer"]["addresses"] == json!([format!("{subnet}.1")])),
        "{ours:#?}"
    );
    let connects = stored_receipts_of(&db, "network.connect");
    let connect = connects
        .iter()
        .filter_map(|r| r.context.as_ref())
        .find(|c| c["process"]["pid"] == pid && c["connect"]["remote_port"] == 443)
        .expect("network.connect receipt of the agent");
    assert_eq!(
        connect["connect"]["dst_names"],
        json!([name("api.openai.com", "dns"), name("api.openai.com", "sni")])
    );
}
