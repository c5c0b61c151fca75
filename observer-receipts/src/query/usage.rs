//! LLM API use from the `llm.request` receipts: requests and tokens per
//! agent, provider and model (`observerctl usage`), summed by SQLite over
//! the receipts' contexts.
use serde::Serialize;

use crate::store::Store;

use super::{sql_err, QueryError};

/// One agent's use of one model of one provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageRow {
    pub agent_id: String,
    /// None when the receipt carries no context (hash-only mode, erased).
    pub provider: Option<String>,
    /// The model that answered, else the one asked for.
    pub model: Option<String>,
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Input tokens served from the provider's prompt cache (part of
    /// `input_tokens`).
    pub cached_input_tokens: u64,
    /// Requests whose answer reported no token counts (no answer, an
    /// error, a provider that does not say): their tokens are not summed.
    pub requests_without_usage: u64,
}

/// `*` any run of characters and `?` one, the rest literal, as SQLite
/// GLOB sees it.
fn glob_literal_brackets(glob: &str) -> String {
    glob.replace('[', "[[]")
}

/// The use recorded by `llm.request` receipts issued in `[since_ns,
/// until_ns]` (either open when none) of the agents `agent` (a glob)
/// names, by agent, provider and model.
pub fn llm_usage(
    store: &Store,
    since_ns: Option<u64>,
    until_ns: Option<u64>,
    agent: Option<&str>,
) -> Result<Vec<UsageRow>, QueryError> {
    let mut stmt = store
        .connection()
        .prepare(
            "SELECT agent_id, provider, model, COUNT(*), SUM(COALESCE(input, 0)),
                    SUM(COALESCE(output, 0)), SUM(COALESCE(cached, 0)),
                    SUM(input IS NULL AND output IS NULL)
             FROM (SELECT r.agent_id AS agent_id,
                          json_extract(c.context, '$.llm_request.provider') AS provider,
                          COALESCE(json_extract(c.context, '$.llm_request.model_answered'),
                                   json_extract(c.context, '$.llm_request.model_requested')) AS model,
                          json_extract(c.context, '$.llm_request.usage.input_tokens') AS input,
                          json_extract(c.context, '$.llm_request.usage.output_tokens') AS output,
                          json_extract(c.context, '$.llm_request.usage.cached_input_tokens') AS cached
                   FROM receipts r LEFT JOIN contexts c ON c.leaf_index = r.leaf_index
                   WHERE r.action_type = 'llm.request' AND r.issued_ns >= ?1 AND r.issued_ns <= ?2
                     AND (?3 IS NULL OR r.agent_id GLOB ?3))
             GROUP BY agent_id, provider, model
             ORDER BY agent_id, provider, model",
        )
        .map_err(sql_err(store))?;
    let rows = stmt
        .query_map(
            rusqlite::params![
                since_ns.unwrap_or(0) as i64,
                until_ns.map_or(i64::MAX, |t| t as i64),
                agent.map(glob_literal_brackets),
            ],
            |r| {
                let n = |i: usize| r.get::<_, i64>(i).map(|v| v.max(0) as u64);
                Ok(UsageRow {
                    agent_id: r.get(0)?,
                    provider: r.get(1)?,
                    model: r.get(2)?,
                    requests: n(3)?,
                    input_tokens: n(4)?,
                    output_tokens: n(5)?,
                    cached_input_tokens: n(6)?,
                    requests_without_usage: n(7)?,
                })
            },
        )
        .map_err(sql_err(store))?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sql_err(store))
}
