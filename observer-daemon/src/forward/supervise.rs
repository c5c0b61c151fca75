//! A sink thread never silently disappears: a panic in its loop (a bug, or
//! a receiver that found one) is caught, logged and counted
//! (`observer_sink_restarts_total`), and the sink is built again and
//! restarted after a backoff. Nothing is lost: the loop starts again from
//! the durable cursor, so what was sent and not confirmed is sent again.
use std::{
    any::Any,
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{
        atomic::{AtomicU8, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use super::{
    backoff::Backoff,
    counters::SinkCounters,
    runner::{RUNNING, STOP},
    sink::Sink,
};

/// What the supervisor needs to know about the sink it keeps running.
pub struct Supervised {
    pub name: String,
    pub phase: Arc<AtomicU8>,
    pub counters: Arc<SinkCounters>,
    /// Delays between restarts (the sink's retry_initial_ms / retry_max_ms).
    pub backoff: Backoff,
    /// A run that lasted this long was healthy: the next restart waits
    /// the initial delay again.
    pub healthy_after: Duration,
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

impl Supervised {
    fn sleep(&self, d: Duration) {
        let until = Instant::now() + d;
        while self.phase.load(Ordering::Relaxed) != STOP {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            std::thread::sleep(left.min(Duration::from_millis(20)));
        }
    }

    /// Runs `run` with `sink` until it returns after a stop or drain;
    /// restarts it with a sink from `rebuild` after a panic or an early
    /// return.
    pub fn run(
        mut self,
        sink: Box<dyn Sink>,
        mut run: impl FnMut(&mut Box<dyn Sink>),
        mut rebuild: impl FnMut() -> Result<Box<dyn Sink>, String>,
    ) {
        let mut sink = sink;
        loop {
            let started = Instant::now();
            let outcome = catch_unwind(AssertUnwindSafe(|| run(&mut sink)));
            let phase = self.phase.load(Ordering::Relaxed);
            match outcome {
                Ok(()) if phase != RUNNING => return,
                Ok(()) => log::error!(
                    sink = self.name.as_str();
                    "sink {}: the delivery loop ended while the daemon runs; restarting it",
                    self.name
                ),
                Err(payload) => log::error!(
                    sink = self.name.as_str();
                    "sink {}: the delivery loop panicked ({}); restarting it from the cursor",
                    self.name,
                    panic_message(payload.as_ref())
                ),
            }
            if self.phase.load(Ordering::Relaxed) == STOP {
                return;
            }
            SinkCounters::add(&self.counters.restarts, 1);
            if started.elapsed() >= self.healthy_after {
                self.backoff.reset();
            }
            sink = loop {
                if self.phase.load(Ordering::Relaxed) == STOP {
                    return;
                }
                let delay = self.backoff.next_delay();
                self.sleep(delay);
                match rebuild() {
                    Ok(s) => break s,
                    Err(e) => {
                        log::error!(sink = self.name.as_str(); "sink {}: restarting: {e}", self.name);
                        self.counters.error("restart");
                    }
                }
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{export::Item, forward::sink::SendError};

    struct Nothing;
    impl Sink for Nothing {
        fn send(&mut self, _: &[Item]) -> Result<(), SendError> {
            Ok(())
        }
    }

    #[test]
    fn a_panicking_loop_is_restarted_with_a_new_sink_and_counted() {
        let phase = Arc::new(AtomicU8::new(RUNNING));
        let counters = Arc::new(SinkCounters::default());
        let sup = Supervised {
            name: "s".into(),
            phase: phase.clone(),
            counters: counters.clone(),
            backoff: Backoff::new(Duration::from_millis(1), Duration::from_millis(2)),
            healthy_after: Duration::from_secs(60),
        };
        let mut runs = 0;
        let mut rebuilds = 0;
        sup.run(
            Box::new(Nothing),
            |_| {
                runs += 1;
                match runs {
                    1 => panic!("Content-Length overflow"),
                    // An early return is restarted too.
                    2 => {}
                    _ => phase.store(super::super::runner::DRAINING, Ordering::Relaxed),
                }
            },
            || {
                rebuilds += 1;
                // The first rebuild fails (e.g. the token file is gone).
                if rebuilds == 1 {
                    Err("token_file /x: gone".into())
                } else {
                    Ok(Box::new(Nothing))
                }
            },
        );
        assert_eq!((runs, rebuilds), (3, 3));
        assert_eq!(SinkCounters::get(&counters.restarts), 2);
        assert_eq!(counters.errors().get("restart"), Some(&1));
    }

    #[test]
    fn stop_ends_the_supervisor_without_a_restart() {
        let phase = Arc::new(AtomicU8::new(RUNNING));
        let counters = Arc::new(SinkCounters::default());
        let sup = Supervised {
            name: "s".into(),
            phase: phase.clone(),
            counters: counters.clone(),
            backoff: Backoff::new(Duration::from_millis(1), Duration::from_millis(2)),
            healthy_after: Duration::from_secs(60),
        };
        sup.run(
            Box::new(Nothing),
            |_| {
                phase.store(STOP, Ordering::Relaxed);
                panic!("during stop")
            },
            || panic!("not rebuilt after stop"),
        );
        assert_eq!(SinkCounters::get(&counters.restarts), 0);
    }
}
