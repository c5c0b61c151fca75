//! `stats` (alias `summary`): what happened on this host over a window, the
//! screen to read first in the morning. Per agent (each unregistered
//! executable is its own `unregistered:<hash>` agent) the receipts by
//! action and its findings; findings by rule and risk; the top
//! destinations of outgoing connections, by name when one is known.
//! Counts come from SQLite's GROUP BY over the receipts the filter selects
//! (the same filter as `receipts`), so only network contexts are parsed.
use std::{
    collections::{BTreeMap, BTreeSet},
    io::Write,
};

use rusqlite::types::Value as SqlValue;
use serde_json::{json, Map, Value};

use super::{
    output::{self, s, Output},
    sql_err, CtlError,
};
use observer_daemon::receipt::{
    json as strict_json, payload,
    query::{push_filters, Query},
    store::Store,
};

const FROM: &str = "FROM receipts r LEFT JOIN contexts c ON c.leaf_index = r.leaf_index WHERE 1";

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

/// Runs `select` (columns, then the GROUP BY and ORDER BY tail after the
/// filter of `q`) and calls `f` with each row.
fn each(
    store: &Store,
    q: &Query,
    select: &str,
    extra: &str,
    tail: &str,
    mut f: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<()>,
) -> Result<(), CtlError> {
    let mut sql = format!("SELECT {select} {FROM}");
    let mut params: Vec<SqlValue> = Vec::new();
    push_filters(q, &mut sql, &mut params);
    sql.push_str(extra);
    sql.push_str(tail);
    let conn = store.connection();
    let mut stmt = conn.prepare(&sql).map_err(sql_err(store))?;
    let mut rows = stmt
        .query(rusqlite::params_from_iter(params))
        .map_err(sql_err(store))?;
    while let Some(r) = rows.next().map_err(sql_err(store))? {
        f(r).map_err(sql_err(store))?;
    }
    Ok(())
}

/// Per agent: receipts, findings, counts by action, and for an
/// unregistered executable its path. Most receipts first.
fn agents(store: &Store, q: &Query) -> Result<(Vec<Value>, u64), CtlError> {
    let mut by_agent: BTreeMap<String, Value> = BTreeMap::new();
    let mut total = 0;
    each(
        store,
        q,
        "r.agent_id, r.action_type, COUNT(*), MIN(json_extract(c.context, '$.process.exe'))",
        "",
        " GROUP BY r.agent_id, r.action_type",
        |r| {
            let agent: String = r.get(0)?;
            let action: String = r.get(1)?;
            let n: u64 = r.get::<_, i64>(2)? as u64;
            let exe: Option<String> = r.get(3).ok().flatten();
            total += n;
            let a = by_agent.entry(agent.clone()).or_insert_with(|| {
                json!({"agent_id": agent, "executable": null, "receipts": 0,
                       "findings": 0, "actions": {}})
            });
            // A registered agent runs many executables; an unregistered
            // chain is one executable (its hash names the chain).
            if agent.starts_with("unregistered:") && a["executable"].is_null() {
                a["executable"] = json!(exe);
            }
            a["receipts"] = json!(a["receipts"].as_u64().unwrap_or(0) + n);
            if action == "shadow_ai.finding" {
                a["findings"] = json!(n);
            }
            a["actions"][action] = json!(n);
            Ok(())
        },
    )?;
    let mut agents: Vec<Value> = by_agent.into_values().collect();
    agents.sort_by_key(|a| std::cmp::Reverse(a["receipts"].as_u64()));
    Ok((agents, total))
}

/// Findings by rule and risk, most first.
fn findings(store: &Store, q: &Query) -> Result<Vec<Value>, CtlError> {
    let mut out = Vec::new();
    each(
        store,
        q,
        "json_extract(c.context, '$.rule_id') AS rule, r.risk_class, COUNT(*) AS n, \
         COUNT(DISTINCT r.agent_id)",
        " AND r.action_type = 'shadow_ai.finding'",
        " GROUP BY rule, r.risk_class ORDER BY n DESC, rule, r.risk_class",
        |r| {
            out.push(json!({
                "rule_id": r.get::<_, Option<String>>(0)?,
                "risk_class": r.get::<_, String>(1)?,
                "count": r.get::<_, i64>(2)?,
                "agents": r.get::<_, i64>(3)?,
            }));
            Ok(())
        },
    )?;
    Ok(out)
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
    each(
        store,
        q,
        "r.agent_id, json_extract(c.context, '$.connect')",
        " AND r.action_type = 'network.connect'",
        "",
        |r| {
            let agent: String = r.get(0)?;
            let Some(text) = r.get::<_, Option<String>>(1)? else {
                return Ok(()); // hash-only mode or erased: no destination
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
            Ok(())
        },
    )?;
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
