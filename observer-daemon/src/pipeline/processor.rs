//! The stage after the ring-buffer reader: enriches each event, writes the
//! optional JSON-lines output, and turns the events of registered agents
//! and the observer's own lifecycle into signed receipts.
use std::{
    io::Write,
    sync::{atomic::Ordering, Arc},
    time::{Instant, UNIX_EPOCH},
};

use anyhow::Context as _;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::{
    enrich::enricher::Enricher,
    names::Names,
    pipeline::{inbox::Msg, lifecycle, prune, receipts::Receipts},
    policy::{
        finding::{self, Dedup},
        mcp_definitions::Definitions,
        rules::Hit,
        KernelInterest, Policy, PolicyUpdate,
    },
    receipt::{
        chain::Draft,
        payload::{self, Mappings, RiskClass, UnsignedGap, OBSERVER_AGENT},
        pipeline::PipelineError,
        select,
    },
    record::{Detail, EnrichedEvent, LossRecord, Record, StartRecord, StatsRecord},
};

/// Where a (re)loaded policy's kernel interest goes: the BPF path filters
/// and watched-executable trie.
pub trait KernelPush: Send {
    fn push(&mut self, interest: &KernelInterest) -> Result<(), String>;
}

/// Findings of one rule for one process and one match are reported once
/// per this window.
pub const FINDING_REPEAT_WINDOW_NS: u64 = 60_000_000_000;

pub use crate::receipt::payload::now_unix_ns;

pub struct Processor {
    enricher: Enricher,
    /// DNS and SNI names for connect records (None: names disabled).
    names: Option<Names>,
    out: Option<std::io::BufWriter<Box<dyn Write + Send>>>,
    receipts: Option<Receipts>,
    drafts: Vec<Draft>,
    /// Start of the current loss window.
    loss_window_from: u64,
    written: u64,
    policy: Arc<Policy>,
    kernel: Option<Box<dyn KernelPush>>,
    argv_buf: String,
    hits: Vec<Hit>,
    dedup: Dedup,
    /// `issued_at` (ns) of each clock step receipt of this run: retention
    /// waits until the store holds them all.
    clock_steps: Vec<u64>,
    /// MCP tool definitions seen per server (rug pulls).
    definitions: Definitions,
}

impl Processor {
    pub fn new(
        enricher: Enricher,
        names: Option<Names>,
        out: Option<Box<dyn Write + Send>>,
        receipts: Option<Receipts>,
        policy: Arc<Policy>,
        kernel: Option<Box<dyn KernelPush>>,
    ) -> Processor {
        Processor {
            enricher,
            names,
            out: out.map(|w| std::io::BufWriter::with_capacity(1 << 16, w)),
            receipts,
            drafts: Vec::new(),
            loss_window_from: now_unix_ns(),
            written: 0,
            policy,
            kernel,
            argv_buf: String::new(),
            hits: Vec::new(),
            dedup: Dedup::new(FINDING_REPEAT_WINDOW_NS),
            clock_steps: Vec::new(),
            definitions: Definitions::default(),
        }
    }

    /// Runs until the channel closes; returns the records written.
    pub fn run(mut self, mut rx: mpsc::Receiver<Msg>) -> anyhow::Result<u64> {
        loop {
            let msg = match rx.try_recv() {
                Ok(msg) => msg,
                Err(mpsc::error::TryRecvError::Empty) => {
                    if let Some(w) = self.out.as_mut() {
                        w.flush().context("flushing events output")?;
                    }
                    match rx.blocking_recv() {
                        Some(msg) => msg,
                        None => break,
                    }
                }
                Err(mpsc::error::TryRecvError::Disconnected) => break,
            };
            self.handle(msg)?;
        }
        if let Some(w) = self.out.as_mut() {
            w.flush().context("flushing events output")?;
        }
        if let Some(r) = self.receipts.take() {
            r.pipeline
                .finish(&payload::issued_at(now_unix_ns()))
                .context("finishing the receipt store")?;
        }
        Ok(self.written)
    }

    fn handle(&mut self, msg: Msg) -> anyhow::Result<()> {
        let mut record = match msg {
            Msg::Event(ev) => {
                let mut ready = Vec::new();
                match self.names.as_mut() {
                    Some(names) => {
                        names.on_event(&ev, &mut self.enricher, Instant::now(), &mut ready);
                    }
                    None => ready.extend(self.enricher.enrich(&ev)),
                }
                return self.write_events(ready);
            }
            Msg::Stream(s) => {
                let mut detail = s.detail;
                self.definitions
                    .complete(&mut detail, &self.policy, self.enricher.table());
                let mut ev = self.enricher.enrich_with(&s.header, s.event, detail);
                let mode = ev
                    .process
                    .agent
                    .as_deref()
                    .and_then(|a| self.policy.registry.get(a))
                    .map_or(Default::default(), |a| a.capture_content);
                crate::policy::content::keep(&mut ev.detail, mode);
                return self.write_events(vec![ev]);
            }
            Msg::Policy(update) => {
                self.on_policy(update);
                return self.submit();
            }
            Msg::Control(q) => {
                q.answer(self.enricher.table(), &self.policy);
                return Ok(());
            }
            Msg::Rotate(request) => return self.on_rotate(request),
            Msg::Tick => {
                self.follow_clock();
                if let Some(r) = self.receipts.as_mut() {
                    r.selector.flush_due(now_unix_ns(), &mut self.drafts);
                }
                self.maybe_prune();
                self.submit()?;
                let mut ready = Vec::new();
                if let Some(names) = self.names.as_mut() {
                    names.flush_due(Instant::now(), &mut ready);
                    names.publish();
                }
                return self.write_events(ready);
            }
            Msg::Record(r) => r,
        };
        if let Record::ObserverStop(_) = &record {
            // Connect records still waiting for a ClientHello go first.
            let mut ready = Vec::new();
            if let Some(names) = self.names.as_mut() {
                names.flush_all(&mut ready);
            }
            self.write_events(ready)?;
        }
        match &mut record {
            Record::ObserverStart(start) => self.on_start(start),
            Record::Loss(loss) => self.on_loss(loss),
            Record::ObserverStop(stats) => {
                stats.events_written = self.written;
                if let Some(names) = &self.names {
                    stats.names = names.counters();
                }
                self.on_stop(stats);
            }
            Record::Event(_) => {}
        }
        self.write_record(record)
    }

    /// Receipts and output for enriched events, in order.
    fn write_events(&mut self, events: Vec<crate::record::EnrichedEvent>) -> anyhow::Result<()> {
        for enriched in events {
            if self.receipts.is_some() {
                let unix_ns = self
                    .enricher
                    .clock()
                    .wall(enriched.boot_ns)
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64);
                self.on_event(&enriched, unix_ns)?;
            }
            self.write_record(Record::Event(Box::new(enriched)))?;
        }
        Ok(())
    }

    fn write_record(&mut self, record: Record) -> anyhow::Result<()> {
        self.submit()?;
        if let Some(w) = self.out.as_mut() {
            serde_json::to_writer(&mut *w, &record)?;
            w.write_all(b"\n").context("writing events output")?;
        }
        self.written += 1;
        Ok(())
    }

    /// Rules first: an event that produces findings becomes their evidence
    /// receipt right away (on its agent's chain, or its executable's
    /// `unregistered:` chain); any other event goes to normal selection.
    fn on_event(&mut self, ev: &EnrichedEvent, unix_ns: u64) -> anyhow::Result<()> {
        self.hits.clear();
        self.policy.evaluate(ev, &mut self.argv_buf, &mut self.hits);
        let pid = ev.process.pid;
        let dedup = &mut self.dedup;
        self.hits.retain(|h| dedup.admit(h, pid, unix_ns));
        let Some(r) = self.receipts.as_mut() else {
            return Ok(());
        };
        if self.hits.is_empty() {
            let sensitive = match &ev.detail {
                Detail::FileOpen(o) if ev.process.agent.is_some() => {
                    self.policy.indicators.sensitive_path(&o.path)
                }
                _ => false,
            };
            r.selector
                .on_event(ev, unix_ns, sensitive, &mut self.drafts);
            return Ok(());
        }
        r.selector.flush_due(unix_ns, &mut self.drafts);
        let Some(mut evidence) = select::draft_for(ev, unix_ns, finding::chain_agent_id(ev)) else {
            return Ok(());
        };
        r.selector.fold_search(ev, &mut evidence, &mut self.drafts);
        self.drafts.push(evidence);
        let placed = self.submit_placed()?;
        let Some(Some(evidence)) = placed.last().cloned() else {
            return Ok(());
        };
        let hits = std::mem::take(&mut self.hits);
        for hit in &hits {
            let rule = &self.policy.rules.rules[hit.rule];
            log::warn!(
                rule = rule.id.as_str(),
                risk = hit.risk.as_str(),
                pid = pid,
                chain = evidence.agent_id.as_str();
                "shadow_ai.finding {} ({}): {}; pid {} comm {} on chain {} evidence seq {}",
                rule.id,
                hit.risk.as_str(),
                hit.reason,
                pid,
                ev.process.comm,
                evidence.agent_id,
                evidence.seq
            );
            self.drafts.push(finding::draft(
                &self.policy,
                hit,
                ev,
                std::slice::from_ref(&evidence),
                select::executable_hash(ev),
                unix_ns,
            ));
        }
        self.hits = hits;
        self.submit()
    }

    /// A reload attempt's outcome: a valid set replaces the rules, the
    /// registry and the kernel filters; a broken one leaves everything as
    /// it was. Both are recorded as `observer.policy` receipts.
    fn on_policy(&mut self, update: PolicyUpdate) {
        let previous = self.policy.digest.clone();
        let context = match update {
            PolicyUpdate::Loaded { policy, trigger } => {
                if let Some(k) = self.kernel.as_mut() {
                    if let Err(e) = k.push(&policy.kernel) {
                        log::error!(
                            message_id = crate::service::journal::message_id::POLICY_RELOAD,
                            policy_digest = previous.as_str();
                            "policy reload ({trigger}): kernel filters not updated: {e}"
                        );
                        let c = lifecycle::context(&lifecycle::KernelFiltersRefused {
                            event: "policy_refused",
                            trigger,
                            error: format!("kernel filters: {e}"),
                            refused_digest: policy.digest.clone(),
                            policy_digest: previous,
                            in_force: self.policy.summary(),
                        });
                        self.drafts
                            .extend(self.observer_draft("observer.policy", c));
                        return;
                    }
                }
                log::info!(
                    message_id = crate::service::journal::message_id::POLICY_RELOAD,
                    policy_digest = policy.digest.as_str();
                    "policy reloaded ({trigger}): {} (was {previous})",
                    policy.digest
                );
                let attributed = self.enricher.set_policy(policy.clone());
                self.dedup.clear();
                self.policy = policy;
                lifecycle::context(&lifecycle::PolicyReloaded {
                    in_force: self.policy.summary(),
                    event: "policy_reloaded",
                    trigger,
                    previous_digest: previous,
                    attributed_running: lifecycle::AttributedRunning::of(&attributed),
                })
            }
            PolicyUpdate::Refused { error, trigger } => {
                log::error!(
                    message_id = crate::service::journal::message_id::POLICY_RELOAD,
                    policy_digest = previous.as_str();
                    "policy reload ({trigger}) refused, {previous} stays in force: {error}"
                );
                lifecycle::context(&lifecycle::PolicyRefused {
                    event: "policy_refused",
                    trigger,
                    error,
                    policy_digest: previous,
                    policies_dir: self.policy.dir.as_ref().map(|d| d.display().to_string()),
                })
            }
        };
        self.drafts
            .extend(self.observer_draft("observer.policy", context));
    }

    /// Submits the pending drafts, returning where each was placed (None:
    /// dropped, counted, because the store is full).
    fn submit_placed(
        &mut self,
    ) -> anyhow::Result<Vec<Option<crate::receipt::pipeline::Submitted>>> {
        let mut placed = Vec::new();
        let Some(r) = self.receipts.as_mut() else {
            return Ok(placed);
        };
        // Also on ticks without drafts: a store that has room again gets
        // its observer.loss receipt without waiting for the next event.
        let mut result = r.pipeline.report_store_loss().map(|()| None);
        let mut drafts = self.drafts.drain(..);
        loop {
            match result {
                Ok(p) => placed.extend(p),
                Err(PipelineError::DroppedStoreFull { .. }) => placed.push(None),
                Err(e) => {
                    if r.pipeline.writer_stopped() {
                        if let Some(cause) = r.pipeline.writer_error() {
                            return Err(cause).context("the receipt writer stopped");
                        }
                    }
                    return Err(e).context("submitting a receipt");
                }
            }
            let Some(draft) = drafts.next() else {
                break;
            };
            result = r.pipeline.submit(draft).map(|p| Some(Some(p)));
        }
        Ok(placed)
    }

    fn submit(&mut self) -> anyhow::Result<()> {
        self.submit_placed().map(drop)
    }

    /// Re-reads the wall clock's offset (docs/RECEIPTS.md "Clock steps").
    /// On a step: open file-open windows and finding repeats, timed on the
    /// old clock, close first; the step becomes an `observer.clock_step`
    /// receipt; event times use the new offset from here on; retention
    /// looks again under the new clock.
    fn follow_clock(&mut self) {
        let mut clock = *self.enricher.clock();
        let step = crate::enrich::clock::follow(&mut clock);
        self.enricher.set_clock(clock);
        let Some(step) = step else {
            return;
        };
        log::warn!(
            step_ns = step.step_ns() as i64;
            "the wall clock stepped by {:.3} s; event times follow it from now on",
            step.step_ns() as f64 / 1e9
        );
        self.dedup = Dedup::new(FINDING_REPEAT_WINDOW_NS);
        let Some(r) = self.receipts.as_mut() else {
            return;
        };
        r.selector.flush_all(&mut self.drafts);
        r.last_prune_check = None;
        if let Some(draft) = self.observer_draft(crate::enrich::clock::STEP_ACTION, step.context())
        {
            self.clock_steps.push(draft.unix_ns);
            self.drafts.push(draft);
        }
    }

    /// Retention (see [`prune::due`]): a prune receipt when something aged out.
    fn maybe_prune(&mut self) {
        if let Some(r) = self.receipts.as_mut() {
            self.drafts.extend(prune::due(r, &self.clock_steps));
        }
    }

    /// Master key rotation: the drafts before it go first, then the
    /// rotation receipt; the control socket hears where it was placed and,
    /// through the writer, when it is committed.
    fn on_rotate(&mut self, request: crate::pipeline::inbox::RotateRequest) -> anyhow::Result<()> {
        self.submit()?;
        let crate::pipeline::inbox::RotateRequest {
            seed,
            reason,
            reply,
        } = request;
        let Some(r) = self.receipts.as_mut() else {
            let _ = reply.send(Err("receipts are disabled: there is no master key".into()));
            return Ok(());
        };
        let (committed, on_commit) = tokio::sync::oneshot::channel();
        match r.pipeline.rotate(
            seed,
            reason.as_deref(),
            now_unix_ns(),
            Some(Box::new(move |hash| {
                let _ = committed.send(hash);
            })),
        ) {
            Ok(rotation) => {
                log::warn!(
                    "master key rotation to generation {}: {} replaces {} (log index {})",
                    rotation.generation,
                    rotation.new_kid,
                    rotation.old_kid,
                    rotation.leaf_index
                );
                let _ = reply.send(Ok((rotation, on_commit)));
                Ok(())
            }
            Err(e) => {
                let _ = reply.send(Err(format!("rotating the master key: {e}")));
                if r.pipeline.writer_stopped() {
                    if let Some(cause) = r.pipeline.writer_error() {
                        return Err(cause).context("the receipt writer stopped");
                    }
                }
                Ok(())
            }
        }
    }

    fn observer_draft(&self, action_type: &'static str, context: Value) -> Option<Draft> {
        let r = self.receipts.as_ref()?;
        Some(Draft {
            agent_id: OBSERVER_AGENT.to_string(),
            action_type,
            unix_ns: now_unix_ns(),
            context,
            risk_class: RiskClass::Low,
            executable_hash: r.observer_executable_hash.clone(),
            mappings: Mappings::default(),
            detection_rules_digest: None,
            erases: None,
            prunes: None,
        })
    }

    fn on_start(&mut self, start: &StartRecord) {
        let Some(r) = self.receipts.as_ref() else {
            return;
        };
        let resumed = &r.resumed;
        let unclean = resumed
            .previous_run
            .as_ref()
            .is_some_and(|run| !run.clean_stop);
        let context = lifecycle::context(&lifecycle::Start::new(
            start,
            resumed,
            r.master_seed_created,
            now_unix_ns(),
        ));
        if unclean {
            log::warn!(
                "the previous run did not stop cleanly; last checkpoint {:?}",
                resumed.last_checkpoint.as_ref().map(|c| c.size)
            );
        }
        let policy = lifecycle::context(&r.policy);
        self.drafts
            .extend(self.observer_draft("observer.start", context));
        self.drafts
            .extend(self.observer_draft("observer.policy", policy));
    }

    fn on_loss(&mut self, loss: &LossRecord) {
        let now = now_unix_ns();
        let gap = UnsignedGap {
            count: Some(loss.total),
            from: payload::issued_at(self.loss_window_from),
            to: payload::issued_at(now),
        };
        self.loss_window_from = now;
        let context = lifecycle::context(&lifecycle::Loss::new(loss, &gap));
        if let Some(r) = self.receipts.as_mut() {
            r.pipeline.record_loss(&gap);
        }
        self.drafts
            .extend(self.observer_draft("observer.loss", context));
    }

    fn on_stop(&mut self, stats: &StatsRecord) {
        let Some(r) = self.receipts.as_mut() else {
            return;
        };
        r.selector.flush_all(&mut self.drafts);
        let m = r.pipeline.metrics();
        let context = lifecycle::context(&lifecycle::Stop {
            stats,
            receipts_committed_this_run: m.committed.load(Ordering::Relaxed),
            path_search: r.selector.path_search_counters(),
            file_open: r.selector.open_fold_counters(),
            log_size_before_stop: m.log_size.load(Ordering::Relaxed),
            commit_latency_ms: lifecycle::Latency {
                p50: m.latency_ms_quantile(0.50),
                p99: m.latency_ms_quantile(0.99),
                max: m.latency_ms_quantile(1.0),
            },
        });
        self.drafts
            .extend(self.observer_draft("observer.stop", context));
    }
}
