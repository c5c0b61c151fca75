//! LLM API use from the `llm.request` receipts: requests and tokens per
//! agent, provider and model (`observerctl usage`), summed by SQLite over
//! the receipts' contexts.
use serde::Serialize;

use crate::store::Store;

use super::{sql_err, QueryError};

/// One agent's use of one model of one provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageRow {
    /// The agent.
    pub agent_id: String,
    /// None when the receipt carries no context (hash-only mode, erased).
    pub provider: Option<String>,
    /// The model that answered, else the one asked for.
    pub model: Option<String>,
    /// `llm.request` receipts in the window.
    pub requests: u64,
    /// Prompt tokens the provider reported, summed.
    pub input_tokens: u64,
    /// Completion tokens the provider reported, summed.
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
pub(super) fn glob_literal_brackets(glob: &str) -> String {
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
    usage_rows(store.connection(), since_ns, until_ns, agent).map_err(sql_err(store))
}

fn usage_rows(
    conn: &rusqlite::Connection,
    since_ns: Option<u64>,
    until_ns: Option<u64>,
    agent: Option<&str>,
) -> rusqlite::Result<Vec<UsageRow>> {
    let mut stmt = conn.prepare(
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
    )?;
    let rows = stmt.query_map(
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
    )?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;
    use serde_json::{json, Value};

    use super::*;

    /// Receipts and contexts shaped like the store's.
    fn db(rows: &[(i64, &str, &str, i64, Option<Value>)]) -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE receipts (leaf_index INTEGER PRIMARY KEY, agent_id TEXT,
                                    action_type TEXT, issued_ns INTEGER);
             CREATE TABLE contexts (leaf_index INTEGER PRIMARY KEY, context TEXT NOT NULL);",
        )
        .unwrap();
        for (leaf, agent, action, at, context) in rows {
            conn.execute(
                "INSERT INTO receipts VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![leaf, agent, action, at],
            )
            .unwrap();
            if let Some(c) = context {
                conn.execute(
                    "INSERT INTO contexts VALUES (?1, ?2)",
                    rusqlite::params![leaf, c.to_string()],
                )
                .unwrap();
            }
        }
        conn
    }

    fn call(model: Option<&str>, requested: &str, usage: Value) -> Option<Value> {
        Some(
            json!({"llm_request": {"provider": "openai", "model_answered": model,
            "model_requested": requested, "usage": usage}}),
        )
    }

    #[test]
    fn sums_per_agent_provider_and_model() {
        let conn = db(&[
            (
                0,
                "claude",
                "llm.request",
                10,
                call(
                    Some("gpt-4o-2024-08-06"),
                    "gpt-4o",
                    json!({"input_tokens": 100, "output_tokens": 7, "cached_input_tokens": 64}),
                ),
            ),
            (
                1,
                "claude",
                "llm.request",
                20,
                call(
                    Some("gpt-4o-2024-08-06"),
                    "gpt-4o",
                    json!({"input_tokens": 5, "output_tokens": 1}),
                ),
            ),
            // No answer: the model asked for, no tokens.
            (
                2,
                "claude",
                "llm.request",
                30,
                call(None, "gpt-4o-2024-08-06", json!({})),
            ),
            // Hash-only: no context.
            (3, "claude", "llm.request", 40, None),
            (
                4,
                "unregistered:ab",
                "llm.request",
                50,
                call(
                    Some("m"),
                    "m",
                    json!({"input_tokens": 1, "output_tokens": 2}),
                ),
            ),
            (
                5,
                "claude",
                "shadow_ai.finding",
                60,
                call(Some("x"), "x", json!({"input_tokens": 9})),
            ),
        ]);
        let row =
            |agent: &str, provider: Option<&str>, model: Option<&str>, n: [u64; 5]| UsageRow {
                agent_id: agent.into(),
                provider: provider.map(String::from),
                model: model.map(String::from),
                requests: n[0],
                input_tokens: n[1],
                output_tokens: n[2],
                cached_input_tokens: n[3],
                requests_without_usage: n[4],
            };
        let all = usage_rows(&conn, None, None, None).unwrap();
        assert_eq!(
            all,
            [
                row("claude", None, None, [1, 0, 0, 0, 1]),
                row(
                    "claude",
                    Some("openai"),
                    Some("gpt-4o-2024-08-06"),
                    [3, 105, 8, 64, 1]
                ),
                row(
                    "unregistered:ab",
                    Some("openai"),
                    Some("m"),
                    [1, 1, 2, 0, 0]
                ),
            ]
        );
        let unregistered = usage_rows(&conn, None, None, Some("unregistered:*")).unwrap();
        assert_eq!(unregistered, [all[2].clone()]);
        let window = usage_rows(&conn, Some(15), Some(30), Some("claude")).unwrap();
        assert_eq!(
            window,
            [row(
                "claude",
                Some("openai"),
                Some("gpt-4o-2024-08-06"),
                [2, 5, 1, 0, 1]
            )]
        );
    }
}
