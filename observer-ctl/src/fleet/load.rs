//! One host's log as the fleet store holds it, rebuilt into a private
//! SQLite store of the host's own schema, so that the verifier that checks
//! a host's store checks the fleet's copy with the same code, check for
//! check. What only a copy can get wrong is found on the way in: rows the
//! host sent twice (harmless: the sink delivers at least once), two
//! different rows at one position (a rewritten log, or an edit of the
//! fleet store), and positions the host signed that the copy lacks.
use std::{collections::HashMap, path::Path};

use serde::Deserialize;

use super::clickhouse::{quote, ClickHouse};
use crate::CtlError;
use observer_receipts::{
    merkle::Hash,
    store::{NewKey, NewReceipt, Store},
    verify::{Failure, Outcome},
};

/// A `receipts` row.
#[derive(Deserialize, PartialEq)]
struct ReceiptRow {
    chain: String,
    seq: u64,
    leaf_index: u64,
    agent: String,
    action: String,
    risk: String,
    issued_ns: u64,
    receipt_hash: String,
    envelope: String,
    context: Option<String>,
}

/// A `checkpoints` row.
#[derive(Deserialize, PartialEq)]
struct CheckpointRow {
    size: u64,
    root: String,
    note: String,
    created_at: String,
    created_ns: u64,
}

/// A `keys` row.
#[derive(Deserialize, PartialEq)]
struct KeyRow {
    kid: String,
    chain: String,
    agent: String,
    jwk: String,
    generation: u64,
    rotates: Option<String>,
    introduced_by: String,
}

/// What loading found besides the rows.
#[derive(Default)]
pub struct Loaded {
    /// Distinct receipt rows loaded.
    pub receipts: u64,
    /// Rows that were exact copies of another (re-sent, not yet merged).
    pub duplicates: u64,
    /// Log positions the host signed (below its newest checkpoint or a
    /// later receipt) that the fleet store lacks, as `[from, to)`.
    pub missing_leaves: Vec<(u64, u64)>,
    /// Per chain, seqs skipped between two receipts the store holds, as
    /// `(chain, from, to)` inclusive.
    pub missing_seqs: Vec<(String, u64, u64)>,
    /// The first seq of each chain (a chain that starts above 1 lost its
    /// head, unless retention pruned it).
    pub chain_starts: Vec<(String, u64, u64)>,
    /// Checkpoints beyond the first of their size: checked as external
    /// checkpoints, so each must match the rebuilt log.
    pub extra_checkpoints: Vec<String>,
    /// The newest checkpoint's creation time (ns), 0 if none.
    pub newest_checkpoint_ns: u64,
    /// The newest checkpoint's size.
    pub newest_checkpoint_size: u64,
    /// Failures of the copy itself (conflicting or unloadable rows).
    pub failures: Vec<Failure>,
    /// The erasures the host recorded: (erased receipt hash, erasure
    /// receipt hash), both hex.
    pub erasures: Vec<(String, String)>,
}

fn failure(
    check: &'static str,
    leaf: Option<u64>,
    chain: &str,
    seq: u64,
    hash: &str,
    reason: String,
) -> Failure {
    Failure {
        check,
        outcome: Outcome::Fail,
        chain: chain.to_string(),
        seq,
        receipt_hash: hash.to_string(),
        leaf_index: leaf,
        reason,
    }
}

/// Loads `host`'s rows from `ch` into the new store at `path`.
pub fn load_host(ch: &ClickHouse, host: &str, path: &Path) -> Result<(Store, Loaded), CtlError> {
    let mut store = Store::open(path).map_err(|e| CtlError::Io(e.to_string()))?;
    let mut loaded = Loaded::default();
    let host_q = quote(host);
    let checkpoints: Vec<CheckpointRow> = ch.rows(&format!(
        "SELECT size, root, note, created_at, created_ns FROM {} WHERE host = {host_q} \
         ORDER BY size, root, created_ns",
        ch.table("checkpoints")
    ))?;
    let keys: Vec<KeyRow> = ch.rows(&format!(
        "SELECT kid, chain, agent, jwk, generation, rotates, introduced_by FROM {} \
         WHERE host = {host_q} ORDER BY kid, introduced_by",
        ch.table("keys")
    ))?;
    let select = format!(
        "SELECT chain, seq, leaf_index, agent, action, risk, issued_ns, receipt_hash, envelope, \
         context FROM {} WHERE host = {host_q} ORDER BY leaf_index, receipt_hash",
        ch.table("receipts")
    );
    let result = store
        .transaction(|b| {
            let mut last: Option<ReceiptRow> = None;
            let mut next_leaf = 0u64;
            let mut chains: HashMap<String, u64> = HashMap::new();
            let streamed = ch.for_each_row(&select, |row: ReceiptRow| {
                if let Some(prev) = &last {
                    if prev.leaf_index == row.leaf_index {
                        if *prev == row {
                            loaded.duplicates += 1;
                        } else if same_but_erased(prev, &row) {
                            // Sent again after the host erased its context:
                            // the erased copy is the host's current row.
                            loaded.duplicates += 1;
                            if let Some(marker) = row.context.as_deref().filter(|c| is_marker(c)) {
                                if let Err(e) = b.erase_context(row.leaf_index, marker) {
                                    log::warn!("erased context at {}: {e}", row.leaf_index);
                                }
                            }
                        } else {
                            loaded.failures.push(failure(
                                "fleet_conflict",
                                Some(row.leaf_index),
                                &row.chain,
                                row.seq,
                                &row.receipt_hash,
                                format!(
                                    "two different receipts at log index {}: {} (chain {} seq {}) \
                                     and {} (chain {} seq {}); the host rewrote its log or the \
                                     fleet store was edited",
                                    row.leaf_index,
                                    prev.receipt_hash,
                                    prev.chain,
                                    prev.seq,
                                    row.receipt_hash,
                                    row.chain,
                                    row.seq
                                ),
                            ));
                        }
                        return Ok(());
                    }
                }
                if row.leaf_index > next_leaf {
                    loaded.missing_leaves.push((next_leaf, row.leaf_index));
                }
                next_leaf = row.leaf_index + 1;
                match chains.get_mut(&row.chain) {
                    Some(last_seq) => {
                        if row.seq > *last_seq + 1 {
                            loaded.missing_seqs.push((
                                row.chain.clone(),
                                *last_seq + 1,
                                row.seq - 1,
                            ));
                        }
                        *last_seq = (*last_seq).max(row.seq);
                    }
                    None => {
                        loaded
                            .chain_starts
                            .push((row.chain.clone(), row.seq, row.leaf_index));
                        chains.insert(row.chain.clone(), row.seq);
                    }
                }
                if row.action == "observer.policy" {
                    if let Some(erased) = erased_by(&row) {
                        loaded.erasures.push((erased, row.receipt_hash.clone()));
                    }
                }
                insert_receipt(b, &row, &mut loaded);
                last = Some(row);
                Ok(())
            });
            let newest = checkpoints.iter().map(|c| c.size).max().unwrap_or(0);
            if newest > next_leaf {
                loaded.missing_leaves.push((next_leaf, newest));
            }
            Ok(streamed)
        })
        .map_err(|e| CtlError::Io(e.to_string()))?;
    result?;
    store
        .transaction(|b| {
            load_checkpoints(b, &checkpoints, &mut loaded);
            load_keys(b, &keys, &mut loaded);
            Ok(())
        })
        .map_err(|e| CtlError::Io(e.to_string()))?;
    Ok((store, loaded))
}

fn insert_receipt(
    b: &mut observer_receipts::store::Batch<'_>,
    row: &ReceiptRow,
    loaded: &mut Loaded,
) {
    let unloadable = |loaded: &mut Loaded, why: String| {
        loaded.failures.push(failure(
            "fleet_conflict",
            Some(row.leaf_index),
            &row.chain,
            row.seq,
            &row.receipt_hash,
            why,
        ));
    };
    let Some(hash) = decode_hash(&row.receipt_hash) else {
        return unloadable(
            loaded,
            format!("receipt_hash {:?} is not 64 hex digits", row.receipt_hash),
        );
    };
    let r = NewReceipt {
        leaf_index: row.leaf_index,
        receipt_hash: &hash,
        issuer_id: &row.chain,
        seq: row.seq,
        agent_id: &row.agent,
        action_type: &row.action,
        unix_ns: row.issued_ns,
        risk_class: &row.risk,
        envelope: row.envelope.as_bytes(),
        context: row.context.as_deref().map(str::as_bytes),
    };
    match b.insert_receipt(&r) {
        Ok(()) => loaded.receipts += 1,
        // The store's own constraints: one receipt per (chain, seq) and per
        // receipt hash.
        Err(e) => unloadable(
            loaded,
            format!(
                "a second receipt at chain {} seq {} (log index {}): {e}; the host rewrote its \
                 log or the fleet store was edited",
                row.chain, row.seq, row.leaf_index
            ),
        ),
    }
}

fn load_checkpoints(
    b: &mut observer_receipts::store::Batch<'_>,
    rows: &[CheckpointRow],
    loaded: &mut Loaded,
) {
    let mut first_of_size: HashMap<u64, &str> = HashMap::new();
    let mut previous: Option<&CheckpointRow> = None;
    for c in rows {
        loaded.newest_checkpoint_ns = loaded.newest_checkpoint_ns.max(c.created_ns);
        loaded.newest_checkpoint_size = loaded.newest_checkpoint_size.max(c.size);
        // Exact copies (a re-sent checkpoint) are one.
        if previous.is_some_and(|p| p == c) {
            continue;
        }
        previous = Some(c);
        match first_of_size.get(&c.size) {
            Some(root) if *root == c.root => {
                // The same tree signed twice (a note signed again at the
                // same size): checked like any other.
                loaded.extra_checkpoints.push(c.note.clone());
            }
            Some(root) => {
                loaded.failures.push(failure(
                    "fleet_checkpoint_conflict",
                    None,
                    "",
                    0,
                    "",
                    format!(
                        "two checkpoints of size {} with different roots ({root} and {}): two \
                         different logs of this host were forwarded",
                        c.size, c.root
                    ),
                ));
                loaded.extra_checkpoints.push(c.note.clone());
            }
            None => {
                first_of_size.insert(c.size, &c.root);
                match decode_hash(&c.root) {
                    Some(root) => {
                        if let Err(e) = b.insert_checkpoint(c.size, &root, &c.note, &c.created_at) {
                            log::warn!("checkpoint of size {}: {e}", c.size);
                            loaded.extra_checkpoints.push(c.note.clone());
                        }
                    }
                    // The note itself is what the verifier checks.
                    None => loaded.extra_checkpoints.push(c.note.clone()),
                }
            }
        }
    }
}

fn load_keys(b: &mut observer_receipts::store::Batch<'_>, rows: &[KeyRow], loaded: &mut Loaded) {
    let mut previous: Option<&KeyRow> = None;
    for k in rows {
        if previous.is_some_and(|p| p == k) {
            continue;
        }
        previous = Some(k);
        let introduced_by = decode_hash(&k.introduced_by).unwrap_or([0; 32]);
        let key = NewKey {
            kid: &k.kid,
            issuer_id: &k.chain,
            agent_id: &k.agent,
            jwk: &k.jwk,
            generation: k.generation,
            rotates: k.rotates.as_deref(),
        };
        if let Err(e) = b.insert_key(&key, &introduced_by) {
            loaded.failures.push(failure(
                "keys_table",
                None,
                &k.chain,
                0,
                "",
                format!(
                    "a second row for key {} in the fleet store's keys: {e}",
                    k.kid
                ),
            ));
        }
    }
}

/// The same receipt, one copy with its context and the other with the
/// erasure marker in its place.
fn same_but_erased(a: &ReceiptRow, b: &ReceiptRow) -> bool {
    a.receipt_hash == b.receipt_hash
        && a.envelope == b.envelope
        && a.chain == b.chain
        && a.seq == b.seq
        && (a.context.as_deref().is_some_and(is_marker)
            || b.context.as_deref().is_some_and(is_marker))
}

/// `{"erased": true, "by": ...}`: what an erasure leaves of a context.
fn is_marker(context: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(context)
        .is_ok_and(|v| v["erased"] == serde_json::Value::Bool(true))
}

/// The receipt an erasure receipt erased (its context's `erase`).
fn erased_by(row: &ReceiptRow) -> Option<String> {
    let context = row.context.as_deref()?;
    if !context.contains("\"erase\"") {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(context).ok()?;
    v["erase"].as_str().map(str::to_string)
}

fn decode_hash(text: &str) -> Option<Hash> {
    hex::decode(text).ok()?.try_into().ok()
}
