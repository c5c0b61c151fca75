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
pub mod audit_pack;
mod checks;
mod masters;
pub mod proof;
pub mod receipt;

pub use masters::{
    master_rotations, note_origin, note_signature_verifier, open_with, store_masters,
    walk_rotations, MasterEpoch,
};

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, PoisonError, RwLock},
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use serde::Serialize;
use serde_json::Value;

use super::{
    checkpoint, jcs, json, keys,
    merkle::{self, Frontier, Hash},
    mldsa::{LibcruxVerifier, RustCryptoVerifier, Verifier},
    payload::{self, GENESIS_HASH, OBSERVER_AGENT},
    retention::{self, PruneAnchor},
    store::{ReceiptRow, Store, StoreError},
};

/// A receipt's `issued_at` may be at most this far ahead of the verifier
/// (plus the backward clock steps recorded after it).
pub const MAX_FUTURE_NS: u64 = 300 * 1_000_000_000;

pub struct VerifyOptions {
    /// The pinned master public key (raw ML-DSA-65, 1952 bytes).
    pub master_public_key: Vec<u8>,
    pub now_unix_ns: u64,
    /// Signed checkpoints kept off-host (forwarded copies): the log must
    /// still contain and be consistent with each of them.
    pub external_checkpoints: Vec<String>,
    /// Also verify every signature with the second implementation.
    pub independent: bool,
    pub threads: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Pass,
    Fail,
    Unverifiable,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct CheckCounts {
    pub pass: u64,
    pub fail: u64,
    pub unverifiable: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub check: &'static str,
    pub outcome: Outcome,
    /// The chain (issuer_id), `seq` and receipt hash of the receipt at
    /// fault; empty for log-wide failures.
    pub chain: String,
    pub seq: u64,
    pub receipt_hash: String,
    pub leaf_index: Option<u64>,
    pub reason: String,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub receipts: u64,
    pub chains: usize,
    pub checks: BTreeMap<&'static str, CheckCounts>,
    /// Contexts erased on request (a pass with a note).
    pub erased_contexts: u64,
    /// Receipts in hash-only mode (no context to recompute).
    pub hash_only: u64,
    pub checkpoints_verified: u64,
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
    pub verifiers: Vec<&'static str>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }

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

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("pinned master public key: {0}")]
    MasterKey(String),
    /// The store's master rotations do not walk from the pinned key.
    #[error("master key rotations of the store: {0}")]
    MasterRotations(String),
}

use checks::Parsed;

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
    if opts.master_public_key.len() != super::mldsa::PUBLIC_KEY_LEN {
        return Err(VerifyError::MasterKey(format!(
            "{} bytes, an ML-DSA-65 public key has {}",
            opts.master_public_key.len(),
            super::mldsa::PUBLIC_KEY_LEN
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
    let clock_steps = super::clock_steps::Corrections::load(store)?;
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

/// A signature to check under the key the in-order pass settled on.
type SignatureJob = (ReceiptLabel, Arc<[u8]>, Vec<u8>, Vec<u8>);

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

/// A parsed receipt and, when its kid named a key authorised at the time,
/// that key and the signature failures under it.
type Checked = (Parsed, Option<(Arc<[u8]>, Vec<String>)>);

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

struct AuthorisedKey {
    issuer_id: String,
    public_key: Arc<[u8]>,
}

struct ChainState {
    seq: u64,
    head: String,
}

struct State {
    report: Report,
    receipt_failures: Vec<Failure>,
    log_failures: Vec<Failure>,
    /// The current master (the pinned genesis master until a rotation).
    master_kid: String,
    master_public_key: Arc<[u8]>,
    /// Every master in log order, genesis first.
    masters: Vec<MasterEpoch>,
    observer_issuer: Option<String>,
    keys: HashMap<String, AuthorisedKey>,
    /// Each chain's authorised key: the kid its last announcement named.
    chain_keys: HashMap<String, String>,
    /// Keys replaced by a rotation or re-announcement: kid to the log
    /// index of the receipt that retired it.
    retired: HashMap<String, u64>,
    /// kid to public key of the master key and every key authorised so
    /// far, read by the parallel pass while the in-order pass adds to it.
    key_hints: Arc<RwLock<HashMap<String, Arc<[u8]>>>>,
    chains: HashMap<String, ChainState>,
    frontier: Frontier,
    /// Roots at every size, kept only for sizes a checkpoint names.
    roots: HashMap<u64, Hash>,
    wanted_sizes: std::collections::HashSet<u64>,
    next_leaf: u64,
    /// Erased contexts: (erased receipt hash, the erasure receipt named).
    erasure_claims: Vec<(String, String)>,
    /// Erasure receipts: observer.policy contexts naming what they erased.
    erasures: HashMap<String, String>,
}

impl State {
    fn new(opts: &VerifyOptions) -> State {
        let master_kid = keys::thumbprint(&opts.master_public_key);
        let master_public_key: Arc<[u8]> = opts.master_public_key.as_slice().into();
        let key_hints = HashMap::from([(master_kid.clone(), Arc::clone(&master_public_key))]);
        State {
            report: Report::default(),
            receipt_failures: Vec::new(),
            log_failures: Vec::new(),
            masters: vec![MasterEpoch {
                from_size: 0,
                kid: master_kid.clone(),
                public_key: Arc::clone(&master_public_key),
            }],
            master_kid,
            master_public_key,
            observer_issuer: None,
            keys: HashMap::new(),
            chain_keys: HashMap::new(),
            retired: HashMap::new(),
            key_hints: Arc::new(RwLock::new(key_hints)),
            chains: HashMap::new(),
            frontier: Frontier::new(),
            roots: HashMap::new(),
            wanted_sizes: Default::default(),
            next_leaf: 0,
            erasure_claims: Vec::new(),
            erasures: HashMap::new(),
        }
    }

    /// Continues from the newest retention anchor: it must be a receipt
    /// signed by the master key whose context matches its digest, and its
    /// compact range must reproduce its own signed checkpoint.
    fn start_from_anchor(&mut self, envelope: &str, context: &str) {
        match self.check_anchor(envelope, context) {
            Ok((issuer, anchor, frontier, masters)) => {
                // Rotations at or after the cut are still in the log and
                // are walked there again.
                for pair in masters.windows(2) {
                    if pair[1].from_size <= anchor.cut {
                        self.retired
                            .insert(pair[0].kid.clone(), pair[1].from_size - 1);
                    }
                }
                self.masters = masters
                    .into_iter()
                    .filter(|m| m.from_size <= anchor.cut)
                    .collect();
                if let Some(current) = self.masters.last() {
                    self.master_kid = current.kid.clone();
                    self.master_public_key = Arc::clone(&current.public_key);
                }
                self.report.count("prune_anchor", Outcome::Pass);
                self.report.pruned_below = anchor.cut;
                self.next_leaf = anchor.cut;
                self.roots.insert(anchor.cut, frontier.root());
                self.frontier = frontier;
                self.observer_issuer = Some(issuer);
                for c in anchor.chains {
                    self.chains.insert(
                        c.issuer_id,
                        ChainState {
                            seq: c.seq,
                            head: c.payload_hash,
                        },
                    );
                }
                // In announcement order: a chain's later key replaces its
                // earlier one.
                for k in anchor.keys {
                    if let Ok(pk) = keys::public_key_from_jwk(&k.jwk) {
                        if keys::thumbprint(&pk) == k.kid {
                            if let Some(old) =
                                self.chain_keys.insert(k.issuer_id.clone(), k.kid.clone())
                            {
                                self.retired.entry(old).or_insert(anchor.cut);
                            }
                            self.authorise(k.kid, k.issuer_id, pk);
                        }
                    }
                }
            }
            Err(reason) => self.log_failure("prune_anchor", reason),
        }
    }

    #[allow(clippy::type_complexity)]
    fn check_anchor(
        &self,
        envelope: &str,
        context: &str,
    ) -> Result<(String, PruneAnchor, Frontier, Vec<MasterEpoch>), String> {
        let env =
            json::parse_strict(envelope.as_bytes()).map_err(|e| format!("anchor envelope: {e}"))?;
        let p = &env["payload"];
        if p["agent_id"] != OBSERVER_AGENT || p["action_type"] != "observer.policy" {
            return Err("the prune anchor is not an observer.policy receipt".into());
        }
        let anchor: PruneAnchor = json::parse_strict(context.as_bytes())
            .map_err(|e| e.to_string())
            .and_then(|v| serde_json::from_value(v).map_err(|e| e.to_string()))
            .map_err(|e| format!("prune anchor context: {e}"))?;
        // The pruned master rotations, walked from the pinned genesis key:
        // the anchor is signed by the master they end with.
        let masters = walk_rotations(&self.masters[0], &anchor.master_rotations)?;
        let signer = masters.last().unwrap_or(&self.masters[0]).clone();
        if env["signature"]["kid"].as_str() != Some(signer.kid.as_str()) {
            return Err(format!(
                "the prune anchor is not signed by the current master key {} (walked from the pinned key)",
                signer.kid
            ));
        }
        let sig = env["signature"]["sig"]
            .as_str()
            .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
            .unwrap_or_default();
        let message = jcs::canonicalize(p).map_err(|e| e.to_string())?;
        LibcruxVerifier
            .verify(&signer.public_key, &message, &sig)
            .map_err(|e| format!("prune anchor signature: {e}"))?;
        if p["payload_digest"]["hash"].as_str()
            != Some(payload::sha256_hex(context.as_bytes()).as_str())
            || p["payload_digest"]["size"].as_u64() != Some(context.len() as u64)
        {
            return Err("the prune anchor's context does not match its payload_digest".into());
        }
        let issuer = p["issuer_id"].as_str().unwrap_or_default().to_string();
        let origin = issuer
            .strip_suffix("/agent/observer")
            .ok_or("the prune anchor's issuer is not an observer chain")?;
        let frontier = retention::anchor_frontier(&anchor)?;
        // The anchor's own checkpoint is signed by the anchor's signer.
        let cp = checkpoint::open_note(&anchor.checkpoint, origin, &signer.public_key, |m, s| {
            LibcruxVerifier.verify(&signer.public_key, m, s).is_ok()
        })
        .map_err(|e| format!("prune anchor checkpoint: {e}"))?;
        if cp.size != anchor.cut || cp.root != frontier.root() {
            return Err(format!(
                "the prune anchor's compact range does not give its checkpoint's root at size {}",
                anchor.cut
            ));
        }
        Ok((issuer, anchor, frontier, masters))
    }

    /// The master that signs the checkpoint of a tree of `size` leaves:
    /// the one current after leaf `size - 1`.
    fn master_at(&self, size: u64) -> &MasterEpoch {
        self.masters
            .iter()
            .rev()
            .find(|m| m.from_size <= size)
            .unwrap_or(&self.masters[0])
    }

    /// Checks an `observer.key` announcement of `kid` for `issuer` (signed
    /// by the current master: the caller checked) and makes it the chain's
    /// key. Without `rotates` it is a new chain's first key; with it, a
    /// master rotation (on the observer chain: `rotates` is the current
    /// master, `generation` the next one) or a chain's re-announcement
    /// (`rotates` is the chain's authorised key).
    fn key_change(
        &mut self,
        issuer: &str,
        kid: &str,
        context: &Value,
        leaf_index: u64,
    ) -> Result<(), String> {
        let is_observer = self.observer_issuer.as_deref() == Some(issuer);
        let Some(rotates) = context.get("rotates") else {
            if let Some(existing) = self.chain_keys.get(issuer).filter(|k| *k != kid) {
                return Err(format!(
                    "announces a second key {kid} for {issuer} (authorised: {existing}) without \"rotates\""
                ));
            }
            self.chain_keys.insert(issuer.to_string(), kid.to_string());
            return Ok(());
        };
        let rotates = rotates.as_str().unwrap_or_default();
        if is_observer {
            let generation = self.masters.len() as u64 + 1;
            if rotates != self.master_kid {
                return Err(format!(
                    "master rotation to {kid} rotates {rotates}, but the current master is {}",
                    self.master_kid
                ));
            }
            if context["generation"].as_u64() != Some(generation) {
                return Err(format!(
                    "master rotation to {kid} says generation {}, expected {generation}",
                    context["generation"]
                ));
            }
            self.chain_keys.insert(issuer.to_string(), kid.to_string());
            return Ok(());
        }
        match self.chain_keys.get(issuer) {
            Some(current) if current == rotates => {
                self.retired.insert(current.clone(), leaf_index);
                self.chain_keys.insert(issuer.to_string(), kid.to_string());
                Ok(())
            }
            current => Err(format!(
                "re-announcement of {issuer} rotates {rotates}, but the chain's authorised key is {}",
                current.map_or("none", String::as_str)
            )),
        }
    }

    /// Files a key under `kid`, which callers have checked to be its
    /// thumbprint.
    fn authorise(&mut self, kid: String, issuer_id: String, public_key: Vec<u8>) {
        let public_key: Arc<[u8]> = public_key.into();
        self.key_hints
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(kid.clone(), Arc::clone(&public_key));
        self.keys.insert(
            kid,
            AuthorisedKey {
                issuer_id,
                public_key,
            },
        );
    }

    fn record(&mut self, p: &ReceiptLabel, check: &'static str, outcome: Outcome, reason: String) {
        self.report.count(check, outcome);
        if outcome != Outcome::Pass {
            self.receipt_failures.push(Failure {
                check,
                outcome,
                chain: p.chain.clone(),
                seq: p.seq,
                receipt_hash: p.hash.clone(),
                leaf_index: Some(p.leaf),
                reason,
            });
        }
    }

    fn log_failure(&mut self, check: &'static str, reason: String) {
        self.report.count(check, Outcome::Fail);
        self.log_failures.push(Failure {
            check,
            outcome: Outcome::Fail,
            chain: String::new(),
            seq: 0,
            receipt_hash: String::new(),
            leaf_index: None,
            reason,
        });
    }

    /// The in-order pass over one chunk: log position, chain links, key
    /// authorisation, and the signature outcome, re-checked under the
    /// right key where the parallel pass had no key or another one.
    fn in_order(&mut self, parsed: Vec<Checked>) -> Vec<SignatureJob> {
        let mut signature_jobs = Vec::new();
        for (p, early) in parsed {
            let label = ReceiptLabel::of(&p);
            self.report.receipts += 1;
            for (check, outcome, reason) in &p.results {
                self.record(&label, check, *outcome, reason.clone());
            }
            self.check_position(&p, &label);
            if let Some(by) = p
                .context
                .as_ref()
                .filter(|c| c.get("erased") == Some(&Value::Bool(true)))
                .map(|c| c["by"].as_str().unwrap_or_default().to_string())
            {
                self.report.erased_contexts += 1;
                self.erasure_claims.push((label.hash.clone(), by));
            }
            if p.payload.as_ref().is_some_and(|v| v["mode"] == "hash") {
                self.report.hash_only += 1;
            }
            let key = self.chain_checks(&p, &label);
            match key {
                Some(pk) => match early {
                    Some((early_pk, failures))
                        if Arc::ptr_eq(&early_pk, &pk) || *early_pk == *pk =>
                    {
                        self.signature_outcome(&label, failures)
                    }
                    _ => signature_jobs.push((label, pk, p.payload_jcs, p.signature)),
                },
                None => self.record(
                    &label,
                    "signature",
                    Outcome::Unverifiable,
                    "no authorised key to check it with".into(),
                ),
            }
        }
        signature_jobs
    }

    fn signature_outcome(&mut self, label: &ReceiptLabel, failures: Vec<String>) {
        if failures.is_empty() {
            self.record(label, "signature", Outcome::Pass, String::new());
        } else {
            self.record(label, "signature", Outcome::Fail, failures.join("; "));
        }
    }

    /// Log position and Merkle leaf: indices are contiguous from 0.
    fn check_position(&mut self, p: &Parsed, label: &ReceiptLabel) {
        if p.row.leaf_index != self.next_leaf {
            self.log_failure(
                "log_continuity",
                format!(
                    "log indices {}..{} are missing (the next stored receipt is {} at index {})",
                    self.next_leaf, p.row.leaf_index, label.hash, p.row.leaf_index
                ),
            );
        }
        self.next_leaf = p.row.leaf_index + 1;
        if p.row.receipt_hash != p.receipt_hash {
            self.record(
                label,
                "receipt_hash",
                Outcome::Fail,
                format!(
                    "stored receipt hash {} is not SHA-256 of the stored envelope",
                    hex::encode(&p.row.receipt_hash)
                ),
            );
        } else {
            self.report.count("receipt_hash", Outcome::Pass);
        }
        self.frontier.append(merkle::leaf_hash(&p.receipt_hash));
        if self.wanted_sizes.contains(&self.frontier.size()) {
            self.roots
                .insert(self.frontier.size(), self.frontier.root());
        }
    }

    /// Chain link, seq and key authorisation. Returns the public key the
    /// signature must verify under.
    fn chain_checks(&mut self, p: &Parsed, label: &ReceiptLabel) -> Option<Arc<[u8]>> {
        let payload = p.payload.as_ref()?;
        let issuer = payload["issuer_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let agent = payload["agent_id"].as_str().unwrap_or_default();
        let seq = payload["seq"].as_u64().unwrap_or(0);
        let prev = payload["previousReceiptHash"].as_str().unwrap_or_default();
        if issuer != p.row.issuer_id || seq != p.row.seq {
            self.record(
                label,
                "index",
                Outcome::Fail,
                format!(
                    "stored as {} seq {} but the payload says {} seq {}",
                    p.row.issuer_id, p.row.seq, issuer, seq
                ),
            );
        }
        let chain = self.chains.entry(issuer.clone()).or_insert(ChainState {
            seq: 0,
            head: GENESIS_HASH.to_string(),
        });
        if seq == chain.seq + 1 && prev == chain.head {
            self.report.count("chain_link", Outcome::Pass);
        } else {
            let reason = if seq > chain.seq + 1 {
                format!(
                    "seq {} follows seq {}: receipts {}..{} of this chain are missing",
                    seq,
                    chain.seq,
                    chain.seq + 1,
                    seq - 1
                )
            } else if seq != chain.seq + 1 {
                format!(
                    "seq {} after seq {}: out of order or duplicated",
                    seq, chain.seq
                )
            } else {
                format!(
                    "previousReceiptHash {} is not the hash of seq {}'s payload ({})",
                    prev, chain.seq, chain.head
                )
            };
            let (check, outcome) = ("chain_link", Outcome::Fail);
            self.record(label, check, outcome, reason);
        }
        // Continue from this receipt so one break is reported once.
        let chain = self.chains.get_mut(&issuer).expect("inserted above");
        chain.seq = seq;
        chain.head = p.payload_hash.clone();

        // The observer's chain is the master key's.
        if agent == OBSERVER_AGENT && self.observer_issuer.is_none() {
            self.observer_issuer = Some(issuer.clone());
        }
        let is_observer = self.observer_issuer.as_deref() == Some(issuer.as_str());
        // With the key, its thumbprint: a key is only ever filed under its
        // own thumbprint (computed when it was pinned or announced).
        let key = if is_observer {
            (p.kid == self.master_kid).then(|| {
                (
                    Arc::clone(&self.master_public_key),
                    self.master_kid.as_str(),
                )
            })
        } else {
            // Authorised for this chain and not replaced by a later
            // announcement (the retired map is empty until a rotation).
            self.keys
                .get_key_value(&p.kid)
                .filter(|(_, k)| k.issuer_id == issuer)
                .filter(|(kid, _)| self.retired.is_empty() || !self.retired.contains_key(*kid))
                .map(|(kid, k)| (Arc::clone(&k.public_key), kid.as_str()))
        };
        let key = key.map(|(pk, thumb)| (pk, thumb.to_string()));
        match &key {
            Some((_, thumb)) => {
                self.report.count("key_authorised", Outcome::Pass);
                if payload["key_thumbprint"].as_str() == Some(thumb.as_str()) && p.kid == *thumb {
                    self.report.count("key_thumbprint", Outcome::Pass);
                } else {
                    self.record(
                        label,
                        "key_thumbprint",
                        Outcome::Fail,
                        format!("key_thumbprint and kid must both be {thumb}"),
                    );
                }
            }
            None => {
                let reason = match self.retired.get(&p.kid) {
                    Some(at) if is_observer => format!(
                        "key {} is a master key retired by the rotation at log index {at}: \
                         the observer chain is signed by the current master {}",
                        p.kid, self.master_kid
                    ),
                    Some(at) => format!(
                        "key {} of {} was retired by the re-announcement at log index {at}: \
                         the chain's authorised key is {}",
                        p.kid,
                        issuer,
                        self.chain_keys.get(&issuer).map_or("none", String::as_str)
                    ),
                    None => format!(
                        "key {} is not authorised for {} by the pinned master key",
                        p.kid, issuer
                    ),
                };
                self.record(label, "key_authorised", Outcome::Fail, reason)
            }
        }
        if is_observer && key.is_some() {
            self.observer_context(p, payload, label);
        }
        key.map(|(pk, _)| pk)
    }

    /// Key announcements and erasures on the observer's chain. The master
    /// key signed the payload, which binds the context by its digest; a
    /// context that fails its digest has already been reported and is
    /// not used.
    fn observer_context(&mut self, p: &Parsed, payload: &Value, label: &ReceiptLabel) {
        let digest_ok = p
            .results
            .iter()
            .all(|(check, outcome, _)| *check != "payload_digest" || *outcome == Outcome::Pass);
        let Some(context) = p.context.as_ref().filter(|_| digest_ok) else {
            return;
        };
        match payload["action_type"].as_str() {
            Some("observer.key") => {
                let (Some(issuer), Some(kid)) =
                    (context["issuer_id"].as_str(), context["kid"].as_str())
                else {
                    return;
                };
                let Some(pk) = keys::public_key_from_jwk(&context["jwk"])
                    .ok()
                    .filter(|pk| keys::thumbprint(pk) == kid)
                else {
                    return;
                };
                match self.key_change(issuer, kid, context, p.row.leaf_index) {
                    Ok(()) => {
                        self.report.count("key_rotation", Outcome::Pass);
                        self.authorise(kid.to_string(), issuer.to_string(), pk.clone());
                        if self.observer_issuer.as_deref() == Some(issuer)
                            && context.get("rotates").is_some()
                        {
                            // The old master is retired from the next
                            // observer-chain receipt (and from checkpoints
                            // of trees containing this receipt) on.
                            self.retired
                                .insert(self.master_kid.clone(), p.row.leaf_index);
                            self.master_kid = kid.to_string();
                            self.master_public_key = pk.into();
                            self.masters.push(MasterEpoch {
                                from_size: p.row.leaf_index + 1,
                                kid: self.master_kid.clone(),
                                public_key: Arc::clone(&self.master_public_key),
                            });
                        }
                    }
                    Err(reason) => self.record(label, "key_rotation", Outcome::Fail, reason),
                }
            }
            Some("observer.policy") => {
                if let Some(erased) = context["erase"].as_str() {
                    self.erasures
                        .insert(erased.to_string(), hex::encode(p.receipt_hash));
                }
            }
            _ => {}
        }
    }

    fn finish_log(&mut self, store: &Store, opts: &VerifyOptions) -> Result<(), VerifyError> {
        self.report.log_size = self.frontier.size();
        self.report.chains = self.chains.len();
        let origin = self
            .observer_issuer
            .as_deref()
            .and_then(|i| i.strip_suffix("/agent/observer"))
            .map(str::to_string);
        let stored = store.checkpoints()?;
        let mut notes: Vec<(String, String)> = stored
            .iter()
            .map(|c| {
                (
                    format!("stored checkpoint at size {}", c.size),
                    c.note.clone(),
                )
            })
            .collect();
        notes.extend(
            opts.external_checkpoints
                .iter()
                .enumerate()
                .map(|(i, n)| (format!("external checkpoint #{}", i + 1), n.clone())),
        );
        let Some(origin) = origin else {
            if !notes.is_empty() {
                self.log_failure(
                    "checkpoint",
                    "checkpoints exist but the log has no observer chain to name its origin".into(),
                );
            }
            return Ok(());
        };
        let mut newest = 0;
        // The first pass kept the recomputed root at every size a
        // checkpoint names.
        let mut opened = Vec::new();
        for (what, note) in notes {
            // Signed by the master current after the tree's last leaf.
            let size = note
                .lines()
                .nth(1)
                .and_then(|l| l.parse::<u64>().ok())
                .unwrap_or(0);
            let master = self.master_at(size).clone();
            match open_with(&note, &origin, &master.public_key) {
                Ok(cp) => {
                    opened.push((what, cp));
                }
                Err(e) => {
                    let other = self.masters.iter().find(|m| {
                        m.kid != master.kid && open_with(&note, &origin, &m.public_key).is_ok()
                    });
                    let reason = match other {
                        Some(m) => format!(
                            "{what}: signed by master {} ({}), but the master current after leaf {} is {}",
                            m.kid,
                            if self.retired.contains_key(&m.kid) { "retired" } else { "not yet current" },
                            size.saturating_sub(1),
                            master.kid
                        ),
                        None => format!("{what}: {e}"),
                    };
                    self.log_failure("checkpoint_signature", reason)
                }
            }
        }
        for (what, cp) in opened {
            self.report.count("checkpoint_signature", Outcome::Pass);
            if cp.size < self.report.pruned_below {
                self.report.checkpoints_before_cut += 1;
                continue;
            }
            if cp.size > self.frontier.size() {
                self.log_failure(
                    "log_root",
                    format!(
                        "{what} covers {} receipts but the log has only {}: the log was truncated",
                        cp.size,
                        self.frontier.size()
                    ),
                );
                continue;
            }
            match self.roots.get(&cp.size) {
                Some(root) if *root == cp.root => {
                    self.report.count("log_root", Outcome::Pass);
                    self.report.checkpoints_verified += 1;
                    newest = newest.max(cp.size);
                }
                _ => self.log_failure(
                    "log_root",
                    format!(
                        "{what}: the Merkle root of the first {} receipts is not the checkpoint's root",
                        cp.size
                    ),
                ),
            }
        }
        self.report.uncheckpointed = self.frontier.size() - newest.min(self.frontier.size());
        Ok(())
    }

    /// The keys table must hold exactly the announced keys.
    fn check_keys_table(&mut self, store: &Store) -> Result<(), VerifyError> {
        for row in store.keys()? {
            let announced = self.keys.get(&row.kid);
            let stored_pk = json::parse_strict(row.jwk.as_bytes())
                .ok()
                .and_then(|jwk| keys::public_key_from_jwk(&jwk).ok());
            let is_master = row.kid == self.master_kid;
            let ok = match (announced, stored_pk) {
                (Some(a), Some(pk)) => *a.public_key == *pk && a.issuer_id == row.issuer_id,
                (None, Some(pk)) => is_master && *pk == *self.master_public_key,
                _ => false,
            };
            if ok {
                self.report.count("keys_table", Outcome::Pass);
            } else {
                self.log_failure(
                    "keys_table",
                    format!(
                        "stored key {} for {} is not the key its observer.key receipt announced",
                        row.kid, row.issuer_id
                    ),
                );
            }
        }
        Ok(())
    }

    /// Every erased context must name a real erasure receipt for it.
    fn check_erasures(&mut self) {
        for (erased, by) in std::mem::take(&mut self.erasure_claims) {
            if self.erasures.get(&erased) != Some(&by) {
                self.log_failure(
                    "erasure",
                    format!("receipt {erased} has an erased context, but {by} is not an observer.policy receipt erasing it"),
                );
            }
        }
    }

    fn into_report(mut self) -> Report {
        // Signature results arrive per chunk: restore log order.
        self.receipt_failures.sort_by_key(|f| f.leaf_index);
        self.report.failures = self.receipt_failures;
        self.report.failures.extend(self.log_failures);
        self.report
    }
}

use checks::parse_row;
pub use checks::{is_issued_at, structure_problems};

struct ReceiptLabel {
    chain: String,
    seq: u64,
    hash: String,
    leaf: u64,
}

impl ReceiptLabel {
    fn of(p: &Parsed) -> ReceiptLabel {
        ReceiptLabel {
            chain: p.row.issuer_id.clone(),
            seq: p.row.seq,
            hash: hex::encode(p.receipt_hash),
            leaf: p.row.leaf_index,
        }
    }
}
