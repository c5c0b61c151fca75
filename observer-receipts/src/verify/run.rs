//! The store verifier's passes: a reader streams the receipts in blocks,
//! workers parse and check each receipt on its own, the in-order pass
//! ([`State`]) checks what needs the log's order, and signatures are
//! checked in parallel under the keys the in-order pass settled on.
use std::{
    collections::BTreeMap,
    sync::{Arc, PoisonError},
};

use crate::{
    mldsa::{LibcruxVerifier, RustCryptoVerifier, Verifier},
    retention,
    store::{ReceiptRow, Store},
};

use super::{
    checks::parse_row,
    state::{Checked, ReceiptLabel, SignatureJob, State},
    Report, VerifyError, VerifyOptions,
};

/// Verifies the whole store.
pub fn verify_store(store: &Store, opts: &VerifyOptions) -> Result<Report, VerifyError> {
    verify_store_with_progress(store, opts, &|_| {})
}

/// Verifies the whole store, calling `progress` with the number of
/// receipts each time the in-order pass has finished a block of them
/// (`observerctl verify` draws its progress bar from it).
pub fn verify_store_with_progress(
    store: &Store,
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
    state.wanted_sizes = store.checkpoints()?.iter().map(|c| c.size).collect();
    state.wanted_sizes.extend(
        opts.external_checkpoints
            .iter()
            .filter_map(|note| note.lines().nth(1)?.parse::<u64>().ok()),
    );
    if let Some((envelope, context)) = retention::latest_prune(store)? {
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
    let clock_steps = crate::clock_steps::Corrections::load(store)?;
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
    // of rows; `threads` workers parse them and check their signatures;
    // this thread runs the in-order pass over each block as soon as it and
    // all before it are done, and hands signatures the workers could not
    // check yet (their key was announced in a block still in flight) back
    // to them. At most WINDOW blocks are in flight.
    let reader = Store::open_read_only(store.path())?;
    std::thread::scope(|scope| -> Result<(), VerifyError> {
        let (block_tx, block_rx) = crossbeam_channel::bounded::<(usize, Vec<ReceiptRow>)>(WINDOW);
        let (credit_tx, credit_rx) = crossbeam_channel::bounded::<()>(WINDOW);
        let (job_tx, job_rx) = crossbeam_channel::unbounded::<SignatureJob>();
        let (done_tx, done_rx) = crossbeam_channel::unbounded::<Done>();
        let reader_done = done_tx.clone();
        let reading = scope.spawn(move || {
            let _alarm = PanicAlarm(&reader_done);
            let mut block = Vec::with_capacity(BLOCK);
            let mut sent = 0;
            let send = |block: Vec<ReceiptRow>, sent: &mut usize| -> bool {
                if *sent >= WINDOW && credit_rx.recv().is_err() {
                    return false;
                }
                let ok = block_tx.send((*sent, block)).is_ok();
                *sent += 1;
                ok
            };
            let result = reader.for_each_receipt(|row| {
                block.push(row);
                if block.len() == BLOCK {
                    return send(
                        std::mem::replace(&mut block, Vec::with_capacity(BLOCK)),
                        &mut sent,
                    );
                }
                true
            });
            if !block.is_empty() {
                send(block, &mut sent);
            }
            let _ = reader_done.send(Done::Read(sent));
            result
        });
        let verifiers = &verifiers;
        for _ in 0..opts.threads.max(1) {
            let (block_rx, job_rx, done_tx) = (block_rx.clone(), job_rx.clone(), done_tx.clone());
            scope.spawn(move || work(&block_rx, &job_rx, &done_tx, check_row, verifiers));
        }
        drop((block_rx, job_rx, done_tx));
        let mut job_tx = Some(job_tx);
        let mut waiting = BTreeMap::new();
        let (mut next, mut total) = (0, None);
        for done in done_rx.iter() {
            match done {
                Done::Block(index, checked) => {
                    waiting.insert(index, checked);
                }
                Done::Signature(label, failures) => state.signature_outcome(&label, failures),
                Done::Read(blocks) => total = Some(blocks),
                // Its block will never arrive: stop rather than wait.
                Done::Panicked => panic!("a receipt verifier thread panicked"),
            }
            while let Some(checked) = waiting.remove(&next) {
                next += 1;
                let rows = checked.len() as u64;
                let jobs = state.in_order(checked);
                progress(rows);
                if let Some(tx) = &job_tx {
                    for job in jobs {
                        let _ = tx.send(job);
                    }
                }
                let _ = credit_tx.send(());
            }
            if total == Some(next) {
                // Every block is in: the workers finish the signatures
                // handed back and stop; the loop ends when they have.
                job_tx = None;
            }
        }
        reading.join().expect("receipt reader panicked")?;
        Ok(())
    })?;
    state.finish_log(store, opts)?;
    state.check_keys_table(store)?;
    state.check_erasures();
    Ok(state.into_report())
}

/// Rows per block of work.
const BLOCK: usize = 16;
/// Blocks read ahead of the in-order pass (1,024 receipts).
const WINDOW: usize = 64;

/// What reaches the in-order pass.
enum Done {
    /// A parsed block, by its position in the log.
    Block(usize, Vec<Checked>),
    /// The outcome of a signature job.
    Signature(ReceiptLabel, Vec<String>),
    /// The reader is through: it sent this many blocks.
    Read(usize),
    /// A reader or worker thread panicked.
    Panicked,
}

/// Tells the in-order pass when its thread unwinds from a panic, so the
/// pass stops instead of waiting for work that will never come (and the
/// closed channels then stop every other thread).
struct PanicAlarm<'a>(&'a crossbeam_channel::Sender<Done>);

impl Drop for PanicAlarm<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self.0.send(Done::Panicked);
        }
    }
}

/// A worker: parses blocks and checks signature jobs until both inputs
/// are closed, jobs first.
fn work(
    blocks: &crossbeam_channel::Receiver<(usize, Vec<ReceiptRow>)>,
    jobs: &crossbeam_channel::Receiver<SignatureJob>,
    done: &crossbeam_channel::Sender<Done>,
    check_row: impl Fn(ReceiptRow) -> Checked,
    verifiers: &[Box<dyn Verifier>],
) {
    let _alarm = PanicAlarm(done);
    let check_job = |(label, pk, msg, sig): SignatureJob| {
        let failures = check_signature(verifiers, &pk, &msg, &sig);
        let _ = done.send(Done::Signature(label, failures));
    };
    let check_block = |(index, rows): (usize, Vec<ReceiptRow>)| {
        let checked = rows.into_iter().map(&check_row).collect();
        let _ = done.send(Done::Block(index, checked));
    };
    loop {
        if let Ok(job) = jobs.try_recv() {
            check_job(job);
            continue;
        }
        crossbeam_channel::select! {
            recv(jobs) -> job => match job {
                Ok(job) => check_job(job),
                Err(_) => {
                    blocks.iter().for_each(check_block);
                    return;
                }
            },
            recv(blocks) -> block => match block {
                Ok(block) => check_block(block),
                Err(_) => {
                    jobs.iter().for_each(check_job);
                    return;
                }
            },
        }
    }
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
