//! What the verifier reads: a host's log, from the host's own store or
//! from a copy of it kept elsewhere (the fleet's ClickHouse). The checks
//! are the same whatever the source; a source only hands over the rows.
use super::VerifyError;
use crate::{
    clock_steps::Corrections,
    retention,
    store::{CheckpointRow, KeyRow, ReceiptRow, Store},
};

/// A log to verify.
pub trait LogSource {
    /// Every signed checkpoint kept with the log.
    fn checkpoints(&self) -> Result<Vec<CheckpointRow>, VerifyError>;
    /// The keys table (an index the verifier cross-checks against the
    /// signed announcements, never believes).
    fn keys(&self) -> Result<Vec<KeyRow>, VerifyError>;
    /// The envelope and context of the newest retention prune receipt.
    fn latest_prune(&self) -> Result<Option<(String, String)>, VerifyError>;
    /// The wall-clock steps the log records.
    fn clock_steps(&self) -> Result<Corrections, VerifyError>;
    /// A reader of every receipt in log order, run on its own thread while
    /// the verifier checks what it has read.
    fn receipts(&self) -> Result<Box<dyn ReceiptReader>, VerifyError>;
}

/// Streams a log's receipts.
pub trait ReceiptReader: Send {
    /// Calls `f` with each receipt in log order until it returns false.
    fn for_each(self: Box<Self>, f: &mut dyn FnMut(ReceiptRow) -> bool) -> Result<(), VerifyError>;
}

impl LogSource for Store {
    fn checkpoints(&self) -> Result<Vec<CheckpointRow>, VerifyError> {
        Ok(Store::checkpoints(self)?)
    }

    fn keys(&self) -> Result<Vec<KeyRow>, VerifyError> {
        Ok(Store::keys(self)?)
    }

    fn latest_prune(&self) -> Result<Option<(String, String)>, VerifyError> {
        Ok(retention::latest_prune(self)?)
    }

    fn clock_steps(&self) -> Result<Corrections, VerifyError> {
        Ok(Corrections::load(self)?)
    }

    /// A second, read-only connection: SQLite connections stay on their
    /// thread.
    fn receipts(&self) -> Result<Box<dyn ReceiptReader>, VerifyError> {
        Ok(Box::new(StoreReader(Store::open_read_only(self.path())?)))
    }
}

struct StoreReader(Store);

impl ReceiptReader for StoreReader {
    fn for_each(self: Box<Self>, f: &mut dyn FnMut(ReceiptRow) -> bool) -> Result<(), VerifyError> {
        Ok(self.0.for_each_receipt(f)?)
    }
}
