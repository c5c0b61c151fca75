//! Exponential backoff with jitter: the n-th consecutive failure waits a
//! random time in [d/2, d] with d = min(initial * 2^n, max), so many hosts
//! whose collector came back do not reconnect in lockstep.
use std::time::Duration;

pub struct Backoff {
    initial: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            failures: 0,
        }
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let d = self
            .initial
            .saturating_mul(1u32 << self.failures.min(20))
            .min(self.max);
        self.failures = self.failures.saturating_add(1);
        let mut b = [0u8; 4];
        let r = getrandom::getrandom(&mut b).map_or(u32::MAX, |()| u32::from_le_bytes(b));
        let half = d / 2;
        half + half.mul_f64(f64::from(r) / f64::from(u32::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_max_within_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        let bounds = [100, 200, 400, 800, 1000, 1000];
        for hi in bounds {
            let d = b.next_delay();
            let hi = Duration::from_millis(hi);
            assert!(
                d >= hi / 2 && d <= hi,
                "{d:?} not in [{:?}, {hi:?}]",
                hi / 2
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
