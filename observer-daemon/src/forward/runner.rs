//! The loop every sink runs on its own thread: read the spool after the
//! cursor, filter, format and deliver in batches, confirm, and only then
//! move the durable cursor. Failures rewind to the cursor and retry with
//! backoff; nothing here ever waits on the capture path.
use std::{
    collections::VecDeque,
    path::PathBuf,
    sync::{
        atomic::{AtomicU8, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use super::{
    backoff::Backoff,
    counters::SinkCounters,
    cursor::{Cursor, Position},
    filter::Filter,
    sink::{SendError, Sink},
    spool::Spool,
};
use crate::export::Item;

pub const RUNNING: u8 = 0;
/// Deliver what is committed, then exit.
pub const DRAINING: u8 = 1;
/// Exit now (the flush time is over).
pub const STOP: u8 = 2;

pub struct Runner {
    pub name: String,
    pub store: PathBuf,
    pub cursor: Cursor,
    pub filter: Filter,
    pub batch_max: usize,
    /// Records sent and not yet confirmed may not exceed this.
    pub max_unconfirmed: usize,
    pub backoff: Backoff,
    pub poll: Duration,
    pub counters: Arc<SinkCounters>,
    pub phase: Arc<AtomicU8>,
}

/// A batch sent and waiting for confirmation.
struct InFlight {
    end: Position,
    sent_at: Instant,
    records: usize,
    checkpoints: usize,
    /// False when the filter left nothing to send: nothing to confirm.
    sent: bool,
}

/// At most this many batches wait for confirmation, however few records
/// they hold (batches the filter emptied count too): bounds the queue's
/// memory. The duplicate bound is `max_unconfirmed` records.
const MAX_IN_FLIGHT_BATCHES: usize = 4096;

impl Runner {
    fn phase(&self) -> u8 {
        self.phase.load(Ordering::Relaxed)
    }

    /// Sleeps up to `d`, returning early when the sink must stop.
    fn sleep(&self, d: Duration) {
        let until = Instant::now() + d;
        while self.phase() != STOP {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            std::thread::sleep(left.min(Duration::from_millis(20)));
        }
    }

    /// Delivers until told to stop (or, draining, until the store is
    /// delivered). Restartable: each run starts from the durable cursor.
    pub fn run(&mut self, sink: &mut Box<dyn Sink>) {
        lower_priority(&self.name);
        let mut durable = loop {
            match self.cursor.load() {
                Ok(p) => break p,
                Err(e) => {
                    log::error!(sink = self.name.as_str(); "sink {}: {e}", self.name);
                    self.counters.error("cursor");
                    let d = self.backoff.next_delay();
                    self.sleep(d);
                    if self.phase() != RUNNING {
                        return;
                    }
                }
            }
        };
        self.backoff.reset();
        let mut spool: Option<Spool> = None;
        let mut sent = durable;
        let mut in_flight: VecDeque<InFlight> = VecDeque::new();
        // Records in `in_flight`, kept with it.
        let mut unconfirmed = 0usize;
        self.counters
            .cursor
            .store(durable.next_leaf, Ordering::Relaxed);
        while self.phase() != STOP {
            // Confirm what the receiver has acknowledged, or had long
            // enough.
            let delivering = match sink.in_delivery() {
                Ok(n) => n,
                Err(e) => {
                    self.fail(sink, &mut sent, durable, &mut in_flight, e);
                    unconfirmed = 0;
                    continue;
                }
            };
            let mut sent_batches = in_flight.iter().filter(|f| f.sent).count();
            let before = durable;
            while let Some(f) = in_flight.front() {
                if f.sent
                    && (sent_batches <= delivering
                        || f.sent_at.elapsed() < sink.confirm_after()
                        || !sink.healthy())
                {
                    break;
                }
                sent_batches -= usize::from(f.sent);
                durable = f.end;
                unconfirmed -= f.records;
                SinkCounters::add(&self.counters.delivered, f.records as u64);
                SinkCounters::add(&self.counters.checkpoints_delivered, f.checkpoints as u64);
                in_flight.pop_front();
            }
            if durable != before {
                if let Err(e) = self.cursor.store(durable) {
                    log::error!(sink = self.name.as_str(); "sink {}: {e}", self.name);
                    self.counters.error("cursor");
                }
                self.counters
                    .cursor
                    .store(durable.next_leaf, Ordering::Relaxed);
            }
            if in_flight.iter().any(|f| f.sent) && !sink.healthy() {
                self.fail(
                    sink,
                    &mut sent,
                    durable,
                    &mut in_flight,
                    SendError::new("connection_lost", "the receiver closed the connection", 0),
                );
                unconfirmed = 0;
                continue;
            }
            let Some(sp) = spool.as_ref() else {
                match Spool::open(&self.store) {
                    Ok(s) => spool = Some(s),
                    Err(e) => {
                        log::error!(sink = self.name.as_str(); "sink {}: {e}", self.name);
                        self.counters.error("spool");
                        let d = self.backoff.next_delay();
                        self.sleep(d);
                    }
                }
                continue;
            };
            if let Ok(size) = sp.log_size() {
                // A log never shrinks: a cursor past its end belongs to
                // another store (the store was replaced). Start over so
                // the new log is forwarded whole.
                if size < durable.next_leaf && in_flight.is_empty() {
                    log::error!(
                        sink = self.name.as_str();
                        "sink {}: cursor {} is past the end of the log ({size}): the store was replaced; forwarding it from the start",
                        self.name,
                        durable.next_leaf
                    );
                    self.counters.error("cursor_ahead");
                    durable = Position::default();
                    sent = durable;
                    if let Err(e) = self.cursor.store(durable) {
                        log::error!(sink = self.name.as_str(); "sink {}: {e}", self.name);
                    }
                    continue;
                }
                self.counters
                    .backlog
                    .store(size.saturating_sub(durable.next_leaf), Ordering::Relaxed);
            }
            if unconfirmed + self.batch_max > self.max_unconfirmed
                || in_flight.len() >= MAX_IN_FLIGHT_BATCHES
            {
                self.sleep(Duration::from_millis(5));
                continue;
            }
            let read = match sp.read(sent, self.batch_max) {
                Ok(r) => r,
                Err(e) => {
                    log::error!(sink = self.name.as_str(); "sink {}: reading the spool: {e}", self.name);
                    self.counters.error("spool");
                    spool = None;
                    let d = self.backoff.next_delay();
                    self.sleep(d);
                    continue;
                }
            };
            if read.pruned > 0 {
                log::warn!(
                    sink = self.name.as_str(), pruned = read.pruned;
                    "sink {}: {} receipts were pruned by retention before they were forwarded",
                    self.name,
                    read.pruned
                );
                SinkCounters::add(&self.counters.pruned_unsent, read.pruned);
            }
            if read.items.is_empty() {
                if in_flight.is_empty() {
                    if self.phase() == DRAINING {
                        return;
                    }
                    self.sleep(self.poll);
                } else {
                    self.sleep(Duration::from_millis(5));
                }
                continue;
            }
            // The read holds up to batch_max receipts plus the checkpoints
            // they complete: whatever would pass the window waits for the
            // next read (at least batch_max records always fit, as
            // max_unconfirmed >= batch_max and the window had that room).
            let room = self.max_unconfirmed - unconfirmed;
            let mut batch = Vec::with_capacity(read.items.len().min(room));
            let mut filtered = 0;
            let mut end = None;
            for (item, position) in read.items {
                match &item {
                    Item::Receipt(r) if !self.filter.matches(r) => filtered += 1,
                    _ if batch.len() == room => break,
                    _ => batch.push(item),
                }
                end = Some(position);
            }
            let Some(end) = end else {
                continue;
            };
            SinkCounters::add(&self.counters.filtered, filtered);
            let checkpoints = batch
                .iter()
                .filter(|i| matches!(i, Item::Checkpoint(_)))
                .count();
            let result = if batch.is_empty() {
                Ok(())
            } else {
                sink.send(&batch)
            };
            match result {
                Ok(()) => {
                    self.backoff.reset();
                    SinkCounters::add(&self.counters.unsendable, sink.take_unsendable());
                    sent = end;
                    unconfirmed += batch.len();
                    in_flight.push_back(InFlight {
                        end,
                        sent_at: Instant::now(),
                        records: batch.len(),
                        checkpoints,
                        sent: !batch.is_empty(),
                    });
                }
                Err(e) => {
                    self.fail(sink, &mut sent, durable, &mut in_flight, e);
                    unconfirmed = 0;
                }
            }
        }
    }

    /// Rewinds to the durable cursor: everything sent since is sent again.
    fn fail(
        &mut self,
        sink: &mut Box<dyn Sink>,
        sent: &mut Position,
        durable: Position,
        in_flight: &mut VecDeque<InFlight>,
        e: SendError,
    ) {
        let unconfirmed: usize = in_flight.iter().map(|f| f.records).sum();
        log::warn!(
            message_id = crate::service::journal::message_id::SINK_FAILED,
            sink = self.name.as_str(),
            reason = e.reason,
            resend = unconfirmed + e.maybe_delivered;
            "sink {}: {} ({}); {} records will be sent again",
            self.name,
            e.message,
            e.reason,
            unconfirmed + e.maybe_delivered
        );
        self.counters.error(e.reason);
        SinkCounters::add(
            &self.counters.resent,
            (unconfirmed + e.maybe_delivered) as u64,
        );
        SinkCounters::add(&self.counters.retries, 1);
        in_flight.clear();
        *sent = durable;
        sink.reset();
        let d = self.backoff.next_delay();
        self.sleep(d);
    }
}

/// Forwarding can wait (the store is the spool); capture and signing
/// cannot. The sink thread runs at nice 10 so that on a loaded host it
/// yields the CPU to the reader, enrichment and the signers.
fn lower_priority(name: &str) {
    // SAFETY: gettid has no arguments and cannot fail.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) } as libc::id_t;
    // SAFETY: setpriority on our own thread id; no memory is passed.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, SINK_NICE) } != 0 {
        log::warn!(
            "sink {name}: cannot lower the thread priority: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// The nice value of sink threads.
pub const SINK_NICE: libc::c_int = 10;
