//! Offline verification of a receipt store: every check of RECEIPTS.md
//! "Verification", per receipt and for the whole log, with per-check
//! counts and the first failure named by chain, seq and receipt hash.
//!
//! Only the pinned master public key (the genesis master) is trusted.
//! Later masters are trusted because a master rotation signed by the master
//! current at the time announced them; chain keys because an `observer.key`
//! receipt, signed by the master current at the time, announced them (a
//! re-announcement retires the chain's previous key from its log index on).
//! The store's keys table is an index that is cross-checked, never
//! believed.
//!
//! The store verifier's passes are in `run` and its in-order pass in
//! `state`; receipts that travel alone are checked by [`receipt`], proofs
//! by [`proof`], audit packs by [`audit_pack`], all under the masters of
//! `masters`.
pub mod audit_pack;
mod checks;
mod masters;
pub mod proof;
pub mod receipt;
mod run;
mod state;

pub use checks::{is_issued_at, structure_problems};
pub use run::{verify_store, verify_store_with_progress};

pub use masters::{
    master_rotations, note_origin, note_signature_verifier, open_with, store_masters,
    walk_rotations, MasterEpoch,
};

use std::collections::BTreeMap;

use serde::Serialize;

use crate::store::StoreError;

/// A receipt's `issued_at` may be at most this far ahead of the verifier
/// (plus the backward clock steps recorded after it).
pub const MAX_FUTURE_NS: u64 = 300 * 1_000_000_000;

pub struct VerifyOptions {
    /// The pinned master public key (raw ML-DSA-65, 1952 bytes).
    pub master_public_key: Vec<u8>,
    pub now_unix_ns: u64,
    /// Signed checkpoints kept off-host (forwarded copies): the log must
    /// still contain and be consistent with each of them.
    pub external_checkpoints: Vec<String>,
    /// Also verify every signature with the second implementation.
    pub independent: bool,
    pub threads: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Pass,
    Fail,
    Unverifiable,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct CheckCounts {
    pub pass: u64,
    pub fail: u64,
    pub unverifiable: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub check: &'static str,
    pub outcome: Outcome,
    /// The chain (issuer_id), `seq` and receipt hash of the receipt at
    /// fault; empty for log-wide failures.
    pub chain: String,
    pub seq: u64,
    pub receipt_hash: String,
    pub leaf_index: Option<u64>,
    pub reason: String,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub receipts: u64,
    pub chains: usize,
    pub checks: BTreeMap<&'static str, CheckCounts>,
    /// Contexts erased on request (a pass with a note).
    pub erased_contexts: u64,
    /// Receipts in hash-only mode (no context to recompute).
    pub hash_only: u64,
    pub checkpoints_verified: u64,
    pub log_size: u64,
    /// Receipts below this log index were pruned by retention; the log is
    /// verified from the signed anchor that replaced them.
    pub pruned_below: u64,
    /// Stored checkpoints older than the prune cut: signature checked only.
    pub checkpoints_before_cut: u64,
    /// Receipts after the newest checkpoint (not yet covered by one).
    pub uncheckpointed: u64,
    /// Every failure, receipt failures in log order first.
    pub failures: Vec<Failure>,
    pub verifiers: Vec<&'static str>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }

    pub fn first_failure(&self) -> Option<&Failure> {
        self.failures.first()
    }

    fn count(&mut self, check: &'static str, outcome: Outcome) {
        let c = self.checks.entry(check).or_default();
        match outcome {
            Outcome::Pass => c.pass += 1,
            Outcome::Fail => c.fail += 1,
            Outcome::Unverifiable => c.unverifiable += 1,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("pinned master public key: {0}")]
    MasterKey(String),
    /// The store's master rotations do not walk from the pinned key.
    #[error("master key rotations of the store: {0}")]
    MasterRotations(String),
}
