//! Loss accounting: reads the kernel's per-CPU, per-kind counters and the
//! user-space drop counters, and turns any increase into a loss record.
use std::collections::BTreeMap;

use aya::{
    maps::{MapData, PerCpuArray},
    programs::ProgramFd,
};
use observer_common::{EventKind, KindCounters};

use crate::record::{KernelKindLoss, KernelKindStats, LossRecord};

/// Sums the per-CPU counters of every kind.
pub fn read_kernel(
    counters: &PerCpuArray<MapData, KindCounters>,
) -> BTreeMap<&'static str, KernelKindStats> {
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

/// Skipped runs per program (see `prog_stats`); unreadable ones count 0.
pub fn read_skipped(programs: &[(&'static str, ProgramFd)]) -> BTreeMap<&'static str, u64> {
    programs
        .iter()
        .map(|(name, fd)| {
            (
                *name,
                crate::kernel::prog_stats::recursion_misses(fd).unwrap_or(0),
            )
        })
        .collect()
}

/// Everything counted at one moment.
#[derive(Clone, Default)]
pub struct Snapshot {
    pub kernel: BTreeMap<&'static str, KernelKindStats>,
    pub user: BTreeMap<String, u64>,
    pub skipped: BTreeMap<&'static str, u64>,
}

/// Remembers what was last reported so each record carries deltas.
#[derive(Default)]
pub struct LossTracker {
    last: Snapshot,
}

impl LossTracker {
    /// A loss record if anything was dropped since the previous call.
    pub fn update(&mut self, now: Snapshot, time: String) -> Option<LossRecord> {
        let mut total = 0;
        let mut kernel_loss = BTreeMap::new();
        for (kind, now) in &now.kernel {
            let before = self.last.kernel.get(kind).cloned().unwrap_or_default();
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
        for (reason, count) in &now.user {
            let d = count - self.last.user.get(reason).copied().unwrap_or(0);
            if d > 0 {
                total += d;
                user_loss.insert(reason.clone(), d);
            }
        }
        let mut skipped = BTreeMap::new();
        for (program, count) in &now.skipped {
            let d = count.saturating_sub(self.last.skipped.get(program).copied().unwrap_or(0));
            if d > 0 {
                total += d;
                skipped.insert(*program, d);
            }
        }
        self.last = now;
        (total > 0).then_some(LossRecord {
            time,
            kernel: kernel_loss,
            user: user_loss,
            kernel_skipped: skipped,
            total,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel(ring_full: u64) -> BTreeMap<&'static str, KernelKindStats> {
        let mut m = BTreeMap::new();
        m.insert(
            "file_open",
            KernelKindStats {
                emitted: 10,
                dropped_ringbuf_full: ring_full,
                ..Default::default()
            },
        );
        m
    }

    fn snapshot(ring_full: u64, decode_short: u64, skipped: u64) -> Snapshot {
        Snapshot {
            kernel: kernel(ring_full),
            user: BTreeMap::from([("decode_short".into(), decode_short)]),
            skipped: BTreeMap::from([("openat_exit", skipped)]),
        }
    }

    #[test]
    fn reports_only_increases_as_deltas() {
        let mut t = LossTracker::default();
        assert!(t.update(snapshot(0, 0, 0), "t0".into()).is_none());
        let r = t.update(snapshot(5, 2, 1), "t1".into()).unwrap();
        assert_eq!(r.total, 8);
        assert_eq!(r.kernel["file_open"].ringbuf_full, 5);
        assert_eq!(r.user["decode_short"], 2);
        assert_eq!(r.kernel_skipped["openat_exit"], 1);
        assert!(t.update(snapshot(5, 2, 1), "t2".into()).is_none());
        let r = t.update(snapshot(8, 2, 1), "t3".into()).unwrap();
        assert_eq!((r.total, r.kernel["file_open"].ringbuf_full), (3, 3));
        assert!(r.user.is_empty() && r.kernel_skipped.is_empty());
    }
}
