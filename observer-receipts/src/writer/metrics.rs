//! What the writer counts while it runs: receipts, batches, checkpoints,
//! a full store's held and lost receipts, and event-to-commit latency,
//! read by the daemon's metrics and by the benchmark.
use std::sync::{
    atomic::{AtomicBool, AtomicU64},
    Mutex, OnceLock,
};

/// What [`WriterMetrics::on_commit`] calls: first and end log index.
pub type CommitHook = Box<dyn Fn(u64, u64) + Send + Sync>;

/// Counters the daemon and the benchmark read while the writer runs.
#[derive(Default)]
pub struct WriterMetrics {
    /// Receipts committed in this run.
    pub committed: AtomicU64,
    /// Transactions committed in this run.
    pub batches: AtomicU64,
    /// Checkpoints signed in this run.
    pub checkpoints: AtomicU64,
    /// Receipts in the log, pruned ones included (the Merkle tree size).
    pub log_size: AtomicU64,
    /// Told each committed log range `[first, end)` after its commit, on
    /// the writer thread (it must not block): the daemon's live feed for
    /// `observerctl tail -f` hangs off it.
    pub on_commit: OnceLock<CommitHook>,
    /// True while the store cannot grow (SQLITE_FULL): receipts are held.
    pub store_full: AtomicBool,
    /// Signed receipts held in memory, waiting for a commit.
    pub held: AtomicU64,
    /// Drafts dropped before they were chained because the store was full
    /// and `held` at its bound (reported by `observer.loss` receipts).
    pub lost_store_full: AtomicU64,
    /// Episodes of a full store in this run.
    pub full_episodes: AtomicU64,
    /// Event time (kernel clock) to commit, in ms buckets.
    latency: Mutex<LatencyHistogram>,
}

impl WriterMetrics {
    /// Quantile `q` of event-to-commit time in ms (max 60,000); `None` before a commit.
    pub fn latency_ms_quantile(&self, q: f64) -> Option<u64> {
        self.latency.lock().ok()?.quantile(q)
    }

    /// Records the event-to-commit time of each receipt of a committed
    /// batch, given their event times and now (ns since the Unix epoch).
    pub(crate) fn record_latencies(&self, now_ns: u64, event_ns: impl Iterator<Item = u64>) {
        if let Ok(mut h) = self.latency.lock() {
            for ns in event_ns {
                h.record(now_ns.saturating_sub(ns) / 1_000_000);
            }
        }
    }
}

/// 1 ms buckets up to 60 s, then one overflow bucket.
struct LatencyHistogram {
    buckets: Vec<u64>,
    count: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            buckets: vec![0; 60_001],
            count: 0,
        }
    }
}

impl LatencyHistogram {
    fn record(&mut self, ms: u64) {
        let i = (ms as usize).min(self.buckets.len() - 1);
        self.buckets[i] += 1;
        self.count += 1;
    }

    fn quantile(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((self.count as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (ms, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(ms as u64);
            }
        }
        None
    }
}
