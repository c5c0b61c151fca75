//! Forwarding benchmark, run by `cargo xtask bench forward`.
//!
//! Sink mode (`--config`): starts the real forwarding runner
//! ([`observer_daemon::forward::Sinks`], one thread per sink, read-only
//! spool, durable cursor) on an existing receipt store with the sinks of a
//! TOML fragment (`[forwarding]` and `[[sinks]]` as in observer.toml), from
//! cursor zero, and times it until every sink's durable cursor is at the
//! end of the log with every record (receipts and checkpoints) confirmed.
//!
//! Baseline mode (`--raw-syslog ADDR`): the same stream formatted by the
//! same code into RFC 5424 messages with octet-counting framing, held in
//! memory, then timed while written through a plain TCP socket to ADDR
//! until the receiver's TCP stack acknowledged every byte.
//!
//! Every record names the host of the store's log: its origin and host
//! name are read from the store's newest checkpoint (`bench-host` of
//! `did:web:bench.invalid` for a store without one).
//!
//! Prints `started` when the timed part begins (the caller times the
//! receiver from there), then one JSON line: `records` (receipts plus
//! checkpoints), `receipts`, `checkpoints`, `seconds`, `records_per_s`,
//! `bytes`, and in sink mode `retries`, `resent` and `errors` per sink.
use std::{
    io::Write,
    net::TcpStream,
    os::fd::AsRawFd,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use clap::Parser;
use observer_daemon::{
    export::{Format, Item},
    forward::{
        config::{ForwardingSection, SinkEntry},
        counters::SinkCounters,
        cursor::Position,
        spool::Spool,
        syslog, Sinks,
    },
    receipt::store::Store,
};
use serde::Deserialize;
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// The receipt store to forward (e.g. made by the receipt_pipeline
    /// example with --dir).
    #[arg(long)]
    store: PathBuf,
    /// TOML with `[forwarding]` (optional) and `[[sinks]]`.
    #[arg(long, conflicts_with = "raw_syslog")]
    config: Option<PathBuf>,
    /// Baseline: write the stream's syslog bytes to this host:port.
    #[arg(long)]
    raw_syslog: Option<String>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 1800.0)]
    timeout_s: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fragment {
    #[serde(default)]
    forwarding: ForwardingSection,
    sinks: Vec<SinkEntry>,
}

const HOSTNAME: &str = "bench-host";
const ORIGIN: &str = "did:web:bench.invalid/host/bench-host";

fn main() -> anyhow::Result<()> {
    env_logger::init();
    let args = Args::parse();
    let (origin, hostname) = origin_of(&args.store)?;
    let (receipts, checkpoints) = stream_size(&args)?;
    let records = receipts + checkpoints;
    let timeout = Duration::from_secs_f64(args.timeout_s);
    let mut out = json!({
        "records": records,
        "receipts": receipts,
        "checkpoints": checkpoints,
    });
    let seconds = match (&args.config, &args.raw_syslog) {
        (Some(config), None) => {
            let text = std::fs::read_to_string(config)
                .with_context(|| format!("reading {}", config.display()))?;
            let frag: Fragment =
                toml::from_str(&text).with_context(|| format!("parsing {}", config.display()))?;
            started();
            let start = Instant::now();
            let host = observer_daemon::forward::Host {
                hostname: hostname.clone(),
                origin,
                store: args.store.clone(),
            };
            let sinks = Sinks::start(&frag.sinks, &frag.forwarding, &host)?;
            let done = |s: &observer_daemon::forward::SinkHandle| {
                SinkCounters::get(&s.counters.cursor) >= receipts
                    && SinkCounters::get(&s.counters.delivered) >= records
            };
            while !sinks.sinks.iter().all(done) {
                if start.elapsed() > timeout {
                    bail!("timed out after {timeout:?}");
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            let seconds = start.elapsed().as_secs_f64();
            let mut per_sink = serde_json::Map::new();
            for s in &sinks.sinks {
                let c = &s.counters;
                per_sink.insert(
                    s.name.clone(),
                    json!({
                        "delivered": SinkCounters::get(&c.delivered),
                        "retries": SinkCounters::get(&c.retries),
                        "resent": SinkCounters::get(&c.resent),
                        "errors": c.errors(),
                    }),
                );
            }
            out["sinks"] = per_sink.into();
            sinks.finish(Duration::from_secs(5));
            seconds
        }
        (None, Some(addr)) => {
            let bytes = syslog_bytes(&args, &hostname)?;
            out["bytes"] = json!(bytes.len());
            let mut sock =
                TcpStream::connect(addr).with_context(|| format!("connecting {addr}"))?;
            started();
            let start = Instant::now();
            sock.write_all(&bytes)?;
            sock.flush()?;
            while unacked(&sock)? > 0 {
                if start.elapsed() > timeout {
                    bail!("timed out after {timeout:?}");
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            start.elapsed().as_secs_f64()
        }
        _ => bail!("give --config or --raw-syslog"),
    };
    out["seconds"] = json!(seconds);
    out["records_per_s"] = json!(records as f64 / seconds);
    println!("{out}");
    Ok(())
}

fn started() {
    println!("started");
    let _ = std::io::stdout().flush();
}

/// Receipts and checkpoints the forwarded stream holds.
fn stream_size(args: &Args) -> anyhow::Result<(u64, u64)> {
    let spool = Spool::open(&args.store)?;
    let receipts = spool.log_size()?;
    let mut checkpoints = 0;
    let mut pos = Position::default();
    loop {
        let read = spool.read(pos, 5000)?;
        let Some((_, end)) = read.items.last() else {
            break;
        };
        pos = *end;
        checkpoints += read
            .items
            .iter()
            .filter(|(i, _)| matches!(i, Item::Checkpoint(_)))
            .count() as u64;
    }
    Ok((receipts, checkpoints))
}

/// The whole stream as the syslog sink frames it (RFC 6587 octet counting).
fn syslog_bytes(args: &Args, hostname: &str) -> anyhow::Result<Vec<u8>> {
    let spool = Spool::open(&args.store)?;
    let ctx = syslog::MessageContext {
        facility: syslog::facility_code("local0").context("local0")?,
        hostname: hostname.into(),
        app_name: "observerd".into(),
        procid: std::process::id().to_string(),
        format: Format::Receipt,
    };
    let mut buf = Vec::new();
    let mut pos = Position::default();
    loop {
        let read = spool.read(pos, 500)?;
        let Some((_, end)) = read.items.last() else {
            break;
        };
        pos = *end;
        for (item, _) in &read.items {
            let m = syslog::message(item, &ctx);
            write!(buf, "{} ", m.len())?;
            buf.extend_from_slice(m.as_bytes());
        }
    }
    Ok(buf)
}

/// The log's origin (`<deployer_id>/host/<hostname>`, the first line of
/// the store's newest checkpoint) and its host name.
fn origin_of(store: &std::path::Path) -> anyhow::Result<(String, String)> {
    let newest = Store::open_read_only(store)?.latest_checkpoint()?;
    let origin = newest
        .as_ref()
        .and_then(|c| c.note.lines().next())
        .unwrap_or(ORIGIN)
        .to_string();
    let hostname = origin
        .rsplit_once("/host/")
        .map_or(HOSTNAME, |(_, h)| h)
        .to_string();
    Ok((origin, hostname))
}

/// Bytes written but not yet acknowledged by the peer (SIOCOUTQ).
fn unacked(sock: &TcpStream) -> std::io::Result<i32> {
    let mut n: libc::c_int = 0;
    // SAFETY: TIOCOUTQ writes one int through the pointer, which points
    // to a live local.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(n)
}
