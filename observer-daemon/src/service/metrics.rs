//! Prometheus text exposition (format 0.0.4) on a loopback address:
//! receipts, chains, commit latency, kernel events and drops by kind, user
//! space drops by reason, and every sink's delivery counters.
pub mod config;

use std::{
    fmt::Write as _,
    net::SocketAddr,
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{watch, Semaphore},
};

use self::config::MetricsError;
use crate::{
    forward::{config::SinkType, counters::SinkCounters},
    pipeline::loss::Snapshot,
    receipt::{store::Store, writer::WriterMetrics},
};

/// What the endpoint reports.
#[derive(Default)]
pub struct Sources {
    pub writer: Option<Arc<WriterMetrics>>,
    /// Committed log ranges, for `observerctl tail -f` (control socket).
    pub feed: Arc<crate::receipt::feed::CommitFeed>,
    pub store: Option<PathBuf>,
    pub sinks: Vec<(String, SinkType, Arc<SinkCounters>)>,
    /// The latest loss-accounting snapshot (kernel and user counters).
    pub counters: Arc<Mutex<Option<Snapshot>>>,
    /// The names stage's counters (docs/names.md), published every tick.
    pub names: crate::names::SharedCounters,
    /// The endpoint's own connection counters.
    pub endpoint: EndpointCounters,
}

/// Connections the endpoint turned away or cut off.
#[derive(Default)]
pub struct EndpointCounters {
    /// Closed at accept: `max_connections` were being served.
    pub refused: AtomicU64,
    /// Closed at the deadline before the response was written.
    pub timed_out: AtomicU64,
}

struct Out(String);

impl Out {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.0, "{k}=\"{v}\"");
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.head(name, kind, help);
        self.sample(name, &[], value);
    }
}

fn sink_type(t: SinkType) -> &'static str {
    t.as_str()
}

pub fn render(s: &Sources) -> String {
    let mut o = Out(String::new());
    if let Some(w) = &s.writer {
        o.one(
            "observer_receipts_committed_total",
            "counter",
            "Receipts signed and committed to the store by this run.",
            w.committed.load(Ordering::Relaxed),
        );
        o.one(
            "observer_log_size",
            "gauge",
            "Receipts in the host log (Merkle tree size).",
            w.log_size.load(Ordering::Relaxed),
        );
        o.one(
            "observer_commit_batches_total",
            "counter",
            "SQLite transactions committed by the receipt writer.",
            w.batches.load(Ordering::Relaxed),
        );
        o.one(
            "observer_checkpoints_total",
            "counter",
            "Signed checkpoints committed by this run.",
            w.checkpoints.load(Ordering::Relaxed),
        );
        o.one(
            "observer_receipt_store_full",
            "gauge",
            "1 while the receipt store's file system is full (receipts are held, then dropped and counted).",
            u64::from(w.store_full.load(Ordering::Relaxed)),
        );
        o.one(
            "observer_receipts_held",
            "gauge",
            "Signed receipts held in memory waiting for a commit (the store is full).",
            w.held.load(Ordering::Relaxed),
        );
        o.one(
            "observer_receipts_lost_store_full_total",
            "counter",
            "Receipts dropped (before chaining) while the store was full and the hold at receipts.full_hold_max.",
            w.lost_store_full.load(Ordering::Relaxed),
        );
        // Gauges per quantile: the writer keeps a histogram, not the sum
        // and count a Prometheus summary needs.
        for (q, name) in [
            (0.5, "observer_event_to_commit_latency_p50_seconds"),
            (0.99, "observer_event_to_commit_latency_p99_seconds"),
        ] {
            let ms = w.latency_ms_quantile(q).unwrap_or(0);
            o.one(
                name,
                "gauge",
                "Time from the kernel event to its signed receipt's commit (signing included), this run.",
                ms as f64 / 1000.0,
            );
        }
    }
    if let Some(chains) = s
        .store
        .as_ref()
        .and_then(|p| Store::open_read_only(p).ok())
        .and_then(|st| st.chain_heads().ok())
    {
        o.one(
            "observer_chains",
            "gauge",
            "Receipt chains (one per agent, plus the observer's).",
            chains.len(),
        );
    }
    if let Some(snap) = s.counters.lock().ok().and_then(|g| g.clone()) {
        o.head(
            "observer_kernel_events_total",
            "counter",
            "Events the kernel probes wrote to the ring buffer, by kind.",
        );
        for (kind, k) in &snap.kernel {
            o.sample("observer_kernel_events_total", &[("kind", kind)], k.emitted);
        }
        o.head(
            "observer_kernel_dropped_total",
            "counter",
            "Events the kernel lost, by kind and reason.",
        );
        for (kind, k) in &snap.kernel {
            o.sample(
                "observer_kernel_dropped_total",
                &[("kind", kind), ("reason", "ringbuf_full")],
                k.dropped_ringbuf_full,
            );
            o.sample(
                "observer_kernel_dropped_total",
                &[("kind", kind), ("reason", "read_error")],
                k.dropped_read_error,
            );
        }
        o.head(
            "observer_kernel_suppressed_total",
            "counter",
            "Repeat file opens suppressed in the kernel on purpose, by kind.",
        );
        for (kind, k) in &snap.kernel {
            o.sample(
                "observer_kernel_suppressed_total",
                &[("kind", kind)],
                k.suppressed,
            );
        }
        o.head(
            "observer_kernel_skipped_runs_total",
            "counter",
            "Probe runs the kernel skipped (recursion), by program.",
        );
        for (prog, n) in &snap.skipped {
            o.sample(
                "observer_kernel_skipped_runs_total",
                &[("program", prog)],
                n,
            );
        }
        o.head(
            "observer_user_dropped_total",
            "counter",
            "Events dropped in user space, by reason.",
        );
        for (reason, n) in &snap.user {
            o.sample("observer_user_dropped_total", &[("reason", reason)], n);
        }
    }
    let names = s.names.lock().map(|g| g.clone()).unwrap_or_default();
    if !names.is_empty() {
        o.head(
            "observer_names_total",
            "counter",
            "The names stage: DNS answers and ClientHellos refused or cut, by reason, SNI joined or not, connect records that waited (docs/names.md).",
        );
        for (counter, n) in &names {
            o.sample("observer_names_total", &[("counter", counter)], n);
        }
    }
    o.one(
        "observer_metrics_connections_refused_total",
        "counter",
        "Metrics endpoint connections closed at accept because metrics.max_connections were open.",
        s.endpoint.refused.load(Ordering::Relaxed),
    );
    o.one(
        "observer_metrics_requests_timed_out_total",
        "counter",
        "Metrics endpoint connections closed at metrics.request_timeout_ms before the response was written.",
        s.endpoint.timed_out.load(Ordering::Relaxed),
    );
    type Get = fn(&SinkCounters) -> u64;
    let per_sink: [(&str, &str, &str, Get); 10] = [
        ("observer_sink_delivered_total", "counter", "Records the receiver acknowledged (receipts and checkpoints).", |c| SinkCounters::get(&c.delivered)),
        ("observer_sink_checkpoints_delivered_total", "counter", "Signed checkpoints the receiver acknowledged.", |c| SinkCounters::get(&c.checkpoints_delivered)),
        ("observer_sink_filtered_total", "counter", "Receipts the sink's filter left out.", |c| SinkCounters::get(&c.filtered)),
        ("observer_sink_retries_total", "counter", "Delivery attempts after a failure.", |c| SinkCounters::get(&c.retries)),
        ("observer_sink_resent_total", "counter", "Records sent again after a failure that an earlier attempt may have delivered (at-least-once duplicates, upper bound).", |c| SinkCounters::get(&c.resent)),
        ("observer_sink_restarts_total", "counter", "Times the sink's delivery thread panicked or ended early and was restarted (from its cursor: nothing is lost).", |c| SinkCounters::get(&c.restarts)),
        ("observer_sink_pruned_unsent_total", "counter", "Receipts removed by retention before the sink forwarded them.", |c| SinkCounters::get(&c.pruned_unsent)),
        ("observer_sink_unsendable_total", "counter", "Records the sink's transport cannot carry (a syslog message larger than a UDP datagram): skipped, logged by hash, kept in the store.", |c| SinkCounters::get(&c.unsendable)),
        ("observer_sink_backlog", "gauge", "Receipts committed but not yet confirmed delivered (log size minus cursor).", |c| SinkCounters::get(&c.backlog)),
        ("observer_sink_cursor", "gauge", "The sink's durable cursor: next log index to deliver.", |c| SinkCounters::get(&c.cursor)),
    ];
    if !s.sinks.is_empty() {
        for (name, kind, help, get) in per_sink {
            o.head(name, kind, help);
            for (sink, t, c) in &s.sinks {
                o.sample(name, &[("sink", sink), ("type", sink_type(*t))], get(c));
            }
        }
        o.head(
            "observer_sink_errors_total",
            "counter",
            "Delivery failures by reason.",
        );
        for (sink, t, c) in &s.sinks {
            for (reason, n) in c.errors() {
                o.sample(
                    "observer_sink_errors_total",
                    &[("sink", sink), ("type", sink_type(*t)), ("reason", reason)],
                    n,
                );
            }
        }
    }
    o.0
}

/// Binds the endpoint (at start, so a taken port is a start error).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, MetricsError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| MetricsError::Bind(addr, e))
}

/// How the endpoint serves: at most `max_connections` at once, each
/// closed `request_timeout` after it was accepted.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub request_timeout: Duration,
}

impl Limits {
    pub fn from_config(m: &config::MetricsSection) -> Limits {
        Limits {
            max_connections: m.max_connections,
            request_timeout: Duration::from_millis(m.request_timeout_ms),
        }
    }
}

/// Serves `GET /metrics` until `stop`. A connection over the cap is
/// closed at once; one not done within the deadline (a client that sends
/// slowly or never reads) is closed then. Both are counted.
pub async fn serve(
    listener: TcpListener,
    sources: Arc<Sources>,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let (sock, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors (EMFILE) fails every accept until
                    // some close: pause instead of spinning on it.
                    log::warn!("metrics: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            sources.endpoint.refused.fetch_add(1, Ordering::Relaxed);
            drop(sock);
            continue;
        };
        let sources = sources.clone();
        tokio::spawn(async move {
            let _slot = slot;
            if tokio::time::timeout(limits.request_timeout, answer(sock, &sources))
                .await
                .is_err()
            {
                sources.endpoint.timed_out.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
}

/// Reads one request head and writes the response.
async fn answer(mut sock: TcpStream, sources: &Arc<Sources>) {
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    // The request head only; bodies are not expected.
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 8192 {
        match sock.read(&mut buf).await {
            Ok(n) if n > 0 => req.extend_from_slice(&buf[..n]),
            _ => return,
        }
    }
    let line = String::from_utf8_lossy(&req);
    let ok = line.starts_with("GET /metrics ") || line.starts_with("GET / ");
    let (status, body) = if ok {
        let s = sources.clone();
        let body = tokio::task::spawn_blocking(move || render(&s))
            .await
            .unwrap_or_default();
        ("200 OK", body)
    } else {
        ("404 Not Found", "only GET /metrics\n".to_string())
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = sock.write_all(resp.as_bytes()).await;
    let _ = sock.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_sink_counters() {
        let c = Arc::new(SinkCounters::default());
        SinkCounters::add(&c.delivered, 5);
        SinkCounters::add(&c.restarts, 2);
        c.error("connect");
        let s = Sources {
            sinks: vec![("siem".into(), SinkType::Syslog, c)],
            ..Default::default()
        };
        let text = render(&s);
        assert!(
            text.contains("observer_sink_delivered_total{sink=\"siem\",type=\"syslog\"} 5\n"),
            "{text}"
        );
        assert!(text.contains(
            "observer_sink_errors_total{sink=\"siem\",type=\"syslog\",reason=\"connect\"} 1\n"
        ));
        assert!(text.contains(
            "# TYPE observer_sink_restarts_total counter\nobserver_sink_restarts_total{sink=\"siem\",type=\"syslog\"} 2\n"
        ));
        assert!(!text.contains("observer_names_total"), "names disabled");
    }

    #[test]
    fn renders_names_counters() {
        let s = Sources::default();
        s.names
            .lock()
            .unwrap()
            .extend([("sni_truncated", 2), ("sni_joined", 7)]);
        let text = render(&s);
        assert!(
            text.contains("# TYPE observer_names_total counter\n"),
            "{text}"
        );
        assert!(text.contains("observer_names_total{counter=\"sni_truncated\"} 2\n"));
        assert!(text.contains("observer_names_total{counter=\"sni_joined\"} 7\n"));
    }
}
