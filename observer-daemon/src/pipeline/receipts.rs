//! What the processor holds for receipts: the signing pipeline, the run it
//! resumed, the selector that folds events into drafts, and what the
//! observer's own receipts and retention need. Its own file so the
//! processor and the stages it calls (prune) share it without importing
//! each other.
use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use crate::{
    pipeline::lifecycle,
    receipt::{pipeline::Pipeline, pipeline::Resumed, select::Selector},
};

/// The receipt side of the processor.
pub struct Receipts {
    pub pipeline: Pipeline,
    pub resumed: Resumed,
    pub selector: Selector,
    /// `sha256:<hex>` of the running observerd.
    pub observer_executable_hash: String,
    /// What `observer.policy` records at start: the agents and settings
    /// that decide what becomes a receipt.
    pub policy: lifecycle::PolicyAtStart,
    pub master_seed_created: bool,
    /// Receipts older than this are pruned (behind a signed anchor).
    pub retention: Option<Duration>,
    pub store_path: PathBuf,
    pub last_prune_check: Option<Instant>,
}
