//! Observation receipts (docs: `../shared/specs/RECEIPTS.md`, copied into
//! docs/RECEIPTS.md): canonical JSON, ML-DSA-65 signatures, per-agent hash
//! chains, a host-wide Merkle log with signed checkpoints, the SQLite store,
//! and the verifier that checks all of it offline.
//!
//! Data flow in the daemon: enriched events are selected and turned into
//! drafts ([`select`]), a single chain builder assigns `seq` and
//! `previousReceiptHash` ([`chain`]), a small pool signs ([`signing`]), and
//! one writer thread commits in order and checkpoints ([`writer`]).

pub mod chain;
pub mod checkpoint;
pub mod clock_steps;
pub mod erase;
pub mod feed;
pub mod jcs;
pub mod jcs_scan;
pub mod json;
pub mod keys;
pub mod merkle;
pub mod mldsa;
pub mod payload;
pub mod pipeline;
pub mod retention;
pub mod rotation;
pub mod select;
pub mod signing;
pub mod sqlite;
pub mod store;
pub mod store_full;
pub mod unclean;
pub mod verify;
mod verify_checks;
pub mod writer;

#[cfg(test)]
mod conformance_tests;
#[cfg(test)]
mod rotation_tests;
