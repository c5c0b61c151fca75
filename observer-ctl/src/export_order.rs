//! Formatting an export's records on every core, written in log order.
//! The calling thread keeps the store and the output (neither moves to
//! another thread: the read transaction's statements and the locked stdout
//! are not `Send`): it reads records into batches and submits them to an
//! [`ordered_pool`] whose workers format each batch into one buffer; the
//! pool hands the buffers back in submission order and this thread writes
//! them. At most 4 batches per worker are in flight, so memory stays flat
//! however large the export. A worker that panics ends the export with an
//! error (the pool reports it), never a wait for a batch that will not
//! come. Formatted records come back to the reading thread, which reads the
//! next rows into their strings: no allocation per record, and none freed
//! on another thread (glibc gave those pages back and faulted them in
//! again: 1M receipts to OCSF took 12.3-13.8 CPU seconds before, 10.5-11.6
//! after).
use std::io::Write;

use observer_receipts::{
    export::{self, Format, Item, ReceiptItem},
    ordered_pool::{self, Pool, WorkerPanicked},
};

use super::{progress::Progress, CtlError};

/// Records per batch: large enough that the hand-offs to the workers cost
/// nothing next to the formatting, small enough to keep a few hundred KiB
/// each.
const BATCH: usize = 32;
/// Batches in flight per worker.
const WINDOW_PER_THREAD: usize = 4;

/// A batch to format: its records and a buffer to reuse.
type Job = (Vec<Item>, Vec<u8>);
/// A formatted batch: its lines, the receipts among them, and the records
/// back for reuse.
type Done = (Vec<u8>, u64, Vec<Item>);

/// Runs `produce` on this thread with a [`Sink`] that formats what it is
/// given on the workers of an [`ordered_pool`] and writes it to `out` in
/// the order given.
pub(super) fn run<W: Write>(
    out: &mut W,
    format: Format,
    progress: &mut Progress,
    produce: impl FnOnce(&mut Sink<'_, W>) -> Result<(), CtlError>,
) -> Result<(), CtlError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    ordered_pool::scope(
        threads,
        WINDOW_PER_THREAD * threads,
        |job| format_batch(format, job),
        |pool| {
            let mut sink = Sink {
                out,
                progress,
                pool,
                batch: Vec::with_capacity(BATCH),
                free: Vec::new(),
                spare: Vec::new(),
                spent: Vec::new(),
            };
            produce(&mut sink)?;
            sink.finish()
        },
    )
    // Leaving the pool's scope closes its input and joins the workers.
}

/// Formats one batch into its (reused) buffer, one record per line.
fn format_batch(format: Format, (items, mut buf): Job) -> Done {
    buf.clear();
    let mut receipts = 0;
    for item in &items {
        export::push_json_text(&mut buf, item, format);
        buf.push(b'\n');
        receipts += u64::from(matches!(item, Item::Receipt(_)));
    }
    (buf, receipts, items)
}

/// Takes records in log order; see [`run`].
pub(super) struct Sink<'a, W: Write> {
    out: &'a mut W,
    progress: &'a mut Progress,
    pool: &'a mut Pool<Job, Done>,
    batch: Vec<Item>,
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

    /// Submits the batch; on a full window the pool first hands back the
    /// oldest formatted batch, which is written.
    fn send(&mut self) -> Result<(), CtlError> {
        let fresh = self
            .spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BATCH));
        let items = std::mem::replace(&mut self.batch, fresh);
        let buf = self.free.pop().unwrap_or_default();
        if let Some(done) = self.pool.submit((items, buf)).map_err(stopped)? {
            self.write(done)?;
        }
        Ok(())
    }

    /// Writes a formatted batch and keeps its buffer and records for reuse.
    fn write(&mut self, (buf, receipts, mut items): Done) -> Result<(), CtlError> {
        self.out.write_all(&buf)?;
        self.progress.inc(receipts);
        self.free.push(buf);
        self.spent
            .extend(items.drain(..).filter_map(|item| match item {
                Item::Receipt(r) => Some(r),
                Item::Checkpoint(_) => None,
            }));
        self.spare.push(items);
        Ok(())
    }

    /// Sends the last partial batch and writes everything still in flight.
    fn finish(mut self) -> Result<(), CtlError> {
        if !self.batch.is_empty() {
            self.send()?;
        }
        while let Some(done) = self.pool.wait_next().map_err(stopped)? {
            self.write(done)?;
        }
        Ok(())
    }
}

/// A worker panicked (its message went to stderr).
fn stopped(_: WorkerPanicked) -> CtlError {
    CtlError::Io("an export formatting thread panicked".into())
}
