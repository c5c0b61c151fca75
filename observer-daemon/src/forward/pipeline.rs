//! Delivery one batch behind the runner: a sink's `send` encodes its batch
//! and hands it to a thread of the sink's own that delivers it, then
//! returns, so the runner reads and encodes the next batch while the
//! receiver takes this one. The hand-over is a rendezvous: it waits until
//! the thread has finished the batch before, so one batch is in delivery
//! and one is being prepared, never more (two batches of memory).
//!
//! The runner learns what happened through [`Pipeline::in_delivery`] (the
//! `Sink::in_delivery` of such a sink): it confirms a batch, and moves the
//! durable cursor past it, only once the thread reported it delivered.
//! After a failure the thread drops every batch handed over until the
//! runner has rewound ([`Pipeline::reset`]), so batches are delivered in
//! order or not at all; what was dropped is sent again from the cursor.
use std::{
    panic::resume_unwind,
    sync::{
        mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender},
        Arc, Mutex, MutexGuard, PoisonError,
    },
    thread::JoinHandle,
    time::Instant,
};

use super::sink::SendError;

/// Delivers batches, on the pipeline's thread.
pub trait Deliver: Send + 'static {
    type Batch: Send + 'static;

    /// Takes `batch`: [`Taken::Delivered`] once the receiver acknowledged
    /// it and every batch taken before it; [`Taken::Open`] when it is on
    /// its way and a later `deliver` or [`Deliver::flush`] finishes it.
    fn deliver(&mut self, batch: &Self::Batch) -> Result<Taken, SendError>;

    /// When what is open must be finished ([`Deliver::flush`]) if no batch
    /// came meanwhile; `None` when nothing is open.
    fn deadline(&self) -> Option<Instant> {
        None
    }

    /// Finishes what is open: Ok once every batch taken is delivered.
    fn flush(&mut self) -> Result<(), SendError> {
        Ok(())
    }

    /// Forgets what is open and the connection (after a failure, or when
    /// the runner rewound); the next batch reconnects.
    fn reset(&mut self);
}

/// What [`Deliver::deliver`] did with a batch.
#[derive(Debug, PartialEq, Eq)]
pub enum Taken {
    Delivered,
    Open,
}

/// What the thread reports, for the batches of the current generation.
#[derive(Default)]
struct Shared {
    /// Bumped by each rewind: batches handed over before it are stale.
    generation: u64,
    /// Batches of this generation delivered.
    delivered: u64,
    /// The failure not yet reported to the runner.
    failed: Option<SendError>,
    /// A batch of this generation failed: the rest are dropped.
    failing: bool,
}

pub struct Pipeline<D: Deliver> {
    /// The deliverer until the thread starts (at the first hand-over, from
    /// the runner's thread, whose lowered priority the thread inherits).
    idle: Option<D>,
    to_thread: Option<SyncSender<(u64, D::Batch)>>,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Mutex<Shared>>,
    /// Batches of this generation handed over.
    handed: u64,
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // The thread never panics holding the lock; a poisoned lock still
    // holds consistent counts.
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<D: Deliver> Pipeline<D> {
    pub fn new(deliver: D) -> Pipeline<D> {
        Pipeline {
            idle: Some(deliver),
            to_thread: None,
            thread: None,
            shared: Arc::default(),
            handed: 0,
        }
    }

    /// Hands `batch` over, waiting while the batch before it is being
    /// delivered. Err: a batch handed over earlier failed (this one is not
    /// taken; the runner rewinds).
    pub fn hand_over(&mut self, batch: D::Batch) -> Result<(), SendError> {
        self.take_failure()?;
        if let Some(deliver) = self.idle.take() {
            self.start(deliver);
        }
        let generation = lock(&self.shared).generation;
        let sent = self
            .to_thread
            .as_ref()
            .is_some_and(|tx| tx.send((generation, batch)).is_ok());
        if !sent {
            self.thread_ended();
        }
        self.handed += 1;
        Ok(())
    }

    /// How many of the batches handed over last are still being
    /// delivered, or the failure of one of them.
    pub fn in_delivery(&mut self) -> Result<usize, SendError> {
        self.take_failure()?;
        let pending = self.handed - lock(&self.shared).delivered;
        if pending > 0 && self.thread.as_ref().is_some_and(JoinHandle::is_finished) {
            self.thread_ended();
        }
        Ok(usize::try_from(pending).unwrap_or(usize::MAX))
    }

    /// The runner rewound to its cursor: every batch handed over is
    /// stale. The thread drops those it has not started; one it is
    /// delivering finishes, before anything handed over from now on.
    pub fn reset(&mut self) {
        let mut s = lock(&self.shared);
        s.generation += 1;
        s.delivered = 0;
        s.failed = None;
        s.failing = false;
        self.handed = 0;
    }

    fn take_failure(&mut self) -> Result<(), SendError> {
        match lock(&self.shared).failed.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn start(&mut self, deliver: D) {
        let (tx, rx) = sync_channel(0);
        let shared = self.shared.clone();
        let thread = std::thread::Builder::new()
            .name("sink-deliver".into())
            .spawn(move || deliver_all(deliver, &rx, &shared))
            // Without a thread no batch can be delivered: the supervisor
            // restarts the sink, as after any panic of its loop.
            .unwrap_or_else(|e| panic!("starting the sink's delivery thread: {e}"));
        self.to_thread = Some(tx);
        self.thread = Some(thread);
    }

    /// The thread ended while the pipeline lives: it panicked. The panic
    /// goes on in the runner's thread, whose supervisor logs it, counts it
    /// and restarts the sink from the durable cursor.
    fn thread_ended(&mut self) -> ! {
        self.to_thread = None;
        match self.thread.take().map(JoinHandle::join) {
            Some(Err(payload)) => resume_unwind(payload),
            _ => panic!("the sink's delivery thread ended"),
        }
    }
}

/// The thread: delivers what it is handed, in order, until the pipeline
/// is dropped.
fn deliver_all<D: Deliver>(
    mut deliver: D,
    from: &Receiver<(u64, D::Batch)>,
    shared: &Mutex<Shared>,
) {
    // The generation of the batches taken, and how many were taken.
    let (mut current, mut taken) = (0u64, 0u64);
    loop {
        let next = match deliver.deadline() {
            None => from.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(at) => from.recv_timeout(at.saturating_duration_since(Instant::now())),
        };
        let outcome = match next {
            Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {
                if lock(shared).generation != current {
                    // What is open was handed over before a rewind.
                    deliver.reset();
                    continue;
                }
                deliver.flush().map(|()| Taken::Delivered)
            }
            Ok((generation, batch)) => {
                {
                    let s = lock(shared);
                    if s.generation != generation || s.failing {
                        continue;
                    }
                }
                if generation != current {
                    // The first batch since a rewind: nothing open before
                    // it is wanted any more.
                    deliver.reset();
                    (current, taken) = (generation, 0);
                }
                taken += 1;
                deliver.deliver(&batch)
            }
        };
        if outcome.is_err() {
            deliver.reset();
        }
        let mut s = lock(shared);
        if s.generation != current {
            continue;
        }
        match outcome {
            Ok(Taken::Delivered) => s.delivered = taken,
            Ok(Taken::Open) => {}
            Err(e) => {
                s.failed = Some(e);
                s.failing = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::mpsc::{channel, Sender},
        time::Duration,
    };

    use super::*;

    /// Delivers numbered batches: each waits for a go from the test, then
    /// succeeds or fails as the go says; what was delivered is reported.
    struct Scripted {
        go: Receiver<bool>,
        delivered: Sender<u32>,
        resets: Arc<Mutex<u32>>,
    }

    impl Deliver for Scripted {
        type Batch = u32;
        fn deliver(&mut self, batch: &u32) -> Result<Taken, SendError> {
            if self.go.recv().unwrap() {
                self.delivered.send(*batch).unwrap();
                Ok(Taken::Delivered)
            } else {
                Err(SendError::new("http_status", format!("batch {batch}"), 0))
            }
        }
        fn reset(&mut self) {
            *self.resets.lock().unwrap() += 1;
        }
    }

    struct Harness {
        pipeline: Pipeline<Scripted>,
        go: Sender<bool>,
        delivered: Receiver<u32>,
        resets: Arc<Mutex<u32>>,
    }

    fn harness() -> Harness {
        let (go_tx, go) = channel();
        let (delivered, delivered_rx) = channel();
        let resets = Arc::new(Mutex::new(0));
        Harness {
            pipeline: Pipeline::new(Scripted {
                go,
                delivered,
                resets: resets.clone(),
            }),
            go: go_tx,
            delivered: delivered_rx,
            resets,
        }
    }

    /// Polls `in_delivery` until it answers `want` (the thread reports
    /// asynchronously).
    fn wait_pending(p: &mut Pipeline<Scripted>, want: usize) {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let n = p.in_delivery().unwrap();
            if n == want {
                return;
            }
            assert!(Instant::now() < until, "in delivery: {n}, expected {want}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_batch_counts_as_in_delivery_until_the_thread_delivered_it() {
        let mut h = harness();
        assert_eq!(h.pipeline.in_delivery().unwrap(), 0);
        h.pipeline.hand_over(1).unwrap();
        assert_eq!(h.pipeline.in_delivery().unwrap(), 1);
        // The second hand-over waits for the thread to take it, which it
        // does once the first is delivered.
        h.go.send(true).unwrap();
        h.pipeline.hand_over(2).unwrap();
        assert_eq!(h.delivered.recv().unwrap(), 1);
        wait_pending(&mut h.pipeline, 1);
        h.go.send(true).unwrap();
        wait_pending(&mut h.pipeline, 0);
        assert_eq!(h.delivered.try_iter().collect::<Vec<_>>(), [2]);
        assert_eq!(*h.resets.lock().unwrap(), 0);
    }

    #[test]
    fn after_a_failure_nothing_more_is_delivered_until_the_rewind() {
        let mut h = harness();
        h.pipeline.hand_over(1).unwrap();
        h.go.send(false).unwrap();
        // 2 is either taken after 1 failed, and dropped (batches go in
        // order or not at all), or refused with 1's failure when the
        // thread reported it first.
        let e = match h.pipeline.hand_over(2) {
            Err(e) => e,
            Ok(()) => {
                let until = Instant::now() + Duration::from_secs(10);
                loop {
                    match h.pipeline.in_delivery() {
                        Err(e) => break e,
                        Ok(n) => assert_eq!(n, 2),
                    }
                    assert!(Instant::now() < until, "no failure reported");
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        };
        assert_eq!((e.reason, e.message.as_str()), ("http_status", "batch 1"));
        assert_eq!(*h.resets.lock().unwrap(), 1);
        // Reported once; until the rewind nothing counts as delivered.
        assert!(h.pipeline.in_delivery().unwrap() > 0);
        h.pipeline.reset();
        assert_eq!(h.pipeline.in_delivery().unwrap(), 0);
        h.pipeline.hand_over(1).unwrap();
        h.go.send(true).unwrap();
        wait_pending(&mut h.pipeline, 0);
        assert_eq!(h.delivered.try_iter().collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn a_batch_in_delivery_at_a_rewind_finishes_and_does_not_count() {
        let mut h = harness();
        h.pipeline.hand_over(1).unwrap();
        h.pipeline.reset();
        // 1 was being delivered (a connection lost elsewhere made the
        // runner rewind); it finishes first, then the resent batch.
        h.go.send(true).unwrap();
        h.go.send(true).unwrap();
        h.pipeline.hand_over(1).unwrap();
        assert_eq!(h.delivered.recv().unwrap(), 1);
        wait_pending(&mut h.pipeline, 0);
        assert_eq!(h.delivered.recv().unwrap(), 1);
    }

    /// Keeps every batch open until its deadline, a second after the
    /// first one (longer than the test takes between two calls), then
    /// delivers them together; reports what each flush and
    /// reset found open.
    struct Gathering {
        open: Vec<u32>,
        since: Option<Instant>,
        report: Sender<(&'static str, Vec<u32>)>,
    }

    impl Deliver for Gathering {
        type Batch = u32;
        fn deliver(&mut self, batch: &u32) -> Result<Taken, SendError> {
            self.open.push(*batch);
            self.since.get_or_insert_with(Instant::now);
            Ok(Taken::Open)
        }
        fn deadline(&self) -> Option<Instant> {
            self.since.map(|t| t + Duration::from_secs(1))
        }
        fn flush(&mut self) -> Result<(), SendError> {
            self.since = None;
            self.report
                .send(("flush", std::mem::take(&mut self.open)))
                .unwrap();
            Ok(())
        }
        fn reset(&mut self) {
            self.since = None;
            self.report
                .send(("reset", std::mem::take(&mut self.open)))
                .unwrap();
        }
    }

    #[test]
    fn open_batches_are_in_delivery_until_the_deadline_finishes_them() {
        let (report, reports) = channel();
        let mut p = Pipeline::new(Gathering {
            open: Vec::new(),
            since: None,
            report,
        });
        p.hand_over(1).unwrap();
        p.hand_over(2).unwrap();
        assert_eq!(p.in_delivery().unwrap(), 2);
        assert_eq!(
            reports.recv_timeout(Duration::from_secs(10)).unwrap(),
            ("flush", vec![1, 2])
        );
        wait_until_none_pending(&mut p);
        // Handed over before a rewind: dropped when the first batch after
        // the rewind comes (open by then, or not yet taken), never
        // finished.
        p.hand_over(3).unwrap();
        p.reset();
        p.hand_over(3).unwrap();
        let (what, open) = reports.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(
            what == "reset" && (open.is_empty() || open == [3]),
            "{what} {open:?}"
        );
        assert_eq!(
            reports.recv_timeout(Duration::from_secs(10)).unwrap(),
            ("flush", vec![3])
        );
        wait_until_none_pending(&mut p);
    }

    fn wait_until_none_pending<D: Deliver>(p: &mut Pipeline<D>) {
        let until = Instant::now() + Duration::from_secs(10);
        while p.in_delivery().unwrap() != 0 {
            assert!(Instant::now() < until, "still in delivery");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    struct Panics;
    impl Deliver for Panics {
        type Batch = ();
        fn deliver(&mut self, (): &()) -> Result<Taken, SendError> {
            panic!("Content-Length overflow")
        }
        fn reset(&mut self) {}
    }

    #[test]
    fn a_panic_of_the_thread_goes_on_in_the_runner() {
        let mut p = Pipeline::new(Panics);
        p.hand_over(()).unwrap();
        let payload = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| loop {
            p.in_delivery().unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }))
        .unwrap_err();
        assert_eq!(
            payload.downcast_ref::<&str>(),
            Some(&"Content-Length overflow")
        );
    }
}
