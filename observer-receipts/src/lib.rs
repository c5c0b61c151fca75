//! observer's evidence: observation receipts (docs: docs/RECEIPTS.md, the
//! project's copy of `../shared/specs/RECEIPTS.md`) from canonical JSON to
//! the store. ML-DSA-65 signatures, per-agent hash chains, a host-wide
//! Merkle log with signed checkpoints, the SQLite store, the write pipeline
//! and the verifier that checks all of it offline.
//!
//! No eBPF, no async runtime, no build script: it builds with stable Rust
//! alone, so a third party can depend on it to verify a store, a receipt
//! or a proof. observer-daemon writes through it (`observer_daemon::receipt`
//! re-exports it).
//!
//! Data flow in the daemon: enriched events are selected and turned into
//! drafts (the daemon's `receipt::select`), a single chain builder assigns
//! `seq` and `previousReceiptHash` ([`chain`]), a small pool signs
//! ([`signing`]), and one writer thread commits in order and checkpoints
//! ([`writer`]); [`pipeline`] joins them.

#![warn(missing_docs)]

pub mod chain;
pub mod checkpoint;
pub mod clock_steps;
pub mod erase;
pub mod export;
pub mod jcs;
pub mod jcs_scan;
pub mod json;
pub mod keys;
pub mod merkle;
pub mod mldsa;
pub mod ordered_pool;
pub mod payload;
pub mod pipeline;
pub mod query;
pub mod retention;
pub mod rotation;
pub mod signing;
pub mod sqlite;
pub mod store;
pub mod store_full;
pub mod stored_envelope;
pub mod trust;
pub mod unclean;
pub mod verify;

pub mod writer;

#[cfg(test)]
mod conformance_tests;
#[cfg(test)]
mod rotation_tests;
#[cfg(test)]
mod stored_envelope_tests;
