//! Reading stored rows into export records, for the forwarding spool and
//! `observerctl export`: one column list and one reader for each record,
//! and the export's stream of the receipts a [`Query`] selects with the
//! checkpoints they complete.
use rusqlite::{
    types::{FromSqlError, Type, Value as SqlValue, ValueRef},
    Row,
};

use super::{CheckpointItem, Item, ReceiptItem};
use crate::{
    query::{push_filters, sql_err, Query, QueryError},
    store::Store,
};

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

fn where_clause(q: &Query) -> (String, Vec<SqlValue>) {
    let mut sql = String::from(" WHERE 1");
    let mut params = Vec::new();
    push_filters(q, &mut sql, &mut params);
    (sql, params)
}

/// How many receipts `q` selects (all but its limit and log range).
pub fn count(store: &Store, q: &Query) -> Result<u64, QueryError> {
    let (filter, params) = where_clause(q);
    let sql = format!(
        "SELECT COUNT(*) FROM receipts r LEFT JOIN contexts c ON c.leaf_index = r.leaf_index{filter}"
    );
    store
        .connection()
        .query_row(&sql, rusqlite::params_from_iter(params), |r| {
            r.get::<_, i64>(0)
        })
        .map(|n| n as u64)
        .map_err(sql_err(store))
}

/// Where [`read_export`] puts the records it reads.
pub trait ExportSink {
    /// What a failed push or read ends the export with.
    type Error: From<QueryError>;
    /// A record to read the next receipt into: a spent one, so that its
    /// buffers are reused, or a new one.
    fn spare_receipt(&mut self) -> ReceiptItem;
    /// The next record in export order.
    fn push(&mut self, item: Item) -> Result<(), Self::Error>;
}

/// Reads the receipts `q` selects in log order into `sink`, from one read
/// transaction (a consistent snapshot that never blocks the daemon's
/// writer). Without content filters ([`Query::is_content_filtered`]) the
/// signed checkpoints go with them, each right after the receipt that
/// completes it, as the forwarding stream places them; those of receipts
/// the window leaves out are skipped.
pub fn read_export<S: ExportSink>(store: &Store, q: &Query, sink: &mut S) -> Result<(), S::Error> {
    let conn = store.connection();
    let tx = conn.unchecked_transaction().map_err(sql_err(store))?;
    let (filter, params) = where_clause(q);
    let sql = format!(
        "SELECT {RECEIPT_COLUMNS} \
         FROM receipts r LEFT JOIN contexts c ON c.leaf_index = r.leaf_index{filter} \
         ORDER BY r.leaf_index"
    );
    let mut stmt = tx.prepare(&sql).map_err(sql_err(store))?;
    let mut rows = stmt
        .query(rusqlite::params_from_iter(params))
        .map_err(sql_err(store))?;
    let mut cp_stmt = tx
        .prepare(&format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM checkpoints ORDER BY size"
        ))
        .map_err(sql_err(store))?;
    let mut checkpoints = if q.is_content_filtered() {
        None
    } else {
        Some(cp_stmt.query([]).map_err(sql_err(store))?)
    };
    let mut pending: Option<CheckpointItem> = None;
    while let Some(row) = rows.next().map_err(sql_err(store))? {
        let mut r = sink.spare_receipt();
        r.read_row(row).map_err(sql_err(store))?;
        let completes = r.leaf_index + 1;
        sink.push(Item::Receipt(r))?;
        let Some(cps) = checkpoints.as_mut() else {
            continue;
        };
        loop {
            let next = match pending.take() {
                Some(c) => Some(c),
                None => cps
                    .next()
                    .map_err(sql_err(store))?
                    .map(CheckpointItem::from_row)
                    .transpose()
                    .map_err(sql_err(store))?,
            };
            match next {
                Some(c) if c.size < completes => continue,
                Some(c) if c.size == completes => sink.push(Item::Checkpoint(c))?,
                other => {
                    pending = other;
                    break;
                }
            }
        }
    }
    Ok(())
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
