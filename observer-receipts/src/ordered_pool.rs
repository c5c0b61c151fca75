//! One ordered worker pool: items submitted on one thread are processed
//! by `threads` workers in any order and handed back to that thread in
//! submission order. The store verifier ([`crate::verify`]), the receipt
//! writer's signers ([`crate::writer`]) and `observerctl export` use it.
//!
//! - The input is bounded, and at most `window` items are in flight
//!   (submitted and not yet handed back): [`Pool::submit`] on a full window
//!   first takes the oldest result and returns it, so memory stays flat
//!   however many items pass through and the submitting thread never
//!   blocks on itself.
//! - A worker that panics is caught: its item comes back as
//!   [`WorkerPanicked`], which [`Pool::wait_next`] and [`Pool::submit`] return as
//!   soon as it arrives (never a wait for a result that will not come).
//! - The workers are scoped threads ([`scope`]): the work may borrow from
//!   the caller, and every worker has stopped when [`scope`] returns.
use std::{
    collections::BTreeMap,
    panic::{catch_unwind, AssertUnwindSafe},
};

use crossbeam_channel::{bounded, unbounded, Receiver, Sender, TryRecvError};

/// A worker panicked while processing an item (the panic message went to
/// the panic hook, stderr by default), or every worker is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a worker thread of an ordered pool panicked")]
pub struct WorkerPanicked;

/// Runs `body` with a [`Pool`] whose `threads` workers (at least one) apply
/// `work` to each item, at most `window` items (at least one) in flight.
/// When `body` returns, the input closes, the workers finish what they
/// hold (results not taken are dropped) and are joined.
pub fn scope<I, O, T>(
    threads: usize,
    window: usize,
    work: impl Fn(I) -> O + Sync,
    body: impl FnOnce(&mut Pool<I, O>) -> T,
) -> T
where
    I: Send,
    O: Send,
{
    scope_inner(None, threads, window, work, body)
}

/// As [`scope`], with the workers named `{name}-0`, `{name}-1`, ... (what
/// `top -H` and `/proc/<pid>/task/*/comm` show; the receipt benchmark
/// reads each stage's CPU time by these names). Like
/// [`std::thread::Scope::spawn`], panics if a thread cannot be started.
pub fn scope_named<I, O, T>(
    name: &str,
    threads: usize,
    window: usize,
    work: impl Fn(I) -> O + Sync,
    body: impl FnOnce(&mut Pool<I, O>) -> T,
) -> T
where
    I: Send,
    O: Send,
{
    scope_inner(Some(name), threads, window, work, body)
}

fn scope_inner<I, O, T>(
    name: Option<&str>,
    threads: usize,
    window: usize,
    work: impl Fn(I) -> O + Sync,
    body: impl FnOnce(&mut Pool<I, O>) -> T,
) -> T
where
    I: Send,
    O: Send,
{
    let window = window.max(1);
    std::thread::scope(|s| {
        let (input_tx, input_rx) = bounded::<(u64, I)>(window);
        let (output_tx, output_rx) = unbounded::<(u64, Result<O, WorkerPanicked>)>();
        let work = &work;
        for i in 0..threads.max(1) {
            let (input, output) = (input_rx.clone(), output_tx.clone());
            let worker = move || run_worker(work, &input, &output);
            match name {
                Some(name) => {
                    std::thread::Builder::new()
                        .name(format!("{name}-{i}"))
                        .spawn_scoped(s, worker)
                        .expect("failed to spawn thread");
                }
                None => {
                    s.spawn(worker);
                }
            }
        }
        drop((input_rx, output_tx));
        let mut pool = Pool {
            input: Some(input_tx),
            output: output_rx,
            window: window as u64,
            submitted: 0,
            returned: 0,
            waiting: BTreeMap::new(),
        };
        let result = body(&mut pool);
        // Closes the input: the workers drain it and stop before the scope
        // joins them.
        drop(pool);
        result
    })
}

/// Applies `work` to items until the input closes, the submitter is gone,
/// or `work` panics (reported with the item's number, then this worker
/// stops; the others carry on).
fn run_worker<I, O>(
    work: &(impl Fn(I) -> O + Sync),
    input: &Receiver<(u64, I)>,
    output: &Sender<(u64, Result<O, WorkerPanicked>)>,
) {
    for (number, item) in input {
        let result = catch_unwind(AssertUnwindSafe(|| work(item))).map_err(|_| WorkerPanicked);
        let panicked = result.is_err();
        if output.send((number, result)).is_err() || panicked {
            return;
        }
    }
}

/// The submitting side of [`scope`]: submit items, take results in the
/// order the items were submitted.
pub struct Pool<I, O> {
    input: Option<Sender<(u64, I)>>,
    output: Receiver<(u64, Result<O, WorkerPanicked>)>,
    /// Most items in flight.
    window: u64,
    /// Items submitted so far; the next item's number.
    submitted: u64,
    /// Results handed back so far; the number of the next one due.
    returned: u64,
    /// Results that arrived before an earlier one, by item number.
    waiting: BTreeMap<u64, O>,
}

impl<I, O> Pool<I, O> {
    /// Submits `item`. When `window` items are already in flight, first
    /// waits for the oldest one's result and returns it (the caller handles
    /// it as it would one from [`Pool::wait_next`]).
    pub fn submit(&mut self, item: I) -> Result<Option<O>, WorkerPanicked> {
        let oldest = if self.in_flight() >= self.window {
            self.wait_next()?
        } else {
            None
        };
        let input = self.input.as_ref().ok_or(WorkerPanicked)?;
        input
            .send((self.submitted, item))
            .map_err(|_| WorkerPanicked)?;
        self.submitted += 1;
        Ok(oldest)
    }

    /// The next result in submission order, waiting for it; `None` when
    /// nothing is in flight.
    pub fn wait_next(&mut self) -> Result<Option<O>, WorkerPanicked> {
        while self.in_flight() > 0 {
            if let Some(out) = self.take_due() {
                return Ok(Some(out));
            }
            let (number, result) = self.output.recv().map_err(|_| WorkerPanicked)?;
            self.waiting.insert(number, result?);
        }
        Ok(None)
    }

    /// The next result in submission order if it is already back (no
    /// wait); `None` otherwise.
    pub fn try_next(&mut self) -> Result<Option<O>, WorkerPanicked> {
        loop {
            if let Some(out) = self.take_due() {
                return Ok(Some(out));
            }
            match self.output.try_recv() {
                Ok((number, result)) => {
                    self.waiting.insert(number, result?);
                }
                Err(TryRecvError::Empty) => return Ok(None),
                Err(TryRecvError::Disconnected) if self.in_flight() == 0 => return Ok(None),
                Err(TryRecvError::Disconnected) => return Err(WorkerPanicked),
            }
        }
    }

    /// Items submitted whose results have not been handed back.
    pub fn in_flight(&self) -> u64 {
        self.submitted - self.returned
    }

    fn take_due(&mut self) -> Option<O> {
        let out = self.waiting.remove(&self.returned)?;
        self.returned += 1;
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::atomic::{AtomicU64, Ordering},
        time::Duration,
    };

    use super::*;

    /// A small deterministic generator (xorshift), so the delays differ
    /// per item without a dependency.
    fn delays(n: usize) -> Vec<u64> {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x % 300
            })
            .collect()
    }

    #[test]
    fn results_come_back_in_submission_order_under_random_delays() {
        let delays = delays(500);
        let mut seen = Vec::new();
        scope(
            4,
            16,
            |(i, micros): (usize, u64)| {
                std::thread::sleep(Duration::from_micros(micros));
                i * 2
            },
            |pool| -> Result<(), WorkerPanicked> {
                for (i, &d) in delays.iter().enumerate() {
                    seen.extend(pool.submit((i, d))?);
                    seen.extend(pool.try_next()?);
                }
                while let Some(out) = pool.wait_next()? {
                    seen.push(out);
                }
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(seen, (0..500).map(|i| i * 2).collect::<Vec<_>>());
    }

    #[test]
    fn a_panic_is_reported_not_waited_for() {
        let result = scope(
            3,
            8,
            |i: u32| {
                if i == 37 {
                    panic!("item 37");
                }
                i
            },
            |pool| -> Result<Vec<u32>, WorkerPanicked> {
                let mut seen = Vec::new();
                for i in 0..100 {
                    seen.extend(pool.submit(i)?);
                }
                while let Some(out) = pool.wait_next()? {
                    seen.push(out);
                }
                Ok(seen)
            },
        );
        assert_eq!(result, Err(WorkerPanicked));
    }

    #[test]
    fn every_worker_panicking_is_reported_too() {
        let result = scope(
            2,
            4,
            |_: u32| -> u32 { panic!("always") },
            |pool| -> Result<(), WorkerPanicked> {
                for i in 0..100 {
                    pool.submit(i)?;
                }
                while pool.wait_next()?.is_some() {}
                Ok(())
            },
        );
        assert_eq!(result, Err(WorkerPanicked));
    }

    #[test]
    fn no_more_than_the_window_is_in_flight() {
        let started = AtomicU64::new(0);
        let window = 5;
        let mut returned = 0u64;
        scope(
            4,
            window,
            |i: u64| {
                started.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_micros(50 * (i % 7)));
                i
            },
            |pool| -> Result<(), WorkerPanicked> {
                for i in 0..200 {
                    if let Some(out) = pool.submit(i)? {
                        assert_eq!(out, returned);
                        returned += 1;
                    }
                    assert!(pool.in_flight() <= window as u64);
                    // Started items were all submitted; those not yet
                    // returned are in flight.
                    assert!(started.load(Ordering::SeqCst) - returned <= window as u64);
                }
                while let Some(out) = pool.wait_next()? {
                    assert_eq!(out, returned);
                    returned += 1;
                }
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(returned, 200);
    }

    #[test]
    fn named_workers_carry_the_name() {
        let mut names = scope_named(
            "pool-test",
            3,
            64,
            |_: u32| {
                std::thread::sleep(Duration::from_millis(2));
                std::thread::current().name().map(str::to_owned)
            },
            |pool| -> Result<Vec<Option<String>>, WorkerPanicked> {
                let mut names = Vec::new();
                for i in 0..60 {
                    names.extend(pool.submit(i)?);
                }
                while let Some(name) = pool.wait_next()? {
                    names.push(name);
                }
                Ok(names)
            },
        )
        .unwrap();
        assert_eq!(names.len(), 60);
        names.sort();
        names.dedup();
        for name in &names {
            let name = name.as_deref().unwrap();
            assert!(
                ["pool-test-0", "pool-test-1", "pool-test-2"].contains(&name),
                "{name}"
            );
        }
    }

    #[test]
    fn work_may_borrow_and_nothing_in_flight_is_none() {
        let offset = 1000u64;
        let out = scope(
            1,
            1,
            |i: u64| i + offset,
            |pool| {
                assert_eq!(pool.wait_next(), Ok(None));
                assert_eq!(pool.try_next(), Ok(None));
                assert_eq!(pool.submit(1), Ok(None));
                assert_eq!(pool.submit(2), Ok(Some(1001)));
                pool.wait_next()
            },
        );
        assert_eq!(out, Ok(Some(1002)));
    }
}
