//! Loss accounting: reads the kernel's per-CPU, per-kind counters and the
//! user-space drop counters, and turns any increase into a loss record.
use std::collections::BTreeMap;

use aya::maps::{MapData, PerCpuArray};
use observer_common::{EventKind, KindCounters};

use crate::record::{KernelKindLoss, KernelKindStats, LossRecord};

/// Sums the per-CPU counters of every kind.
pub fn read_kernel(counters: &PerCpuArray<MapData, KindCounters>) -> BTreeMap<&'static str, KernelKindStats> {
    let mut out = BTreeMap::new();
    for kind in EventKind::ALL {
        let mut s = KernelKindStats::default();
        if let Ok(per_cpu) = counters.get(&(kind as u32), 0) {
            for c in per_cpu.iter() {
                s.emitted += c.emitted;
                s.dropped_ringbuf_full += c.dropped_ringbuf_full;
                s.dropped_read_error += c.dropped_read_error;
                s.suppressed += c.suppressed;
            }
        }
        out.insert(kind.name(), s);
    }
    out
}

/// Remembers what was last reported so each record carries deltas.
#[derive(Default)]
pub struct LossTracker {
    kernel: BTreeMap<&'static str, KernelKindStats>,
    user: BTreeMap<String, u64>,
}

impl LossTracker {
    /// A loss record if anything was dropped since the previous call.
    pub fn update(
        &mut self,
        kernel: BTreeMap<&'static str, KernelKindStats>,
        user: BTreeMap<String, u64>,
        time: String,
    ) -> Option<LossRecord> {
        let mut total = 0;
        let mut kernel_loss = BTreeMap::new();
        for (kind, now) in &kernel {
            let before = self.kernel.get(kind).cloned().unwrap_or_default();
            let d = KernelKindLoss {
                ringbuf_full: now.dropped_ringbuf_full - before.dropped_ringbuf_full,
                read_error: now.dropped_read_error - before.dropped_read_error,
            };
            if d.ringbuf_full + d.read_error > 0 {
                total += d.ringbuf_full + d.read_error;
                kernel_loss.insert(*kind, d);
            }
        }
        let mut user_loss = BTreeMap::new();
        for (reason, now) in &user {
            let d = now - self.user.get(reason).copied().unwrap_or(0);
            if d > 0 {
                total += d;
                user_loss.insert(reason.clone(), d);
            }
        }
        self.kernel = kernel;
        self.user = user;
        (total > 0).then_some(LossRecord { time, kernel: kernel_loss, user: user_loss, total })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel(ring_full: u64) -> BTreeMap<&'static str, KernelKindStats> {
        let mut m = BTreeMap::new();
        m.insert("file_open", KernelKindStats { emitted: 10, dropped_ringbuf_full: ring_full, ..Default::default() });
        m
    }

    #[test]
    fn reports_only_increases_as_deltas() {
        let mut t = LossTracker::default();
        assert!(t.update(kernel(0), BTreeMap::new(), "t0".into()).is_none());
        let r = t.update(kernel(5), BTreeMap::from([("decode_short".into(), 2)]), "t1".into()).unwrap();
        assert_eq!(r.total, 7);
        assert_eq!(r.kernel["file_open"].ringbuf_full, 5);
        assert_eq!(r.user["decode_short"], 2);
        assert!(t.update(kernel(5), BTreeMap::from([("decode_short".into(), 2)]), "t2".into()).is_none());
        let r = t.update(kernel(8), BTreeMap::from([("decode_short".into(), 2)]), "t3".into()).unwrap();
        assert_eq!((r.total, r.kernel["file_open"].ringbuf_full), (3, 3));
        assert!(r.user.is_empty());
    }
}
