//! The single writer: takes sealed receipts in log order, has them signed
//! on its [`ordered_pool`] (`signing_threads` workers, which hand them back
//! in the order given), commits them in batched transactions together with
//! their Merkle nodes and chain heads, and signs a checkpoint at least
//! every `checkpoint_interval` while receipts flow and at a clean stop.
use std::{
    collections::BTreeMap,
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};
use serde_json::json;

use super::{
    chain::{ChainHead, Sealed},
    checkpoint::{self, Checkpoint},
    jcs,
    keys::ChainKey,
    merkle::{self, Frontier},
    mldsa::Signer as _,
    ordered_pool::{self, Pool, WorkerPanicked},
    payload,
    signing::{self, Signed},
    store::{NewKey, NewReceipt, Store, StoreError},
};

mod metrics;
pub use metrics::{CommitHook, WriterMetrics};

/// How the writer batches, signs and checkpoints.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Checkpoint origin line: identifies this host's log.
    pub origin: String,
    /// Longest time between checkpoints while the log grows.
    pub checkpoint_interval: Duration,
    /// Most receipts committed in one transaction.
    pub batch_max: usize,
    /// This run's id in `runs`, marked clean at a clean stop.
    pub run_id: i64,
    /// Signing workers (at least one).
    pub signing_threads: usize,
    /// Most receipts handed to the signers and not yet back (at least one).
    pub signing_window: usize,
}

/// What the pipeline hands the writer, in log order.
pub enum WriterMsg {
    /// A receipt to sign and commit.
    Sealed(Box<Sealed>),
    /// Clean stop: every receipt was handed over before this.
    Finish {
        /// Stop time recorded on the run, RFC 3339 UTC.
        stopped_at: String,
    },
}

/// A signed receipt, or the log index and error of one that could not be
/// signed.
type SignResult = Result<Box<Signed>, (u64, String)>;

/// Why the writer thread stopped; what preceded the failure is committed.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    /// The store failed, other than by being full (then receipts are held and retried).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// ML-DSA signing of a receipt failed.
    #[error("signing failed for log index {index}: {error}")]
    Signing {
        /// The receipt's log index.
        index: u64,
        /// The signer's error, naming the chain and seq.
        error: String,
    },
    /// At a clean stop: the receipt at this log index never came back signed.
    #[error("the signers stopped before log index {0} was signed")]
    Incomplete(u64),
    /// A signing worker panicked.
    #[error("a receipt signing thread panicked")]
    SignerPanicked,
    /// The master key failed to sign a checkpoint.
    #[error("signing a checkpoint: {0}")]
    Checkpoint(String),
    /// The checkpoint note could not be built (e.g. a bad origin).
    #[error("checkpoint: {0}")]
    CheckpointFormat(#[from] checkpoint::CheckpointError),
    /// At a clean stop: the store still full after 5 s; the run stays unclean.
    #[error("stopping with the receipt store still full: {held} signed receipts held in memory were not committed")]
    FullAtStop {
        /// Signed receipts not committed (lost).
        held: usize,
    },
}

impl WriterError {
    /// The store's file system is full (the writer holds and retries).
    fn is_full(&self) -> bool {
        matches!(self, WriterError::Store(e) if e.is_full())
    }
}

/// First wait before retrying a commit the full store refused; doubled per
/// failed retry up to [`FULL_RETRY_MAX`].
const FULL_RETRY_MIN: Duration = Duration::from_millis(100);
const FULL_RETRY_MAX: Duration = Duration::from_secs(5);
/// How long a clean stop waits for a full store to take the held receipts.
const FULL_STOP_WAIT: Duration = Duration::from_secs(5);

/// An episode of a full store: since when, and when to retry.
struct Full {
    since: Instant,
    retry_at: Instant,
    backoff: Duration,
}

/// How [`Writer::take_batch`] ended.
enum Taken {
    /// Commit what was taken and go on.
    More,
    /// A clean stop: every receipt was handed over.
    Finish(String),
    /// The pipeline is gone without a clean stop.
    Closed,
}

fn panicked(_: WorkerPanicked) -> WriterError {
    WriterError::SignerPanicked
}

/// The single writer of a store; runs on its own thread ([`Writer::run`]).
pub struct Writer {
    store: Store,
    frontier: Frontier,
    master: Arc<ChainKey>,
    cfg: WriterConfig,
    metrics: Arc<WriterMetrics>,
    /// Signed receipts not committed yet, by log index (held while the
    /// store is full; kept by index so a failed commit puts them back).
    pending: BTreeMap<u64, Box<Signed>>,
    last_checkpoint_size: u64,
    last_checkpoint_at: Instant,
    /// Set while the store is full.
    full: Option<Full>,
}

impl Writer {
    /// A writer continuing `frontier`'s log in `store`; `master` signs checkpoints.
    pub fn new(
        store: Store,
        frontier: Frontier,
        master: Arc<ChainKey>,
        cfg: WriterConfig,
        metrics: Arc<WriterMetrics>,
    ) -> Result<Writer, WriterError> {
        let last_checkpoint_size = store.latest_checkpoint()?.map_or(0, |c| c.size);
        metrics.log_size.store(frontier.size(), Ordering::Relaxed);
        Ok(Writer {
            store,
            frontier,
            master,
            cfg,
            metrics,
            pending: BTreeMap::new(),
            last_checkpoint_size,
            last_checkpoint_at: Instant::now(),
            full: None,
        })
    }

    /// Runs until `Finish` (clean stop) or until the channel closes, the
    /// receipts signed on `signing_threads` workers.
    pub fn run(mut self, rx: Receiver<WriterMsg>) -> Result<(), WriterError> {
        let (threads, window) = (self.cfg.signing_threads, self.cfg.signing_window);
        let sign = |sealed: Box<Sealed>| -> SignResult {
            let index = sealed.index;
            signing::sign(*sealed)
                .map(Box::new)
                .map_err(|error| (index, error))
        };
        ordered_pool::scope_named("observer-sign", threads, window, sign, |pool| {
            let result = self.run_on(&rx, pool);
            if matches!(result, Err(WriterError::SignerPanicked)) {
                // Everything signed before the panic is committed.
                self.try_commit()?;
            }
            result
        })
    }

    fn run_on(
        &mut self,
        rx: &Receiver<WriterMsg>,
        pool: &mut Pool<Box<Sealed>, SignResult>,
    ) -> Result<(), WriterError> {
        loop {
            let mut wait = self
                .cfg
                .checkpoint_interval
                .saturating_sub(self.last_checkpoint_at.elapsed());
            if let Some(full) = &self.full {
                wait = wait.min(full.retry_at.saturating_duration_since(Instant::now()));
            }
            match self.take_batch(rx, pool, wait.max(Duration::from_millis(1)))? {
                Taken::More => {}
                Taken::Finish(stopped_at) => {
                    self.take_in_flight(pool)?;
                    self.try_commit()?;
                    return self.finish(&stopped_at);
                }
                Taken::Closed => {
                    // Not a clean stop: commit what is complete, no
                    // final checkpoint, run stays marked unclean.
                    self.take_in_flight(pool)?;
                    self.try_commit()?;
                    return Ok(());
                }
            }
            self.try_commit()?;
            if self.full.is_none()
                && self.last_checkpoint_at.elapsed() >= self.cfg.checkpoint_interval
            {
                let done = self.checkpoint_if_grown();
                self.absorb_full(done)?;
                self.last_checkpoint_at = Instant::now();
            }
        }
    }

    /// Hands what arrives to the signers and takes signed receipts back, up
    /// to `batch_max` of them: until no new receipt waits and some are back
    /// (commit those), or, with nothing in flight, until `wait` passes.
    fn take_batch(
        &mut self,
        rx: &Receiver<WriterMsg>,
        pool: &mut Pool<Box<Sealed>, SignResult>,
        wait: Duration,
    ) -> Result<Taken, WriterError> {
        let mut taken = 0;
        loop {
            while let Some(signed) = pool.try_next().map_err(panicked)? {
                self.accept(signed)?;
                taken += 1;
            }
            if taken >= self.cfg.batch_max {
                return Ok(Taken::More);
            }
            let msg = match rx.try_recv() {
                Ok(msg) => msg,
                Err(TryRecvError::Disconnected) => return Ok(Taken::Closed),
                Err(TryRecvError::Empty) if taken > 0 => return Ok(Taken::More),
                Err(TryRecvError::Empty) if pool.in_flight() > 0 => {
                    // Nothing new: the oldest signature in flight is
                    // due shortly.
                    if let Some(signed) = pool.wait_next().map_err(panicked)? {
                        self.accept(signed)?;
                        taken += 1;
                    }
                    continue;
                }
                Err(TryRecvError::Empty) => match rx.recv_timeout(wait) {
                    Ok(msg) => msg,
                    Err(RecvTimeoutError::Timeout) => return Ok(Taken::More),
                    Err(RecvTimeoutError::Disconnected) => return Ok(Taken::Closed),
                },
            };
            match msg {
                WriterMsg::Sealed(sealed) => {
                    if let Some(signed) = pool.submit(sealed).map_err(panicked)? {
                        self.accept(signed)?;
                        taken += 1;
                    }
                }
                WriterMsg::Finish { stopped_at } => return Ok(Taken::Finish(stopped_at)),
            }
        }
    }

    /// Takes back every receipt still being signed.
    fn take_in_flight(
        &mut self,
        pool: &mut Pool<Box<Sealed>, SignResult>,
    ) -> Result<(), WriterError> {
        while let Some(signed) = pool.wait_next().map_err(panicked)? {
            self.accept(signed)?;
        }
        Ok(())
    }

    /// Holds a signed receipt for the next commit; a failed signature
    /// stops the writer once what precedes it is committed.
    fn accept(&mut self, signed: SignResult) -> Result<(), WriterError> {
        match signed {
            Ok(s) => {
                self.pending.insert(s.sealed.index, s);
                Ok(())
            }
            Err((index, error)) => {
                self.try_commit()?;
                Err(WriterError::Signing { index, error })
            }
        }
    }

    /// Clean stop: everything committed, a final checkpoint, the run marked
    /// clean. A store still full after [`FULL_STOP_WAIT`] makes it an
    /// unclean stop (the next start reports the gap).
    fn finish(&mut self, stopped_at: &str) -> Result<(), WriterError> {
        let deadline = Instant::now() + FULL_STOP_WAIT;
        while let Some(full) = &self.full {
            let now = Instant::now();
            if now >= deadline {
                return Err(WriterError::FullAtStop {
                    held: self.pending.len(),
                });
            }
            std::thread::sleep(full.retry_at.min(deadline).saturating_duration_since(now));
            // A last attempt at the deadline even if the backoff is longer.
            if let Some(full) = &mut self.full {
                full.retry_at = full.retry_at.min(Instant::now());
            }
            self.try_commit()?;
        }
        if let Some((&index, _)) = self.pending.iter().next() {
            return Err(WriterError::Incomplete(index.min(self.frontier.size())));
        }
        self.checkpoint_if_grown()?;
        self.store.finish_run(self.cfg.run_id, stopped_at)?;
        Ok(())
    }

    /// Commits what is ready unless a full store's retry is not due yet;
    /// a full store starts (or continues) an episode instead of failing.
    fn try_commit(&mut self) -> Result<(), WriterError> {
        if self
            .full
            .as_ref()
            .is_some_and(|f| Instant::now() < f.retry_at)
        {
            self.metrics
                .held
                .store(self.pending.len() as u64, Ordering::Relaxed);
            return Ok(());
        }
        let written = if self.full.is_some() && !self.pending.contains_key(&self.frontier.size()) {
            // Nothing committable is held: the write the full store
            // refused was a checkpoint, and retrying it probes for room.
            self.checkpoint_if_grown().map(|()| true)
        } else {
            self.commit_ready().map(|n| n > 0)
        };
        if self.absorb_full(written)? == Some(true) {
            if let Some(full) = self.full.take() {
                log::warn!(
                    "receipt store {} has room again after {:.1} s: the held receipts are committed",
                    self.store.path().display(),
                    full.since.elapsed().as_secs_f64()
                );
                self.metrics.store_full.store(false, Ordering::Relaxed);
            }
        }
        self.metrics
            .held
            .store(self.pending.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// `Some(value)`: `done` succeeded; `None`: the store is full (an
    /// episode is started or its backoff grows, logged once per episode);
    /// any other error is returned.
    fn absorb_full<T>(&mut self, done: Result<T, WriterError>) -> Result<Option<T>, WriterError> {
        let err = match done {
            Ok(value) => return Ok(Some(value)),
            Err(e) if e.is_full() => e,
            Err(e) => return Err(e),
        };
        let now = Instant::now();
        match &mut self.full {
            Some(full) => {
                full.backoff = (full.backoff * 2).min(FULL_RETRY_MAX);
                full.retry_at = now + full.backoff;
            }
            None => {
                log::error!(
                    "{err}: holding signed receipts in memory (up to receipts.full_hold_max, then new ones are dropped and counted) and retrying until it has room"
                );
                self.metrics.store_full.store(true, Ordering::Relaxed);
                self.metrics.full_episodes.fetch_add(1, Ordering::Relaxed);
                self.full = Some(Full {
                    since: now,
                    retry_at: now + FULL_RETRY_MIN,
                    backoff: FULL_RETRY_MIN,
                });
            }
        }
        Ok(None)
    }

    /// Commits every receipt that continues the log without a hole;
    /// returns how many.
    fn commit_ready(&mut self) -> Result<usize, WriterError> {
        let mut batch = Vec::new();
        let mut next = self.frontier.size() + batch.len() as u64;
        while let Some(s) = self.pending.remove(&next) {
            batch.push(s);
            next += 1;
        }
        if batch.is_empty() {
            return Ok(0);
        }
        let mut frontier = self.frontier.clone();
        let committed = batch.len() as u64;
        let stored = self.store.transaction(|tx| {
            for s in &batch {
                let sealed = &s.sealed;
                tx.insert_receipt(&NewReceipt {
                    leaf_index: sealed.index,
                    receipt_hash: &s.receipt_hash,
                    issuer_id: &sealed.issuer_id,
                    seq: sealed.seq,
                    agent_id: &sealed.agent_id,
                    action_type: sealed.action_type,
                    unix_ns: sealed.unix_ns,
                    risk_class: sealed.risk_class.as_str(),
                    envelope: &s.envelope_jcs,
                    context: sealed.context_jcs.as_deref(),
                })?;
                let nodes = frontier.append(merkle::leaf_hash(&s.receipt_hash));
                tx.insert_nodes(&nodes)?;
                tx.upsert_chain(
                    &ChainHead {
                        issuer_id: sealed.issuer_id.clone(),
                        agent_id: sealed.agent_id.clone(),
                        kid: sealed.key.kid.clone(),
                        seq: sealed.seq,
                        payload_hash: sealed.payload_hash.clone(),
                    },
                    &s.receipt_hash,
                )?;
                if let Some(intro) = &sealed.key_intro {
                    let jwk = String::from_utf8(
                        jcs::canonicalize(&intro.jwk)
                            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?,
                    )
                    .expect("JCS output is UTF-8");
                    tx.insert_key(
                        &NewKey {
                            kid: &intro.kid,
                            issuer_id: &intro.issuer_id,
                            agent_id: &intro.agent_id,
                            jwk: &jwk,
                            generation: intro.generation,
                            rotates: intro.rotates.as_deref(),
                        },
                        &s.receipt_hash,
                    )?;
                }
                if let Some(cut) = sealed.prunes {
                    tx.prune_below(cut)?;
                }
                if let Some(erased) = sealed.erases {
                    let marker = json!({"erased": true, "by": hex::encode(s.receipt_hash)});
                    tx.erase_context(erased, &marker.to_string())?;
                }
            }
            Ok(())
        });
        if let Err(e) = stored {
            // Rolled back: keep the batch for the next attempt (a full
            // store is retried; nothing is chained past it meanwhile).
            for s in batch {
                self.pending.insert(s.sealed.index, s);
            }
            return Err(e.into());
        }
        self.frontier = frontier;
        for s in &mut batch {
            // A master rotation: checkpoints of trees that contain it are
            // signed by the new master (the one current after their last
            // leaf); the batch is in log order.
            if let Some(new) = s.sealed.new_master.take() {
                self.master = new;
            }
            if let Some(notice) = s.sealed.committed.take() {
                notice(s.receipt_hash);
            }
        }
        let now_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        self.metrics
            .record_latencies(now_ns, batch.iter().map(|s| s.sealed.unix_ns));
        self.metrics
            .committed
            .fetch_add(committed, Ordering::Relaxed);
        self.metrics.batches.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .log_size
            .store(self.frontier.size(), Ordering::Relaxed);
        let end = self.frontier.size();
        if let Some(hook) = self.metrics.on_commit.get() {
            hook(end - committed, end);
        }
        Ok(batch.len())
    }

    fn checkpoint_if_grown(&mut self) -> Result<(), WriterError> {
        let size = self.frontier.size();
        if size == 0 || size == self.last_checkpoint_size {
            return Ok(());
        }
        let cp = Checkpoint {
            origin: self.cfg.origin.clone(),
            size,
            root: self.frontier.root(),
        };
        let master = self.master.clone();
        let note = checkpoint::sign_note(&cp, master.public_key(), |body| {
            master
                .sign(body)
                .map_err(|e| WriterError::Checkpoint(e.to_string()))
        })?;
        let created_at = payload::issued_at(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
        );
        self.store
            .transaction(|tx| tx.insert_checkpoint(size, &cp.root, &note, &created_at))?;
        self.last_checkpoint_size = size;
        self.metrics.checkpoints.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
