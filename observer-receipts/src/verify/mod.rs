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
//! The verifier reads a log through [`LogSource`] (`source`): a host's
//! store, or a copy of it such as a fleet's ClickHouse. Its passes are in
//! `run` and its in-order pass in `state`; receipts that travel alone are
//! checked by [`receipt`], proofs by [`proof`], audit packs by
//! [`audit_pack`], all under the masters of `masters`.
pub mod audit_pack;
mod checks;
mod masters;
pub mod proof;
pub mod receipt;
mod run;
pub mod source;
mod state;

pub use checks::{is_issued_at, structure_problems};
pub use run::{verify_log, verify_store, verify_store_with_progress};
pub use source::{LogSource, ReceiptReader};

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

/// What [`verify_store`] trusts and how it runs.
pub struct VerifyOptions {
    /// The pinned master public key (raw ML-DSA-65, 1952 bytes).
    pub master_public_key: Vec<u8>,
    /// The verifier's clock, ns since the Unix epoch: `issued_at` may be at
    /// most [`MAX_FUTURE_NS`] ahead of it.
    pub now_unix_ns: u64,
    /// Signed checkpoints kept off-host (forwarded copies): the log must
    /// still contain and be consistent with each of them.
    pub external_checkpoints: Vec<String>,
    /// Also verify every signature with the second implementation.
    pub independent: bool,
    /// Worker threads that parse receipts and check signatures (0 counts
    /// as 1).
    pub threads: usize,
}

/// The result of one check on one receipt (or on the log), as RECEIPTS.md
/// "Verification" names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The check held.
    Pass,
    /// The check was made and did not hold.
    Fail,
    /// The check could not be made (e.g. no authorised key for the
    /// signature); reported like a failure, never counted as a pass.
    Unverifiable,
}

/// How often one check passed, failed or could not be made.
#[derive(Debug, Default, Clone, Serialize)]
pub struct CheckCounts {
    /// Receipts (or log-wide items) on which the check held.
    pub pass: u64,
    /// Those on which it did not.
    pub fail: u64,
    /// Those on which it could not be made.
    pub unverifiable: u64,
}

/// One check that did not pass, named so a reader can find the receipt.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// The check's name, e.g. `signature`, `key_authorised`, `log_root`.
    pub check: &'static str,
    /// `Fail` or `Unverifiable` (never `Pass`).
    pub outcome: Outcome,
    /// The chain (issuer_id), `seq` and receipt hash of the receipt at
    /// fault; empty for log-wide failures.
    pub chain: String,
    /// The receipt's `seq`; 0 for log-wide failures.
    pub seq: u64,
    /// The receipt hash, 64 hex digits; empty for log-wide failures.
    pub receipt_hash: String,
    /// The receipt's log index; `None` for log-wide failures.
    pub leaf_index: Option<u64>,
    /// The named cause, for people.
    pub reason: String,
}

/// What a store verification found. The store verifies when [`Report::ok`].
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Receipts checked (those still stored, from the prune cut on).
    pub receipts: u64,
    /// Distinct chains seen.
    pub chains: usize,
    /// Counts per check name.
    pub checks: BTreeMap<&'static str, CheckCounts>,
    /// Contexts erased on request (a pass with a note).
    pub erased_contexts: u64,
    /// Receipts in hash-only mode (no context to recompute).
    pub hash_only: u64,
    /// Checkpoints (stored and external) whose signature held and whose
    /// root equals the recomputed Merkle root at their size.
    pub checkpoints_verified: u64,
    /// Leaves of the recomputed log, pruned ones included.
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
    /// The ML-DSA implementations every signature was checked with
    /// (libcrux; also RustCrypto's when `independent`).
    pub verifiers: Vec<&'static str>,
}

impl Report {
    /// Whether every check passed: no failure and nothing unverifiable.
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }

    /// The failure to name first: the earliest receipt failure in log
    /// order, else the first log-wide one.
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

/// Why verification could not run to its end. A store that fails checks is
/// not an error: that is a [`Report`] with failures.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The store could not be opened or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The pinned master public key is unusable (e.g. not 1952 bytes).
    #[error("pinned master public key: {0}")]
    MasterKey(String),
    /// The store's master rotations do not walk from the pinned key.
    #[error("master key rotations of the store: {0}")]
    MasterRotations(String),
    /// A log source other than a store (a fleet's copy) could not be read.
    #[error("{0}")]
    Source(String),
}
