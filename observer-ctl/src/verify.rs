//! `verify`: the whole-store verifier of `receipt::verify` (the same
//! library and exit status as `observerd verify`), with the report
//! narrowed to a chain or a time window on request.
use std::io::Write;

use serde_json::{json, Value};

use super::{output::Output, progress::Progress, CtlError};
use observer_receipts::{
    store::Store,
    verify::{self, VerifyOptions},
};

pub struct Scope {
    pub since_ns: Option<u64>,
    pub chain: Option<String>,
}

/// Verifies the store; returns the JSON report and whether the failures in
/// scope are none. Log-wide failures (checkpoints, keys table) are always
/// in scope: they concern every receipt.
/// With `show_progress`, a progress bar on stderr (see `progress`).
pub fn run(
    store: &Store,
    opts: &VerifyOptions,
    scope: &Scope,
    show_progress: bool,
) -> Result<(Value, bool), CtlError> {
    let total = if show_progress {
        store.log_size().map_err(CtlError::from)?
    } else {
        0
    };
    let bar = std::cell::RefCell::new(Progress::new("receipts verified", total, show_progress));
    let report = verify::verify_store_with_progress(store, opts, &|n| bar.borrow_mut().inc(n));
    bar.borrow_mut().finish();
    let report = report.map_err(|e| match e {
        verify::VerifyError::Store(e) => CtlError::Store(e.to_string()),
        e => CtlError::Usage(e.to_string()),
    })?;
    let mut in_scope = Vec::new();
    for f in &report.failures {
        if let Some(chain) = &scope.chain {
            if !f.chain.is_empty() && &f.chain != chain {
                continue;
            }
        }
        if let (Some(since), Some(leaf)) = (scope.since_ns, f.leaf_index) {
            let issued = store.issued_ns_at(leaf).ok();
            if issued.is_some_and(|ns| ns < since) {
                continue;
            }
        }
        in_scope.push(f.clone());
    }
    let ok = in_scope.is_empty();
    let mut v = serde_json::to_value(&report)
        .map_err(|e| CtlError::Io(format!("encoding the report: {e}")))?;
    v["ok"] = json!(ok);
    v["failures"] = serde_json::to_value(&in_scope).unwrap_or(Value::Null);
    v["first_failure"] = serde_json::to_value(in_scope.first()).unwrap_or(Value::Null);
    v["failures_out_of_scope"] = json!(report.failures.len() - in_scope.len());
    Ok((v, ok))
}

pub fn print(
    out: &mut impl Write,
    mode: Output,
    db: &std::path::Path,
    v: &Value,
) -> Result<(), CtlError> {
    if mode.is_json() {
        return super::output::write_json(out, mode, v);
    }
    let report: &Value = v;
    writeln!(
        out,
        "{}: {} receipts in {} chains, log size {}, {} checkpoints verified, {} receipts after the newest checkpoint",
        db.display(),
        report["receipts"],
        report["chains"],
        report["log_size"],
        report["checkpoints_verified"],
        report["uncheckpointed"]
    )?;
    if let Some(checks) = report["checks"].as_object() {
        for (check, c) in checks {
            writeln!(
                out,
                "  {check:<22} pass {:>8}  fail {:>6}  unverifiable {:>6}",
                c["pass"], c["fail"], c["unverifiable"]
            )?;
        }
    }
    if report["erased_contexts"].as_u64().unwrap_or(0) > 0 {
        writeln!(
            out,
            "  {} contexts erased on request",
            report["erased_contexts"]
        )?;
    }
    let f = &report["first_failure"];
    if f.is_null() {
        let verifiers: Vec<String> = report["verifiers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        writeln!(out, "verification passed ({})", verifiers.join(", "))?;
    } else {
        writeln!(
            out,
            "verification FAILED: {} failures",
            report["failures"].as_array().map_or(0, Vec::len)
        )?;
        let st = |k: &str| f[k].as_str().unwrap_or_default().to_string();
        if st("chain").is_empty() {
            writeln!(out, "first failure: {}: {}", st("check"), st("reason"))?;
        } else {
            writeln!(
                out,
                "first failure: chain {} seq {} receipt {}: {}: {}",
                st("chain"),
                f["seq"],
                st("receipt_hash"),
                st("check"),
                st("reason")
            )?;
        }
    }
    Ok(())
}
