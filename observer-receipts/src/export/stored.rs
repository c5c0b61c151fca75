//! Reading stored rows into export records, for the forwarding spool and
//! `observerctl export`: one column list and one reader for each record.
use rusqlite::{
    types::{FromSqlError, Type, ValueRef},
    Row,
};

use super::{CheckpointItem, ReceiptItem};

/// The columns [`ReceiptItem::read_row`] reads, in its order, from
/// `receipts r LEFT JOIN contexts c ON c.leaf_index = r.leaf_index`.
pub const RECEIPT_COLUMNS: &str = "r.leaf_index, r.receipt_hash, r.issuer_id, r.seq, \
     r.agent_id, r.action_type, r.issued_ns, r.risk_class, \
     receipt_envelope(r.envelope_text, r.sig), c.context";

/// The columns [`CheckpointItem::from_row`] reads, from `checkpoints`.
pub const CHECKPOINT_COLUMNS: &str = "size, root, note, created_at";

impl ReceiptItem {
    /// Reads a row of [`RECEIPT_COLUMNS`] into `self`, reusing its strings'
    /// buffers (an export recycles its records: no allocation per row).
    pub fn read_row(&mut self, r: &Row<'_>) -> rusqlite::Result<()> {
        self.leaf_index = r.get::<_, i64>(0)? as u64;
        self.receipt_hash = r
            .get_ref(1)?
            .as_blob()
            .map_err(|e| conversion(1, Type::Blob, e))?
            .try_into()
            .unwrap_or([0; 32]);
        read_text(r, 2, &mut self.issuer_id)?;
        self.seq = r.get::<_, i64>(3)? as u64;
        read_text(r, 4, &mut self.agent_id)?;
        read_text(r, 5, &mut self.action_type)?;
        self.issued_ns = r.get::<_, i64>(6)? as u64;
        read_text(r, 7, &mut self.risk_class)?;
        read_text(r, 8, &mut self.envelope)?;
        match r.get_ref(9)? {
            ValueRef::Null => self.context = None,
            _ => read_text(r, 9, self.context.get_or_insert_with(String::new))?,
        }
        Ok(())
    }
}

impl CheckpointItem {
    /// A row of [`CHECKPOINT_COLUMNS`].
    pub fn from_row(r: &Row<'_>) -> rusqlite::Result<CheckpointItem> {
        Ok(CheckpointItem {
            size: r.get::<_, i64>(0)? as u64,
            root: r.get(1)?,
            note: r.get(2)?,
            created_at: r.get(3)?,
        })
    }
}

fn read_text(r: &Row<'_>, column: usize, into: &mut String) -> rusqlite::Result<()> {
    let text = r
        .get_ref(column)?
        .as_str()
        .map_err(|e| conversion(column, Type::Text, e))?;
    into.clear();
    into.push_str(text);
    Ok(())
}

fn conversion(column: usize, wanted: Type, e: FromSqlError) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, wanted, Box::new(e))
}
