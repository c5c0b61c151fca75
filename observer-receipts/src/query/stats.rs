//! The counts `observerctl stats` reports, by SQLite's GROUP BY over the
//! receipts a [`Query`] selects (the same filter as the listing), so that
//! only network contexts are read one by one.
use rusqlite::types::Value as SqlValue;

use crate::store::Store;

use super::{push_filters, sql_err, Query, QueryError};

const FROM: &str = "FROM receipts r LEFT JOIN contexts c ON c.leaf_index = r.leaf_index WHERE 1";

/// Runs `select` (columns) over the receipts of `q`, narrowed further by
/// `extra` (an `AND ...` clause) and ended by `tail` (GROUP BY, ORDER
/// BY), and calls `f` with each row.
fn each(
    store: &Store,
    q: &Query,
    select: &str,
    extra: &str,
    tail: &str,
    mut f: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<()>,
) -> Result<(), QueryError> {
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

/// How many receipts of one action one agent issued.
#[derive(Debug, Clone)]
pub struct ActionCount {
    /// The agent.
    pub agent_id: String,
    /// The action type.
    pub action_type: String,
    /// How many receipts.
    pub count: u64,
    /// The least executable path among their contexts (for an
    /// unregistered agent, the one executable its chain is).
    pub executable: Option<String>,
}

/// The receipts of `q` counted by agent and action.
pub fn action_counts(store: &Store, q: &Query) -> Result<Vec<ActionCount>, QueryError> {
    let mut out = Vec::new();
    each(
        store,
        q,
        "r.agent_id, r.action_type, COUNT(*), MIN(json_extract(c.context, '$.process.exe'))",
        "",
        " GROUP BY r.agent_id, r.action_type",
        |r| {
            out.push(ActionCount {
                agent_id: r.get(0)?,
                action_type: r.get(1)?,
                count: r.get::<_, i64>(2)? as u64,
                executable: r.get(3).ok().flatten(),
            });
            Ok(())
        },
    )?;
    Ok(out)
}

/// How many findings of one rule and risk class, by how many agents.
#[derive(Debug, Clone)]
pub struct FindingCount {
    /// The context's `rule_id` (none when the context is gone).
    pub rule_id: Option<String>,
    /// The risk class.
    pub risk_class: String,
    /// How many findings.
    pub count: u64,
    /// How many agents they are about.
    pub agents: u64,
}

/// The `shadow_ai.finding` receipts of `q` counted by rule and risk, most
/// first.
pub fn finding_counts(store: &Store, q: &Query) -> Result<Vec<FindingCount>, QueryError> {
    let mut out = Vec::new();
    each(
        store,
        q,
        "json_extract(c.context, '$.rule_id') AS rule, r.risk_class, COUNT(*) AS n, \
         COUNT(DISTINCT r.agent_id)",
        " AND r.action_type = 'shadow_ai.finding'",
        " GROUP BY rule, r.risk_class ORDER BY n DESC, rule, r.risk_class",
        |r| {
            out.push(FindingCount {
                rule_id: r.get(0)?,
                risk_class: r.get(1)?,
                count: r.get::<_, i64>(2)? as u64,
                agents: r.get::<_, i64>(3)? as u64,
            });
            Ok(())
        },
    )?;
    Ok(out)
}

/// Calls `f` with the agent id and the context's `connect` member (JSON
/// text; none in hash-only mode or once erased) of each `network.connect`
/// receipt of `q`.
pub fn for_each_connect(
    store: &Store,
    q: &Query,
    mut f: impl FnMut(String, Option<String>),
) -> Result<(), QueryError> {
    each(
        store,
        q,
        "r.agent_id, json_extract(c.context, '$.connect')",
        " AND r.action_type = 'network.connect'",
        "",
        |r| {
            f(r.get(0)?, r.get(1)?);
            Ok(())
        },
    )
}
