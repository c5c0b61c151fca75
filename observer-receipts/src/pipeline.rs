//! Wires the receipt stages together: chain builder (caller's thread) →
//! bounded queue → writer thread, which has each receipt signed on its
//! ordered pool (`signing_threads` workers, at most `batch_max` receipts
//! in flight) and commits them in log order. `submit` blocks when
//! the queue and the pool are full; the daemon's ring-buffer reader never
//! waits on it (it counts drops instead).
use std::{
    path::{Path, PathBuf},
    sync::{atomic::Ordering, Arc},
    thread::JoinHandle,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use crossbeam_channel::{bounded, Sender};

use super::{
    chain::ChainHead,
    chain::{ChainBuilder, ChainError, CommitNotice, Draft, Identity, Rotation, Sealed},
    keys::{ChainKey, MasterSeed},
    merkle::Frontier,
    payload::{self, Mappings, RiskClass, UnsignedGap},
    store::{CheckpointRow, MasterRow, RunKind, RunRow, Store, StoreError, StoreNodes, WriterLock},
    store_full::StoreLoss,
    unclean,
    writer::{Writer, WriterConfig, WriterError, WriterMetrics, WriterMsg},
};

/// Default of `receipts.full_hold_max`: signed receipts held in memory
/// while the store is full before new drafts are dropped (about 6 KB each).
pub const DEFAULT_FULL_HOLD_MAX: usize = 8192;
/// Longest wait between attempts to open a full store at start.
const FULL_OPEN_RETRY_MAX: Duration = Duration::from_secs(5);

/// How [`Pipeline::start`] opens the store and sizes its stages.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// The store's database file; its writer lock is `<store>.lock`.
    pub store: PathBuf,
    /// Signing workers of the writer's pool (`observer-sign-N`).
    pub signing_threads: usize,
    /// Receipts waiting for the writer (which has at most
    /// `min(batch_max, queue_capacity)` more with its signers).
    pub queue_capacity: usize,
    /// Longest time between checkpoints while receipts flow; one is also
    /// signed at a clean stop.
    pub checkpoint_interval: Duration,
    /// Most receipts committed in one transaction; it also bounds the
    /// receipts in flight with the signers.
    pub batch_max: usize,
    /// Called before each wait while a daemon's start waits for room in a
    /// full store, with the longest time until the next attempt: observerd
    /// extends systemd's start timeout with it (Type=notify), which would
    /// otherwise restart it into the same full disk.
    pub waiting_for_room: Option<fn(Duration)>,
}

/// Why the pipeline did not start, place a receipt, or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// At start: the store could not be locked (another writer holds it),
    /// opened, migrated or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The chain builder refused: at start, a master seed that does not
    /// belong to the store; later, a draft without a JCS form or a
    /// rotation to the current seed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The writer thread stopped on this error (from [`Pipeline::finish`]
    /// or [`Pipeline::writer_error`]).
    #[error(transparent)]
    Writer(#[from] WriterError),
    /// At start: the stored Merkle nodes do not rebuild the log's frontier
    /// (a node missing or malformed).
    #[error("resuming the Merkle log of {path}: {message}")]
    Resume {
        /// The store's database file.
        path: PathBuf,
        /// What is missing or wrong.
        message: String,
    },
    /// The writer thread is gone (it stopped on an error or panicked):
    /// nothing more is committed; [`Pipeline::writer_error`] says why.
    #[error("the receipt writer stopped")]
    WriterGone,
    /// At start: the writer thread could not be spawned.
    #[error("starting receipt threads: {0}")]
    Spawn(#[from] std::io::Error),
    /// Not a failure of the pipeline: the draft was dropped, unchained,
    /// because the store is full and the writer holds `held` receipts
    /// already; it is counted and reported once the store has room.
    #[error("the receipt store is full and {held} receipts are held: a receipt of {agent_id} was dropped (counted)")]
    DroppedStoreFull {
        /// The dropped draft's agent.
        agent_id: String,
        /// Signed receipts the writer held when it was dropped.
        held: u64,
    },
}

/// What the store said about earlier runs when the pipeline started.
#[derive(Debug, Clone)]
pub struct Resumed {
    /// The previous daemon run, if any; `clean_stop` false means it
    /// stopped uncleanly (a daemon start has added the gaps already).
    pub previous_run: Option<RunRow>,
    /// The newest stored checkpoint.
    pub last_checkpoint: Option<CheckpointRow>,
    /// The latest event time stored, ns since the Unix epoch.
    pub last_issued_ns: Option<u64>,
    /// Receipts in the log at start: the next receipt's log index.
    pub log_size: u64,
    /// This run's id in the store's `runs` table.
    pub run_id: i64,
}

/// Where a submitted receipt was placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// The chain.
    pub issuer_id: String,
    /// The chain's agent.
    pub agent_id: String,
    /// The receipt's `action_type`.
    pub action_type: &'static str,
    /// Position in the chain, from 1.
    pub seq: u64,
    /// SHA-256 of JCS(payload), lowercase hex: what the chain's next
    /// `previousReceiptHash` holds.
    pub payload_hash: String,
    /// Position in the host-wide Merkle log.
    pub leaf_index: u64,
}

/// The daemon's (or a maintenance tool's) one way to issue receipts into a
/// store: holds the store's writer lock, the chain builder and the writer
/// thread. Drop without [`Pipeline::finish`] leaves the run unclean.
pub struct Pipeline {
    builder: ChainBuilder,
    sealed: Vec<Sealed>,
    to_writer: Option<Sender<WriterMsg>>,
    writer: Option<JoinHandle<Result<(), WriterError>>>,
    metrics: Arc<WriterMetrics>,
    /// Most receipts the writer holds while the store is full.
    full_hold_max: usize,
    /// Drafts dropped while the store was full, not reported yet.
    store_loss: StoreLoss,
    _lock: WriterLock,
}

/// What the store holds when the pipeline starts.
struct Opened {
    store: Store,
    previous_run: Option<RunRow>,
    last_checkpoint: Option<CheckpointRow>,
    last_issued_ns: Option<u64>,
    log_size: u64,
    heads: Vec<ChainHead>,
    head_issued_ns: std::collections::HashMap<String, u64>,
    current_master: Option<MasterRow>,
    run_id: i64,
}

impl Opened {
    fn read(path: &Path, run_kind: RunKind, started_at: &str) -> Result<Opened, StoreError> {
        let store = Store::open(path)?;
        let previous_run = store.last_run()?;
        let last_checkpoint = store.latest_checkpoint()?;
        let last_issued_ns = store.last_issued_ns()?;
        let log_size = store.log_size()?;
        let heads = store.chain_heads()?;
        let head_issued_ns = unclean::head_issued_ns(&store)?;
        let current_master = store.current_master()?;
        let run_id = store.begin_run(
            run_kind,
            std::process::id(),
            env!("CARGO_PKG_VERSION"),
            started_at,
        )?;
        Ok(Opened {
            store,
            previous_run,
            last_checkpoint,
            last_issued_ns,
            log_size,
            heads,
            head_issued_ns,
            current_master,
            run_id,
        })
    }

    /// As `read`; the daemon waits while the store's file system is full
    /// (saying so once) instead of exiting, which would only restart it
    /// into the same full disk. Offline maintenance fails at once.
    fn read_waiting_for_room(
        cfg: &PipelineConfig,
        run_kind: RunKind,
        started_at: &str,
    ) -> Result<Opened, StoreError> {
        let path = &cfg.store;
        let mut backoff = Duration::from_millis(100);
        let mut waited = false;
        loop {
            match Opened::read(path, run_kind, started_at) {
                Err(e) if e.is_full() && run_kind == RunKind::Daemon => {
                    if !waited {
                        log::error!(
                            "{e}: the file system is full; waiting for room before starting (retrying every {} s at most)",
                            FULL_OPEN_RETRY_MAX.as_secs()
                        );
                        waited = true;
                    }
                    if let Some(waiting) = cfg.waiting_for_room {
                        waiting(FULL_OPEN_RETRY_MAX);
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(FULL_OPEN_RETRY_MAX);
                }
                other => {
                    if waited && other.is_ok() {
                        log::warn!("receipt store {} has room again: starting", path.display());
                    }
                    return other;
                }
            }
        }
    }
}

impl Pipeline {
    /// Opens the store, resumes chains and the Merkle log, records this run.
    pub fn start(
        cfg: &PipelineConfig,
        identity: Identity,
        master: MasterSeed,
        run_kind: RunKind,
        started_at: &str,
    ) -> Result<(Pipeline, Resumed), PipelineError> {
        let lock = WriterLock::acquire(&cfg.store)?;
        let Opened {
            store,
            previous_run,
            last_checkpoint,
            last_issued_ns,
            log_size,
            heads,
            head_issued_ns,
            current_master,
            run_id,
        } = Opened::read_waiting_for_room(cfg, run_kind, started_at)?;
        let frontier = Frontier::from_nodes(log_size, &StoreNodes(&store)).map_err(|e| {
            PipelineError::Resume {
                path: cfg.store.clone(),
                message: e.to_string(),
            }
        })?;
        let origin = format!("{}/host/{}", identity.deployer_id, identity.hostname);
        // Only a daemon start reports the previous daemon run's unclean
        // stop (offline maintenance leaves it to the next daemon start).
        let unclean_gaps = match run_kind {
            RunKind::Daemon => {
                let restart_ns = humantime::parse_rfc3339_weak(started_at)
                    .unwrap_or_else(|_| SystemTime::now())
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64);
                unclean::gaps(previous_run.as_ref(), &heads, &head_issued_ns, restart_ns)
            }
            RunKind::Maintenance => Vec::new(),
        };
        let mut builder = ChainBuilder::resume(identity, master, heads, log_size, current_master)?;
        for (issuer_id, gap) in &unclean_gaps {
            builder.add_gap(issuer_id, gap);
        }
        let metrics = Arc::new(WriterMetrics::default());
        let writer = Writer::new(
            store,
            frontier,
            builder.master_key(),
            WriterConfig {
                origin,
                checkpoint_interval: cfg.checkpoint_interval,
                batch_max: cfg.batch_max,
                run_id,
                signing_threads: cfg.signing_threads,
                // A transaction's worth: the signers keep working while
                // the writer commits one, and no second queue of
                // `queue_capacity` adds to the wait of a receipt.
                signing_window: cfg.batch_max.min(cfg.queue_capacity),
            },
            metrics.clone(),
        )?;
        let (to_writer, writer_rx) = bounded::<WriterMsg>(cfg.queue_capacity);
        let writer = std::thread::Builder::new()
            .name("observer-store".into())
            .spawn(move || writer.run(writer_rx))?;
        Ok((
            Pipeline {
                builder,
                sealed: Vec::new(),
                to_writer: Some(to_writer),
                writer: Some(writer),
                metrics,
                full_hold_max: DEFAULT_FULL_HOLD_MAX,
                store_loss: StoreLoss::default(),
                _lock: lock,
            },
            Resumed {
                previous_run,
                last_checkpoint,
                last_issued_ns,
                log_size,
                run_id,
            },
        ))
    }

    /// The writer's live counters.
    pub fn metrics(&self) -> &Arc<WriterMetrics> {
        &self.metrics
    }

    /// The issuer id of the observer's own chain.
    pub fn observer_issuer(&self) -> &str {
        self.builder.observer_issuer()
    }

    /// The master key (observer chain, checkpoints).
    pub fn master_key(&self) -> Arc<ChainKey> {
        self.builder.master_key()
    }

    /// The origin line of this log's checkpoints.
    pub fn origin(&self) -> String {
        let id = self.builder.identity();
        format!("{}/host/{}", id.deployer_id, id.hostname)
    }

    /// Most signed receipts held in memory while the store is full
    /// (`receipts.full_hold_max`); the queues between the stages hold up to
    /// twice `queue_capacity` more.
    pub fn set_full_hold_max(&mut self, n: usize) {
        self.full_hold_max = n;
    }

    /// Chains and signs `draft` (and a key announcement first if its
    /// chain is new). Blocks while the signers are saturated. Returns the
    /// chain position and log index the receipt was given, so a later
    /// receipt (a finding) can name it as evidence.
    ///
    /// While the store is full and the writer holds `full_hold_max`
    /// receipts, the draft is dropped before it is chained and counted
    /// ([`PipelineError::DroppedStoreFull`]); once the store has room, the
    /// next call first issues the `observer.loss` receipt and the gaps.
    pub fn submit(&mut self, draft: Draft) -> Result<Submitted, PipelineError> {
        self.report_store_loss()?;
        let held = self.metrics.held.load(Ordering::Relaxed);
        if self.metrics.store_full.load(Ordering::Relaxed) && held >= self.full_hold_max as u64 {
            let issuer_id = self.builder.issuer_of(&draft.agent_id);
            self.store_loss
                .record(&issuer_id, &draft.agent_id, draft.unix_ns);
            self.metrics.lost_store_full.fetch_add(1, Ordering::Relaxed);
            return Err(PipelineError::DroppedStoreFull {
                agent_id: draft.agent_id,
                held,
            });
        }
        self.chain_and_send(draft)
    }

    /// Once the store has room again after drafts were dropped: the gap on
    /// every affected chain, and one `observer.loss` receipt with the
    /// counts (issued before anything else, so it precedes the gaps it
    /// explains in the log).
    pub fn report_store_loss(&mut self) -> Result<(), PipelineError> {
        if self.store_loss.is_empty() || self.metrics.store_full.load(Ordering::Relaxed) {
            return Ok(());
        }
        let Some(report) = self.store_loss.take(self.full_hold_max) else {
            return Ok(());
        };
        log::warn!(
            "the receipt store has room again: {} receipts dropped while it was full are reported (observer.loss, unsigned_gap on {} chains)",
            report.total,
            report.gaps.len()
        );
        for (issuer_id, gap) in &report.gaps {
            self.builder.add_gap(issuer_id, gap);
        }
        let unix_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let draft = Draft {
            agent_id: payload::OBSERVER_AGENT.to_string(),
            action_type: "observer.loss",
            unix_ns,
            context: report.context,
            risk_class: RiskClass::Low,
            executable_hash: self.builder.identity().observer_executable_hash.clone(),
            mappings: Mappings::default(),
            detection_rules_digest: None,
            erases: None,
            prunes: None,
        };
        self.chain_and_send(draft).map(drop)
    }

    fn chain_and_send(&mut self, draft: Draft) -> Result<Submitted, PipelineError> {
        self.builder.issue(draft, &mut self.sealed)?;
        // `issue` pushes the draft's own receipt last.
        let submitted = self
            .sealed
            .last()
            .map(|s| Submitted {
                issuer_id: s.issuer_id.clone(),
                agent_id: s.agent_id.clone(),
                action_type: s.action_type,
                seq: s.seq,
                payload_hash: s.payload_hash.clone(),
                leaf_index: s.index,
            })
            .ok_or(PipelineError::WriterGone)?;
        self.send_sealed()?;
        Ok(submitted)
    }

    /// Hands the receipts just sealed to the writer, in log order.
    fn send_sealed(&mut self) -> Result<(), PipelineError> {
        let to_writer = self.to_writer.as_ref().ok_or(PipelineError::WriterGone)?;
        for sealed in self.sealed.drain(..) {
            if to_writer.send(WriterMsg::Sealed(Box::new(sealed))).is_err() {
                return Err(PipelineError::WriterGone);
            }
        }
        Ok(())
    }

    /// Rotates the master key to the one `new` derives (docs/RECEIPTS.md,
    /// "Key rotation"); `committed` hears the rotation receipt's hash once
    /// it is committed. From this call on everything is signed with keys
    /// of the new seed.
    pub fn rotate(
        &mut self,
        new: MasterSeed,
        reason: Option<&str>,
        unix_ns: u64,
        committed: Option<CommitNotice>,
    ) -> Result<Rotation, PipelineError> {
        let rotation = self
            .builder
            .rotate(new, reason, unix_ns, committed, &mut self.sealed)?;
        self.send_sealed()?;
        Ok(rotation)
    }

    /// The current master generation (1: the genesis seed).
    pub fn generation(&self) -> u64 {
        self.builder.generation()
    }

    /// Events were lost: the next receipt of every agent chain says so.
    pub fn record_loss(&mut self, gap: &UnsignedGap) {
        self.builder.record_loss(gap);
    }

    /// True if the writer thread has stopped (it only stops on an error
    /// before `finish`).
    pub fn writer_stopped(&self) -> bool {
        self.writer.as_ref().is_none_or(|w| w.is_finished())
    }

    /// Clean stop: everything submitted is signed and committed, a final
    /// checkpoint is signed, and the run is marked clean.
    pub fn finish(mut self, stopped_at: &str) -> Result<(), PipelineError> {
        if let Some(tx) = self.to_writer.take() {
            let _ = tx.send(WriterMsg::Finish {
                stopped_at: stopped_at.to_string(),
            });
        }
        self.join_writer()
    }

    fn join_writer(&mut self) -> Result<(), PipelineError> {
        match self.writer.take() {
            Some(w) => match w.join() {
                Ok(result) => Ok(result?),
                Err(_) => Err(PipelineError::WriterGone),
            },
            None => Ok(()),
        }
    }

    /// The writer's error, after it stopped on its own.
    pub fn writer_error(&mut self) -> Option<PipelineError> {
        drop(self.to_writer.take());
        self.join_writer().err()
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        // Not a clean stop: let the threads end without a final checkpoint.
        drop(self.to_writer.take());
    }
}
