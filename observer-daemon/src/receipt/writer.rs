//! The single writer: puts signed receipts back in log order, commits them
//! in batched transactions together with their Merkle nodes and chain
//! heads, and signs a checkpoint at least every `checkpoint_interval` while
//! receipts flow and at a clean stop.
use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use serde_json::json;

use super::{
    chain::ChainHead,
    checkpoint::{self, Checkpoint},
    jcs,
    keys::ChainKey,
    merkle::{self, Frontier},
    mldsa::Signer as _,
    payload,
    signing::{Signed, WriterMsg},
    store::{NewKey, NewReceipt, Store, StoreError},
};

#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Checkpoint origin line: identifies this host's log.
    pub origin: String,
    pub checkpoint_interval: Duration,
    /// Most receipts committed in one transaction.
    pub batch_max: usize,
    pub run_id: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("signing failed for log index {index}: {error}")]
    Signing { index: u64, error: String },
    #[error("the signers stopped before log index {0} was signed")]
    Incomplete(u64),
    #[error("signing a checkpoint: {0}")]
    Checkpoint(String),
    #[error("checkpoint: {0}")]
    CheckpointFormat(#[from] checkpoint::CheckpointError),
}

/// Counters the daemon and the benchmark read while the writer runs.
#[derive(Default)]
pub struct WriterMetrics {
    pub committed: AtomicU64,
    pub batches: AtomicU64,
    pub checkpoints: AtomicU64,
    pub log_size: AtomicU64,
    /// Committed log ranges, for `observerctl tail -f` (control socket).
    pub feed: super::feed::CommitFeed,
    /// Event time (kernel clock) to commit, in ms buckets.
    latency: Mutex<LatencyHistogram>,
}

impl WriterMetrics {
    pub fn latency_ms_quantile(&self, q: f64) -> Option<u64> {
        self.latency.lock().ok()?.quantile(q)
    }
}

/// 1 ms buckets up to 60 s, then one overflow bucket.
struct LatencyHistogram {
    buckets: Vec<u64>,
    count: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            buckets: vec![0; 60_001],
            count: 0,
        }
    }
}

impl LatencyHistogram {
    fn record(&mut self, ms: u64) {
        let i = (ms as usize).min(self.buckets.len() - 1);
        self.buckets[i] += 1;
        self.count += 1;
    }

    fn quantile(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((self.count as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (ms, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(ms as u64);
            }
        }
        None
    }
}

pub struct Writer {
    store: Store,
    frontier: Frontier,
    master: Arc<ChainKey>,
    cfg: WriterConfig,
    metrics: Arc<WriterMetrics>,
    /// Signed receipts that arrived before an earlier index.
    pending: BTreeMap<u64, Box<Signed>>,
    last_checkpoint_size: u64,
    last_checkpoint_at: Instant,
}

impl Writer {
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
        })
    }

    /// Runs until `Finish` (clean stop) or until the channel closes.
    pub fn run(mut self, rx: Receiver<WriterMsg>) -> Result<(), WriterError> {
        loop {
            let wait = self
                .cfg
                .checkpoint_interval
                .saturating_sub(self.last_checkpoint_at.elapsed())
                .max(Duration::from_millis(1));
            let first = match rx.recv_timeout(wait) {
                Ok(msg) => Some(msg),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => {
                    // Not a clean stop: commit what is complete, no
                    // final checkpoint, run stays marked unclean.
                    self.commit_ready()?;
                    return Ok(());
                }
            };
            let mut finish = None;
            let mut received = 0;
            let mut next = first;
            while let Some(msg) = next {
                match msg {
                    WriterMsg::Signed(s) => {
                        self.pending.insert(s.sealed.index, s);
                    }
                    WriterMsg::Failed { index, error } => {
                        self.commit_ready()?;
                        return Err(WriterError::Signing { index, error });
                    }
                    WriterMsg::Finish { stopped_at } => finish = Some(stopped_at),
                }
                received += 1;
                if finish.is_some() || received >= self.cfg.batch_max {
                    break;
                }
                next = rx.try_recv().ok();
            }
            self.commit_ready()?;
            if let Some(stopped_at) = finish {
                if let Some((&index, _)) = self.pending.iter().next() {
                    return Err(WriterError::Incomplete(index.min(self.frontier.size())));
                }
                self.checkpoint_if_grown()?;
                self.store.finish_run(self.cfg.run_id, &stopped_at)?;
                return Ok(());
            }
            if self.last_checkpoint_at.elapsed() >= self.cfg.checkpoint_interval {
                self.checkpoint_if_grown()?;
                self.last_checkpoint_at = Instant::now();
            }
        }
    }

    /// Commits every receipt that continues the log without a hole.
    fn commit_ready(&mut self) -> Result<(), WriterError> {
        let mut batch = Vec::new();
        let mut next = self.frontier.size() + batch.len() as u64;
        while let Some(s) = self.pending.remove(&next) {
            batch.push(s);
            next += 1;
        }
        if batch.is_empty() {
            return Ok(());
        }
        let mut frontier = self.frontier.clone();
        let committed = batch.len() as u64;
        self.store.transaction(|tx| {
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
        })?;
        self.frontier = frontier;
        for s in &mut batch {
            // A master rotation: checkpoints of trees that contain it are
            // signed by the new master (the one current after their last
            // leaf); the batch is in log order.
            if let Some(new) = s.sealed.new_master.take() {
                self.master = new;
            }
            if let Some(notice) = s.sealed.committed.take() {
                let _ = notice.send(s.receipt_hash);
            }
        }
        let now_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        if let Ok(mut h) = self.metrics.latency.lock() {
            for s in &batch {
                h.record(now_ns.saturating_sub(s.sealed.unix_ns) / 1_000_000);
            }
        }
        self.metrics
            .committed
            .fetch_add(committed, Ordering::Relaxed);
        self.metrics.batches.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .log_size
            .store(self.frontier.size(), Ordering::Relaxed);
        let end = self.frontier.size();
        self.metrics.feed.publish(end - committed, end);
        Ok(())
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
