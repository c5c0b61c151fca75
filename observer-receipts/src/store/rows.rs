//! The rows the store reads and writes, and the readers of the rows that
//! several statements share.
use crate::merkle::Hash;

/// A stored receipt row, as the verifier and queries read it.
#[derive(Debug, Clone)]
pub struct ReceiptRow {
    /// Position in the host-wide log, from 0: the receipt's Merkle leaf
    /// index.
    pub leaf_index: u64,
    /// The stored receipt hash, SHA-256 of JCS(envelope), 32 raw bytes (a
    /// verifier recomputes it rather than trust it).
    pub receipt_hash: Vec<u8>,
    /// The chain.
    pub issuer_id: String,
    /// Position in the chain, from 1.
    pub seq: u64,
    /// The envelope `{payload, signature}` as its JCS text.
    pub envelope: String,
    /// JCS(context), or the erasure marker `{"erased": true, "by": ...}`;
    /// `None` in hash mode.
    pub context: Option<String>,
}

/// A stored signed checkpoint of the Merkle log.
#[derive(Debug, Clone)]
pub struct CheckpointRow {
    /// Tree size: the number of leaves the checkpoint covers.
    pub size: u64,
    /// Merkle root of the first `size` leaves, 32 raw bytes.
    pub root: Vec<u8>,
    /// The signed note (C2SP tlog-checkpoint text with its signature line).
    pub note: String,
    /// When the writer signed it, RFC 3339 UTC (wall clock).
    pub created_at: String,
}

/// One daemon run (or offline maintenance) as the `runs` table records it.
#[derive(Debug, Clone)]
pub struct RunRow {
    /// Row id, increasing with each run.
    pub id: i64,
    /// Process id of that run.
    pub pid: u32,
    /// observer's version that ran.
    pub version: String,
    /// Start time, RFC 3339 UTC.
    pub started_at: String,
    /// Stop time; `None` while running or after an unclean stop.
    pub stopped_at: Option<String>,
    /// Whether the run stopped cleanly; when false, receipts signed but not
    /// committed may be lost and the next run reports a gap.
    pub clean_stop: bool,
}

/// A row of the `keys` table: an index of announced keys that verification
/// cross-checks against the `observer.key` receipts, never believes.
#[derive(Debug, Clone)]
pub struct KeyRow {
    /// The key's RFC 7638 thumbprint.
    pub kid: String,
    /// The chain it signs.
    pub issuer_id: String,
    /// That chain's agent.
    pub agent_id: String,
    /// The public key as an AKP JWK, JCS text.
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
    /// The master's kid.
    pub kid: String,
    /// Its generation (1: the genesis seed).
    pub generation: u64,
}

/// A key announced by a committed `observer.key` receipt.
pub struct NewKey<'a> {
    /// The key's RFC 7638 thumbprint.
    pub kid: &'a str,
    /// The chain it signs.
    pub issuer_id: &'a str,
    /// That chain's agent.
    pub agent_id: &'a str,
    /// The public key as an AKP JWK, JCS text.
    pub jwk: &'a str,
    /// The master generation that derived the key (1: genesis).
    pub generation: u64,
    /// The kid this key replaces, if any.
    pub rotates: Option<&'a str>,
}

/// One committed receipt, as the writer inserts it.
pub struct NewReceipt<'a> {
    /// Its log index; the next one after the stored log.
    pub leaf_index: u64,
    /// SHA-256 of JCS(envelope).
    pub receipt_hash: &'a Hash,
    /// The chain.
    pub issuer_id: &'a str,
    /// Position in the chain, from 1.
    pub seq: u64,
    /// The chain's agent (an index column).
    pub agent_id: &'a str,
    /// The payload's `action_type` (an index column).
    pub action_type: &'a str,
    /// Event time, ns since the Unix epoch (the `issued_ns` column).
    pub unix_ns: u64,
    /// The payload's `risk_class` wire value (an index column).
    pub risk_class: &'a str,
    /// JCS(envelope), stored with its signature split out.
    pub envelope: &'a [u8],
    /// JCS(context); `None` in hash mode.
    pub context: Option<&'a [u8]>,
}

/// A chain's head as stored, enough to continue it after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    /// The chain.
    pub issuer_id: String,
    /// The chain's agent.
    pub agent_id: String,
    /// Kid of the key that signed the head receipt.
    pub kid: String,
    /// `seq` of the head receipt (the next receipt gets `seq + 1`).
    pub seq: u64,
    /// SHA-256 hex of JCS(head payload): the next `previousReceiptHash`.
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
