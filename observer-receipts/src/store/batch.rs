//! The writes of one transaction ([`Store::transaction`]): receipts,
//! chain heads, keys, Merkle nodes, checkpoints, pruning and erasure.
use rusqlite::{params, Transaction};

use super::{ChainHead, NewKey, NewReceipt};
use crate::merkle::Hash;

/// Writes inside one transaction.
pub struct Batch<'c> {
    pub(super) tx: Transaction<'c>,
}

impl Batch<'_> {
    /// Inserts a committed receipt, its signature split from its envelope
    /// text, and its context when it has one.
    pub fn insert_receipt(&mut self, r: &NewReceipt<'_>) -> rusqlite::Result<()> {
        let envelope = std::str::from_utf8(r.envelope).map_err(rusqlite::Error::Utf8Error)?;
        let (text, sig) = match crate::stored_envelope::split(envelope) {
            Some((text, sig)) => (std::borrow::Cow::Owned(text), Some(sig)),
            None => (std::borrow::Cow::Borrowed(envelope), None),
        };
        self.tx
            .prepare_cached(
                "INSERT INTO receipts (leaf_index, receipt_hash, issuer_id, seq, agent_id,
                 action_type, issued_ns, risk_class, envelope_text, sig)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                r.leaf_index as i64,
                &r.receipt_hash[..],
                r.issuer_id,
                r.seq as i64,
                r.agent_id,
                r.action_type,
                r.unix_ns as i64,
                r.risk_class,
                text,
                sig
            ])?;
        if let Some(context) = r.context {
            let context = std::str::from_utf8(context).map_err(rusqlite::Error::Utf8Error)?;
            self.tx
                .prepare_cached("INSERT INTO contexts (leaf_index, context) VALUES (?1, ?2)")?
                .execute(params![r.leaf_index as i64, context])?;
        }
        Ok(())
    }

    /// Makes the receipt `head_receipt_hash` the head of its chain,
    /// creating the chain's row on its first receipt.
    pub fn upsert_chain(
        &mut self,
        head: &ChainHead,
        head_receipt_hash: &Hash,
    ) -> rusqlite::Result<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO chains (issuer_id, agent_id, kid, seq, head_payload_hash, head_receipt_hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (issuer_id) DO UPDATE SET seq = excluded.seq, kid = excluded.kid,
                   head_payload_hash = excluded.head_payload_hash,
                   head_receipt_hash = excluded.head_receipt_hash",
            )?
            .execute(params![
                head.issuer_id,
                head.agent_id,
                head.kid,
                head.seq as i64,
                head.payload_hash,
                &head_receipt_hash[..]
            ])?;
        Ok(())
    }

    /// Records a key announced by the `observer.key` receipt
    /// `introduced_by` (its receipt hash).
    pub fn insert_key(&mut self, key: &NewKey<'_>, introduced_by: &Hash) -> rusqlite::Result<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO keys (kid, issuer_id, agent_id, jwk, introduced_by, generation, rotates)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                key.kid,
                key.issuer_id,
                key.agent_id,
                key.jwk,
                &introduced_by[..],
                key.generation as i64,
                key.rotates
            ])?;
        Ok(())
    }

    /// Stores Merkle perfect-subtree hashes as `(level, index, hash)`, level
    /// 0 being leaves (what [`crate::merkle::Frontier::append`] completes).
    pub fn insert_nodes(&mut self, nodes: &[(u32, u64, Hash)]) -> rusqlite::Result<()> {
        let mut stmt = self
            .tx
            .prepare_cached("INSERT INTO merkle_nodes (level, idx, hash) VALUES (?1, ?2, ?3)")?;
        for (level, idx, hash) in nodes {
            stmt.execute(params![level, *idx as i64, &hash[..]])?;
        }
        Ok(())
    }

    /// Stores a signed checkpoint note of tree size `size` and root `root`;
    /// a second checkpoint of the same size is ignored.
    pub fn insert_checkpoint(
        &mut self,
        size: u64,
        root: &Hash,
        note: &str,
        created_at: &str,
    ) -> rusqlite::Result<()> {
        self.tx
            .prepare_cached(
                "INSERT OR IGNORE INTO checkpoints (size, root, note, created_at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![size as i64, &root[..], note, created_at])?;
        Ok(())
    }

    /// Deletes the receipts (and contexts) below log index `cut`. Merkle
    /// nodes stay: proofs for the remaining receipts need some of them, and
    /// they hold nothing observed.
    pub fn prune_below(&mut self, cut: u64) -> rusqlite::Result<()> {
        self.tx
            .prepare_cached("DELETE FROM contexts WHERE leaf_index < ?1")?
            .execute([cut as i64])?;
        self.tx
            .prepare_cached("DELETE FROM receipts WHERE leaf_index < ?1")?
            .execute([cut as i64])?;
        Ok(())
    }

    /// Replaces a context with the erasure marker.
    pub fn erase_context(&mut self, leaf_index: u64, marker: &str) -> rusqlite::Result<usize> {
        self.tx
            .prepare_cached("UPDATE contexts SET context = ?2 WHERE leaf_index = ?1")?
            .execute(params![leaf_index as i64, marker])
    }
}
