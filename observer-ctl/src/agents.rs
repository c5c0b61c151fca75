//! `agents` (one row per chain) and `shadow` (shadow-AI findings grouped).
use std::{collections::BTreeMap, io::Write};

use serde_json::{json, Value};

use super::{
    output::{self, s, Output},
    sql_err, CtlError,
};
use observer_daemon::receipt::{json as strict_json, payload, store::Store};

/// Every chain: agent, first/last seen, receipt count, head, key id.
pub fn agents(store: &Store) -> Result<Vec<Value>, CtlError> {
    let mut stmt = store
        .connection()
        .prepare(
            "SELECT ch.issuer_id, ch.agent_id, ch.kid, ch.seq, ch.head_payload_hash,
                    ch.head_receipt_hash, COUNT(r.leaf_index), MIN(r.issued_ns), MAX(r.issued_ns)
             FROM chains ch LEFT JOIN receipts r ON r.issuer_id = ch.issuer_id
             GROUP BY ch.issuer_id ORDER BY ch.agent_id",
        )
        .map_err(sql_err(store))?;
    let rows = stmt
        .query_map([], |r| {
            let time = |i| -> rusqlite::Result<Value> {
                Ok(r.get::<_, Option<i64>>(i)?
                    .map_or(Value::Null, |ns| json!(payload::issued_at(ns as u64))))
            };
            Ok(json!({
                "issuer_id": r.get::<_, String>(0)?,
                "agent_id": r.get::<_, String>(1)?,
                "kid": r.get::<_, String>(2)?,
                "head": {
                    "seq": r.get::<_, i64>(3)?,
                    "payload_hash": r.get::<_, String>(4)?,
                    "receipt_hash": hex::encode(r.get::<_, Vec<u8>>(5)?),
                },
                "receipts": r.get::<_, i64>(6)?,
                "first_seen": time(7)?,
                "last_seen": time(8)?,
            }))
        })
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(sql_err(store))?;
    Ok(rows)
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
    let mut stmt = store
        .connection()
        .prepare(
            "SELECT r.issued_ns, r.agent_id, r.risk_class, receipt_envelope(r.envelope_text, r.sig), c.context
             FROM receipts r LEFT JOIN contexts c ON c.leaf_index = r.leaf_index
             WHERE r.action_type = 'shadow_ai.finding' AND r.issued_ns >= ?1 AND r.issued_ns <= ?2
             ORDER BY r.issued_ns, r.leaf_index",
        )
        .map_err(sql_err(store))?;
    let mut rows = stmt
        .query(rusqlite::params![
            since_ns.unwrap_or(0) as i64,
            until_ns.map_or(i64::MAX, |t| t as i64)
        ])
        .map_err(sql_err(store))?;
    let mut groups: BTreeMap<String, Value> = BTreeMap::new();
    while let Some(r) = rows.next().map_err(sql_err(store))? {
        let ns: i64 = r.get(0).map_err(sql_err(store))?;
        let agent: String = r.get(1).map_err(sql_err(store))?;
        let risk: String = r.get(2).map_err(sql_err(store))?;
        let envelope: String = r.get(3).map_err(sql_err(store))?;
        let context: Option<String> = r.get(4).map_err(sql_err(store))?;
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
        let at = payload::issued_at(ns as u64);
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
    }
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
