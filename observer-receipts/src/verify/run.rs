//! The store verifier's passes: a reader streams the receipts in blocks,
//! workers parse and check each receipt on its own, the in-order pass
//! ([`State`]) checks what needs the log's order, and signatures are
//! checked in parallel under the keys the in-order pass settled on.
use std::{
    collections::VecDeque,
    sync::{Arc, PoisonError},
};

use crate::{
    mldsa::{LibcruxVerifier, RustCryptoVerifier, Verifier},
    ordered_pool,
    store::{ReceiptRow, Store},
};

use super::{
    checks::parse_row,
    source::LogSource,
    state::{Checked, ReceiptLabel, SignatureJob, State},
    Report, VerifyError, VerifyOptions,
};

/// Verifies the whole store.
pub fn verify_store(store: &Store, opts: &VerifyOptions) -> Result<Report, VerifyError> {
    verify_log(store, opts, &|_| {})
}

/// Verifies the whole store, calling `progress` with the number of
/// receipts each time the in-order pass has finished a block of them
/// (`observerctl verify` draws its progress bar from it).
pub fn verify_store_with_progress(
    store: &Store,
    opts: &VerifyOptions,
    progress: &dyn Fn(u64),
) -> Result<Report, VerifyError> {
    verify_log(store, opts, progress)
}

/// Verifies the whole log `source` holds (a host's store, or a copy of
/// it), with progress as [`verify_store_with_progress`].
pub fn verify_log(
    source: &dyn LogSource,
    opts: &VerifyOptions,
    progress: &dyn Fn(u64),
) -> Result<Report, VerifyError> {
    if opts.master_public_key.len() != crate::mldsa::PUBLIC_KEY_LEN {
        return Err(VerifyError::MasterKey(format!(
            "{} bytes, an ML-DSA-65 public key has {}",
            opts.master_public_key.len(),
            crate::mldsa::PUBLIC_KEY_LEN
        )));
    }
    let mut state = State::new(opts);
    let checkpoints = source.checkpoints()?;
    state.wanted_sizes = checkpoints.iter().map(|c| c.size).collect();
    state.wanted_sizes.extend(
        opts.external_checkpoints
            .iter()
            .filter_map(|note| note.lines().nth(1)?.parse::<u64>().ok()),
    );
    if let Some((envelope, context)) = source.latest_prune()? {
        state.start_from_anchor(&envelope, &context);
    }
    let mut verifiers: Vec<Box<dyn Verifier>> = vec![Box::new(LibcruxVerifier)];
    if opts.independent {
        verifiers.push(Box::new(RustCryptoVerifier));
    }
    state.report.verifiers = verifiers.iter().map(|v| v.name()).collect();
    let hints = Arc::clone(&state.key_hints);
    // Each receipt is parsed and its signature checked in parallel under
    // the key its kid names among the keys authorised so far (a hint the
    // in-order pass confirms).
    // Receipts issued before the clock was set back may be ahead of it.
    let clock_steps = source.clock_steps()?;
    let check_row = |row: ReceiptRow| -> Checked {
        let p = parse_row(row, opts.now_unix_ns, &clock_steps);
        let hint = hints
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(p.kid.as_str())
            .cloned();
        let early = hint.map(|pk| {
            let failures = check_signature(&verifiers, &pk, &p.payload_jcs, &p.signature);
            (pk, failures)
        });
        (p, early)
    };
    // A pipeline, so that no core waits: a second connection reads blocks
    // of rows; an ordered pool of `threads` workers parses them and checks
    // their signatures; this thread runs the in-order pass over each block
    // as soon as it and all before it are done, and hands signatures the
    // workers could not check yet (their key was announced in a block
    // still in flight) back to the pool. At most WINDOW blocks and jobs
    // are in flight, READ_AHEAD more blocks wait read.
    let reader = source.receipts()?;
    let verifiers = &verifiers;
    let work = |work: Work| match work {
        Work::Block(rows) => Out::Block(rows.into_iter().map(&check_row).collect()),
        Work::Signature((label, pk, msg, sig)) => {
            Out::Signature(label, check_signature(verifiers, &pk, &msg, &sig))
        }
    };
    std::thread::scope(|scope| -> Result<(), VerifyError> {
        let (block_tx, block_rx) = crossbeam_channel::bounded::<Vec<ReceiptRow>>(READ_AHEAD);
        let reading = scope.spawn(move || {
            let mut block = Vec::with_capacity(BLOCK);
            let result = reader.for_each(&mut |row| {
                block.push(row);
                if block.len() == BLOCK {
                    let full = std::mem::replace(&mut block, Vec::with_capacity(BLOCK));
                    return block_tx.send(full).is_ok();
                }
                true
            });
            if !block.is_empty() {
                let _ = block_tx.send(block);
            }
            result
        });
        let passed = ordered_pool::scope(opts.threads.max(1), WINDOW, work, |pool| {
            let mut jobs = VecDeque::new();
            let mut handle = |out: Out, jobs: &mut VecDeque<Work>| match out {
                Out::Block(checked) => {
                    let rows = checked.len() as u64;
                    jobs.extend(state.in_order(checked).into_iter().map(Work::Signature));
                    progress(rows);
                }
                Out::Signature(label, failures) => state.signature_outcome(&label, failures),
            };
            loop {
                while let Some(out) = pool.try_next()? {
                    handle(out, &mut jobs);
                }
                // Signatures handed back go first; then the next block
                // read; once the reader is through, what is in flight.
                let next = jobs
                    .pop_front()
                    .or_else(|| block_rx.recv().ok().map(Work::Block));
                let out = match next {
                    Some(work) => pool.submit(work)?,
                    None => match pool.wait_next()? {
                        Some(out) => Some(out),
                        None => break,
                    },
                };
                if let Some(out) = out {
                    handle(out, &mut jobs);
                }
            }
            Ok::<_, ordered_pool::WorkerPanicked>(())
        });
        // Its results will never arrive: stop rather than wait.
        if passed.is_err() {
            panic!("a receipt verifier thread panicked");
        }
        reading.join().expect("receipt reader panicked")?;
        Ok(())
    })?;
    state.finish_log(&checkpoints, opts)?;
    state.check_keys_table(source.keys()?);
    state.check_erasures();
    Ok(state.into_report())
}

/// Rows per block of work.
const BLOCK: usize = 16;
/// Blocks and signature jobs in flight in the pool (1,024 receipts).
const WINDOW: usize = 64;
/// Blocks read ahead of the pool.
const READ_AHEAD: usize = 4;

/// What the pool's workers do: parse and check a block, or check a
/// signature the in-order pass handed back.
enum Work {
    Block(Vec<ReceiptRow>),
    Signature(SignatureJob),
}

/// What reaches the in-order pass, in the order the work was submitted.
enum Out {
    /// A parsed block.
    Block(Vec<Checked>),
    /// The outcome of a signature job.
    Signature(ReceiptLabel, Vec<String>),
}

/// Every verifier's complaint about one signature (none: valid).
fn check_signature(
    verifiers: &[Box<dyn Verifier>],
    pk: &[u8],
    msg: &[u8],
    sig: &[u8],
) -> Vec<String> {
    verifiers
        .iter()
        .filter_map(|v| {
            v.verify(pk, msg, sig)
                .err()
                .map(|e| format!("{}: {e}", v.name()))
        })
        .collect()
}
