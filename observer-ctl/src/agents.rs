//! `agents` (one row per chain) and `shadow` (shadow-AI findings grouped).
use std::{collections::BTreeMap, io::Write};

use serde_json::{json, Value};

use super::{
    output::{self, s, Output},
    CtlError,
};
use observer_receipts::{
    json as strict_json, payload,
    query::{chain_summaries, for_each_finding, FindingRow},
    store::Store,
};

/// Every chain: agent, first/last seen, receipt count, head, key id.
pub fn agents(store: &Store) -> Result<Vec<Value>, CtlError> {
    let time = |ns: Option<u64>| ns.map_or(Value::Null, |ns| json!(payload::issued_at(ns)));
    Ok(chain_summaries(store)?
        .into_iter()
        .map(|c| {
            json!({
                "issuer_id": c.issuer_id,
                "agent_id": c.agent_id,
                "kid": c.kid,
                "head": {
                    "seq": c.head_seq,
                    "payload_hash": c.head_payload_hash,
                    "receipt_hash": hex::encode(c.head_receipt_hash),
                },
                "receipts": c.receipts,
                "first_seen": time(c.first_issued_ns),
                "last_seen": time(c.last_issued_ns),
            })
        })
        .collect())
}

pub fn print_agents(out: &mut impl Write, mode: Output, rows: &[Value]) -> Result<(), CtlError> {
    output::write_list(
        out,
        mode,
        "agents",
        rows,
        &[
            ("AGENT", |r| s(r, &["agent_id"])),
            ("RECEIPTS", |r| s(r, &["receipts"])),
            ("FIRST_SEEN", |r| s(r, &["first_seen"])),
            ("LAST_SEEN", |r| s(r, &["last_seen"])),
            ("HEAD_SEQ", |r| s(r, &["head", "seq"])),
            ("HEAD_PAYLOAD_HASH", |r| {
                s(r, &["head", "payload_hash"]).chars().take(16).collect()
            }),
            ("KID", |r| s(r, &["kid"])),
        ],
    )
}

fn risk_rank(risk: &str) -> u8 {
    match risk {
        "high" => 3,
        "medium" => 2,
        "low" => 1,
        _ => 0,
    }
}

/// A context member as a group key: strings as they are, anything else
/// as its JSON text, absent as null.
fn member(ctx: &Value, names: &[&[&str]]) -> Value {
    for path in names {
        let mut cur = ctx;
        for p in *path {
            cur = &cur[*p];
        }
        match cur {
            Value::Null => continue,
            Value::String(_) => return cur.clone(),
            other => return json!(other.to_string()),
        }
    }
    Value::Null
}

/// `shadow_ai.finding` receipts in the window, grouped by agent id,
/// executable hash, and the context's executable path, user, indicator and
/// rule where present, with counts, first/last seen and the highest risk.
pub fn shadow(
    store: &Store,
    since_ns: Option<u64>,
    until_ns: Option<u64>,
) -> Result<Vec<Value>, CtlError> {
    let mut groups: BTreeMap<String, Value> = BTreeMap::new();
    for_each_finding(store, since_ns, until_ns, |row| {
        let FindingRow {
            issued_ns,
            agent_id: agent,
            risk_class: risk,
            envelope,
            context,
        } = row;
        let env = strict_json::parse_strict(envelope.as_bytes()).unwrap_or(Value::Null);
        let ctx = context
            .and_then(|c| strict_json::parse_strict(c.as_bytes()).ok())
            .unwrap_or(Value::Null);
        let key = json!({
            "agent_id": agent,
            "executable_hash": env["payload"]["executable_hash"],
            "executable": member(&ctx, &[&["executable"], &["exe"], &["process", "exe"]]),
            "user": member(&ctx, &[&["user"], &["process", "user"], &["uid"], &["process", "uid"]]),
            "indicator": member(&ctx, &[&["indicator"]]),
            "rule": member(&ctx, &[&["rule"]]),
        });
        let at = payload::issued_at(issued_ns);
        let g = groups.entry(key.to_string()).or_insert_with(|| {
            let mut g = key.clone();
            g["count"] = json!(0);
            g["first_seen"] = json!(at);
            g["max_risk"] = json!(risk);
            g
        });
        g["count"] = json!(g["count"].as_u64().unwrap_or(0) + 1);
        g["last_seen"] = json!(at);
        if risk_rank(&risk) > risk_rank(g["max_risk"].as_str().unwrap_or_default()) {
            g["max_risk"] = json!(risk);
        }
        Ok::<(), CtlError>(())
    })?;
    let mut out: Vec<Value> = groups.into_values().collect();
    out.sort_by(|a, b| {
        b["count"]
            .as_u64()
            .cmp(&a["count"].as_u64())
            .then_with(|| s(a, &["first_seen"]).cmp(&s(b, &["first_seen"])))
    });
    Ok(out)
}

pub fn print_shadow(out: &mut impl Write, mode: Output, rows: &[Value]) -> Result<(), CtlError> {
    output::write_list(
        out,
        mode,
        "findings",
        rows,
        &[
            ("COUNT", |r| s(r, &["count"])),
            ("MAX_RISK", |r| s(r, &["max_risk"])),
            ("AGENT", |r| s(r, &["agent_id"])),
            ("EXECUTABLE", |r| s(r, &["executable"])),
            ("USER", |r| s(r, &["user"])),
            ("INDICATOR", |r| s(r, &["indicator"])),
            ("RULE", |r| s(r, &["rule"])),
            ("FIRST_SEEN", |r| s(r, &["first_seen"])),
            ("LAST_SEEN", |r| s(r, &["last_seen"])),
        ],
    )
}
