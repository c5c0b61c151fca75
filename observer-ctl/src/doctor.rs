//! `observerctl doctor`: runs `observerd doctor --json` and prints its
//! report. The checks load the eBPF object, which only observerd embeds
//! (observerctl builds without the eBPF toolchain), so the binary that will
//! run is the one asked: a host where doctor passes runs that observerd.
use std::{
    io::Write,
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;

use super::{output, CtlError, Output};

/// Where observerd is looked for after observerctl's own directory.
const INSTALLED: &[&str] = &["/usr/bin/observerd", "/usr/local/bin/observerd"];

/// observerd beside this observerctl (an installation or a build's target
/// directory), else on PATH, else where the packages install it.
pub fn find_observerd() -> Option<PathBuf> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join("observerd")));
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("observerd"));
    beside
        .into_iter()
        .chain(on_path)
        .chain(INSTALLED.iter().map(PathBuf::from))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The report of `observerd [--config FILE] doctor --json`: `{"ok": all
/// passed, "checks": [...]}`.
pub fn run(config_path: Option<&Path>) -> Result<Value, CtlError> {
    let observerd = find_observerd().ok_or_else(|| {
        CtlError::Usage(
            "observerd not found beside observerctl, on PATH or in /usr/bin or /usr/local/bin: \
             doctor runs the checks of the observerd that will run"
                .into(),
        )
    })?;
    let mut cmd = Command::new(&observerd);
    if let Some(path) = config_path {
        cmd.arg("--config").arg(path);
    }
    let out = cmd
        .args(["doctor", "--json"])
        .output()
        .map_err(|e| CtlError::Usage(format!("running {}: {e}", observerd.display())))?;
    // Exit status 1 is a report with failed checks; anything else (a bad
    // configuration, a crash) has no report to print.
    let report = serde_json::from_slice::<Value>(&out.stdout)
        .ok()
        .filter(|v| v["checks"].is_array() && matches!(out.status.code(), Some(0 | 1)));
    report.ok_or_else(|| {
        let stderr = String::from_utf8_lossy(&out.stderr);
        CtlError::Usage(format!(
            "{} doctor failed ({}): {}",
            observerd.display(),
            out.status,
            stderr.trim()
        ))
    })
}

pub fn print(out: &mut impl Write, mode: Output, v: &Value) -> Result<(), CtlError> {
    if mode.is_json() {
        return output::write_json(out, mode, v);
    }
    observer_daemon::doctor_table::write_table(out, v)?;
    Ok(())
}
