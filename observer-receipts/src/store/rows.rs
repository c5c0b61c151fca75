//! The rows the store reads and writes, and the readers of the rows that
//! several statements share.
use crate::merkle::Hash;

/// A stored receipt row, as the verifier and queries read it.
#[derive(Debug, Clone)]
pub struct ReceiptRow {
    pub leaf_index: u64,
    pub receipt_hash: Vec<u8>,
    pub issuer_id: String,
    pub seq: u64,
    pub envelope: String,
    pub context: Option<String>,
}

#[derive(Debug, Clone)]
pub struct CheckpointRow {
    pub size: u64,
    pub root: Vec<u8>,
    pub note: String,
    pub created_at: String,
}

#[derive(Debug, Clone)]
pub struct RunRow {
    pub id: i64,
    pub pid: u32,
    pub version: String,
    pub started_at: String,
    pub stopped_at: Option<String>,
    pub clean_stop: bool,
}

#[derive(Debug, Clone)]
pub struct KeyRow {
    pub kid: String,
    pub issuer_id: String,
    pub agent_id: String,
    pub jwk: String,
    /// The master generation that derived the key (1: genesis).
    pub generation: u64,
    /// The kid this key replaced (a rotation), if any.
    pub rotates: Option<String>,
}

/// The master key the store's log currently ends with: the genesis master
/// or the newest master rotation's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterRow {
    pub kid: String,
    pub generation: u64,
}

/// A key announced by a committed `observer.key` receipt.
pub struct NewKey<'a> {
    pub kid: &'a str,
    pub issuer_id: &'a str,
    pub agent_id: &'a str,
    pub jwk: &'a str,
    pub generation: u64,
    pub rotates: Option<&'a str>,
}

/// One committed receipt, as the writer inserts it.
pub struct NewReceipt<'a> {
    pub leaf_index: u64,
    pub receipt_hash: &'a Hash,
    pub issuer_id: &'a str,
    pub seq: u64,
    pub agent_id: &'a str,
    pub action_type: &'a str,
    pub unix_ns: u64,
    pub risk_class: &'a str,
    pub envelope: &'a [u8],
    pub context: Option<&'a [u8]>,
}

/// A chain's head as stored, enough to continue it after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    pub issuer_id: String,
    pub agent_id: String,
    pub kid: String,
    pub seq: u64,
    pub payload_hash: String,
}

/// Maps `leaf_index, receipt_hash, issuer_id, seq, envelope, context`.
pub(super) fn receipt_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ReceiptRow> {
    Ok(ReceiptRow {
        leaf_index: r.get::<_, i64>(0)? as u64,
        receipt_hash: r.get(1)?,
        issuer_id: r.get(2)?,
        seq: r.get::<_, i64>(3)? as u64,
        envelope: r.get(4)?,
        context: r.get(5)?,
    })
}

pub(super) fn checkpoint_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CheckpointRow> {
    Ok(CheckpointRow {
        size: r.get::<_, i64>(0)? as u64,
        root: r.get(1)?,
        note: r.get(2)?,
        created_at: r.get(3)?,
    })
}

/// Maps `kid, issuer_id, agent_id, jwk, generation, rotates` of `keys`.
pub(super) fn key_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<KeyRow> {
    Ok(KeyRow {
        kid: r.get(0)?,
        issuer_id: r.get(1)?,
        agent_id: r.get(2)?,
        jwk: r.get(3)?,
        generation: r.get::<_, i64>(4)? as u64,
        rotates: r.get(5)?,
    })
}
