//! Formatting an export's records on every core, written in log order.
//! The calling thread keeps the store and the output (neither moves to
//! another thread: the read transaction's statements and the locked stdout
//! are not `Send`): it reads records into batches, numbered in order, hands
//! them to worker threads that format each batch into one buffer, and writes
//! the finished buffers strictly by number. At most 4 batches per worker are in
//! flight, so memory stays flat however large the export (the verifier's
//! pipeline pattern, `receipt::verify`). Formatted records come back to the
//! reading thread, which reads the next rows into their strings: no
//! allocation per record, and none freed on another thread (glibc gave
//! those pages back and faulted them in again: 1M receipts to OCSF took
//! 12.3-13.8 CPU seconds before, 10.5-11.6 after).
use std::{collections::BTreeMap, io::Write};

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};

use super::{progress::Progress, CtlError};
use observer_daemon::export::{self, Format, Item, ReceiptItem};

/// Records per batch: large enough that the channel hand-offs cost nothing
/// next to the formatting, small enough to keep a few hundred KiB each.
const BATCH: usize = 32;

/// A batch to format: its number, its records, and a buffer to reuse.
type Job = (u64, Vec<Item>, Vec<u8>);
/// A formatted batch: its number, its lines, the receipts among them, and
/// the records back for reuse. `None`: a worker panicked.
type Done = Option<(u64, Vec<u8>, u64, Vec<Item>)>;

/// Runs `produce` on this thread with a [`Sink`] that formats what it is
/// given on `threads` workers and writes it to `out` in the order given.
pub(super) fn run<W: Write>(
    out: &mut W,
    format: Format,
    progress: &mut Progress,
    produce: impl FnOnce(&mut Sink<'_, W>) -> Result<(), CtlError>,
) -> Result<(), CtlError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    std::thread::scope(|scope| {
        let (job_tx, job_rx) = bounded::<Job>(2 * threads);
        let (done_tx, done_rx) = unbounded::<Done>();
        for _ in 0..threads {
            let (jobs, done) = (job_rx.clone(), done_tx.clone());
            scope.spawn(move || work(format, &jobs, &done));
        }
        drop((job_rx, done_tx));
        let mut sink = Sink {
            out,
            progress,
            jobs: Some(job_tx),
            done: done_rx,
            window: 4 * threads as u64,
            batch: Vec::with_capacity(BATCH),
            sent: 0,
            written: 0,
            waiting: BTreeMap::new(),
            free: Vec::new(),
            spare: Vec::new(),
            spent: Vec::new(),
        };
        produce(&mut sink)?;
        sink.finish()
        // Leaving the scope drops the sink (closing the job channel) and
        // joins the workers.
    })
}

/// Formats batches until the job channel closes or the writer is gone.
fn work(format: Format, jobs: &Receiver<Job>, done: &Sender<Done>) {
    let _alarm = PanicAlarm(done);
    for (seq, items, mut buf) in jobs.iter() {
        buf.clear();
        let mut receipts = 0;
        for item in &items {
            export::push_json_text(&mut buf, item, format);
            buf.push(b'\n');
            receipts += u64::from(matches!(item, Item::Receipt(_)));
        }
        if done.send(Some((seq, buf, receipts, items))).is_err() {
            return;
        }
    }
}

/// Takes records in log order; see [`run`].
pub(super) struct Sink<'a, W: Write> {
    out: &'a mut W,
    progress: &'a mut Progress,
    jobs: Option<Sender<Job>>,
    done: Receiver<Done>,
    /// Batches allowed in flight (sent, not yet written).
    window: u64,
    batch: Vec<Item>,
    sent: u64,
    written: u64,
    /// Formatted batches that wait for an earlier one.
    waiting: BTreeMap<u64, (Vec<u8>, u64)>,
    /// Written buffers and emptied batches, for reuse.
    free: Vec<Vec<u8>>,
    spare: Vec<Vec<Item>>,
    /// Formatted receipts, whose strings the next rows are read into (at
    /// most the records in flight).
    spent: Vec<ReceiptItem>,
}

impl<W: Write> Sink<'_, W> {
    /// A formatted receipt to read the next row into, when one is back.
    pub(super) fn spent_receipt(&mut self) -> Option<ReceiptItem> {
        self.spent.pop()
    }

    /// Adds the next record.
    pub(super) fn push(&mut self, item: Item) -> Result<(), CtlError> {
        self.batch.push(item);
        if self.batch.len() == BATCH {
            self.send()?;
        }
        Ok(())
    }

    fn send(&mut self) -> Result<(), CtlError> {
        while self.sent - self.written >= self.window {
            self.write_next()?;
        }
        let fresh = self
            .spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BATCH));
        let items = std::mem::replace(&mut self.batch, fresh);
        let buf = self.free.pop().unwrap_or_default();
        let jobs = self.jobs.as_ref().ok_or_else(stopped)?;
        jobs.send((self.sent, items, buf)).map_err(|_| stopped())?;
        self.sent += 1;
        Ok(())
    }

    /// Waits for a formatted batch and writes every batch now due.
    fn write_next(&mut self) -> Result<(), CtlError> {
        let (seq, buf, receipts, mut items) =
            self.done.recv().ok().flatten().ok_or_else(stopped)?;
        self.spent
            .extend(items.drain(..).filter_map(|item| match item {
                Item::Receipt(r) => Some(r),
                _ => None,
            }));
        self.spare.push(items);
        self.waiting.insert(seq, (buf, receipts));
        while let Some((buf, receipts)) = self.waiting.remove(&self.written) {
            self.out.write_all(&buf)?;
            self.progress.inc(receipts);
            self.free.push(buf);
            self.written += 1;
        }
        Ok(())
    }

    /// Sends the last partial batch and writes everything still in flight.
    fn finish(mut self) -> Result<(), CtlError> {
        if !self.batch.is_empty() {
            self.send()?;
        }
        self.jobs = None;
        while self.written < self.sent {
            self.write_next()?;
        }
        Ok(())
    }
}

/// Tells the writer when a worker unwinds from a panic, so it stops
/// instead of waiting for a batch that will never come.
struct PanicAlarm<'a>(&'a Sender<Done>);

impl Drop for PanicAlarm<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self.0.send(None);
        }
    }
}

/// A worker is gone: only a panic (reported by the scope) does that.
fn stopped() -> CtlError {
    CtlError::Io("an export formatting thread stopped".into())
}
