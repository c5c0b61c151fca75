//! One summary row per chain (`observerctl agents`): its head, key, and
//! how many receipts it has with the first and last issue times.
use crate::store::Store;

use super::{sql_err, QueryError};

/// A chain as `observerctl agents` lists it.
#[derive(Debug, Clone)]
pub struct ChainSummary {
    /// The chain's issuer id.
    pub issuer_id: String,
    /// The agent the chain is of.
    pub agent_id: String,
    /// The chain's current key.
    pub kid: String,
    /// The head: its seq, payload hash and receipt hash.
    pub head_seq: u64,
    /// The head's payload hash (what the next receipt links to).
    pub head_payload_hash: String,
    /// The head's receipt hash.
    pub head_receipt_hash: Vec<u8>,
    /// Receipts of the chain still in the log.
    pub receipts: u64,
    /// When the first and last of them were issued (ns since the epoch);
    /// none when every receipt was pruned.
    pub first_issued_ns: Option<u64>,
    /// See `first_issued_ns`.
    pub last_issued_ns: Option<u64>,
}

/// Every chain, by agent id.
pub fn chain_summaries(store: &Store) -> Result<Vec<ChainSummary>, QueryError> {
    let mut stmt = store
        .connection()
        .prepare(
            "SELECT ch.issuer_id, ch.agent_id, ch.kid, ch.seq, ch.head_payload_hash,
                    ch.head_receipt_hash, COUNT(r.leaf_index), MIN(r.issued_ns), MAX(r.issued_ns)
             FROM chains ch LEFT JOIN receipts r ON r.issuer_id = ch.issuer_id
             GROUP BY ch.issuer_id ORDER BY ch.agent_id",
        )
        .map_err(sql_err(store))?;
    let rows = stmt
        .query_map([], |r| {
            let time = |i| -> rusqlite::Result<Option<u64>> {
                Ok(r.get::<_, Option<i64>>(i)?.map(|ns| ns as u64))
            };
            Ok(ChainSummary {
                issuer_id: r.get(0)?,
                agent_id: r.get(1)?,
                kid: r.get(2)?,
                head_seq: r.get::<_, i64>(3)? as u64,
                head_payload_hash: r.get(4)?,
                head_receipt_hash: r.get(5)?,
                receipts: r.get::<_, i64>(6)? as u64,
                first_issued_ns: time(7)?,
                last_issued_ns: time(8)?,
            })
        })
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(sql_err(store))?;
    Ok(rows)
}
