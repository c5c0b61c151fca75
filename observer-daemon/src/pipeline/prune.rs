//! Retention on the writer thread: when a prune is due, plan it against
//! the store and hand back the signed anchor's draft. Planning reads the
//! store only; the prune itself happens when the writer commits the draft.
use std::time::{Duration, Instant};

use crate::{
    pipeline::receipts::Receipts,
    receipt::{
        chain::Draft,
        payload::{self, now_unix_ns},
        retention,
        store::Store,
    },
};

/// Retention: at most every quarter of the retention period (and at
/// least every 10 minutes), prune what has aged out. A failure is
/// logged and retried; it never stops capture.
pub fn due(r: &mut Receipts, clock_steps: &[u64]) -> Option<Draft> {
    let retention = r.retention?;
    let every = (retention / 4).clamp(Duration::from_millis(200), Duration::from_secs(600));
    if r.last_prune_check.is_some_and(|t| t.elapsed() < every) {
        return None;
    }
    let store = match Store::open_read_only(&r.store_path) {
        Ok(store) => store,
        Err(e) => {
            r.last_prune_check = Some(Instant::now());
            log::error!("retention: {e}");
            return None;
        }
    };
    // The age of a receipt issued before a clock step counts that step
    // (retention::plan): until this run's steps are committed, the
    // store cannot tell, so wait for them (a tick or two).
    if !clock_steps.is_empty() {
        match retention::committed_steps(&store) {
            Ok(committed) if clock_steps.iter().all(|ns| committed.contains(ns)) => {}
            Ok(_) => return None,
            Err(e) => {
                r.last_prune_check = Some(Instant::now());
                log::error!("retention: {e}");
                return None;
            }
        }
    }
    r.last_prune_check = Some(Instant::now());
    let cutoff = now_unix_ns().saturating_sub(retention.as_nanos() as u64);
    let planned = retention::plan(
        &store,
        cutoff,
        &r.pipeline.origin(),
        &r.pipeline.master_key(),
    )
    .and_then(|anchor| {
        anchor
            .map(|a| retention::prune_draft(&a, &r.observer_executable_hash))
            .transpose()
    });
    match planned {
        Ok(Some(draft)) => {
            log::info!(
                "retention: pruning receipts below log index {:?}",
                draft.prunes
            );
            Some(draft)
        }
        Ok(None) => {
            log::debug!(
                "retention: nothing issued before {} to prune",
                payload::issued_at(cutoff)
            );
            None
        }
        Err(e) => {
            log::error!("retention: {e}");
            None
        }
    }
}
