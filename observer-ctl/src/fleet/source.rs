//! One host's log as the fleet store holds it, handed to the verifier
//! that checks a host's own store ([`LogSource`]): the same checks, with
//! the rows streamed out of ClickHouse in log order. What only a copy can
//! get wrong is noted on the way: rows the host sent twice (harmless: the
//! sink delivers at least once), two different rows at one position (a
//! rewritten log, or an edit of the fleet store), positions the host
//! signed that the copy lacks, checkpoints of two different logs.
use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, PoisonError},
};

use serde::Deserialize;

use super::{
    clickhouse::{quote, ClickHouse},
    host_rows::{read_ahead, HostRows, Row},
};
use crate::CtlError;
use observer_receipts::{
    clock_steps::Corrections,
    store::{CheckpointRow, KeyRow, ReceiptRow},
    verify::{Failure, LogSource, Outcome, ReceiptReader, VerifyError},
};

/// What reading the copy found besides the rows.
#[derive(Default)]
pub struct Findings {
    /// Rows read (one per log position).
    pub receipts: u64,
    /// Rows that were copies of another (re-sent, not yet merged).
    pub duplicates: u64,
    /// Log positions the host signed (below its newest checkpoint or a
    /// later receipt) that the fleet store lacks, as `[from, to)`.
    pub missing_leaves: Vec<(u64, u64)>,
    /// Per chain, seqs skipped between two receipts the store holds, as
    /// `(chain, from, to)` inclusive.
    pub missing_seqs: Vec<(String, u64, u64)>,
    /// The first seq and log index of each chain (a chain that starts
    /// above 1 lost its head, unless retention pruned it).
    pub chain_starts: Vec<(String, u64, u64)>,
    /// The newest checkpoint's creation time (ns), 0 if none.
    pub newest_checkpoint_ns: u64,
    /// The newest checkpoint's size.
    pub newest_checkpoint_size: u64,
    /// Failures of the copy itself (conflicting rows, checkpoints).
    pub failures: Vec<Failure>,
    /// The erasures the host recorded: (erased receipt hash, erasure
    /// receipt hash), hex, and the erased receipts whose copy holds the
    /// erasure marker.
    pub erasures: Vec<(String, String)>,
    pub erased_copies: HashSet<String>,
}

/// A `checkpoints` row.
#[derive(Deserialize, PartialEq)]
struct CheckpointLine {
    size: u64,
    root: String,
    note: String,
    created_at: String,
    created_ns: u64,
}

/// A `keys` row.
#[derive(Deserialize, PartialEq)]
struct KeyLine {
    kid: String,
    chain: String,
    agent: String,
    jwk: String,
    generation: u64,
    rotates: Option<String>,
}

/// One host of the fleet store, as a log to verify.
pub struct HostLog {
    ch: ClickHouse,
    host: String,
    checkpoints: Vec<CheckpointRow>,
    keys: Vec<KeyRow>,
    /// The receipts, read ahead ([`super::host_rows`]); taken by the
    /// first [`LogSource::receipts`].
    rows: Mutex<Option<HostRows>>,
    findings: Arc<Mutex<Findings>>,
}

fn failure(check: &'static str, row: Option<&Row>, reason: String) -> Failure {
    Failure {
        check,
        outcome: Outcome::Fail,
        chain: row.map_or_else(String::new, |r| r.chain.clone()),
        seq: row.map_or(0, |r| r.seq),
        receipt_hash: row.map_or_else(String::new, |r| r.receipt_hash.clone()),
        leaf_index: row.map(|r| r.leaf_index),
        reason,
    }
}

impl HostLog {
    /// Reads the host's checkpoints, keys and erasures (small), ready to
    /// stream its receipts from `rows`.
    pub fn open(ch: &ClickHouse, host: &str, rows: HostRows) -> Result<HostLog, CtlError> {
        let mut findings = Findings::default();
        let host_q = quote(host);
        let lines: Vec<CheckpointLine> = ch.rows(&format!(
            "SELECT DISTINCT size, root, note, created_at, created_ns FROM {} WHERE host = {host_q} \
             ORDER BY size, root, created_ns",
            ch.table("checkpoints")
        ))?;
        let checkpoints = checkpoints(lines, &mut findings);
        let keys: Vec<KeyLine> = ch.rows(&format!(
            "SELECT DISTINCT kid, chain, agent, jwk, generation, rotates FROM {} \
             WHERE host = {host_q} ORDER BY kid, chain",
            ch.table("keys")
        ))?;
        let keys = keys
            .into_iter()
            .map(|k| KeyRow {
                kid: k.kid,
                issuer_id: k.chain,
                agent_id: k.agent,
                jwk: k.jwk,
                generation: k.generation,
                rotates: k.rotates,
            })
            .collect();
        #[derive(Deserialize)]
        struct Erasure {
            receipt_hash: String,
            context: Option<String>,
        }
        let erasures: Vec<Erasure> = ch.rows(&format!(
            "SELECT DISTINCT receipt_hash, context FROM {} WHERE host = {host_q} \
             AND action = 'observer.policy' AND position(context, '\"erase\"') > 0",
            ch.table("receipts")
        ))?;
        findings.erasures = erasures
            .into_iter()
            .filter_map(|e| {
                let v: serde_json::Value = serde_json::from_str(e.context.as_deref()?).ok()?;
                Some((v["erase"].as_str()?.to_string(), e.receipt_hash))
            })
            .collect();
        Ok(HostLog {
            ch: ch.clone(),
            host: host.to_string(),
            checkpoints,
            keys,
            rows: Mutex::new(Some(rows)),
            findings: Arc::new(Mutex::new(findings)),
        })
    }

    /// What streaming the receipts found (call after verification).
    pub fn findings(&self) -> std::sync::MutexGuard<'_, Findings> {
        self.findings.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `(leaf_index, issued_ns)` of the given receipts.
    pub fn issued_ns(&self, leaves: &[u64]) -> Result<HashMap<u64, u64>, CtlError> {
        if leaves.is_empty() {
            return Ok(HashMap::new());
        }
        #[derive(Deserialize)]
        struct At {
            leaf_index: u64,
            issued_ns: u64,
        }
        let list: Vec<String> = leaves.iter().map(u64::to_string).collect();
        let rows: Vec<At> = self.ch.rows(&format!(
            "SELECT leaf_index, issued_ns FROM {} WHERE host = {} AND leaf_index IN ({})",
            self.ch.table("receipts"),
            quote(&self.host),
            list.join(",")
        ))?;
        Ok(rows
            .into_iter()
            .map(|r| (r.leaf_index, r.issued_ns))
            .collect())
    }

    fn select(&self, columns: &str, filter: &str, order: &str) -> String {
        format!(
            "SELECT {columns} FROM {} WHERE host = {}{filter} ORDER BY {order}",
            self.ch.table("receipts"),
            quote(&self.host)
        )
    }
}

/// The distinct checkpoints; two of one size with different roots are a
/// failure of their own (both are checked against the log).
fn checkpoints(lines: Vec<CheckpointLine>, findings: &mut Findings) -> Vec<CheckpointRow> {
    let mut first_root: HashMap<u64, String> = HashMap::new();
    let mut out: Vec<CheckpointRow> = Vec::new();
    for c in lines {
        findings.newest_checkpoint_ns = findings.newest_checkpoint_ns.max(c.created_ns);
        findings.newest_checkpoint_size = findings.newest_checkpoint_size.max(c.size);
        if out.iter().any(|o| o.size == c.size && o.note == c.note) {
            continue;
        }
        match first_root.get(&c.size) {
            Some(root) if *root != c.root => findings.failures.push(failure(
                "fleet_checkpoint_conflict",
                None,
                format!(
                    "two checkpoints of size {} with different roots ({root} and {}): two \
                     different logs of this host were forwarded",
                    c.size, c.root
                ),
            )),
            Some(_) => {}
            None => {
                first_root.insert(c.size, c.root.clone());
            }
        }
        out.push(CheckpointRow {
            size: c.size,
            root: hex::decode(&c.root).unwrap_or_default(),
            note: c.note,
            created_at: c.created_at,
        });
    }
    out
}

fn source_err(e: CtlError) -> VerifyError {
    VerifyError::Source(e.to_string())
}

impl LogSource for HostLog {
    fn checkpoints(&self) -> Result<Vec<CheckpointRow>, VerifyError> {
        Ok(self.checkpoints.clone())
    }

    fn keys(&self) -> Result<Vec<KeyRow>, VerifyError> {
        Ok(self.keys.clone())
    }

    /// A host's retention deletes its old receipts, not the fleet's
    /// copies of them: when the fleet store holds the log from index 0 it
    /// is verified whole, and a prune anchor is used only when the copy
    /// starts where one of the host's prunes cut (a sink added after it).
    fn latest_prune(&self) -> Result<Option<(String, String)>, VerifyError> {
        #[derive(Deserialize)]
        struct First {
            first: Option<u64>,
        }
        #[derive(Deserialize)]
        struct Prune {
            envelope: String,
            context: String,
        }
        let first: Vec<First> = self
            .ch
            .rows(&format!(
                "SELECT min(leaf_index) AS first FROM {} WHERE host = {}",
                self.ch.table("receipts"),
                quote(&self.host)
            ))
            .map_err(source_err)?;
        let first = first.first().and_then(|f| f.first).unwrap_or(0);
        if first == 0 {
            return Ok(None);
        }
        let prunes: Vec<Prune> = self
            .ch
            .rows(&self.select(
                "DISTINCT leaf_index, envelope, context",
                " AND action = 'observer.policy' AND position(context, '\"event\":\"prune\"') > 0",
                "leaf_index DESC",
            ))
            .map_err(source_err)?;
        let cut_of = |p: &Prune| {
            serde_json::from_str::<serde_json::Value>(&p.context)
                .ok()
                .and_then(|v| v["cut"].as_u64())
        };
        // The prune whose cut is where the copy starts; else the newest,
        // and the verifier reports where the copy and it disagree.
        let chosen = prunes
            .iter()
            .position(|p| cut_of(p) == Some(first))
            .or(if prunes.is_empty() { None } else { Some(0) });
        Ok(chosen.map(|i| (prunes[i].envelope.clone(), prunes[i].context.clone())))
    }

    fn clock_steps(&self) -> Result<Corrections, VerifyError> {
        #[derive(Deserialize)]
        struct Step {
            leaf_index: u64,
            context: String,
        }
        let rows: Vec<Step> = self
            .ch
            .rows(&self.select(
                "DISTINCT leaf_index, context",
                " AND action = 'observer.clock_step' AND isNotNull(context)",
                "leaf_index",
            ))
            .map_err(source_err)?;
        Ok(Corrections::from_contexts(
            rows.into_iter().map(|s| (s.leaf_index, s.context)),
        ))
    }

    fn receipts(&self) -> Result<Box<dyn ReceiptReader>, VerifyError> {
        let rows = self
            .rows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let rows = rows.unwrap_or_else(|| {
            read_ahead(&self.ch, std::slice::from_ref(&self.host))
                .pop()
                .expect("one host")
        });
        Ok(Box::new(Reader {
            rows,
            findings: Arc::clone(&self.findings),
        }))
    }
}

/// Hands the rows, one per log position, to the verifier.
struct Reader {
    rows: HostRows,
    findings: Arc<Mutex<Findings>>,
}

impl ReceiptReader for Reader {
    fn for_each(self: Box<Self>, f: &mut dyn FnMut(ReceiptRow) -> bool) -> Result<(), VerifyError> {
        let mut findings = self.findings.lock().unwrap_or_else(PoisonError::into_inner);
        let erased: HashSet<String> = findings.erasures.iter().map(|(e, _)| e.clone()).collect();
        let mut walk = Walk {
            findings: &mut findings,
            erased,
            next_leaf: 0,
            chains: HashMap::new(),
            stopped: false,
        };
        // A position's rows arrive together (ORDER BY leaf_index): the
        // held row goes to the verifier once the next position starts.
        let mut held: Option<Row> = None;
        let mut rows = self.rows;
        while let Some(row) = rows.recv() {
            let row = row.map_err(source_err)?;
            match held.take() {
                Some(h) if h.leaf_index == row.leaf_index => {
                    held = Some(walk.same_position(h, row));
                }
                Some(h) => {
                    walk.emit(h, f);
                    held = Some(row);
                }
                None => held = Some(row),
            }
        }
        if let Some(h) = held {
            walk.emit(h, f);
        }
        let newest = walk.findings.newest_checkpoint_size;
        if newest > walk.next_leaf {
            walk.findings.missing_leaves.push((walk.next_leaf, newest));
        }
        Ok(())
    }
}

/// The reader's state between rows.
struct Walk<'a> {
    findings: &'a mut Findings,
    erased: HashSet<String>,
    next_leaf: u64,
    chains: HashMap<String, u64>,
    stopped: bool,
}

impl Walk<'_> {
    /// Two rows at one log position: which one the verifier gets.
    fn same_position(&mut self, held: Row, row: Row) -> Row {
        if held == row {
            self.findings.duplicates += 1;
            return held;
        }
        if held.receipt_hash == row.receipt_hash
            && held.envelope == row.envelope
            && held.chain == row.chain
            && held.seq == row.seq
            && (is_marker(held.context.as_deref()) || is_marker(row.context.as_deref()))
        {
            // Sent again after the host erased its context: the erased
            // copy is the host's row now.
            self.findings.duplicates += 1;
            return if is_marker(row.context.as_deref()) {
                row
            } else {
                held
            };
        }
        self.findings.failures.push(failure(
            "fleet_conflict",
            Some(&row),
            format!(
                "two different receipts at log index {}: {} (chain {} seq {}) and {} (chain {} \
                 seq {}); the host rewrote its log or the fleet store was edited",
                row.leaf_index,
                held.receipt_hash,
                held.chain,
                held.seq,
                row.receipt_hash,
                row.chain,
                row.seq
            ),
        ));
        held
    }

    /// Notes gaps, chains and erasures of `row`, and hands it on.
    fn emit(&mut self, row: Row, f: &mut dyn FnMut(ReceiptRow) -> bool) {
        let findings = &mut *self.findings;
        findings.receipts += 1;
        if row.leaf_index > self.next_leaf {
            findings
                .missing_leaves
                .push((self.next_leaf, row.leaf_index));
        }
        self.next_leaf = row.leaf_index + 1;
        match self.chains.get_mut(&row.chain) {
            Some(last) => {
                if row.seq > *last + 1 {
                    findings
                        .missing_seqs
                        .push((row.chain.clone(), *last + 1, row.seq - 1));
                }
                *last = (*last).max(row.seq);
            }
            None => {
                findings
                    .chain_starts
                    .push((row.chain.clone(), row.seq, row.leaf_index));
                self.chains.insert(row.chain.clone(), row.seq);
            }
        }
        if self.erased.contains(&row.receipt_hash) && is_marker(row.context.as_deref()) {
            findings.erased_copies.insert(row.receipt_hash.clone());
        }
        if self.stopped {
            return;
        }
        let out = ReceiptRow {
            leaf_index: row.leaf_index,
            // Not hex: an empty hash, which the verifier reports as not
            // the envelope's.
            receipt_hash: hex::decode(&row.receipt_hash).unwrap_or_default(),
            issuer_id: row.chain,
            seq: row.seq,
            envelope: row.envelope,
            context: row.context,
        };
        self.stopped = !f(out);
    }
}

/// `{"erased": true, "by": ...}`: what an erasure leaves of a context.
fn is_marker(context: Option<&str>) -> bool {
    context.is_some_and(|c| {
        c.contains("\"erased\"")
            && serde_json::from_str::<serde_json::Value>(c)
                .is_ok_and(|v| v["erased"] == serde_json::Value::Bool(true))
    })
}
