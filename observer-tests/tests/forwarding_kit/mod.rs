//! What the forwarding tests share: the stream the store says must arrive
//! (receipts in log order, each checkpoint after its last receipt), an RFC
//! 5424 parser, a real rsyslog over TCP, TLS or UDP, and an agent whose execs
//! the daemon signs and forwards.
// Each test binary of the topic compiles this module and uses part of it.
#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use observer_daemon::receipt::store::Store;
use observer_testkit::*;
use serde_json::Value;

/// One record of the forwarded stream, as the store says it must be.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Rec {
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
pub fn expected(db: &Path) -> (Vec<Rec>, BTreeMap<String, Value>) {
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
pub struct Syslog {
    pub pri: u8,
    pub timestamp: String,
    pub app: String,
    pub msgid: String,
    pub sd_id: String,
    pub sd: BTreeMap<String, String>,
    pub msg: String,
}

/// A strict RFC 5424 parser for what observer sends: one SD-ELEMENT.
pub fn parse_5424(line: &str) -> Syslog {
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

pub fn rec_of(m: &Syslog) -> Rec {
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
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A private rsyslogd (`-n -f conf -i pidfile`) writing every message it
/// receives, raw and JSON-escaped, one per line. Killed when dropped.
pub struct Rsyslog {
    pub dir: PathBuf,
    pub port: u16,
    pub mode: Mode,
    pub child: Option<Child>,
}

#[derive(Clone, Copy, PartialEq)]
pub enum Mode {
    Tcp,
    Tls,
    Udp,
}

/// True once something listens on 127.0.0.1:`port`/udp.
pub fn udp_bound(port: u16) -> bool {
    let needle = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/udp")
        .unwrap()
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(needle.as_str()))
}

impl Rsyslog {
    pub fn start(dir: &Path, port: u16, mode: Mode) -> Rsyslog {
        let mut r = Rsyslog {
            dir: dir.to_owned(),
            port,
            mode,
            child: None,
        };
        r.restart();
        r
    }

    pub fn received_path(&self) -> PathBuf {
        self.dir.join("received.log")
    }

    pub fn restart(&mut self) {
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
    pub fn stop(&mut self) {
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
    pub fn received(&self) -> Vec<Syslog> {
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

pub fn agent_with_sinks(dir: &Path, sinks: &str) -> (PathBuf, Daemon) {
    let exe = copy_executable("/bin/sh", dir, &unique("fwd-agent"));
    let d = Daemon::start_in(
        StateDir::Shared(dir.to_owned()),
        &agent_config("fwd-agent", &exe, sinks),
    );
    (exe, d)
}

/// Runs the agent: `n` execs of /bin/true, then exits.
pub fn agent_execs(exe: &Path, n: usize) {
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
pub fn assert_exact_stream(got: &[Syslog], db: &Path) {
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

pub fn syslog_sink(name: &str, port: u16, extra: &str) -> String {
    format!(
        "[forwarding]\nflush_timeout_ms = 15000\n[[sinks]]\nname = \"{name}\"\ntype = \"syslog\"\nretry_initial_ms = 100\nretry_max_ms = 1000\n[sinks.syslog]\naddress = \"127.0.0.1:{port}\"\nack_delay_ms = 300\n{extra}\n"
    )
}
