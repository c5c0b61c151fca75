//! The doctor report (`observerd doctor`, `observerctl doctor`) as a
//! table. Apart from the checks, which need the eBPF object, so that
//! observerctl prints it without embedding that object.
use std::io::Write;

use serde_json::Value;

/// The report as a table: one line per check (what fails says what will
/// not work), then the verdict.
pub fn write_table(out: &mut impl Write, v: &Value) -> std::io::Result<()> {
    let s = observer_receipts::query::text_at;
    for c in v["checks"].as_array().into_iter().flatten() {
        let ok = c["ok"] == true;
        writeln!(
            out,
            "{:<6} {:<28} {}",
            match (ok, c["warn"] == true) {
                (false, _) => "NOT OK",
                (true, true) => "warn",
                (true, false) => "ok",
            },
            s(c, &["check"]),
            s(c, &["detail"])
        )?;
        if !ok {
            writeln!(out, "{:<35}=> {}", "", s(c, &["impact"]))?;
        }
    }
    writeln!(
        out,
        "{}",
        if v["ok"] == true {
            "every check passed: observerd can run here"
        } else {
            "some checks failed: see what will not work above"
        }
    )?;
    Ok(())
}
