//! Forwarding to real receivers: rsyslog (apt) over TCP and over TLS with
//! a test CA and a client certificate, a Splunk HEC / Elastic `_bulk` HTTP
//! receiver, the rotating file sink, a 30 s receiver outage under load,
//! and a daemon killed mid-delivery. Every receipt the store holds must
//! arrive, in log order, with the store's hash, chain, seq and risk; the
//! store's checkpoints arrive too.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]

use std::{
    collections::{BTreeMap, HashSet},
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use observer_daemon::receipt::store::Store;
use observer_testkit::{
    scrape::{metrics, sample},
    *,
};
use serde_json::{json, Value};

/// One record of the forwarded stream, as the store says it must be.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Rec {
    Receipt {
        index: u64,
        hash: String,
        chain: String,
        seq: u64,
        risk: String,
    },
    Checkpoint {
        size: u64,
        root: String,
    },
}

/// The store's receipts with each checkpoint of size n right after
/// receipt n - 1, and the bodies a `receipt`-format record must carry.
fn expected(db: &Path) -> (Vec<Rec>, BTreeMap<String, Value>) {
    let receipts = stored_receipts(db);
    let store = Store::open_read_only(db).unwrap();
    let checkpoints = store.checkpoints().unwrap();
    let mut out = Vec::new();
    let mut bodies = BTreeMap::new();
    let mut cps = checkpoints.iter().peekable();
    for r in &receipts {
        out.push(Rec::Receipt {
            index: r.leaf,
            hash: r.hash.clone(),
            chain: r.chain.clone(),
            seq: r.seq,
            risk: r.payload["risk_class"].as_str().unwrap().to_string(),
        });
        bodies.insert(
            r.hash.clone(),
            serde_json::json!({
                "receipt": serde_json::from_str::<Value>(&r.envelope).unwrap(),
                "context": r.context.clone().unwrap_or(Value::Null),
            }),
        );
        while let Some(c) = cps.next_if(|c| c.size == r.leaf + 1) {
            out.push(Rec::Checkpoint {
                size: c.size,
                root: hex::encode(&c.root),
            });
            bodies.insert(
                format!("checkpoint-{}", c.size),
                Value::String(c.note.clone()),
            );
        }
    }
    assert!(cps.next().is_none(), "every checkpoint follows a receipt");
    (out, bodies)
}

/// Parsed RFC 5424 message.
#[derive(Debug)]
struct Syslog {
    pri: u8,
    timestamp: String,
    app: String,
    msgid: String,
    sd_id: String,
    sd: BTreeMap<String, String>,
    msg: String,
}

/// A strict RFC 5424 parser for what observer sends: one SD-ELEMENT.
fn parse_5424(line: &str) -> Syslog {
    let rest = line
        .strip_prefix('<')
        .unwrap_or_else(|| panic!("no PRI: {line}"));
    let (pri, rest) = rest.split_once('>').unwrap();
    let pri: u8 = pri.parse().unwrap();
    assert!(pri < 192, "{line}");
    let rest = rest
        .strip_prefix("1 ")
        .unwrap_or_else(|| panic!("VERSION: {line}"));
    let mut fields = rest.splitn(6, ' ');
    let timestamp = fields.next().unwrap().to_string();
    let host = fields.next().unwrap();
    let app = fields.next().unwrap().to_string();
    let procid = fields.next().unwrap();
    let msgid = fields.next().unwrap().to_string();
    let rest = fields.next().unwrap();
    for (f, max) in [
        (host, 255),
        (app.as_str(), 48),
        (procid, 128),
        (msgid.as_str(), 32),
    ] {
        assert!(
            !f.is_empty() && f.len() <= max && f.bytes().all(|b| (33..=126).contains(&b)),
            "header field {f:?}: {line}"
        );
    }
    // TIMESTAMP: full-date "T" full-time, at most 6 fractional digits.
    let frac = timestamp
        .split_once('.')
        .map_or("", |(_, f)| f.trim_end_matches('Z'));
    assert!(timestamp.ends_with('Z') && frac.len() <= 6, "{timestamp}");
    humantime::parse_rfc3339(&timestamp).unwrap_or_else(|e| panic!("{timestamp}: {e}"));
    let rest = rest
        .strip_prefix('[')
        .unwrap_or_else(|| panic!("no SD: {line}"));
    let (sd_id, mut rest) = rest.split_once(' ').unwrap();
    let mut sd = BTreeMap::new();
    loop {
        if let Some(r) = rest.strip_prefix("] ") {
            rest = r;
            break;
        }
        let r = rest.trim_start_matches(' ');
        let (name, r) = r.split_once("=\"").unwrap();
        let mut value = String::new();
        let mut chars = r.char_indices();
        let end = loop {
            let (i, c) = chars.next().expect("unterminated PARAM-VALUE");
            match c {
                '\\' => value.push(chars.next().unwrap().1),
                '"' => break i,
                c => value.push(c),
            }
        };
        sd.insert(name.to_string(), value);
        rest = &r[end + 1..];
    }
    Syslog {
        pri,
        timestamp,
        app,
        msgid,
        sd_id: sd_id.to_string(),
        sd,
        msg: rest.to_string(),
    }
}

fn rec_of(m: &Syslog) -> Rec {
    match m.sd_id.as_str() {
        "receipt@32473" => Rec::Receipt {
            index: m.sd["index"].parse().unwrap(),
            hash: m.sd["hash"].clone(),
            chain: m.sd["chain"].clone(),
            seq: m.sd["seq"].parse().unwrap(),
            risk: m.sd["risk"].clone(),
        },
        "checkpoint@32473" => Rec::Checkpoint {
            size: m.sd["size"].parse().unwrap(),
            root: m.sd["root"].clone(),
        },
        other => panic!("unexpected SD-ID {other}"),
    }
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A private rsyslogd (`-n -f conf -i pidfile`) writing every message it
/// receives, raw and JSON-escaped, one per line. Killed when dropped.
struct Rsyslog {
    dir: PathBuf,
    port: u16,
    mode: Mode,
    child: Option<Child>,
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Tcp,
    Tls,
    Udp,
}

/// True once something listens on 127.0.0.1:`port`/udp.
fn udp_bound(port: u16) -> bool {
    let needle = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/udp")
        .unwrap()
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(needle.as_str()))
}

impl Rsyslog {
    fn start(dir: &Path, port: u16, mode: Mode) -> Rsyslog {
        let mut r = Rsyslog {
            dir: dir.to_owned(),
            port,
            mode,
            child: None,
        };
        r.restart();
        r
    }

    fn received_path(&self) -> PathBuf {
        self.dir.join("received.log")
    }

    fn restart(&mut self) {
        assert!(self.child.is_none());
        let d = self.dir.display();
        let (global_tls, module, input) = if self.mode == Mode::Tls {
            (
                format!(
                    " DefaultNetstreamDriver=\"gtls\" DefaultNetstreamDriverCAFile=\"{d}/ca.pem\" \
                     DefaultNetstreamDriverCertFile=\"{d}/server.pem\" DefaultNetstreamDriverKeyFile=\"{d}/server.key\""
                ),
                // x509/certvalid: the client must present a certificate
                // signed by the test CA.
                "module(load=\"imtcp\" StreamDriver.Name=\"gtls\" StreamDriver.Mode=\"1\" StreamDriver.AuthMode=\"x509/certvalid\")",
                "imtcp\"",
            )
        } else if self.mode == Mode::Udp {
            // A receive buffer that holds a whole batch of datagrams.
            (
                String::new(),
                "module(load=\"imudp\")",
                "imudp\" rcvBufSize=\"16m\"",
            )
        } else {
            (String::new(), "module(load=\"imtcp\")", "imtcp\"")
        };
        let conf = format!(
            "global(workDirectory=\"{d}\" maxMessageSize=\"1m\" parser.escapeControlCharactersOnReceive=\"off\"{global_tls})\n\
             {module}\n\
             input(type=\"{input} port=\"{port}\" address=\"127.0.0.1\")\n\
             template(name=\"raw\" type=\"string\" string=\"%rawmsg:::json%\\n\")\n\
             action(type=\"omfile\" file=\"{d}/received.log\" template=\"raw\")\n",
            port = self.port
        );
        let conf_path = self.dir.join("rsyslog.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new("rsyslogd")
            .arg("-n")
            .arg("-f")
            .arg(&conf_path)
            .arg("-i")
            .arg(self.dir.join("rsyslog.pid"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("rsyslog.stderr")).unwrap())
            .spawn()
            .expect("rsyslogd (apt install rsyslog rsyslog-gnutls)");
        self.child = Some(child);
        let (port, mode) = (self.port, self.mode);
        wait_until("rsyslogd to listen", WAIT, || match mode {
            Mode::Udp => udp_bound(port),
            _ => TcpStream::connect(("127.0.0.1", port)).is_ok(),
        });
    }

    /// SIGTERM and wait: rsyslog writes out what it read, then exits.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            )
            .unwrap();
            c.wait().unwrap();
        }
    }

    /// Every message received so far, parsed.
    fn received(&self) -> Vec<Syslog> {
        let text = std::fs::read_to_string(self.received_path()).unwrap_or_default();
        let complete = text.rfind('\n').map_or("", |e| &text[..=e]);
        complete
            .lines()
            .map(|l| {
                let raw: String = serde_json::from_str(&format!("\"{l}\"")).unwrap();
                parse_5424(&raw)
            })
            .collect()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn agent_with_sinks(dir: &Path, sinks: &str) -> (PathBuf, Daemon) {
    let exe = copy_executable("/bin/sh", dir, &unique("fwd-agent"));
    let d = Daemon::start_in(
        StateDir::Shared(dir.to_owned()),
        &agent_config("fwd-agent", &exe, sinks),
    );
    (exe, d)
}

/// Runs the agent: `n` execs of /bin/true, then exits.
fn agent_execs(exe: &Path, n: usize) {
    let status = Command::new(exe)
        .args([
            "-c",
            &format!("i=0; while [ $i -lt {n} ]; do /bin/true; i=$((i+1)); done"),
        ])
        .status()
        .unwrap();
    assert!(status.success());
}

/// The received records must be the expected stream: exactly once, in
/// order, with the `receipt` format's bodies equal to the store's.
fn assert_exact_stream(got: &[Syslog], db: &Path) {
    let (want, bodies) = expected(db);
    let recs: Vec<Rec> = got.iter().map(rec_of).collect();
    assert_eq!(recs.len(), want.len(), "records received vs stored");
    assert_eq!(recs, want);
    for m in got {
        assert_eq!(m.app, "observerd");
        let body: Value = serde_json::from_str(&m.msg).unwrap();
        assert_eq!(body["capture_topology"], "passive_telemetry");
        match rec_of(m) {
            Rec::Receipt { hash, risk, .. } => {
                let b = &bodies[&hash];
                assert_eq!(body["receipt"], b["receipt"]);
                assert_eq!(body["context"], b["context"]);
                assert_eq!(body["receipt_hash"], hash.as_str());
                assert_eq!(
                    m.msgid,
                    body["receipt"]["payload"]["action_type"].as_str().unwrap()
                );
                let severity = m.pri % 8;
                assert_eq!(m.pri / 8, 16, "local0");
                assert_eq!(
                    severity,
                    match risk.as_str() {
                        "high" => 4,
                        "medium" => 5,
                        _ => 6,
                    }
                );
                let issued = body["receipt"]["payload"]["issued_at"].as_str().unwrap();
                assert_eq!(m.timestamp, format!("{}Z", &issued[..26]));
            }
            Rec::Checkpoint { size, root } => {
                assert_eq!(m.msgid, "observer.checkpoint");
                assert_eq!(
                    body["checkpoint"]["note"],
                    bodies[&format!("checkpoint-{size}")]
                );
                assert_eq!(body["checkpoint"]["root"], root.as_str());
            }
        }
    }
}

fn syslog_sink(name: &str, port: u16, extra: &str) -> String {
    format!(
        "[forwarding]\nflush_timeout_ms = 15000\n[[sinks]]\nname = \"{name}\"\ntype = \"syslog\"\nretry_initial_ms = 100\nretry_max_ms = 1000\n[sinks.syslog]\naddress = \"127.0.0.1:{port}\"\nack_delay_ms = 300\n{extra}\n"
    )
}

#[test]
fn rsyslog_tcp_receives_every_receipt_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let rs_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let rsyslog = Rsyslog::start(rs_dir.path(), port, Mode::Tcp);
    let mport = free_port();
    let (exe, d) = agent_with_sinks(
        dir.path(),
        &format!(
            "[metrics]\nlisten = \"127.0.0.1:{mport}\"\n{}{}",
            syslog_sink("rsyslog", port, ""),
            // A second sink with a filter no receipt matches: its cursor
            // follows the log, and only checkpoints pass.
            "[[sinks]]\nname = \"none\"\ntype = \"file\"\n[sinks.filter]\nrisks = [\"high\"]\nagents = [\"nobody\"]\n[sinks.file]\npath = \"@DIR@/filtered.jsonl\"\n"
        ),
    );
    agent_execs(&exe, 30);
    let db = d.store();
    // Delivered and confirmed while running, before any stop.
    wait_until("the agent's exits committed", WAIT, || {
        stored_receipts_of(&db, "process.exit").len() > 30
    });
    let n = stored_receipts(&db).len() as u64;
    assert!(n > 60, "{n} receipts");
    wait_until("delivery of the agent's receipts", WAIT, || {
        sample(
            &metrics(mport),
            "observer_sink_delivered_total{sink=\"rsyslog\",type=\"syslog\"}",
        ) >= n
    });
    assert!(rsyslog.received().len() as u64 >= n);
    let m = metrics(mport);
    assert_eq!(
        sample(
            &m,
            "observer_sink_resent_total{sink=\"rsyslog\",type=\"syslog\"}"
        ),
        0,
        "{m}"
    );
    wait_until("the filtering sink's cursor", WAIT, || {
        let m = metrics(mport);
        sample(&m, "observer_sink_cursor{sink=\"none\",type=\"file\"}") >= n
            && sample(
                &m,
                "observer_sink_filtered_total{sink=\"none\",type=\"file\"}",
            ) >= n
    });
    d.stop();
    // The stop's receipts and the final checkpoint, flushed at SIGTERM.
    let final_size = Store::open_read_only(&db)
        .unwrap()
        .latest_checkpoint()
        .unwrap()
        .unwrap()
        .size;
    assert_eq!(
        final_size,
        stored_receipts(&db).len() as u64,
        "a final checkpoint covers the log"
    );
    wait_until("the final checkpoint", WAIT, || {
        rsyslog
            .received()
            .last()
            .is_some_and(|m| m.sd.get("size") == Some(&final_size.to_string()))
    });
    let got = rsyslog.received();
    assert_exact_stream(&got, &db);
    // The forwarded final checkpoint verifies the host log (a truncated
    // log would fail against it).
    let note: Value = serde_json::from_str(&got.last().unwrap().msg).unwrap();
    let note = note["checkpoint"]["note"].as_str().unwrap().to_string();
    let report = verify_store(&db, &dir.path().join("master.seed"), vec![note]);
    assert!(report.ok(), "{:#?}", report.failures);
    let filtered: Vec<u64> = std::fs::read_to_string(dir.path().join("filtered.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["record"], "checkpoint", "{l}");
            v["checkpoint"]["size"].as_u64().unwrap()
        })
        .collect();
    let stored_cps: Vec<u64> = Store::open_read_only(&db)
        .unwrap()
        .checkpoints()
        .unwrap()
        .iter()
        .map(|c| c.size)
        .collect();
    assert_eq!(filtered, stored_cps, "checkpoints pass every filter");
    let cursor = std::fs::read_to_string(dir.path().join("sinks/rsyslog.cursor")).unwrap();
    assert_eq!(
        cursor,
        format!("next_leaf={final_size}\ncheckpoint_size={final_size}\n")
    );
}

/// `max_unconfirmed` is a hard window: with confirmation held off (a
/// 10-minute `ack_delay_ms`), a sink sends while a whole batch fits in the
/// window and then nothing more, so one failure can never resend more.
///
/// A read is `batch_max` receipts plus the checkpoints between them, and how
/// many checkpoints the log holds depends on timing (one per second while
/// receipts arrive): so the test pins the window's bounds, not a count of
/// batches. The runner reads again while `sent + batch_max <=
/// max_unconfirmed`, so it stops with 15 < sent <= 25 records.
#[test]
fn syslog_sink_sends_no_more_than_max_unconfirmed_records_before_confirmation() {
    let dir = tempfile::tempdir().unwrap();
    let rs_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let rsyslog = Rsyslog::start(rs_dir.path(), port, Mode::Tcp);
    let mport = free_port();
    let (exe, d) = agent_with_sinks(
        dir.path(),
        &format!(
            "[metrics]\nlisten = \"127.0.0.1:{mport}\"\n[forwarding]\nflush_timeout_ms = 1000\n\
             [[sinks]]\nname = \"window\"\ntype = \"syslog\"\nbatch_max = 10\nmax_unconfirmed = 25\n\
             retry_initial_ms = 100\nretry_max_ms = 1000\n\
             [sinks.syslog]\naddress = \"127.0.0.1:{port}\"\nack_delay_ms = 600000\n"
        ),
    );
    agent_execs(&exe, 20);
    let db = d.store();
    wait_until("the agent's exits committed", WAIT, || {
        stored_receipts_of(&db, "process.exit").len() > 20
    });
    wait_until(
        "more than max_unconfirmed - batch_max records",
        2 * WAIT,
        || rsyslog.received().len() > 15,
    );
    // Another batch would pass the window; give it every chance to show up
    // if the runner ignored the window.
    std::thread::sleep(Duration::from_secs(2));
    let recs: Vec<Rec> = rsyslog.received().iter().map(rec_of).collect();
    let (want, _) = expected(&db);
    assert!(
        recs.len() > 15 && recs.len() <= 25,
        "{} records sent with none confirmed, window 25, batch 10",
        recs.len()
    );
    assert!(want.len() > 40, "the log holds more: {}", want.len());
    assert_eq!(
        recs,
        want[..recs.len()],
        "the log's first records, in order"
    );
    let m = metrics(mport);
    let series = |name: &str| format!("{name}{{sink=\"window\",type=\"syslog\"}}");
    assert_eq!(
        sample(&m, &series("observer_sink_delivered_total")),
        0,
        "{m}"
    );
    assert!(
        sample(&m, &series("observer_sink_backlog")) > 15,
        "the rest waits: {m}"
    );
    d.stop();
}

#[test]
fn rsyslog_tls_with_client_certificate_receives_ocsf() {
    let dir = tempfile::tempdir().unwrap();
    let rs_dir = tempfile::tempdir().unwrap();
    pki::make_pki(rs_dir.path());
    let port = free_port();
    let rsyslog = Rsyslog::start(rs_dir.path(), port, Mode::Tls);
    let p = rs_dir.path().display();
    let tls = format!(
        "transport = \"tls\"\n[sinks.syslog.tls]\nca_file = \"{p}/ca.pem\"\ncert_file = \"{p}/client.pem\"\nkey_file = \"{p}/client.key\"\nserver_name = \"localhost\"\n"
    );
    let (exe, d) = agent_with_sinks(
        dir.path(),
        &syslog_sink("tls", port, &tls)
            .replace("type = \"syslog\"", "type = \"syslog\"\nformat = \"ocsf\""),
    );
    agent_execs(&exe, 10);
    let db = d.store();
    d.stop();
    let final_size = stored_receipts(&db).len().to_string();
    wait_until("the final checkpoint over TLS", WAIT, || {
        rsyslog
            .received()
            .last()
            .is_some_and(|m| m.sd.get("size") == Some(&final_size))
    });
    let got = rsyslog.received();
    let (want, _) = expected(&db);
    assert_eq!(got.iter().map(rec_of).collect::<Vec<_>>(), want);
    let stored = stored_receipts(&db);
    let mut execs = 0;
    for (m, r) in got
        .iter()
        .filter(|m| m.sd_id == "receipt@32473")
        .zip(&stored)
    {
        let ev: Value = serde_json::from_str(&m.msg).unwrap();
        assert_eq!(ev["capture_topology"], "passive_telemetry");
        assert_eq!(ev["metadata"]["uid"], r.hash.as_str());
        assert_eq!(ev["metadata"]["sequence"], r.seq);
        let signature = &serde_json::from_str::<Value>(&r.envelope).unwrap()["signature"];
        assert_eq!(
            ev["unmapped"]["observer"]["signer"],
            json!({"alg": signature["alg"], "kid": signature["kid"]})
        );
        assert_eq!(ev["raw_data"], r.envelope.as_str());
        if r.payload["action_type"] == "process.exec" {
            execs += 1;
            assert_eq!(ev["class_uid"], 1007);
            assert_eq!(ev["type_uid"], 100701);
            let ctx = r.context.as_ref().unwrap();
            assert_eq!(ev["process"]["pid"], ctx["process"]["pid"]);
            assert_eq!(ev["process"]["file"]["path"], ctx["process"]["exe"]);
        }
    }
    assert!(execs >= 10, "{execs} exec receipts");

    // The same collector refuses a client without a certificate, and a
    // sink that trusts another CA refuses the collector: nothing is
    // delivered, the errors are counted by reason.
    let other = tempfile::tempdir().unwrap();
    pki::make_pki(other.path());
    let mport = free_port();
    let bad = format!(
        "transport = \"tls\"\n[sinks.syslog.tls]\nca_file = \"{}/ca.pem\"\nserver_name = \"localhost\"\n",
        other.path().display()
    );
    let dir2 = tempfile::tempdir().unwrap();
    let before = rsyslog.received().len();
    let (_exe, d2) = agent_with_sinks(
        dir2.path(),
        &format!(
            "[metrics]\nlisten = \"127.0.0.1:{mport}\"\n{}",
            syslog_sink("wrongca", port, &bad)
        ),
    );
    wait_until("TLS errors counted", WAIT, || {
        sample(
            &metrics(mport),
            "observer_sink_errors_total{sink=\"wrongca\",type=\"syslog\",reason=\"tls\"}",
        ) >= 2
    });
    let m = metrics(mport);
    assert_eq!(
        sample(
            &m,
            "observer_sink_delivered_total{sink=\"wrongca\",type=\"syslog\"}"
        ),
        0
    );
    assert!(
        sample(
            &m,
            "observer_sink_backlog{sink=\"wrongca\",type=\"syslog\"}"
        ) > 0,
        "{m}"
    );
    drop(d2);
    assert_eq!(rsyslog.received().len(), before);
    assert!(!dir2.path().join("sinks/wrongca.cursor").exists());
}

#[test]
fn rsyslog_udp_receives_cloudevents() {
    let dir = tempfile::tempdir().unwrap();
    let rs_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let rsyslog = Rsyslog::start(rs_dir.path(), port, Mode::Udp);
    // Small batches: UDP has no flow control, the receiver's buffer must
    // hold what one batch sends.
    let sinks = syslog_sink("udp", port, "transport = \"udp\"").replace(
        "type = \"syslog\"",
        "type = \"syslog\"\nformat = \"cloudevents\"\nbatch_max = 20",
    );
    let (exe, d) = agent_with_sinks(dir.path(), &sinks);
    agent_execs(&exe, 5);
    let db = d.store();
    d.stop();
    let final_size = stored_receipts(&db).len().to_string();
    wait_until("the final checkpoint over UDP", WAIT, || {
        rsyslog
            .received()
            .last()
            .is_some_and(|m| m.sd.get("size") == Some(&final_size))
    });
    let got = rsyslog.received();
    let (want, _) = expected(&db);
    assert_eq!(got.iter().map(rec_of).collect::<Vec<_>>(), want);
    for (m, r) in got
        .iter()
        .filter(|m| m.sd_id == "receipt@32473")
        .zip(stored_receipts(&db))
    {
        let ev: Value = serde_json::from_str(&m.msg).unwrap();
        assert_eq!(ev["specversion"], "1.0");
        assert_eq!(ev["id"], r.hash.as_str());
        assert_eq!(ev["source"], r.chain.as_str());
        assert_eq!(
            ev["type"],
            format!(
                "dev.observer.receipt.{}",
                r.payload["action_type"].as_str().unwrap()
            )
        );
        assert_eq!(ev["time"], r.payload["issued_at"]);
        assert_eq!(ev["data"]["capture_topology"], "passive_telemetry");
        assert_eq!(
            ev["data"]["receipt"],
            serde_json::from_str::<Value>(&r.envelope).unwrap()
        );
    }
}

/// What the HTTP receiver saw.
#[derive(Default)]
struct HttpLog {
    /// (path, gunzipped body) of every accepted request.
    accepted: Vec<(String, Vec<u8>)>,
    refused: u64,
    gzip_seen: bool,
}

/// A real HTTP/1.1 server (keep-alive) taking Splunk HEC and Elastic
/// `_bulk`: checks the token, gunzips, answers like the real ones.
struct HttpReceiver {
    port: u16,
    token: Arc<Mutex<String>>,
    log: Arc<Mutex<HttpLog>>,
}

impl HttpReceiver {
    fn start(token: &str) -> HttpReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let token = Arc::new(Mutex::new(token.to_string()));
        let log = Arc::new(Mutex::new(HttpLog::default()));
        let (t, l) = (token.clone(), log.clone());
        // The listener thread ends with the test process.
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let (t, l) = (t.clone(), l.clone());
                std::thread::spawn(move || serve_http(conn, &t, &l));
            }
        });
        HttpReceiver { port, token, log }
    }
}

fn serve_http(conn: TcpStream, token: &Mutex<String>, log: &Mutex<HttpLog>) {
    let mut r = BufReader::new(conn.try_clone().unwrap());
    let mut w = conn;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut headers = BTreeMap::new();
        loop {
            let mut h = String::new();
            r.read_line(&mut h).unwrap();
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap();
            headers.insert(k.to_ascii_lowercase(), v.trim().to_string());
        }
        let len: usize = headers["content-length"].parse().unwrap();
        let mut body = vec![0; len];
        r.read_exact(&mut body).unwrap();
        let want = token.lock().unwrap().clone();
        let scheme = if path.starts_with("/services/collector") {
            "Splunk"
        } else {
            "Bearer"
        };
        let authorized = headers.get("authorization") == Some(&format!("{scheme} {want}"));
        let (status, answer) = if !authorized {
            log.lock().unwrap().refused += 1;
            (
                "401 Unauthorized",
                r#"{"text":"Invalid token","code":4}"#.to_string(),
            )
        } else {
            let gz = headers.get("content-encoding").map(String::as_str) == Some("gzip");
            let mut plain = Vec::new();
            if gz {
                flate2::read::GzDecoder::new(&body[..])
                    .read_to_end(&mut plain)
                    .unwrap();
            } else {
                plain = body;
            }
            let mut l = log.lock().unwrap();
            l.gzip_seen |= gz;
            let answer = if path == "/_bulk" {
                let n = plain
                    .split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .count()
                    / 2;
                let items: Vec<Value> = (0..n)
                    .map(|_| serde_json::json!({"create": {"status": 201}}))
                    .collect();
                serde_json::json!({"took": 1, "errors": false, "items": items}).to_string()
            } else {
                r#"{"text":"Success","code":0}"#.to_string()
            };
            l.accepted.push((path, plain));
            ("200 OK", answer)
        };
        let resp = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if w.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

/// The records a receiver got for one sink, as `Rec`s (receipt format).
fn http_recs(log: &HttpLog, path: &str) -> Vec<Rec> {
    let mut out = Vec::new();
    for (p, body) in log.accepted.iter().filter(|(p, _)| p == path) {
        let text = String::from_utf8(body.clone()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let docs: Vec<&Value> = if p == "/_bulk" {
            for pair in lines.chunks(2) {
                let id = pair[0]["create"]["_id"].as_str().unwrap();
                let doc = &pair[1];
                let expect = doc["receipt_hash"]
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| format!("checkpoint-{}", doc["checkpoint"]["size"]));
                assert_eq!(id, expect);
                assert_eq!(pair[0]["create"]["_index"], "observer");
            }
            lines.iter().skip(1).step_by(2).collect()
        } else {
            for ev in &lines {
                assert_eq!(ev["sourcetype"], "observer:receipt");
                assert!(ev["time"].as_f64().unwrap() > 1.7e9);
            }
            lines.iter().map(|l| &l["event"]).collect()
        };
        for d in docs {
            assert_eq!(d["capture_topology"], "passive_telemetry");
            out.push(match d["record"].as_str().unwrap() {
                "receipt" => Rec::Receipt {
                    index: d["log_index"].as_u64().unwrap(),
                    hash: d["receipt_hash"].as_str().unwrap().into(),
                    chain: d["receipt"]["payload"]["issuer_id"]
                        .as_str()
                        .unwrap()
                        .into(),
                    seq: d["receipt"]["payload"]["seq"].as_u64().unwrap(),
                    risk: d["receipt"]["payload"]["risk_class"]
                        .as_str()
                        .unwrap()
                        .into(),
                },
                _ => Rec::Checkpoint {
                    size: d["checkpoint"]["size"].as_u64().unwrap(),
                    root: d["checkpoint"]["root"].as_str().unwrap().into(),
                },
            });
        }
    }
    out
}

#[test]
fn http_splunk_hec_and_elastic_bulk_with_token_and_gzip() {
    let recv = HttpReceiver::start("the-right-token");
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "a-stale-token\n").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mport = free_port();
    let sinks = format!(
        "[metrics]\nlisten = \"127.0.0.1:{mport}\"\n[forwarding]\nflush_timeout_ms = 15000\n\
         [[sinks]]\nname = \"hec\"\ntype = \"http\"\nbatch_max = 7\nretry_initial_ms = 100\nretry_max_ms = 400\n\
         [sinks.http]\nurl = \"http://127.0.0.1:{port}/services/collector/event\"\nencoding = \"splunk_hec\"\ntoken_file = \"{t}\"\nallow_token_over_http = true\n\
         [[sinks]]\nname = \"bulk\"\ntype = \"http\"\nretry_initial_ms = 100\nretry_max_ms = 400\n\
         [sinks.http]\nurl = \"http://127.0.0.1:{port}/_bulk\"\nencoding = \"elastic_bulk\"\ntoken_file = \"{t}\"\nallow_token_over_http = true\nindex = \"observer\"\n",
        port = recv.port,
        t = token.display()
    );
    let (exe, d) = agent_with_sinks(dir.path(), &sinks);
    agent_execs(&exe, 20);
    // The receiver refuses the stale token: retried, counted, and the
    // cursors do not move.
    wait_until("401s", WAIT, || recv.log.lock().unwrap().refused >= 6);
    let m = metrics(mport);
    for s in ["hec", "bulk"] {
        assert!(
            sample(&m, &format!("observer_sink_errors_total{{sink=\"{s}\",type=\"http\",reason=\"unauthorized\"}}")) >= 2,
            "{m}"
        );
        assert!(
            sample(
                &m,
                &format!("observer_sink_retries_total{{sink=\"{s}\",type=\"http\"}}")
            ) >= 2
        );
        assert_eq!(
            sample(
                &m,
                &format!("observer_sink_delivered_total{{sink=\"{s}\",type=\"http\"}}")
            ),
            0
        );
        assert_eq!(
            sample(
                &m,
                &format!("observer_sink_cursor{{sink=\"{s}\",type=\"http\"}}")
            ),
            0
        );
        assert!(!dir.path().join(format!("sinks/{s}.cursor")).exists());
    }
    assert!(recv.log.lock().unwrap().accepted.is_empty());
    // The receiver now takes the token the daemon has (a rotated token).
    *recv.token.lock().unwrap() = "a-stale-token".into();
    agent_execs(&exe, 5);
    let db = d.store();
    d.stop();
    let (want, _) = expected(&db);
    wait_until("both sinks delivered", WAIT, || {
        let l = recv.log.lock().unwrap();
        http_recs(&l, "/services/collector/event").len() >= want.len()
            && http_recs(&l, "/_bulk").len() >= want.len()
    });
    let l = recv.log.lock().unwrap();
    assert!(l.gzip_seen);
    assert_eq!(http_recs(&l, "/services/collector/event"), want);
    assert_eq!(http_recs(&l, "/_bulk"), want);
    // HEC batches hold at most batch_max receipts (plus the checkpoints
    // they complete).
    assert!(l
        .accepted
        .iter()
        .filter(|(p, _)| p.starts_with("/services"))
        .all(|(_, b)| String::from_utf8_lossy(b)
            .lines()
            .filter(|l| l.contains(r#""record":"receipt""#))
            .count()
            <= 7));
}

#[test]
fn file_sink_rotates_and_keeps_max_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out/receipts.jsonl");
    let sinks = format!(
        "[forwarding]\nflush_timeout_ms = 15000\n[[sinks]]\nname = \"file\"\ntype = \"file\"\nbatch_max = 50\n\
         [sinks.file]\npath = \"{}\"\nmax_bytes = 65536\nmax_files = 3\n",
        out.display()
    );
    // A cursor left by another store, far past this log's end: reset to
    // the start (counted), so this log is forwarded whole.
    std::fs::create_dir_all(dir.path().join("sinks")).unwrap();
    std::fs::write(
        dir.path().join("sinks/file.cursor"),
        "next_leaf=1000000\ncheckpoint_size=999999\n",
    )
    .unwrap();
    let (exe, d) = agent_with_sinks(dir.path(), &sinks);
    agent_execs(&exe, 150);
    let db = d.store();
    let stderr = d.stderr.clone();
    d.stop();
    assert!(std::fs::read_to_string(&stderr)
        .unwrap()
        .contains("cursor 1000000 is past the end of the log"),);
    let (want, bodies) = expected(&db);
    let size = stored_receipts(&db).len();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("sinks/file.cursor")).unwrap(),
        format!("next_leaf={size}\ncheckpoint_size={size}\n")
    );
    let rotated = |n: u32| PathBuf::from(format!("{}.{n}", out.display()));
    assert!(rotated(3).exists(), "enough receipts for three rotations");
    assert!(!rotated(4).exists(), "max_files = 3");
    let mut kept = Vec::new();
    for p in [rotated(3), rotated(2), rotated(1), out.clone()] {
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.len() as u64 <= 65536,
            "{} is {} bytes",
            p.display(),
            text.len()
        );
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["capture_topology"], "passive_telemetry");
            let rec = if v["record"] == "receipt" {
                let hash = v["receipt_hash"].as_str().unwrap();
                assert_eq!(v["receipt"], bodies[hash]["receipt"]);
                assert_eq!(v["context"], bodies[hash]["context"]);
                Rec::Receipt {
                    index: v["log_index"].as_u64().unwrap(),
                    hash: hash.into(),
                    chain: v["receipt"]["payload"]["issuer_id"]
                        .as_str()
                        .unwrap()
                        .into(),
                    seq: v["receipt"]["payload"]["seq"].as_u64().unwrap(),
                    risk: v["receipt"]["payload"]["risk_class"]
                        .as_str()
                        .unwrap()
                        .into(),
                }
            } else {
                Rec::Checkpoint {
                    size: v["checkpoint"]["size"].as_u64().unwrap(),
                    root: v["checkpoint"]["root"].as_str().unwrap().into(),
                }
            };
            kept.push(rec);
        }
    }
    // What is kept is exactly the newest part of the stream; the oldest
    // file went away.
    assert!(kept.len() < want.len());
    assert_eq!(kept[..], want[want.len() - kept.len()..]);
}

use std::os::unix::fs::PermissionsExt;

/// First occurrences in order, and how many were duplicates.
fn dedup(recs: Vec<Rec>) -> (Vec<Rec>, usize) {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut dups = 0;
    for r in recs {
        if seen.insert(r.clone()) {
            out.push(r);
        } else {
            dups += 1;
        }
    }
    (out, dups)
}

/// An agent exec'ing in a loop until dropped.
struct Load(Child);

impl Load {
    fn start(exe: &Path) -> Load {
        Load(
            Command::new(exe)
                // About 10 execs a second, each with its exit and the
                // file opens of the dynamic loader: a steady load the
                // signers keep up with on a shared 2-core machine.
                .args(["-c", "while :; do /bin/true; sleep 0.1; done"])
                .spawn()
                .unwrap(),
        )
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn outage_of_30s_under_load_loses_nothing_and_never_blocks_capture() {
    let dir = tempfile::tempdir().unwrap();
    let rs_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut rsyslog = Rsyslog::start(rs_dir.path(), port, Mode::Tcp);
    let mport = free_port();
    let (exe, d) = agent_with_sinks(
        dir.path(),
        &format!(
            "[metrics]\nlisten = \"127.0.0.1:{mport}\"\n{}",
            syslog_sink("rsyslog", port, "").replace(
                "retry_max_ms = 1000",
                "retry_max_ms = 1000\nmax_unconfirmed = 1000"
            )
        ),
    );
    let db = d.store();
    let load = Load::start(&exe);
    wait_until("first deliveries", WAIT, || rsyslog.received().len() > 100);
    rsyslog.stop();
    let size_at_outage = stored_receipts(&db).len();
    std::thread::sleep(Duration::from_secs(30));
    let size_after_outage = stored_receipts(&db).len();
    let m = metrics(mport);
    // Capture went on: hundreds of receipts committed while the
    // collector was down, and they wait in the backlog.
    assert!(
        size_after_outage > size_at_outage + 300,
        "{size_at_outage} -> {size_after_outage}"
    );
    assert!(
        sample(
            &m,
            "observer_sink_backlog{sink=\"rsyslog\",type=\"syslog\"}"
        ) > 300,
        "{m}"
    );
    assert!(
        sample(
            &m,
            "observer_sink_retries_total{sink=\"rsyslog\",type=\"syslog\"}"
        ) > 0
    );
    rsyslog.restart();
    std::thread::sleep(Duration::from_secs(3));
    drop(load);
    let start = Instant::now();
    while sample(
        &metrics(mport),
        "observer_sink_backlog{sink=\"rsyslog\",type=\"syslog\"}",
    ) != 0
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "backlog not drained: {}\n{}",
            metrics(mport),
            d.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let m = metrics(mport);
    for line in m.lines().filter(|l| {
        l.starts_with("observer_kernel_dropped_total")
            || l.starts_with("observer_user_dropped_total")
    }) {
        assert!(line.ends_with(" 0"), "capture dropped events: {line}");
    }
    let resent = sample(
        &m,
        "observer_sink_resent_total{sink=\"rsyslog\",type=\"syslog\"}",
    );
    let records = d.stop();
    let stop = records
        .iter()
        .rev()
        .find(|r| r["kind"] == "observer_stop")
        .unwrap();
    for (kind, k) in stop["kernel"].as_object().unwrap() {
        assert_eq!(k["dropped_ringbuf_full"], 0, "{kind}");
        assert_eq!(k["dropped_read_error"], 0, "{kind}");
    }
    assert!(
        stop["user_drops"]
            .as_object()
            .unwrap()
            .values()
            .all(|v| v == 0),
        "{stop}"
    );
    let final_size = stored_receipts(&db).len().to_string();
    wait_until("the final checkpoint", WAIT, || {
        rsyslog
            .received()
            .last()
            .is_some_and(|m| m.sd.get("size") == Some(&final_size))
    });
    let got: Vec<Rec> = rsyslog.received().iter().map(rec_of).collect();
    let (want, _) = expected(&db);
    let total = got.len();
    let (firsts, dups) = dedup(got);
    // Nothing lost, order preserved, duplicates only re-sends (counted).
    assert_eq!(firsts, want);
    assert!(
        dups as u64 <= resent,
        "{dups} duplicates, {resent} counted as re-sent"
    );
    assert!(resent <= 1000, "bounded by max_unconfirmed");
    eprintln!(
        "outage: {total} messages for {} records, {dups} duplicates, {resent} re-sent",
        want.len()
    );
}

#[test]
fn daemon_killed_mid_delivery_resumes_from_the_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let rs_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let rsyslog = Rsyslog::start(rs_dir.path(), port, Mode::Tcp);
    // Small batches and a long confirmation delay keep delivery behind.
    let sinks = syslog_sink("rsyslog", port, "")
        .replace(
            "retry_max_ms = 1000",
            "retry_max_ms = 1000\nbatch_max = 10\nmax_unconfirmed = 200",
        )
        .replace("ack_delay_ms = 300", "ack_delay_ms = 1000")
        .replace("flush_timeout_ms = 15000", "flush_timeout_ms = 30000");
    let (exe, d) = agent_with_sinks(dir.path(), &sinks);
    agent_execs(&exe, 300);
    let cursor = dir.path().join("sinks/rsyslog.cursor");
    wait_until("a cursor mid-way", WAIT, || {
        std::fs::read_to_string(&cursor).is_ok()
    });
    let db = d.store();
    d.kill();
    let text = std::fs::read_to_string(&cursor).unwrap();
    let at_kill: u64 = text
        .lines()
        .next()
        .unwrap()
        .trim_start_matches("next_leaf=")
        .parse()
        .unwrap();
    let size_at_kill = stored_receipts(&db).len() as u64;
    assert!(
        at_kill > 0 && at_kill < size_at_kill,
        "cursor {at_kill} of {size_at_kill}"
    );
    let (_exe2, d2) = {
        let d2 = Daemon::start_in(
            StateDir::Shared(dir.path().to_owned()),
            &agent_config("fwd-agent", &exe, &sinks),
        );
        ((), d2)
    };
    agent_execs(&exe, 5);
    let t = Instant::now();
    let stderr = d2.stderr.clone();
    d2.stop();
    let final_size = stored_receipts(&db).len().to_string();
    eprintln!(
        "stop took {:?}; {final_size} receipts; received {}; {}",
        t.elapsed(),
        rsyslog.received().len(),
        std::fs::read_to_string(&stderr).unwrap_or_default()
    );
    wait_until("the final checkpoint", Duration::from_secs(30), || {
        rsyslog
            .received()
            .last()
            .is_some_and(|m| m.sd.get("size") == Some(&final_size))
    });
    let got: Vec<Rec> = rsyslog.received().iter().map(rec_of).collect();
    let (want, _) = expected(&db);
    let (firsts, dups) = dedup(got.clone());
    assert_eq!(firsts, want, "nothing lost, in order");
    // Resumed from the cursor: what was confirmed before the kill is not
    // sent again; only the unconfirmed tail (at most the in-flight window)
    // is: at most max_unconfirmed records, checkpoints included.
    let first_resumed = got
        .iter()
        .position(|r| matches!(r, Rec::Receipt { index, .. } if *index == at_kill))
        .unwrap();
    assert!(got[..first_resumed]
        .iter()
        .all(|r| !matches!(r, Rec::Receipt { index, .. } if *index >= at_kill)));
    assert!(dups <= 200, "{dups} duplicates");
    assert!(
        got.iter()
            .filter(|r| matches!(r, Rec::Receipt { index, .. } if *index < at_kill))
            .count() as u64
            == at_kill
    );
}

/// `promtool check metrics` (the prometheus apt package) on the endpoint's
/// output.
fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (apt install prometheus)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn metrics_pass_promtool_and_count_what_happened() {
    let dir = tempfile::tempdir().unwrap();
    let mport = free_port();
    let out = dir.path().join("archive.jsonl");
    let sinks = format!(
        "[metrics]\nlisten = \"127.0.0.1:{mport}\"\n[[sinks]]\nname = \"archive\"\ntype = \"file\"\n[sinks.file]\npath = \"{}\"\n",
        out.display()
    );
    let (exe, d) = agent_with_sinks(dir.path(), &sinks);
    let db = d.store();
    // Settled: everything committed is delivered, the kernel counters are
    // published, and it stays so across more than one counters interval
    // (1 s) and the file sink's 1 s acknowledgement delay. A single match
    // is not enough: under load the sink can catch up with the log in the
    // middle of a burst that is still being committed.
    let settled = |m: &str| -> Option<u64> {
        let n = stored_receipts(&db).len() as u64;
        (sample(m, "observer_log_size") == n
            && sample(m, "observer_sink_cursor{sink=\"archive\",type=\"file\"}") == n
            && m.contains("\nobserver_kernel_events_total{kind=\"exec\"} "))
        .then_some(n)
    };
    let idle = || {
        let start = Instant::now();
        loop {
            assert!(
                start.elapsed() < WAIT,
                "timed out waiting for metrics to settle"
            );
            let Some(n) = settled(&metrics(mport)) else {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            };
            std::thread::sleep(Duration::from_millis(1500));
            let m = metrics(mport);
            if settled(&m) == Some(n) {
                return m;
            }
        }
    };
    let before = idle();
    promtool_check(&before);
    agent_execs(&exe, 10);
    wait_until("the agent's exits committed", WAIT, || {
        stored_receipts_of(&db, "process.exit").len() > 10
    });
    let after = idle();
    promtool_check(&after);
    let delta = |series: &str| sample(&after, series) - sample(&before, series);
    // 10 execs of /bin/true and the agent's own: exec and exit receipts,
    // and the file opens of its loader.
    assert!(delta("observer_receipts_committed_total") >= 22, "{after}");
    assert!(delta("observer_kernel_events_total{kind=\"exec\"}") >= 11);
    assert!(delta("observer_kernel_events_total{kind=\"exit\"}") >= 11);
    assert_eq!(
        delta("observer_sink_delivered_total{sink=\"archive\",type=\"file\"}"),
        delta("observer_receipts_committed_total")
            + delta("observer_sink_checkpoints_delivered_total{sink=\"archive\",type=\"file\"}")
    );
    assert_eq!(
        sample(
            &after,
            "observer_sink_backlog{sink=\"archive\",type=\"file\"}"
        ),
        0
    );
    assert_eq!(
        sample(&after, "observer_chains"),
        2,
        "observer and fwd-agent"
    );
    for line in after.lines().filter(|l| {
        l.starts_with("observer_kernel_dropped_total")
            || l.starts_with("observer_user_dropped_total")
    }) {
        assert!(line.ends_with(" 0"), "{line}");
    }
    d.stop();
}
