//! Queries over the fleet store (docs/fleet.md "Queries"): the hosts, the
//! agents and the shadow-AI findings of each host, and the receipts of
//! every host that match the filters of `receipts`.
//!
//! The sink delivers at least once, and until ClickHouse merges parts a
//! re-sent receipt is there twice: the counts are of distinct receipt
//! hashes (`uniqExact(receipt_hash)`, or a `GROUP BY receipt_hash` first),
//! and the listing reads its rows in an order that puts a copy right after
//! its original and skips it; both count the hosts' receipts, not the
//! deliveries. `FINAL` would do the same at five times the cost on 18.16
//! (`cargo xtask bench fleet`): it merges every column of the sort key. Host and chain conditions are on the
//! sort key's first columns and select ranges of the primary index; time
//! conditions are on `issued_ns`, the partition key's column, so months
//! outside the window are never opened. Aggregates are computed by
//! ClickHouse and only their rows travel. `envelope` and `context`, the
//! big columns, are read only by the listing, and there only for the rows
//! it prints (`--limit`) and the columns it needs.
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Map, Value};

pub use super::sql::check_hosts;
use super::{
    clickhouse::ClickHouse,
    context_filter::ContextFilter,
    sql::{glob_cond, Where},
};
use crate::CtlError;
use observer_receipts::{
    payload,
    query::{stored_payload_text, summary, Query},
    verify::receipt::payload_hash,
};

/// Which hosts and when.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// `--hosts` (globs; a bare host name is every origin with it).
    pub hosts: Vec<String>,
    pub since_ns: Option<u64>,
    pub until_ns: Option<u64>,
}

impl Scope {
    fn conds(&self) -> Where {
        let mut w = Where::default();
        w.hosts(&self.hosts);
        w.window(self.since_ns, self.until_ns);
        w
    }
}

fn time(ns: Option<u64>) -> Value {
    ns.map_or(Value::Null, |ns| json!(payload::issued_at(ns)))
}

/// Each host: receipts, chains, first and last issued, the newest
/// checkpoint's size, time and age (seconds before `now_ns`).
pub fn hosts(ch: &ClickHouse, scope: &Scope, now_ns: u64) -> Result<Vec<Value>, CtlError> {
    #[derive(Deserialize)]
    struct R {
        host: String,
        receipts: u64,
        chains: u64,
        first_ns: u64,
        last_ns: u64,
    }
    #[derive(Deserialize)]
    struct C {
        host: String,
        newest: u64,
        newest_at: String,
        newest_ns: u64,
    }
    let w = scope.conds().sql();
    let receipts: Vec<R> = ch.rows(&format!(
        "SELECT host, uniqExact(receipt_hash) AS receipts, uniqExact(chain) AS chains, \
         min(issued_ns) AS first_ns, max(issued_ns) AS last_ns \
         FROM {}{w} GROUP BY host",
        ch.table("receipts")
    ))?;
    // The newest checkpoint is the largest; a copy of it changes nothing.
    let mut cw = Where::default();
    cw.hosts(&scope.hosts);
    let checkpoints: Vec<C> = ch.rows(&format!(
        "SELECT host, max(size) AS newest, argMax(created_at, size) AS newest_at, \
         argMax(created_ns, size) AS newest_ns FROM {}{} GROUP BY host",
        ch.table("checkpoints"),
        cw.sql()
    ))?;
    let mut out: BTreeMap<String, Value> = BTreeMap::new();
    for r in receipts {
        out.insert(
            r.host.clone(),
            json!({
                "host": r.host,
                "receipts": r.receipts,
                "chains": r.chains,
                "first_issued_at": time(Some(r.first_ns)),
                "last_issued_at": time(Some(r.last_ns)),
                "checkpoint": null,
            }),
        );
    }
    for c in checkpoints {
        let row = out.entry(c.host.clone()).or_insert_with(|| {
            json!({"host": c.host, "receipts": 0, "chains": 0, "first_issued_at": null,
                   "last_issued_at": null})
        });
        let age = (c.newest_ns > 0).then(|| now_ns.saturating_sub(c.newest_ns) / 1_000_000_000);
        row["checkpoint"] = json!({"size": c.newest, "created_at": c.newest_at, "age_s": age});
    }
    Ok(out.into_values().collect())
}

/// The agents of each host in the scope (`agents`: globs of agent ids):
/// receipts, receipts by action, first and last seen; by host, then agent.
pub fn agents(ch: &ClickHouse, scope: &Scope, agents: &[String]) -> Result<Vec<Value>, CtlError> {
    #[derive(Deserialize)]
    struct R {
        host: String,
        agent: String,
        action: String,
        n: u64,
        first_ns: u64,
        last_ns: u64,
    }
    /// One agent's receipts, by action, first and last issued.
    struct Tally(u64, Map<String, Value>, u64, u64);
    let mut w = scope.conds();
    w.any("agent", agents);
    let mut out: BTreeMap<(String, String), Tally> = BTreeMap::new();
    ch.for_each_row(
        &format!(
            "SELECT host, agent, action, uniqExact(receipt_hash) AS n, \
             min(issued_ns) AS first_ns, max(issued_ns) AS last_ns FROM {}{} \
             GROUP BY host, agent, action \
             ORDER BY host, agent, n DESC, action",
            ch.table("receipts"),
            w.sql()
        ),
        |r: R| {
            let e = out
                .entry((r.host, r.agent))
                .or_insert_with(|| Tally(0, Map::new(), u64::MAX, 0));
            e.0 += r.n;
            e.1.insert(r.action, json!(r.n));
            e.2 = e.2.min(r.first_ns);
            e.3 = e.3.max(r.last_ns);
            Ok(())
        },
    )?;
    Ok(out
        .into_iter()
        .map(|((host, agent), Tally(n, actions, first, last))| {
            json!({"host": host, "agent_id": agent, "receipts": n, "actions": actions,
                   "first_seen": time(Some(first)), "last_seen": time(Some(last))})
        })
        .collect())
}

/// The risk classes from the highest.
const RISKS: [&str; 4] = ["high", "medium", "low", "unknown"];

/// `shadow_ai.finding` receipts in the scope per host and rule (`rules`:
/// globs of rule ids): count, count per risk class, the highest, how many
/// agents, first and last seen; by host, then the largest groups.
///
/// The rule is the context's top-level `rule_id` (what `stats`, `receipts
/// --rule`, the OCSF export and the live view read; the daemon writes it in
/// policy/finding.rs), which ClickHouse keeps in the `rule` column
/// (deploy/clickhouse/schema.sql), so that no context is read and only one
/// row per group travels. 18.16 has no JSON path functions; the column's
/// `visitParamExtractString` reads the first member named `rule_id` at any
/// depth of the text, with its escapes undone. That is the top-level one in
/// every finding the daemon writes: the context is stored with its keys
/// sorted, the members that sort before `rule_id` (`event`, `evidence`,
/// `matched`, `parents`, `policy_digest`, `process`, `reason`,
/// `registered`, `risk_class`) are built by the daemon from fixed key sets
/// none of which is `rule_id`, and a `rule_id` inside a string value is
/// escaped (`\"rule_id\"`) and never matches. A finding without a context
/// (hash mode) or with an erased one has no rule (`null`).
pub fn findings(ch: &ClickHouse, scope: &Scope, rules: &[String]) -> Result<Vec<Value>, CtlError> {
    #[derive(Deserialize)]
    struct R {
        host: String,
        rule: String,
        n: u64,
        high: u64,
        medium: u64,
        low: u64,
        agents: u64,
        first_ns: u64,
        last_ns: u64,
    }
    let mut w = scope.conds();
    w.push("action = 'shadow_ai.finding'".into());
    if !rules.is_empty() {
        let any: Vec<String> = rules.iter().map(|g| glob_cond("rule", g)).collect();
        w.push(format!("({})", any.join(" OR ")));
    }
    // One row per receipt first (its copies collapsed), then the groups;
    // a copy whose context the host erased since has no rule, and the
    // receipt keeps the rule of the copy that still has one.
    let rows: Vec<R> = ch
        .rows(&format!(
            "SELECT host, receipt_rule AS rule, count() AS n, countIf(risk = 'high') AS high, \
         countIf(risk = 'medium') AS medium, countIf(risk = 'low') AS low, \
         uniqExact(agent) AS agents, min(issued_ns) AS first_ns, max(issued_ns) AS last_ns \
         FROM (SELECT host, receipt_hash, any(agent) AS agent, any(risk) AS risk, \
         any(issued_ns) AS issued_ns, max(rule) AS receipt_rule FROM {}{} \
         GROUP BY host, receipt_hash) GROUP BY host, receipt_rule \
         ORDER BY host, n DESC, receipt_rule",
            ch.table("receipts"),
            w.sql()
        ))
        .map_err(|e| match e {
            // 18.16 says "Unknown identifier: rule", later servers "Missing
            // columns: 'rule'".
            CtlError::Store(m)
                if m.contains("Unknown identifier: rule")
                    || (m.contains("Missing columns") && m.contains("'rule'")) =>
            {
                CtlError::Store(format!(
                    "{m}; the fleet store's receipts table predates its `rule` column: add it as \
                 docs/fleet.md says (\"Schema changes\")"
                ))
            }
            e => e,
        })?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let unknown = r.n - r.high - r.medium - r.low;
            let counts = [r.high, r.medium, r.low, unknown];
            let max_risk = RISKS
                .iter()
                .zip(counts)
                .find(|(_, n)| *n > 0)
                .map(|(risk, _)| *risk);
            json!({
                "host": r.host,
                "rule_id": if r.rule.is_empty() { Value::Null } else { json!(r.rule) },
                "count": r.n,
                "risk": {"high": r.high, "medium": r.medium, "low": r.low, "unknown": unknown},
                "max_risk": max_risk,
                "agents": r.agents,
                "first_seen": time(Some(r.first_ns)),
                "last_seen": time(Some(r.last_ns)),
            })
        })
        .collect())
}

/// What `fleet receipts` lists.
pub struct Listing<'a> {
    pub hosts: &'a [String],
    /// The local filters, times resolved, and `--limit`.
    pub query: &'a Query,
    /// Each row with its envelope (`--json`, `--jsonl`); without, only the
    /// context is read (for the table's PID and summary).
    pub envelopes: bool,
}

/// One row as ClickHouse sends it.
#[derive(Deserialize)]
struct Raw {
    host: String,
    chain: String,
    seq: u64,
    leaf_index: u64,
    agent: String,
    action: String,
    risk: String,
    issued_ns: u64,
    receipt_hash: String,
    context: Option<String>,
    #[serde(default)]
    envelope: Option<String>,
    #[serde(default)]
    exe_hash: Option<String>,
}

/// Calls `f` with each receipt of every host that `l` selects, in time
/// order (ties by host, then log order): the members of a local `receipts`
/// row and `host`. With `--limit N`, the N most recent, still oldest first.
///
/// Host, agent, action, risk, chain and time are ClickHouse conditions.
/// The context filters run on each row here ([`ContextFilter`]), after a
/// condition that narrows the rows ClickHouse sends. Without them a limit
/// is ClickHouse's: the newest N positions are chosen from the small
/// columns, and only those N rows are read whole. With them, rows come
/// newest first until N have passed.
pub fn receipts(
    ch: &ClickHouse,
    l: &Listing,
    mut f: impl FnMut(Value) -> Result<(), CtlError>,
) -> Result<(), CtlError> {
    let q = l.query;
    let filter = ContextFilter::of(q);
    let mut w = Where::default();
    w.hosts(l.hosts);
    w.window(q.since_ns, q.until_ns);
    w.any("agent", &q.agent);
    w.any("action", &q.action);
    w.any("risk", &q.risk);
    w.any("chain", &q.chain);
    let keys = w.sql();
    if let Some(p) = filter.prefilter() {
        w.push(p);
    }
    let mut columns =
        "host, chain, seq, leaf_index, agent, action, risk, issued_ns, receipt_hash, context"
            .to_string();
    if l.envelopes {
        columns.push_str(", envelope");
    } else if !filter.exe_hashes().is_empty() {
        columns.push_str(", visitParamExtractString(envelope, 'executable_hash') AS exe_hash");
    }
    let table = ch.table("receipts");
    // The receipt hash breaks the last ties: a re-sent row, identical to
    // the first, is read right after it and skipped.
    let asc = "ORDER BY issued_ns, host, leaf_index, receipt_hash";
    let desc = "ORDER BY issued_ns DESC, host DESC, leaf_index DESC, receipt_hash DESC";
    let mut last: Option<(String, String, u64, String)> = None;
    let mut emit = |raw: Raw, f: &mut dyn FnMut(Value) -> Result<(), CtlError>| {
        let key = (
            raw.host.clone(),
            raw.chain.clone(),
            raw.seq,
            raw.receipt_hash.clone(),
        );
        if last.as_ref() == Some(&key) {
            return Ok(());
        }
        last = Some(key);
        let (row, ctx, exe_hash) = row_of(raw, l.envelopes);
        if filter.matches(ctx.as_ref(), &exe_hash) {
            f(row)?;
        }
        Ok(())
    };
    match q.limit {
        None => {
            ch.for_each_row(
                &format!("SELECT {columns} FROM {table}{} {asc}", w.sql()),
                |raw: Raw| emit(raw, &mut f),
            )?;
        }
        Some(n) if filter.is_empty() => {
            // The newest n positions from the sort key's columns and the
            // time alone (each once), then only those rows read whole;
            // the key's IN list selects their granules of the index.
            ch.for_each_row(
                &format!(
                    "SELECT {columns} FROM {table} \
                     WHERE (host, chain, seq, receipt_hash) IN \
                     (SELECT host, chain, seq, receipt_hash FROM {table}{keys} {desc} \
                      LIMIT 1 BY host, chain, seq, receipt_hash LIMIT {n}) {asc}"
                ),
                |raw: Raw| emit(raw, &mut f),
            )?;
        }
        Some(n) => {
            let mut newest = Vec::new();
            let read = ch.for_each_row(
                &format!("SELECT {columns} FROM {table}{} {desc}", w.sql()),
                |raw: Raw| {
                    if newest.len() as u64 >= n {
                        return Err(CtlError::Io(ENOUGH.into()));
                    }
                    emit(raw, &mut |row| {
                        newest.push(row);
                        Ok(())
                    })
                },
            );
            match read {
                Err(CtlError::Io(m)) if m == ENOUGH => {}
                other => {
                    other?;
                }
            }
            newest.into_iter().rev().try_for_each(&mut f)?;
        }
    }
    Ok(())
}

/// The marker of a listing that stopped reading once it had its rows.
const ENOUGH: &str = "(enough rows)";

/// A row's members (as a local `receipts` row, and its host), its parsed
/// context and its payload's `executable_hash`.
fn row_of(raw: Raw, envelopes: bool) -> (Value, Option<Value>, String) {
    let ctx: Option<Value> = raw
        .context
        .as_deref()
        .map(|c| serde_json::from_str(c).unwrap_or(Value::Null));
    let null = Value::Null;
    let c = ctx.as_ref().unwrap_or(&null);
    let envelope: Option<Value> = raw
        .envelope
        .as_deref()
        .map(|e| serde_json::from_str(e).unwrap_or(Value::Null));
    let p = envelope.as_ref().map_or(&null, |e| &e["payload"]);
    let exe_hash = match (&raw.exe_hash, p["executable_hash"].as_str()) {
        (Some(h), _) => h.clone(),
        (None, Some(h)) => h.to_string(),
        (None, None) => String::new(),
    };
    let mut row = json!({
        "host": raw.host,
        "leaf_index": raw.leaf_index,
        "receipt_hash": raw.receipt_hash,
        "issuer_id": raw.chain,
        "seq": raw.seq,
        "agent_id": raw.agent,
        "action_type": raw.action,
        "issued_ns": raw.issued_ns,
        "issued_at": p["issued_at"].as_str().map_or_else(|| payload::issued_at(raw.issued_ns), str::to_string),
        "risk_class": raw.risk,
        "pid": c["process"]["pid"],
        "exe": c["process"]["exe"],
        "user": c["process"]["user"],
        "summary": summary(c),
    });
    if envelopes {
        // The payload's hash as `receipts` gives it: of its stored text
        // when that is already canonical, else of the canonical form.
        let hash = raw
            .envelope
            .as_deref()
            .and_then(stored_payload_text)
            .map_or_else(|| payload_hash(p), |t| payload::sha256_hex(t.as_bytes()));
        row["executable_hash"] = p["executable_hash"].clone();
        row["mode"] = p["mode"].clone();
        row["payload_hash"] = json!(hash);
        row["envelope"] = envelope.clone().unwrap_or(Value::Null);
        row["context"] = ctx.clone().unwrap_or(Value::Null);
    }
    (row, ctx, exe_hash)
}
