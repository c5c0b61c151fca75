//! Reads the forwarded stream from the receipt store (the spool) over a
//! read-only connection: receipts in log order after a position, each
//! checkpoint of size n placed right after receipt n - 1. Short read
//! transactions only: WAL readers never block the writer.
use std::path::Path;

use rusqlite::params;

use super::cursor::Position;
use crate::{
    export::{
        stored::{CHECKPOINT_COLUMNS, RECEIPT_COLUMNS},
        CheckpointItem, Item, ReceiptItem,
    },
    receipt::store::{Store, StoreError},
};

pub struct Spool {
    store: Store,
}

/// What one read returned.
pub struct Read {
    /// Records with the position after each.
    pub items: Vec<(Item, Position)>,
    /// Receipts between the position and the first row found that no
    /// longer exist (pruned by retention before they were forwarded).
    pub pruned: u64,
}

impl Spool {
    pub fn open(path: &Path) -> Result<Spool, StoreError> {
        Ok(Spool {
            store: Store::open_read_only(path)?,
        })
    }

    pub fn log_size(&self) -> Result<u64, StoreError> {
        self.store.log_size()
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.store.path().to_owned(),
            source,
        }
    }

    /// Up to `max` receipts after `from`, with the checkpoints they
    /// complete (and any checkpoint not yet forwarded that covers receipts
    /// already forwarded).
    pub fn read(&self, from: Position, max: usize) -> Result<Read, StoreError> {
        let conn = self.store.connection();
        let tx = conn.unchecked_transaction().map_err(|e| self.err(e))?;
        let receipts = {
            let mut stmt = tx
                .prepare_cached(&format!(
                    "SELECT {RECEIPT_COLUMNS}
                     FROM receipts r LEFT JOIN contexts c ON c.leaf_index = r.leaf_index
                     WHERE r.leaf_index >= ?1 ORDER BY r.leaf_index LIMIT ?2"
                ))
                .map_err(|e| self.err(e))?;
            let rows = stmt
                .query_map(params![from.next_leaf as i64, max as i64], |r| {
                    let mut item = ReceiptItem::default();
                    item.read_row(r).map(|()| item)
                })
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .map_err(|e| self.err(e))?;
            rows
        };
        let upto = receipts.last().map_or(from.next_leaf, |r| r.leaf_index + 1);
        let checkpoints = {
            let mut stmt = tx
                .prepare_cached(&format!(
                    "SELECT {CHECKPOINT_COLUMNS} FROM checkpoints
                     WHERE size > ?1 AND size <= ?2 ORDER BY size"
                ))
                .map_err(|e| self.err(e))?;
            let rows = stmt
                .query_map(
                    params![from.checkpoint_size as i64, upto as i64],
                    CheckpointItem::from_row,
                )
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .map_err(|e| self.err(e))?;
            rows
        };
        drop(tx);
        let pruned = receipts
            .first()
            .map_or(0, |r| r.leaf_index.saturating_sub(from.next_leaf));
        Ok(Read {
            items: merge(from, receipts, checkpoints),
            pruned,
        })
    }
}

/// Interleaves receipts and checkpoints in stream order and records the
/// position after each record.
fn merge(
    from: Position,
    receipts: Vec<ReceiptItem>,
    checkpoints: Vec<CheckpointItem>,
) -> Vec<(Item, Position)> {
    let mut pos = from;
    let mut out = Vec::with_capacity(receipts.len() + checkpoints.len());
    let mut cps = checkpoints.into_iter().peekable();
    let mut flush_cps = |pos: &mut Position, out: &mut Vec<(Item, Position)>, upto: u64| {
        while let Some(c) = cps.next_if(|c| c.size <= upto) {
            pos.checkpoint_size = c.size;
            out.push((Item::Checkpoint(c), *pos));
        }
    };
    flush_cps(&mut pos, &mut out, from.next_leaf);
    for r in receipts {
        pos.next_leaf = r.leaf_index + 1;
        out.push((Item::Receipt(r), pos));
        let upto = pos.next_leaf;
        flush_cps(&mut pos, &mut out, upto);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::fixtures::{checkpoint, exec_receipt};

    #[test]
    fn checkpoints_follow_the_receipt_that_completes_them() {
        let r = |leaf| ReceiptItem {
            leaf_index: leaf,
            ..exec_receipt()
        };
        let cp = |size| CheckpointItem {
            size,
            ..checkpoint()
        };
        let from = Position {
            next_leaf: 3,
            checkpoint_size: 1,
        };
        let out = merge(from, vec![r(3), r(4), r(5)], vec![cp(2), cp(4), cp(6)]);
        let seq: Vec<String> = out
            .iter()
            .map(|(i, p)| match i {
                Item::Receipt(r) => {
                    format!("r{}@{}/{}", r.leaf_index, p.next_leaf, p.checkpoint_size)
                }
                Item::Checkpoint(c) => format!("c{}@{}/{}", c.size, p.next_leaf, p.checkpoint_size),
            })
            .collect();
        assert_eq!(
            seq,
            ["c2@3/2", "r3@4/2", "c4@4/4", "r4@5/4", "r5@6/4", "c6@6/6"]
        );
    }
}
