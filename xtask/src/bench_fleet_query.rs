//! The findings query of `cargo xtask bench fleet`: one rule's findings per
//! host across the whole fleet store, p50 and p90 against the 100 ms
//! target.
//!
//! By default `observerctl fleet findings --rule` itself is timed, process
//! start and JSON out included, with the bare SQL it runs alongside as its
//! baseline, and two variants of that SQL: with `FINAL` in place of its
//! per-receipt grouping, and with no deduplication at all (the floor);
//! `--fleet-findings-by sql` times only the SQL over ClickHouse's HTTP
//! interface.
use std::{
    path::Path,
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{bail, Context as _};
use serde_json::Value;

use crate::{
    bench_clickhouse::ClickHouse,
    bench_ctl::quantile,
    bench_kit::{median, on_cpus},
};

const TARGET_QUERY_MS: f64 = 100.0;

/// What the findings query is timed through.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum FindingsBy {
    /// The SQL of `observerctl fleet findings --rule`, posted to
    /// ClickHouse's HTTP interface.
    Sql,
    /// `observerctl fleet findings --rule RULE --jsonl`, the whole process.
    Command,
}

/// The fleet the query runs over, and what it must find.
pub struct Fleet<'a> {
    pub ch: &'a ClickHouse,
    /// observerctl.
    pub ctl: &'a Path,
    /// The CPUs observerctl runs on (see [`on_cpus`]).
    pub cpus: usize,
    /// The rule whose findings are counted.
    pub rule: &'a str,
    /// Receipts in the fleet store.
    pub receipts: u64,
    /// Findings of `rule` in all hosts' stores, and on how many hosts.
    pub expected: u64,
    pub hosts_with: usize,
}

/// How the findings SQL collapses the copies a sink sent twice.
#[derive(Clone, Copy)]
enum Dedupe {
    /// As `fleet findings` does (fleet/query.rs): one row per receipt hash
    /// first, then the groups.
    ByHash,
    /// `FINAL`: what the command did before, kept for comparison.
    Final,
    /// None: the floor (a count of deliveries, not of receipts).
    None,
}

/// Where the findings SQL takes a finding's rule from.
#[derive(Clone, Copy)]
enum RuleFrom {
    /// The `rule` column (schema.sql), as `fleet findings` does.
    Column,
    /// The context, extracted per row: what the command did before.
    Context,
}

/// The SQL of `fleet findings --rule RULE` (one rule, no window, so its
/// WHERE is the action and the rule), collapsing copies as `dedupe` says.
fn sql(rule_id: &str, dedupe: Dedupe, from: RuleFrom) -> String {
    let rule = match from {
        RuleFrom::Column => "rule",
        RuleFrom::Context => "ifNull(visitParamExtractString(context, 'rule_id'), '')",
    };
    let groups = "count() AS n, countIf(risk = 'high') AS high, \
         countIf(risk = 'medium') AS medium, countIf(risk = 'low') AS low, \
         uniqExact(agent) AS agents, min(issued_ns) AS first_ns, max(issued_ns) AS last_ns";
    let filter = format!("action = 'shadow_ai.finding' AND {rule} = '{rule_id}'");
    let order = "ORDER BY host, n DESC FORMAT JSONEachRow";
    match dedupe {
        Dedupe::ByHash => format!(
            "SELECT host, receipt_rule AS rule, {groups} FROM (SELECT host, receipt_hash, \
             any(agent) AS agent, any(risk) AS risk, any(issued_ns) AS issued_ns, \
             max({rule}) AS receipt_rule FROM observer.receipts WHERE {filter} \
             GROUP BY host, receipt_hash) GROUP BY host, receipt_rule {order}"
        ),
        Dedupe::Final => format!(
            "SELECT host, {rule} AS finding_rule, {groups} FROM observer.receipts FINAL \
             WHERE {filter} GROUP BY host, finding_rule {order}"
        ),
        Dedupe::None => format!(
            "SELECT host, {rule} AS finding_rule, {groups} FROM observer.receipts \
             WHERE {filter} GROUP BY host, finding_rule {order}"
        ),
    }
}

/// One way of running the query: its label and its rows (one JSON object
/// a line per host).
type Run<'a> = (&'a str, Box<dyn Fn() -> anyhow::Result<String> + 'a>);

pub fn run(f: &Fleet, runs: usize, by: FindingsBy) -> anyhow::Result<()> {
    let sql_run =
        |dedupe: Dedupe, from: RuleFrom| -> Box<dyn Fn() -> anyhow::Result<String> + '_> {
            Box::new(move || f.ch.query(&sql(f.rule, dedupe, from)))
        };
    let mut ways: Vec<Run> = Vec::new();
    if by == FindingsBy::Command {
        ways.push(("command", Box::new(|| command(f))));
    }
    ways.push(("sql", sql_run(Dedupe::ByHash, RuleFrom::Column)));
    ways.push((
        "sql with the rule read from the context",
        sql_run(Dedupe::ByHash, RuleFrom::Context),
    ));
    ways.push(("sql with FINAL", sql_run(Dedupe::Final, RuleFrom::Column)));
    ways.push((
        "sql without deduplication",
        sql_run(Dedupe::None, RuleFrom::Column),
    ));
    let mut times = vec![Vec::new(); ways.len()];
    // Interleaved, so drift hits every way alike.
    for _ in 0..runs.max(1) {
        for ((label, way), times) in ways.iter().zip(&mut times) {
            let t = Instant::now();
            let body = way()?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
            check(f, label, &body)?;
        }
    }
    let what = if f.expected == 0 {
        "the stores hold no findings (--fleet-findings-every 0): the query matches nothing".into()
    } else {
        format!(
            "{} findings of {} on {} hosts",
            f.expected, f.rule, f.hosts_with
        )
    };
    let (p50, p90) = (median(&times[0]), quantile(&times[0], 0.9));
    let how = match by {
        FindingsBy::Sql => {
            "the SQL of `observerctl fleet findings --rule`, timed over ClickHouse's HTTP \
             interface"
        }
        FindingsBy::Command => "`observerctl fleet findings --rule --jsonl`, the whole process",
    };
    let mut line = format!(
        "  fleet query, one rule's findings per host ({how}): {what}, over {} receipts: p50 \
         {p50:.1} ms, p90 {p90:.1} ms (target < {TARGET_QUERY_MS:.0} ms: {})",
        f.receipts,
        if p50 < TARGET_QUERY_MS {
            "met"
        } else {
            "NOT met"
        }
    );
    for ((label, _), times) in ways.iter().zip(&times).skip(1) {
        let m = median(times);
        line += &format!(
            "; {label} p50 {m:.1} ms, p90 {:.1} ms (the timed query takes {:.2}x)",
            quantile(times, 0.9),
            p50 / m
        );
    }
    println!("{line}");
    Ok(())
}

/// `observerctl fleet findings` of the rule, its rows as JSON lines.
fn command(f: &Fleet) -> anyhow::Result<String> {
    let mut cmd = Command::new(f.ctl);
    cmd.args(["fleet", "findings", "--jsonl", "--clickhouse", &f.ch.url()])
        .args(["--rule", f.rule]);
    let out = on_cpus(&mut cmd, f.cpus)
        .stderr(Stdio::piped())
        .output()
        .context("running observerctl fleet findings")?;
    if !out.status.success() {
        bail!(
            "observerctl fleet findings: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// Every finding of the rule counted once, each host with findings named.
fn check(f: &Fleet, label: &str, body: &str) -> anyhow::Result<()> {
    let rows: Vec<Value> = body
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .with_context(|| format!("findings query ({label}): not JSON lines: {body}"))?;
    // The command's rows name the number `count`; its SQL names it `n`, as
    // a `count` alias would shadow the aggregate in ORDER BY.
    let n: u64 = rows
        .iter()
        .filter_map(|r| r["count"].as_u64().or_else(|| r["n"].as_u64()))
        .sum();
    if n != f.expected || rows.len() != f.hosts_with {
        bail!(
            "findings query ({label}): {n} findings on {} hosts, the stores hold {} on {}",
            rows.len(),
            f.expected,
            f.hosts_with
        );
    }
    Ok(())
}
