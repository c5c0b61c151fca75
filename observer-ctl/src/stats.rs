//! `stats` (alias `summary`): what happened on this host over a window, the
//! screen to read first in the morning. Per agent (each unregistered
//! executable is its own `unregistered:<hash>` agent) the receipts by
//! action and its findings; findings by rule and risk; the top
//! destinations of outgoing connections, by name when one is known.
//! Counts come from SQLite's GROUP BY over the receipts the filter selects
//! (the same filter as `receipts`; `observer_receipts::query::stats`), so
//! only network contexts are parsed.
use std::{
    collections::{BTreeMap, BTreeSet},
    io::Write,
};

use serde_json::{json, Map, Value};

use super::{
    output::{self, s, Output},
    CtlError,
};
use observer_receipts::{
    json as strict_json, payload,
    query::{stats, Query},
    store::Store,
};

/// The statistics of the receipts `q` selects, with the `top` most
/// connected destinations.
pub fn stats(store: &Store, q: &Query, top: usize) -> Result<Value, CtlError> {
    let (agents, total) = agents(store, q)?;
    Ok(json!({
        "since": q.since_ns.map(payload::issued_at),
        "until": q.until_ns.map(payload::issued_at),
        "receipts": total,
        "agents": agents,
        "findings": findings(store, q)?,
        "destinations": destinations(store, q, top)?,
    }))
}

/// Per agent: receipts, findings, counts by action, and for an
/// unregistered executable its path. Most receipts first.
fn agents(store: &Store, q: &Query) -> Result<(Vec<Value>, u64), CtlError> {
    let mut by_agent: BTreeMap<String, Value> = BTreeMap::new();
    let mut total = 0;
    for c in stats::action_counts(store, q)? {
        let (agent, action, n) = (c.agent_id, c.action_type, c.count);
        total += n;
        let a = by_agent.entry(agent.clone()).or_insert_with(|| {
            json!({"agent_id": agent, "executable": null, "receipts": 0,
                   "findings": 0, "actions": {}})
        });
        // A registered agent runs many executables; an unregistered
        // chain is one executable (its hash names the chain).
        if agent.starts_with("unregistered:") && a["executable"].is_null() {
            a["executable"] = json!(c.executable);
        }
        a["receipts"] = json!(a["receipts"].as_u64().unwrap_or(0) + n);
        if action == "shadow_ai.finding" {
            a["findings"] = json!(n);
        }
        a["actions"][action] = json!(n);
    }
    let mut agents: Vec<Value> = by_agent.into_values().collect();
    agents.sort_by_key(|a| std::cmp::Reverse(a["receipts"].as_u64()));
    Ok((agents, total))
}

/// Findings by rule and risk, most first.
fn findings(store: &Store, q: &Query) -> Result<Vec<Value>, CtlError> {
    Ok(stats::finding_counts(store, q)?
        .into_iter()
        .map(|f| {
            json!({
                "rule_id": f.rule_id,
                "risk_class": f.risk_class,
                "count": f.count,
                "agents": f.agents,
            })
        })
        .collect())
}

/// The `top` destinations of `network.connect` receipts by count (ties by
/// name): a name the address is known by (SNI first, the name the client
/// asked the server for; else the first DNS name), else the address.
fn destinations(store: &Store, q: &Query, top: usize) -> Result<Vec<Value>, CtlError> {
    struct Dst {
        connects: u64,
        addresses: BTreeSet<String>,
        agents: BTreeSet<String>,
    }
    let mut by_dst: BTreeMap<String, Dst> = BTreeMap::new();
    stats::for_each_connect(store, q, |agent, connect| {
        let Some(text) = connect else {
            return; // hash-only mode or erased: no destination
        };
        let n = strict_json::parse_strict(text.as_bytes()).unwrap_or(Value::Null);
        let addr = format!("{}:{}", s(&n, &["remote_addr"]), s(&n, &["remote_port"]));
        let names = n["dst_names"].as_array().cloned().unwrap_or_default();
        let by_source = |src: &str| {
            names
                .iter()
                .find(|d| d["source"] == src)
                .and_then(|d| d["name"].as_str().map(String::from))
        };
        let key = by_source("sni")
            .or_else(|| by_source("dns"))
            .or_else(|| {
                names
                    .first()
                    .and_then(|d| d["name"].as_str().map(String::from))
            })
            .unwrap_or_else(|| addr.clone());
        let d = by_dst.entry(key).or_insert_with(|| Dst {
            connects: 0,
            addresses: BTreeSet::new(),
            agents: BTreeSet::new(),
        });
        d.connects += 1;
        d.addresses.insert(addr);
        d.agents.insert(agent);
    })?;
    let mut out: Vec<(String, Dst)> = by_dst.into_iter().collect();
    // Stable: equal counts keep the name order of the map.
    out.sort_by_key(|d| std::cmp::Reverse(d.1.connects));
    out.truncate(top);
    Ok(out
        .into_iter()
        .map(|(name, d)| {
            json!({"destination": name, "connects": d.connects,
                   "addresses": d.addresses, "agents": d.agents})
        })
        .collect())
}

/// The statistics as three tables (agents, findings, destinations), or as
/// one JSON document.
pub fn print(out: &mut impl Write, mode: Output, v: &Value) -> Result<(), CtlError> {
    if mode.is_json() {
        return output::write_json(out, mode, v);
    }
    writeln!(
        out,
        "{} receipts from {} to {}\n",
        v["receipts"],
        s(v, &["since"]),
        s(v, &["until"])
    )?;
    let rows = |key: &str| v[key].as_array().cloned().unwrap_or_default();
    output::write_list(
        out,
        Output::Table,
        "agents",
        &rows("agents"),
        &[
            ("AGENT", |r| cell(r, &["agent_id"])),
            ("EXECUTABLE", |r| cell(r, &["executable"])),
            ("RECEIPTS", |r| s(r, &["receipts"])),
            ("FINDINGS", |r| s(r, &["findings"])),
            ("ACTIONS", |r| {
                let empty = Map::new();
                let actions = r["actions"].as_object().unwrap_or(&empty);
                let mut by_count: Vec<(&String, &Value)> = actions.iter().collect();
                by_count.sort_by_key(|a| std::cmp::Reverse(a.1.as_u64()));
                by_count
                    .iter()
                    .map(|(a, n)| format!("{a} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }),
        ],
    )?;
    writeln!(out)?;
    output::write_list(
        out,
        Output::Table,
        "findings",
        &rows("findings"),
        &[
            ("RULE", |r| cell(r, &["rule_id"])),
            ("RISK", |r| s(r, &["risk_class"])),
            ("FINDINGS", |r| s(r, &["count"])),
            ("AGENTS", |r| s(r, &["agents"])),
        ],
    )?;
    writeln!(out)?;
    output::write_list(
        out,
        Output::Table,
        "destinations",
        &rows("destinations"),
        &[
            ("DESTINATION", |r| cell(r, &["destination"])),
            ("CONNECTS", |r| s(r, &["connects"])),
            ("ADDRESSES", |r| list(r, "addresses")),
            ("AGENTS", |r| list(r, "agents")),
        ],
    )
}

/// A cell of text the observed processes chose (paths, names): one line.
fn cell(v: &Value, path: &[&str]) -> String {
    output::sanitise(&s(v, path))
}

fn list(v: &Value, key: &str) -> String {
    let items: Vec<String> = v[key]
        .as_array()
        .into_iter()
        .flatten()
        .map(|x| output::sanitise(&s(x, &[])))
        .collect();
    items.join(", ")
}
