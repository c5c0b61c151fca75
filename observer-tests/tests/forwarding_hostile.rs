//! The http sink against receivers and networks that do not play along:
//! a receiver that answers with absurd lengths, endless headers and a
//! trickling body before it behaves, and HTTPS through CONNECT proxies
//! (one from the sink's `proxy` key with credentials, one from
//! HTTPS_PROXY). Every record of the store must still arrive, and the
//! daemon must keep running.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]
mod forwarding_kit;

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{BufRead, BufReader, Read, Write},
    net::{Shutdown, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::Command,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use forwarding_kit::{free_port, wait_until};
use observer_daemon::receipt::store::Store;
use observer_testkit::{
    scrape::{metrics, sample},
    *,
};
use serde_json::Value;

/// Starts the daemon with an agent and `sinks`, runs 6 agent execs.
fn daemon_with_sinks(dir: &Path, sinks: &str, env: &[(&str, &str)]) -> Daemon {
    let exe = copy_executable("/bin/sh", dir, &unique("hostile-agent"));
    let d = Daemon::start_with(
        StateDir::Shared(dir.to_owned()),
        &agent_config("hostile-agent", &exe, sinks),
        &[],
        env,
    );
    let status = Command::new(&exe)
        .args(["-c", "for i in 1 2 3 4 5 6; do /bin/true; done"])
        .status()
        .unwrap();
    assert!(status.success());
    d
}

/// Every record the store holds: "r:<receipt hash>" and "c:<checkpoint size>".
fn stored_records(db: &Path) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = stored_receipts(db)
        .into_iter()
        .map(|r| format!("r:{}", r.hash))
        .collect();
    let checkpoints = Store::open_read_only(db).unwrap().checkpoints().unwrap();
    assert!(!checkpoints.is_empty());
    out.extend(checkpoints.iter().map(|c| format!("c:{}", c.size)));
    out
}

/// One request as a receiver or proxy reads it.
struct Request {
    line: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

fn read_request<R: Read>(r: &mut BufReader<R>) -> Option<Request> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.insert(k.to_ascii_lowercase(), v.trim().to_string());
    }
    let len: usize = headers
        .get("content-length")
        .map_or(0, |l| l.parse().unwrap());
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(Request {
        line: line.trim_end().to_string(),
        headers,
        body,
    })
}

/// The records of a `json`-encoded, `receipt`-format batch (gzipped).
fn records_of(req: &Request) -> Vec<String> {
    assert_eq!(req.headers["content-encoding"], "gzip");
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&req.body[..])
        .read_to_end(&mut plain)
        .unwrap();
    let batch: Vec<Value> = serde_json::from_slice(&plain).unwrap();
    batch
        .iter()
        .map(|d| match d["record"].as_str().unwrap() {
            "receipt" => format!("r:{}", d["receipt_hash"].as_str().unwrap()),
            _ => format!("c:{}", d["checkpoint"]["size"]),
        })
        .collect()
}

const OK: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";

/// Writes `unit` over and over until the client hangs up.
fn flood(s: &mut TcpStream, head: &[u8], unit: &[u8]) {
    let many = unit.repeat(4096 / unit.len() + 1);
    let _ = s.write_all(head);
    while s.write_all(&many).is_ok() {}
}

/// A receiver whose first five answers are hostile; after that it takes
/// every batch. Returns (port, requests seen, records accepted).
fn hostile_receiver() -> (u16, Arc<AtomicUsize>, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(AtomicUsize::new(0));
    let got = Arc::new(Mutex::new(Vec::new()));
    let (n, g) = (seen.clone(), got.clone());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut w) = conn else { return };
            let (n, g) = (n.clone(), g.clone());
            std::thread::spawn(move || {
                let mut r = BufReader::new(w.try_clone().unwrap());
                while let Some(req) = read_request(&mut r) {
                    match n.fetch_add(1, Ordering::SeqCst) {
                        // The old reader's `vec![0; len]` panicked the sink
                        // thread on this one (forwarding stopped for good)...
                        0 => {
                            let _ = w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\n{}");
                            return;
                        }
                        // ... and aborted observerd on this one.
                        1 => {
                            let _ = w.write_all(
                                b"HTTP/1.1 200 OK\r\nContent-Length: 9223372036854775807\r\n\r\n{}",
                            );
                            return;
                        }
                        2 => return flood(&mut w, b"HTTP/1.1 200 OK\r\n", b"X-Flood: 1\r\n"),
                        3 => return flood(&mut w, b"HTTP/1.1 200 OK\r\nX-Long: ", b"a"),
                        // A body that trickles in, a byte per 100 ms: each
                        // read is fast, the whole answer is not.
                        4 => {
                            let _ = w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 64\r\n\r\n");
                            for _ in 0..64 {
                                std::thread::sleep(Duration::from_millis(100));
                                if w.write_all(b"s").is_err() {
                                    return;
                                }
                            }
                            return;
                        }
                        _ => {
                            g.lock().unwrap().extend(records_of(&req));
                            if w.write_all(OK).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    (port, seen, got)
}

#[test]
fn a_hostile_receiver_neither_stops_forwarding_nor_kills_the_daemon() {
    let (port, seen, got) = hostile_receiver();
    let dir = tempfile::tempdir().unwrap();
    let mport = free_port();
    let sinks = format!(
        "[metrics]\nlisten = \"127.0.0.1:{mport}\"\n[forwarding]\nflush_timeout_ms = 15000\n\
         [[sinks]]\nname = \"hostile\"\ntype = \"http\"\nbatch_max = 4\nretry_initial_ms = 100\nretry_max_ms = 400\n\
         [sinks.http]\nurl = \"http://127.0.0.1:{port}/ingest\"\nencoding = \"json\"\ntimeout_ms = 1000\n"
    );
    let d = daemon_with_sinks(dir.path(), &sinks, &[]);
    // Past the five hostile answers, batches are accepted again.
    wait_until("an accepted batch", WAIT, || {
        seen.load(Ordering::SeqCst) >= 6
    });
    let m = metrics(mport);
    let series = |name: &str| format!("{name}{{sink=\"hostile\",type=\"http\"}}");
    assert_eq!(
        sample(
            &m,
            "observer_sink_errors_total{sink=\"hostile\",type=\"http\",reason=\"response\"}"
        ),
        5,
        "{m}"
    );
    assert_eq!(sample(&m, &series("observer_sink_retries_total")), 5, "{m}");
    // Nothing panicked: the sink thread ran throughout.
    assert!(
        m.contains(&format!("{} 0\n", series("observer_sink_restarts_total"))),
        "{m}"
    );
    let db = d.store();
    d.stop();
    let want = stored_records(&db);
    let got: BTreeSet<String> = got.lock().unwrap().iter().cloned().collect();
    assert_eq!(got, want);
}

/// An HTTPS receiver (rustls) that takes batches carrying `token`.
fn tls_receiver(pki: &Path, token: &'static str) -> (u16, Arc<Mutex<Vec<String>>>) {
    use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(pki.join("server.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(pki.join("server.key")).unwrap();
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(sock) = conn else { return };
            let (config, g) = (config.clone(), g.clone());
            std::thread::spawn(move || {
                let tls = rustls::ServerConnection::new(config).unwrap();
                let mut r = BufReader::new(rustls::StreamOwned::new(tls, sock));
                while let Some(req) = read_request(&mut r) {
                    assert_eq!(req.headers["authorization"], format!("Bearer {token}"));
                    g.lock().unwrap().extend(records_of(&req));
                    if r.get_mut()
                        .write_all(OK)
                        .and_then(|()| r.get_mut().flush())
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (port, got)
}

/// What a proxy saw: CONNECT request lines with their Proxy-Authorization,
/// and every byte it relayed from the client into tunnels.
#[derive(Default)]
struct ProxyLog {
    connects: Vec<(String, Option<String>)>,
    relayed: Vec<u8>,
}

/// A CONNECT proxy; with `auth`, a CONNECT without that
/// Proxy-Authorization value is answered 407.
fn connect_proxy(auth: Option<&'static str>) -> (u16, Arc<Mutex<ProxyLog>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = Arc::new(Mutex::new(ProxyLog::default()));
    let l = log.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut client) = conn else { return };
            let l = l.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(client.try_clone().unwrap());
                let Some(req) = read_request(&mut r) else {
                    return;
                };
                let given = req.headers.get("proxy-authorization").cloned();
                l.lock()
                    .unwrap()
                    .connects
                    .push((req.line.clone(), given.clone()));
                let target = req.line.split_whitespace().nth(1).unwrap_or("").to_string();
                if !req.line.starts_with("CONNECT ") || (auth.is_some() && given.as_deref() != auth)
                {
                    let _ = client.write_all(
                        b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n",
                    );
                    return;
                }
                let Ok(mut upstream) = TcpStream::connect(&target) else {
                    return;
                };
                let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
                let (mut up_r, mut down_w) =
                    (upstream.try_clone().unwrap(), client.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut up_r, &mut down_w);
                    let _ = down_w.shutdown(Shutdown::Write);
                });
                let mut buf = [0u8; 16384];
                loop {
                    match r.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            l.lock().unwrap().relayed.extend_from_slice(&buf[..n]);
                            if upstream.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = upstream.shutdown(Shutdown::Write);
            });
        }
    });
    (port, log)
}

#[test]
fn https_through_connect_proxies_from_config_and_environment() {
    const TOKEN: &str = "tok-7f3a-never-in-the-clear";
    let dir = tempfile::tempdir().unwrap();
    let pki: PathBuf = dir.path().join("pki");
    std::fs::create_dir(&pki).unwrap();
    pki::make_pki(&pki);
    let token = dir.path().join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let (port_a, got_a) = tls_receiver(&pki, TOKEN);
    let (port_b, got_b) = tls_receiver(&pki, TOKEN);
    // base64("alice:s3cr%t"): the URL's %25 is decoded before encoding.
    let (proxy_cfg, log_cfg) = connect_proxy(Some("Basic YWxpY2U6czNjciV0"));
    let (proxy_env, log_env) = connect_proxy(None);
    let sink = |name: &str, host: &str, port: u16, extra: &str| {
        format!(
            "[[sinks]]\nname = \"{name}\"\ntype = \"http\"\nretry_initial_ms = 100\nretry_max_ms = 400\n\
             [sinks.http]\nurl = \"https://{host}:{port}/{name}\"\nencoding = \"json\"\ntoken_file = \"{}\"\n{extra}\
             [sinks.http.tls]\nca_file = \"{}\"\n",
            token.display(),
            pki.join("ca.pem").display()
        )
    };
    let sinks = format!(
        "[forwarding]\nflush_timeout_ms = 15000\n{}{}",
        // The sink's proxy key wins over HTTPS_PROXY.
        sink(
            "viacfg",
            "127.0.0.1",
            port_a,
            &format!("proxy = \"http://alice:s3cr%25t@127.0.0.1:{proxy_cfg}\"\n")
        ),
        sink("viaenv", "localhost", port_b, ""),
    );
    let env_proxy = format!("http://127.0.0.1:{proxy_env}");
    let d = daemon_with_sinks(
        dir.path(),
        &sinks,
        &[
            ("HTTPS_PROXY", &env_proxy),
            ("NO_PROXY", "example.invalid,10.0.0.1"),
        ],
    );
    let db = d.store();
    let stderr = d.stderr.clone();
    d.stop();
    let want = stored_records(&db);
    for got in [&got_a, &got_b] {
        let got: BTreeSet<String> = got.lock().unwrap().iter().cloned().collect();
        assert_eq!(got, want);
    }
    let (cfg, env) = (log_cfg.lock().unwrap(), log_env.lock().unwrap());
    assert!(!cfg.connects.is_empty() && !env.connects.is_empty());
    for (line, auth) in &cfg.connects {
        assert_eq!(line, &format!("CONNECT 127.0.0.1:{port_a} HTTP/1.1"));
        assert_eq!(auth.as_deref(), Some("Basic YWxpY2U6czNjciV0"));
    }
    for (line, auth) in &env.connects {
        assert_eq!(line, &format!("CONNECT localhost:{port_b} HTTP/1.1"));
        assert_eq!(auth, &None);
    }
    // TLS end to end: the proxies never saw the token, which went through
    // both tunnels.
    for log in [&cfg, &env] {
        assert!(!log.relayed.is_empty());
        assert!(!log
            .relayed
            .windows(TOKEN.len())
            .any(|w| w == TOKEN.as_bytes()));
    }
    // The proxy password never reaches a log line.
    let text = std::fs::read_to_string(stderr).unwrap();
    assert!(!text.contains("s3cr"), "{text}");
}
