//! The `shadow_ai.finding` receipts of a time window, streamed for
//! `observerctl shadow` to group.
use crate::store::Store;

use super::{sql_err, QueryError};

/// A `shadow_ai.finding` receipt with what grouping it needs.
#[derive(Debug, Clone)]
pub struct FindingRow {
    /// When it was issued (ns since the epoch).
    pub issued_ns: u64,
    /// The agent it is about.
    pub agent_id: String,
    /// Its risk class.
    pub risk_class: String,
    /// The envelope as stored.
    pub envelope: String,
    /// The context (none in hash-only mode or once erased).
    pub context: Option<String>,
}

/// Calls `f` with each finding issued in `[since_ns, until_ns]` (either
/// open when none), in issue order, ties in log order.
pub fn for_each_finding<E: From<QueryError>>(
    store: &Store,
    since_ns: Option<u64>,
    until_ns: Option<u64>,
    mut f: impl FnMut(FindingRow) -> Result<(), E>,
) -> Result<(), E> {
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
    while let Some(r) = rows.next().map_err(sql_err(store))? {
        let read = || -> rusqlite::Result<FindingRow> {
            Ok(FindingRow {
                issued_ns: r.get::<_, i64>(0)? as u64,
                agent_id: r.get(1)?,
                risk_class: r.get(2)?,
                envelope: r.get(3)?,
                context: r.get(4)?,
            })
        };
        f(read().map_err(sql_err(store))?)?;
    }
    Ok(())
}
