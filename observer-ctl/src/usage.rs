//! `observerctl usage`: the store's sums of the `llm.request` receipts
//! (observer_receipts::query::llm_usage) as rows and a table.
use std::io::Write;

use observer_receipts::{
    query::{llm_usage, UsageRow},
    store::Store,
};
use serde_json::Value;

use crate::{output, CtlError, Output};

/// One row per agent, provider and model, in that order.
pub fn usage(
    store: &Store,
    since_ns: Option<u64>,
    until_ns: Option<u64>,
    agent: Option<&str>,
) -> Result<Vec<Value>, CtlError> {
    let rows: Vec<UsageRow> = llm_usage(store, since_ns, until_ns, agent)?;
    output::json_rows(&rows)
}

fn s(r: &Value, key: &str) -> String {
    output::cell(r, key, "?")
}

/// `--json`: `{"usage": [rows]}`; the table: one line per row.
pub fn print(out: &mut impl Write, mode: Output, rows: &[Value]) -> Result<(), CtlError> {
    output::write_list(
        out,
        mode,
        "usage",
        rows,
        &[
            ("AGENT", |r| s(r, "agent_id")),
            ("PROVIDER", |r| s(r, "provider")),
            ("MODEL", |r| s(r, "model")),
            ("REQUESTS", |r| s(r, "requests")),
            ("INPUT", |r| s(r, "input_tokens")),
            ("OUTPUT", |r| s(r, "output_tokens")),
            ("CACHED", |r| s(r, "cached_input_tokens")),
            ("NO_USAGE", |r| s(r, "requests_without_usage")),
        ],
    )
}
