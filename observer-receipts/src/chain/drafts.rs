//! What enters and leaves the chain builder: a [`Draft`] (an observation
//! not yet placed), a [`Sealed`] receipt (placed, waiting for its
//! signature) with what it announces or rotates.
use std::sync::Arc;

use serde_json::Value;

use crate::{
    keys::ChainKey,
    merkle::Hash,
    payload::{Mappings, RiskClass},
};

/// An observation not yet placed in a chain.
#[derive(Debug, Clone)]
pub struct Draft {
    /// Whose chain: a registered agent, `unregistered:<exe sha256 prefix>` or `observer`.
    pub agent_id: String,
    /// One of [`crate::payload::ACTION_TYPES`].
    pub action_type: &'static str,
    /// When the event happened, ns since the Unix epoch (kernel clock).
    pub unix_ns: u64,
    /// The observed context: its JCS gives `payload_digest`; stored only in payload mode.
    pub context: Value,
    /// The payload's `risk_class`.
    pub risk_class: RiskClass,
    /// `sha256:<hex>` of the executable that acted.
    pub executable_hash: String,
    /// Framework ids for the payload; empty lists are left out.
    pub mappings: Mappings,
    /// The payload's `detection_rules_digest` (on `shadow_ai.finding`).
    pub detection_rules_digest: Option<String>,
    /// Leaf index of a receipt whose context this receipt erases.
    pub erases: Option<u64>,
    /// Receipts below this log index are deleted when this one commits.
    pub prunes: Option<u64>,
}

/// A new chain key announced by an `observer.key` receipt: stored in the
/// keys table when that receipt commits.
#[derive(Debug, Clone)]
pub struct KeyIntro {
    /// The chain the key signs (the observer chain for a master rotation).
    pub issuer_id: String,
    /// That chain's agent.
    pub agent_id: String,
    /// RFC 7638 thumbprint: the `key_thumbprint` of the receipts it signs.
    pub kid: String,
    /// The public key as an AKP JWK (`kty`, `alg`, `pub`).
    pub jwk: Value,
    /// The master generation that derived the key (1: genesis seed).
    pub generation: u64,
    /// The kid this key replaces (a rotation or re-announcement).
    pub rotates: Option<String>,
}

/// Where the writer reports that a receipt is committed: called once with
/// its receipt hash, on the writer thread (it must not block).
pub type CommitNotice = Box<dyn FnOnce(Hash) + Send>;

/// What a master rotation did, as the control socket reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// The master that signed the rotation receipt, retired after it.
    pub old_kid: String,
    /// The new master.
    pub new_kid: String,
    /// The new master's generation (2 after the first rotation).
    pub generation: u64,
    /// Log index of the rotation receipt.
    pub leaf_index: u64,
}

/// A receipt whose payload is final, waiting for its signature.
pub struct Sealed {
    /// Position in the host-wide log (its Merkle leaf index).
    pub index: u64,
    /// The chain.
    pub issuer_id: String,
    /// The chain's agent.
    pub agent_id: String,
    /// The payload's `action_type`.
    pub action_type: &'static str,
    /// Position in the chain, from 1.
    pub seq: u64,
    /// Event time, ns since the Unix epoch (the payload's `issued_at`).
    pub unix_ns: u64,
    /// The payload's `risk_class`, kept for the store's columns.
    pub risk_class: RiskClass,
    /// JCS(payload): the exact bytes the signature covers.
    pub payload_jcs: Vec<u8>,
    /// SHA-256 hex of `payload_jcs`: the chain's next `previousReceiptHash`.
    pub payload_hash: String,
    /// JCS(context); `None` in hash-only mode, where it is never stored.
    pub context_jcs: Option<Vec<u8>>,
    /// The chain key that signs it (the master on the observer chain).
    pub key: Arc<ChainKey>,
    /// On an `observer.key` receipt: the key it announces (stored when it commits).
    pub key_intro: Option<KeyIntro>,
    /// See [`Draft::erases`].
    pub erases: Option<u64>,
    /// See [`Draft::prunes`].
    pub prunes: Option<u64>,
    /// A master rotation: the writer signs checkpoints with this key from
    /// the commit of this receipt on.
    pub new_master: Option<Arc<ChainKey>>,
    /// Told the receipt hash once this receipt is committed.
    pub committed: Option<CommitNotice>,
}
