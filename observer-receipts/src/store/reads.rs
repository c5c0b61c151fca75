//! What the store answers: chain heads, the log's size and checkpoints,
//! keys and master rotations, and receipts by hash, position or window.
//! Every statement the verifier, the proofs and observerctl run against a
//! store is here or in `crate::query`.
use rusqlite::{params, OptionalExtension};

use super::{
    rows::{checkpoint_row, key_row, receipt_row},
    ChainHead, CheckpointRow, KeyRow, MasterRow, ReceiptRow, Store, StoreError,
};

impl Store {
    /// Every chain's head, in no particular order.
    pub fn chain_heads(&self) -> Result<Vec<ChainHead>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT issuer_id, agent_id, kid, seq, head_payload_hash FROM chains")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(ChainHead {
                    issuer_id: r.get(0)?,
                    agent_id: r.get(1)?,
                    kid: r.get(2)?,
                    seq: r.get::<_, i64>(3)? as u64,
                    payload_hash: r.get(4)?,
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err(e));
        rows
    }

    /// Number of receipts, i.e. the Merkle log's size.
    pub fn log_size(&self) -> Result<u64, StoreError> {
        self.conn
            .query_row(
                "SELECT COALESCE(MAX(leaf_index) + 1, 0) FROM receipts",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(|e| self.err(e))
    }

    /// `issued_ns` of the newest receipt.
    pub fn last_issued_ns(&self) -> Result<Option<u64>, StoreError> {
        self.conn
            .query_row("SELECT MAX(issued_ns) FROM receipts", [], |r| {
                r.get::<_, Option<i64>>(0)
            })
            .map(|n| n.map(|n| n as u64))
            .map_err(|e| self.err(e))
    }

    /// The stored checkpoint of the largest tree, if any.
    pub fn latest_checkpoint(&self) -> Result<Option<CheckpointRow>, StoreError> {
        self.conn
            .query_row(
                "SELECT size, root, note, created_at FROM checkpoints ORDER BY size DESC LIMIT 1",
                [],
                checkpoint_row,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Every stored checkpoint, by tree size ascending.
    pub fn checkpoints(&self) -> Result<Vec<CheckpointRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT size, root, note, created_at FROM checkpoints ORDER BY size")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], checkpoint_row)
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err(e));
        rows
    }

    /// Every row of the keys table, in insertion (announcement) order.
    pub fn keys(&self) -> Result<Vec<KeyRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT kid, issuer_id, agent_id, jwk, generation, rotates FROM keys ORDER BY rowid",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], key_row)
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err(e));
        rows
    }

    /// The keys the receipt `receipt_hash` announced (an `observer.key`
    /// receipt, committed with them): what a sink forwards beside it. The
    /// table holds one row per chain key, so no index is needed.
    pub fn keys_introduced_by(&self, receipt_hash: &[u8]) -> Result<Vec<KeyRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT kid, issuer_id, agent_id, jwk, generation, rotates FROM keys
                 WHERE introduced_by = ?1 ORDER BY rowid",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([receipt_hash], key_row)
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err(e));
        rows
    }

    /// The keys whose announcing receipt retention has pruned, each with
    /// that receipt's hash: a sink that starts after a prune forwards them
    /// beside the prune anchor, since their own receipts will never reach
    /// it.
    pub fn keys_of_pruned_receipts(&self) -> Result<Vec<(KeyRow, Vec<u8>)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                // One lookup in the receipt hash's unique index per key,
                // never a scan of the receipts.
                "SELECT kid, issuer_id, agent_id, jwk, generation, rotates, introduced_by FROM keys
                 WHERE NOT EXISTS (SELECT 1 FROM receipts WHERE receipt_hash = keys.introduced_by)
                 ORDER BY rowid",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((key_row(r)?, r.get::<_, Vec<u8>>(6)?)))
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err(e));
        rows
    }

    /// The current master: the observer chain's key of the highest
    /// generation; `None` before the first receipt.
    pub fn current_master(&self) -> Result<Option<MasterRow>, StoreError> {
        self.conn
            .query_row(
                "SELECT kid, generation FROM keys WHERE agent_id = 'observer'
                 ORDER BY generation DESC, rowid DESC LIMIT 1",
                [],
                |r| {
                    Ok(MasterRow {
                        kid: r.get(0)?,
                        generation: r.get::<_, i64>(1)? as u64,
                    })
                },
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Every master rotation receipt still in the log, in log order:
    /// (leaf index, envelope, context).
    pub fn master_rotations(&self) -> Result<Vec<(u64, String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT r.leaf_index, receipt_envelope(r.envelope_text, r.sig), c.context
                 FROM receipts r
                 JOIN contexts c USING (leaf_index)
                 JOIN keys k ON k.introduced_by = r.receipt_hash
                 WHERE r.action_type = 'observer.key' AND r.agent_id = 'observer'
                   AND k.agent_id = 'observer' AND k.rotates IS NOT NULL
                 ORDER BY r.leaf_index",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get(1)?, r.get(2)?))
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err(e));
        rows
    }

    /// Calls `f` for every receipt in log order, with its context.
    pub fn for_each_receipt(
        &self,
        mut f: impl FnMut(ReceiptRow) -> bool,
    ) -> Result<(), StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT r.leaf_index, r.receipt_hash, r.issuer_id, r.seq,
                        receipt_envelope(r.envelope_text, r.sig), c.context
                 FROM receipts r LEFT JOIN contexts c ON c.leaf_index = r.leaf_index
                 ORDER BY r.leaf_index",
            )
            .map_err(|e| self.err(e))?;
        let mut rows = stmt.query([]).map_err(|e| self.err(e))?;
        while let Some(r) = rows.next().map_err(|e| self.err(e))? {
            let row = receipt_row(r).map_err(|e| self.err(e))?;
            if !f(row) {
                break;
            }
        }
        Ok(())
    }

    /// The receipt whose receipt hash is `receipt_hash` (32 raw bytes).
    pub fn receipt_by_hash(&self, receipt_hash: &[u8]) -> Result<Option<ReceiptRow>, StoreError> {
        self.conn
            .query_row(
                "SELECT r.leaf_index, r.receipt_hash, r.issuer_id, r.seq,
                        receipt_envelope(r.envelope_text, r.sig), c.context
                 FROM receipts r LEFT JOIN contexts c ON c.leaf_index = r.leaf_index
                 WHERE r.receipt_hash = ?1",
                [receipt_hash],
                receipt_row,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// The envelope (as stored, reassembled) of the receipt at
    /// `leaf_index`; an error if there is none.
    pub fn envelope_at(&self, leaf_index: u64) -> Result<String, StoreError> {
        self.conn
            .query_row(
                "SELECT receipt_envelope(envelope_text, sig) FROM receipts WHERE leaf_index = ?1",
                [leaf_index as i64],
                |r| r.get::<_, String>(0),
            )
            .map_err(|e| self.err(e))
    }

    /// The `observer.key` receipt (envelope, context) that first announced
    /// the chain key `kid`.
    pub fn key_announcement(&self, kid: &str) -> Result<Option<(String, String)>, StoreError> {
        self.conn
            .query_row(
                "SELECT receipt_envelope(r.envelope_text, r.sig), c.context
                 FROM receipts r JOIN contexts c ON c.leaf_index = r.leaf_index
                 WHERE r.action_type = 'observer.key' AND r.agent_id = 'observer'
                   AND json_extract(c.context, '$.kid') = ?1 ORDER BY r.leaf_index LIMIT 1",
                [kid],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// The receipts issued in `[start_ns, end_ns]`, plus the receipts
    /// between them in each chain (a chain's seq order and issue times can
    /// differ by a file-open window), so that every chain among them is
    /// contiguous; in log order.
    pub fn window_receipts(
        &self,
        start_ns: u64,
        end_ns: u64,
    ) -> Result<Vec<ReceiptRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT issuer_id, MIN(seq), MAX(seq) FROM receipts
                 WHERE issued_ns >= ?1 AND issued_ns <= ?2 GROUP BY issuer_id",
            )
            .map_err(|e| self.err(e))?;
        let ranges = stmt
            .query_map(params![start_ns as i64, end_ns as i64], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err(e))?;
        let mut stmt = self
            .conn
            .prepare(
                "SELECT r.leaf_index, r.receipt_hash, r.issuer_id, r.seq, receipt_envelope(r.envelope_text, r.sig), c.context
                 FROM receipts r LEFT JOIN contexts c ON c.leaf_index = r.leaf_index
                 WHERE r.issuer_id = ?1 AND r.seq >= ?2 AND r.seq <= ?3",
            )
            .map_err(|e| self.err(e))?;
        let mut rows = Vec::new();
        for (issuer, lo, hi) in ranges {
            let part = stmt
                .query_map(params![issuer, lo, hi], receipt_row)
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .map_err(|e| self.err(e))?;
            rows.extend(part);
        }
        rows.sort_by_key(|r| r.leaf_index);
        Ok(rows)
    }

    /// The receipt hash of receipt `seq` of `agent_id`'s chain, if stored.
    pub fn receipt_hash_at_seq(
        &self,
        agent_id: &str,
        seq: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.conn
            .query_row(
                "SELECT receipt_hash FROM receipts WHERE agent_id = ?1 AND seq = ?2",
                params![agent_id, seq as i64],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// When the receipt at `leaf_index` was issued (ns since the epoch);
    /// an error if there is none.
    pub fn issued_ns_at(&self, leaf_index: u64) -> Result<u64, StoreError> {
        self.conn
            .query_row(
                "SELECT issued_ns FROM receipts WHERE leaf_index = ?1",
                [leaf_index as i64],
                |r| r.get::<_, i64>(0),
            )
            .map(|ns| ns as u64)
            .map_err(|e| self.err(e))
    }

    /// The envelope of receipt `seq` of the chain `issuer_id`, if stored
    /// (not pruned).
    pub fn envelope_of(&self, issuer_id: &str, seq: u64) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row(
                "SELECT receipt_envelope(envelope_text, sig) FROM receipts WHERE issuer_id = ?1 AND seq = ?2",
                params![issuer_id, seq as i64],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// The issuer id of `agent_id`'s chain; an error if it has none.
    pub fn chain_issuer(&self, agent_id: &str) -> Result<String, StoreError> {
        self.conn
            .query_row(
                "SELECT issuer_id FROM chains WHERE agent_id = ?1",
                [agent_id],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    /// The receipt hash of the newest `observer.policy` receipt that
    /// erased the context of the receipt `erased_hash_hex`; an error if
    /// there is none.
    pub fn erasure_receipt(&self, erased_hash_hex: &str) -> Result<Vec<u8>, StoreError> {
        self.conn
            .query_row(
                "SELECT r.receipt_hash FROM receipts r JOIN contexts c ON c.leaf_index = r.leaf_index
                 WHERE r.action_type = 'observer.policy' AND json_extract(c.context, '$.erase') = ?1
                 ORDER BY r.leaf_index DESC LIMIT 1",
                [erased_hash_hex],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }
}
