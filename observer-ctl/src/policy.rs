//! `policy check DIR` (offline, the validator `observerd --check-policies`
//! runs) and `policy show` (the set in force: from the daemon, else from
//! the configured directory).
use std::{io::Write, path::Path};

use serde_json::{json, Value};

use super::{daemon, output, CtlError, Output};
use observer_daemon::{config::Config, policy::Policy};

/// The summary of a valid directory, or `PolicyInvalid` with the loader's
/// message (file:line:column: field).
pub fn check(dir: &Path, config: &Config) -> Result<Value, CtlError> {
    let p =
        Policy::load(dir, &config.agents).map_err(|e| CtlError::PolicyInvalid(e.to_string()))?;
    let mut v = p.summary();
    v["ok"] = json!(true);
    Ok(v)
}

pub fn print_check(out: &mut impl Write, mode: Output, v: &Value) -> Result<(), CtlError> {
    if mode.is_json() {
        return output::write_json(out, mode, v);
    }
    writeln!(
        out,
        "policies ok: {} ({} agents, {} rules, {} providers)",
        output::s(v, &["policy_digest"]),
        v["agents"].as_array().map_or(0, Vec::len),
        v["rules"].as_array().map_or(0, Vec::len),
        v["providers"]
    )?;
    Ok(())
}

/// `{"source": "daemon"|"policies_dir"|"built-in"|"config", "daemon_error"?, ...summary}`.
pub fn show(socket: &Path, config: &Config) -> Result<Value, CtlError> {
    let daemon_error = match daemon::ask(socket, "policy", json!({})) {
        Ok(mut v) => {
            v["source"] = json!("daemon");
            return Ok(v);
        }
        Err(e @ (CtlError::Daemon(_) | CtlError::Denied(_))) => e.to_string(),
        Err(e) => return Err(e),
    };
    // As the daemon would choose at start: the directory when present,
    // else the built-in set.
    let (mut v, source) = match &config.policies_dir {
        Some(dir) if dir.exists() => (
            Policy::load(dir, &config.agents)
                .map_err(|e| CtlError::PolicyInvalid(e.to_string()))?
                .summary(),
            "policies_dir",
        ),
        _ if !config.builtin_policies => (Policy::from_config(&config.agents).summary(), "config"),
        _ => (
            Policy::builtin(&config.agents)
                .map_err(|e| CtlError::PolicyInvalid(e.to_string()))?
                .summary(),
            "built-in",
        ),
    };
    v["source"] = json!(source);
    v["daemon_error"] = json!(daemon_error);
    Ok(v)
}

pub fn print_show(out: &mut impl Write, mode: Output, v: &Value) -> Result<(), CtlError> {
    if mode.is_json() {
        return output::write_json(out, mode, v);
    }
    let from = match v["source"].as_str() {
        Some("daemon") => "in force in the running daemon".to_string(),
        Some("policies_dir") => format!(
            "loaded from {} (daemon not reachable: {})",
            output::s(v, &["policies_dir"]),
            output::s(v, &["daemon_error"])
        ),
        Some("config") => format!(
            "observer.toml's [[agents]] only (builtin_policies = false; daemon not reachable: {})",
            output::s(v, &["daemon_error"])
        ),
        _ => format!(
            "built into observerctl (daemon not reachable: {})",
            output::s(v, &["daemon_error"])
        ),
    };
    writeln!(out, "policy {} {from}", output::s(v, &["policy_digest"]))?;
    let agents: Vec<&str> = v["agents"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    writeln!(out, "agents ({}): {}", agents.len(), agents.join(", "))?;
    writeln!(
        out,
        "rules ({}):",
        v["rules"].as_array().map_or(0, Vec::len)
    )?;
    for r in v["rules"].as_array().into_iter().flatten() {
        writeln!(
            out,
            "  {:<40} {}",
            output::s(r, &["id"]),
            output::s(r, &["risk_class"])
        )?;
    }
    writeln!(out, "providers: {}", v["providers"])?;
    Ok(())
}
