//! Per-sink counters, read by the metrics endpoint and logged at stop.
use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
};

#[derive(Default)]
pub struct SinkCounters {
    /// Records the receiver acknowledged (receipts and checkpoints).
    pub delivered: AtomicU64,
    pub checkpoints_delivered: AtomicU64,
    /// Receipts the filter left out (the cursor moves past them).
    pub filtered: AtomicU64,
    /// Delivery attempts after a failure.
    pub retries: AtomicU64,
    /// Records sent again after a failure although an earlier send may
    /// have reached the receiver (at-least-once duplicates, upper bound).
    pub resent: AtomicU64,
    /// Receipts pruned by retention before this sink forwarded them.
    pub pruned_unsent: AtomicU64,
    /// Records the transport can never carry (a syslog message larger
    /// than a UDP datagram), skipped and logged by hash; they stay in the
    /// store.
    pub unsendable: AtomicU64,
    /// Times the sink's delivery loop panicked (or ended early) and was
    /// restarted.
    pub restarts: AtomicU64,
    /// Log size minus the cursor.
    pub backlog: AtomicU64,
    /// The durable cursor (next log index).
    pub cursor: AtomicU64,
    errors: Mutex<BTreeMap<&'static str, u64>>,
}

impl SinkCounters {
    pub fn error(&self, reason: &'static str) {
        if let Ok(mut m) = self.errors.lock() {
            *m.entry(reason).or_default() += 1;
        }
    }

    /// Errors by reason.
    pub fn errors(&self) -> BTreeMap<&'static str, u64> {
        self.errors.lock().map(|m| m.clone()).unwrap_or_default()
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}
