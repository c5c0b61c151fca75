//! `cargo xtask bench forward`: forwarding throughput per sink type and
//! the catch-up time after a 10-minute backlog, driven through the real
//! forwarding runner (`observer-daemon/examples/forward_rate.rs`) on
//! stores made by the real receipt pipeline (`receipt_pipeline` example).
//!
//! Receivers are real and local: rsyslog (apt) over TCP and over TLS
//! (test CA made with openssl), an HTTP/1.1 receiver in this process that
//! gunzips and counts Splunk HEC and Elastic `_bulk` records, and the file
//! sink's own files. Every rate is a ratio against the 20,000 records/s
//! target and against the raw baseline of the same run: the same syslog
//! bytes written through a plain TCP socket to the same rsyslog.
use std::{
    io::{BufRead, BufReader, Read},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use serde_json::Value;

use crate::{bench_http_receiver::HttpReceiver, bench_kit::unpinned};

#[derive(clap::Args)]
pub struct ForwardArgs {
    /// Receipts in the store of the per-sink throughput runs.
    #[arg(long, default_value_t = 50_000)]
    forward_receipts: u64,
    /// Receipts per second of activity the backlog stands for; the backlog
    /// is 10 minutes of it.
    #[arg(long, default_value_t = 1000)]
    backlog_rate: u64,
}

/// Records per second to a local syslog receiver over TCP.
const TARGET: f64 = 20_000.0;
const BACKLOG_SECONDS: u64 = 600;

pub fn build() -> anyhow::Result<()> {
    for example in ["receipt_pipeline", "forward_rate"] {
        crate::cargo(&[
            "build",
            "--release",
            "--package",
            "observer-daemon",
            "--example",
            example,
        ])?;
    }
    Ok(())
}

pub fn run(root: &Path, work: &Path, args: &ForwardArgs) -> anyhow::Result<()> {
    let work = work.join("forward");
    std::fs::create_dir_all(&work)?;
    println!(
        "forwarding: records/s (receipts and checkpoints) as ratios against the 20,000/s syslog TCP \
         target and against a raw baseline of the same run (the same syslog bytes through a plain \
         TCP socket to the same rsyslog)"
    );
    crate::bench_kit::warn_if_other_observers()?;
    let store = make_store(root, &work.join("store"), args.forward_receipts)?;
    observer_testkit::pki::make_pki(&work);

    // Raw baseline, then one run per sink type, each from cursor zero.
    let raw = {
        let mut rs = Rsyslog::start(&work.join("rsyslog-raw"), false)?;
        let r = forward(root, &store, Mode::Raw(rs.port), Some(&rs))?;
        rs.stop()?;
        r
    };
    let base = raw.receiver_rate();
    println!(
        "  raw baseline: {} records, {:.1} MB of RFC 5424 over plain TCP: written and acked {:.0}/s, \
         all written out by rsyslog {:.0}/s",
        raw.records,
        raw.json["bytes"].as_f64().unwrap_or(0.0) / 1e6,
        raw.rate(),
        base
    );
    let report = |what: &str, r: &Run| {
        let recv = r.receiver_secs.map_or(String::new(), |s| {
            format!(
                "; receiver had all in {s:.2} s = {:.0}/s = {:.2}x raw",
                r.records as f64 / s,
                r.records as f64 / s / base
            )
        });
        println!(
            "  {what}: {} records delivered (cursor durable at the end) in {:.2} s = {:.0} records/s \
             = {:.2}x the 20,000/s target (target >= 1.00), {:.2}x raw{recv}; retries {}, errors {}",
            r.records,
            r.seconds,
            r.rate(),
            r.rate() / TARGET,
            r.rate() / base,
            r.json["sinks"]["bench"]["retries"],
            r.json["sinks"]["bench"]["errors"],
        );
    };
    for tls in [false, true] {
        let mut rs = Rsyslog::start(&work.join(format!("rsyslog-{tls}")), tls)?;
        let sink = syslog_sink(rs.port, tls, &work);
        let r = forward(root, &store, Mode::Sink(sink), Some(&rs))?;
        rs.stop()?;
        report(if tls { "syslog TLS" } else { "syslog TCP" }, &r);
    }
    for (name, encoding, path) in [
        (
            "HTTP Splunk HEC, gzip",
            "splunk_hec",
            "/services/collector/event",
        ),
        ("HTTP Elastic _bulk, gzip", "elastic_bulk", "/_bulk"),
    ] {
        let http = HttpReceiver::start()?;
        let sink = format!(
            "[[sinks]]\nname = \"bench\"\ntype = \"http\"\n[sinks.http]\n\
             url = \"http://127.0.0.1:{}{path}\"\nencoding = \"{encoding}\"\n",
            http.port
        );
        let r = forward(root, &store, Mode::Sink(sink), None)?;
        let got = http.records.load(Ordering::Relaxed);
        if got != r.records {
            bail!(
                "{name}: the receiver counted {got} records, the store holds {}",
                r.records
            );
        }
        report(name, &r);
    }
    {
        let dir = work.join("file-sink");
        std::fs::create_dir_all(&dir)?;
        let sink = format!(
            "[[sinks]]\nname = \"bench\"\ntype = \"file\"\n[sinks.file]\npath = \"{}\"\n",
            dir.join("receipts.jsonl").display()
        );
        let r = forward(root, &store, Mode::Sink(sink), None)?;
        let lines = count_lines_in_dir(&dir)?;
        if lines != r.records {
            bail!(
                "file sink: {lines} lines written, the store holds {} records",
                r.records
            );
        }
        report("file (fsync per batch, 100 MiB rotation)", &r);
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::remove_dir_all(store.parent().context("store dir")?)?;
    catch_up(root, &work, args, base)
}

/// The backlog: what `backlog_rate` receipts/s for 10 minutes produce,
/// forwarded from cursor zero to rsyslog over TCP with the default sink
/// settings; the receiver must hold every record once, in order.
fn catch_up(root: &Path, work: &Path, args: &ForwardArgs, base: f64) -> anyhow::Result<()> {
    let n = args.backlog_rate * BACKLOG_SECONDS;
    let t = Instant::now();
    let store = make_store(root, &work.join("backlog"), n)?;
    let made = t.elapsed().as_secs_f64();
    let mut rs = Rsyslog::start(&work.join("rsyslog-backlog"), false)?;
    let r = forward(
        root,
        &store,
        Mode::Sink(syslog_sink(rs.port, false, work)),
        Some(&rs),
    )?;
    rs.stop()?;
    let order = rs.check_stream(&store)?;
    println!(
        "  catch-up after a 10-minute backlog at {}/s ({n} receipts, {} records, {:.1} GB store, made \
         by the receipt pipeline in {made:.0} s): syslog TCP from cursor zero to the end in {:.1} s \
         = {:.0} records/s ({:.2}x the 20,000/s target, {:.2}x raw); {order}",
        args.backlog_rate,
        r.records,
        dir_bytes(store.parent().context("store dir")?) as f64 / 1e9,
        r.seconds,
        r.rate(),
        r.rate() / TARGET,
        r.rate() / base,
    );
    std::fs::remove_dir_all(store.parent().context("store dir")?)?;
    Ok(())
}

fn syslog_sink(port: u16, tls: bool, work: &Path) -> String {
    let mut s = format!(
        "[[sinks]]\nname = \"bench\"\ntype = \"syslog\"\n[sinks.syslog]\naddress = \"127.0.0.1:{port}\"\n"
    );
    if tls {
        s.push_str(&format!(
            "transport = \"tls\"\n[sinks.syslog.tls]\nca_file = \"{}\"\n",
            work.join("ca.pem").display()
        ));
    }
    s
}

/// A store with `receipts` receipts (plus the observer chain's own),
/// made by the receipt pipeline example as fast as it goes.
fn make_store(root: &Path, dir: &Path, receipts: u64) -> anyhow::Result<PathBuf> {
    let _ = std::fs::remove_dir_all(dir);
    let mut cmd = Command::new(root.join("target/release/examples/receipt_pipeline"));
    cmd.args(["--count", &receipts.to_string()])
        .args(["--baseline-seconds", "0", "--verify-threads", "0"])
        .arg("--dir")
        .arg(dir);
    let out = unpinned(&mut cmd)
        .stderr(Stdio::inherit())
        .output()
        .context("running the receipt_pipeline example")?;
    if !out.status.success() {
        bail!("receipt_pipeline failed: {}", out.status);
    }
    Ok(dir.join("observer.db"))
}

enum Mode {
    Raw(u16),
    Sink(String),
}

struct Run {
    json: Value,
    records: u64,
    /// Durable cursor at the end (sink) or every byte acked (raw).
    seconds: f64,
    /// Until the receiver had written every record out.
    receiver_secs: Option<f64>,
}

impl Run {
    fn rate(&self) -> f64 {
        self.records as f64 / self.seconds
    }

    fn receiver_rate(&self) -> f64 {
        self.records as f64 / self.receiver_secs.unwrap_or(self.seconds)
    }
}

/// Writes the forward_rate example's config in `dir`: the sinks of `sink`
/// (`[[sinks]]` TOML) with fresh cursors, so each run starts from cursor
/// zero. Returns its path.
pub fn forward_config(dir: &Path, sink: &str) -> anyhow::Result<PathBuf> {
    let cursors = dir.join("cursors");
    let _ = std::fs::remove_dir_all(&cursors);
    let conf = dir.join("forward.toml");
    std::fs::write(
        &conf,
        format!(
            "[forwarding]\ncursor_dir = \"{}\"\n\n{sink}",
            cursors.display()
        ),
    )?;
    Ok(conf)
}

/// Runs the forward_rate example; with `rsyslog`, also times until its
/// output holds every record.
fn forward(
    root: &Path,
    store: &Path,
    mode: Mode,
    rsyslog: Option<&Rsyslog>,
) -> anyhow::Result<Run> {
    let dir = store.parent().context("store dir")?;
    let mut cmd = Command::new(root.join("target/release/examples/forward_rate"));
    cmd.arg("--store").arg(store);
    match &mode {
        Mode::Raw(port) => {
            cmd.args(["--raw-syslog", &format!("127.0.0.1:{port}")]);
        }
        Mode::Sink(sink) => {
            cmd.arg("--config").arg(forward_config(dir, sink)?);
        }
    }
    let mut child = unpinned(&mut cmd)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("running the forward_rate example")?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    match lines.next() {
        Some(Ok(l)) if l == "started" => {}
        other => bail!("forward_rate: expected \"started\", got {other:?}"),
    }
    let start = Instant::now();
    let json_line = std::thread::spawn(move || lines.last());
    let receiver_secs = match rsyslog {
        Some(rs) => {
            let expected = rsyslog_expected(store)?;
            let mut counter = LineCounter::new(rs.received());
            loop {
                if counter.count()? >= expected {
                    break Some(start.elapsed().as_secs_f64());
                }
                if start.elapsed() > Duration::from_secs(1800) {
                    bail!("rsyslog did not write {expected} records in 30 minutes");
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        None => None,
    };
    let status = child.wait()?;
    if !status.success() {
        bail!("forward_rate failed: {status}");
    }
    let line = json_line
        .join()
        .map_err(|_| anyhow::anyhow!("reader thread"))?
        .context("forward_rate printed no result")??;
    let json: Value = serde_json::from_str(&line)?;
    Ok(Run {
        records: json["records"].as_u64().context("records")?,
        seconds: json["seconds"].as_f64().context("seconds")?,
        receiver_secs,
        json,
    })
}

/// Records in the forwarded stream: receipts plus checkpoints.
fn rsyslog_expected(store: &Path) -> anyhow::Result<u64> {
    let db =
        rusqlite::Connection::open_with_flags(store, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let n: i64 = db.query_row(
        "SELECT (SELECT COUNT(*) FROM receipts) + (SELECT COUNT(*) FROM checkpoints)",
        [],
        |r| r.get(0),
    )?;
    Ok(n as u64)
}

/// Counts complete lines of a growing file, reading only what is new.
struct LineCounter {
    path: PathBuf,
    file: Option<std::fs::File>,
    lines: u64,
    buf: Vec<u8>,
}

impl LineCounter {
    fn new(path: PathBuf) -> LineCounter {
        LineCounter {
            path,
            file: None,
            lines: 0,
            buf: vec![0; 1 << 20],
        }
    }

    fn count(&mut self) -> anyhow::Result<u64> {
        if self.file.is_none() {
            match std::fs::File::open(&self.path) {
                Ok(f) => self.file = Some(f),
                Err(_) => return Ok(0),
            }
        }
        let Some(f) = self.file.as_mut() else {
            return Ok(0);
        };
        loop {
            let n = f.read(&mut self.buf)?;
            if n == 0 {
                return Ok(self.lines);
            }
            self.lines += self.buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
        }
    }
}

/// A private rsyslogd writing, per message received, its MSGID and
/// structured data (what identifies the record: log index or checkpoint
/// size), one line each.
struct Rsyslog {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Rsyslog {
    fn start(dir: &Path, tls: bool) -> anyhow::Result<Rsyslog> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let d = dir.display();
        let pki = dir.parent().context("pki dir")?.display().to_string();
        let (global_tls, module) = if tls {
            (
                format!(
                    " DefaultNetstreamDriver=\"gtls\" DefaultNetstreamDriverCAFile=\"{pki}/ca.pem\" \
                     DefaultNetstreamDriverCertFile=\"{pki}/server.pem\" DefaultNetstreamDriverKeyFile=\"{pki}/server.key\""
                ),
                "module(load=\"imtcp\" StreamDriver.Name=\"gtls\" StreamDriver.Mode=\"1\" StreamDriver.AuthMode=\"anon\")",
            )
        } else {
            (String::new(), "module(load=\"imtcp\")")
        };
        let conf = format!(
            "global(workDirectory=\"{d}\" maxMessageSize=\"1m\"{global_tls})\n\
             {module}\n\
             input(type=\"imtcp\" port=\"{port}\" address=\"127.0.0.1\")\n\
             template(name=\"ids\" type=\"string\" string=\"%msgid% %structured-data%\\n\")\n\
             action(type=\"omfile\" file=\"{d}/received.log\" template=\"ids\")\n"
        );
        let conf_path = dir.join("rsyslog.conf");
        std::fs::write(&conf_path, conf)?;
        let child = Command::new("rsyslogd")
            .arg("-n")
            .arg("-f")
            .arg(&conf_path)
            .arg("-i")
            .arg(dir.join("rsyslog.pid"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("rsyslog.stderr"))?)
            .spawn()
            .context("rsyslogd (apt install rsyslog rsyslog-gnutls)")?;
        let rs = Rsyslog {
            dir: dir.to_owned(),
            port,
            child: Some(child),
        };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if start.elapsed() > Duration::from_secs(15) {
                bail!("rsyslogd did not listen on {port}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(rs)
    }

    fn received(&self) -> PathBuf {
        self.dir.join("received.log")
    }

    /// SIGTERM and wait: rsyslog writes out what it read, then exits.
    fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill on our own child's pid; no memory is passed.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
            let status = c.wait()?;
            if !status.success() {
                bail!("rsyslogd exited with {status}");
            }
        }
        Ok(())
    }

    /// Every receipt once in log order, every checkpoint once right after
    /// the receipt that completes it.
    fn check_stream(&self, store: &Path) -> anyhow::Result<String> {
        let db = rusqlite::Connection::open_with_flags(
            store,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )?;
        let receipts: i64 = db.query_row("SELECT COUNT(*) FROM receipts", [], |r| r.get(0))?;
        let mut sizes: Vec<u64> = db
            .prepare("SELECT size FROM checkpoints ORDER BY size")?
            .query_map([], |r| r.get::<_, i64>(0).map(|v| v as u64))?
            .collect::<Result<_, _>>()?;
        sizes.reverse();
        let file = std::fs::File::open(self.received())?;
        let mut next_leaf = 0u64;
        let mut lines = 0u64;
        for line in BufReader::new(file).lines() {
            let line = line?;
            lines += 1;
            if let Some(i) = sd_param(&line, "index") {
                if i != next_leaf {
                    bail!("line {lines}: receipt {i} where {next_leaf} was due: {line}");
                }
                next_leaf += 1;
            } else if let Some(size) = sd_param(&line, "size") {
                if sizes.last() != Some(&size) || size != next_leaf {
                    bail!(
                        "line {lines}: checkpoint {size} out of place (after receipt {next_leaf})"
                    );
                }
                sizes.pop();
            } else {
                bail!("line {lines}: neither receipt nor checkpoint: {line}");
            }
        }
        if next_leaf != receipts as u64 || !sizes.is_empty() {
            bail!(
                "rsyslog got {next_leaf} of {receipts} receipts, {} checkpoints missing",
                sizes.len()
            );
        }
        Ok(format!(
            "rsyslog received all {lines} records exactly once, in log order, checkpoints in place"
        ))
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

/// The value of `name="N"` in rsyslog's rendering of the structured data.
fn sd_param(line: &str, name: &str) -> Option<u64> {
    let key = format!(" {name}=\"");
    let start = line.find(&key)? + key.len();
    line[start..].split('"').next()?.parse().ok()
}

fn count_lines_in_dir(dir: &Path) -> anyhow::Result<u64> {
    let mut n = 0;
    for e in std::fs::read_dir(dir)? {
        let mut counter = LineCounter::new(e?.path());
        n += counter.count()?;
    }
    Ok(n)
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}
