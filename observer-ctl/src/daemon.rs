//! The commands that ask the running daemon over its control socket:
//! `status` and `agents tree`.
use std::{io::Write, path::Path, time::Duration};

use serde_json::{json, Value};

use super::{output, CtlError, Output};
use observer_daemon::control::client::{self, ClientError};

/// Long enough for a daemon busy with a backlog to answer.
const TIMEOUT: Duration = Duration::from_secs(10);

impl From<ClientError> for CtlError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Unreachable { .. } => CtlError::Daemon(e.to_string()),
            ClientError::Denied(m) => CtlError::Denied(m),
            ClientError::Failed { kind, message } if kind == "not_found" => {
                CtlError::Usage(message)
            }
            ClientError::Failed { message, .. } => CtlError::Daemon(message),
        }
    }
}

/// One request to the daemon.
pub fn ask(socket: &Path, cmd: &str, args: Value) -> Result<Value, CtlError> {
    Ok(client::request(socket, cmd, args, TIMEOUT)?)
}

pub fn status(socket: &Path) -> Result<Value, CtlError> {
    ask(socket, "status", json!({}))
}

pub fn print_status(out: &mut impl Write, mode: Output, v: &Value) -> Result<(), CtlError> {
    if mode.is_json() {
        return output::write_json(out, mode, v);
    }
    let d = &v["daemon"];
    writeln!(
        out,
        "observerd {} running, pid {}, up {}s (since {})",
        output::s(d, &["version"]),
        d["pid"],
        d["uptime_seconds"],
        output::s(d, &["started_at"])
    )?;
    let programs: Vec<&str> = v["probes"]["programs"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    writeln!(
        out,
        "probes:      {} programs, {} attachments: {}",
        programs.len(),
        v["probes"]["attachments"].as_array().map_or(0, Vec::len),
        programs.join(", ")
    )?;
    let e = &v["events"];
    let rate = |x: &Value| x.as_f64().map_or("-".to_string(), |r| format!("{r:.1}"));
    writeln!(
        out,
        "events:      {} total, {}/s (last 10 s), {}/s since start",
        e["total"],
        rate(&e["per_second"]),
        rate(&e["per_second_since_start"])
    )?;
    let dr = &v["drops"];
    let mut parts = Vec::new();
    if let Some(k) = dr["kernel"].as_object() {
        for (kind, c) in k {
            for reason in ["ringbuf_full", "read_error"] {
                if c[reason].as_u64().unwrap_or(0) > 0 {
                    parts.push(format!("{kind}/{reason} {}", c[reason]));
                }
            }
        }
    }
    if let Some(u) = dr["user"].as_object() {
        for (reason, n) in u {
            if n.as_u64().unwrap_or(0) > 0 {
                parts.push(format!("user/{reason} {n}"));
            }
        }
    }
    writeln!(
        out,
        "drops:       {} since start{}{}",
        dr["total"],
        if parts.is_empty() { "" } else { ": " },
        parts.join(", ")
    )?;
    let r = &v["receipts"];
    if r.is_null() {
        writeln!(out, "receipts:    disabled")?;
    } else {
        writeln!(
            out,
            "receipts:    {} committed this run, log size {}, {} checkpoints this run",
            r["committed"], r["log_size"], r["checkpoints"]
        )?;
    }
    let id = &v["identity"];
    if !id.is_null() {
        writeln!(
            out,
            "deployer:    {} ({})",
            output::s(id, &["deployer_id"]),
            output::s(id, &["source"])
        )?;
        if let Some(w) = id["warning"].as_str() {
            writeln!(out, "WARNING:     {w}")?;
        }
    }
    let m = &v["master"];
    if !m.is_null() {
        writeln!(
            out,
            "master key:  {} (generation {})",
            output::s(m, &["kid"]),
            m["generation"]
        )?;
    }
    if let Some(heads) = v["chains"]["heads"].as_array() {
        writeln!(out, "chains:      {}", heads.len())?;
        for h in heads {
            writeln!(
                out,
                "  {:<24} seq {:<8} {}",
                output::s(h, &["agent_id"]),
                h["seq"],
                output::s(h, &["payload_hash"])
            )?;
        }
    }
    let c = &v["last_checkpoint"];
    if c.is_null() {
        writeln!(out, "checkpoint:  none yet")?;
    } else {
        writeln!(
            out,
            "checkpoint:  size {} at {}",
            c["size"],
            output::s(c, &["created_at"])
        )?;
    }
    let p = &v["policy"];
    writeln!(
        out,
        "policy:      {} ({} agents, {} rules){}",
        output::s(p, &["digest"]),
        p["agents"].as_array().map_or(0, Vec::len),
        p["rules"],
        match (p["policies_dir"].as_str(), p["source"].as_str()) {
            (Some(d), _) => format!(" from {d}"),
            (None, Some(source)) => format!(", {source}"),
            (None, None) => String::new(),
        }
    )?;
    let sinks = v["sinks"].as_array().cloned().unwrap_or_default();
    if sinks.is_empty() {
        writeln!(out, "sinks:       none")?;
    }
    for s in sinks {
        let errors: u64 = s["errors"]
            .as_object()
            .map_or(0, |m| m.values().filter_map(Value::as_u64).sum());
        writeln!(
            out,
            "sink {:<12} {:<7} backlog {}, delivered {}, errors {}",
            output::s(&s, &["name"]),
            output::s(&s, &["type"]),
            s["backlog"],
            s["delivered"],
            errors
        )?;
    }
    print_plaintext(out, &v["plaintext"])
}

/// Per agent, whose TLS traffic is read and whose is not, and why.
fn print_plaintext(out: &mut impl Write, p: &Value) -> Result<(), CtlError> {
    if p["enabled"] != true {
        writeln!(out, "plaintext:   off")?;
        return Ok(());
    }
    writeln!(out, "plaintext:   on, {} watched processes", p["processes"])?;
    for (agent, a) in p["agents"].as_object().into_iter().flatten() {
        for v in a["visible"].as_array().into_iter().flatten() {
            let through: Vec<&str> = v["through"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            writeln!(
                out,
                "  {agent:<16} {} visible through {}",
                output::s(v, &["executable"]),
                through.join(", ")
            )?;
        }
        for v in a["not_visible"].as_array().into_iter().flatten() {
            writeln!(
                out,
                "  {agent:<16} {} NOT visible: {}",
                output::s(v, &["executable"]),
                output::s(v, &["reason"])
            )?;
        }
    }
    Ok(())
}

pub fn tree(socket: &Path, pid: u32) -> Result<Value, CtlError> {
    ask(socket, "process_tree", json!({"pid": pid}))
}

fn line(p: &Value, marker: &str) -> String {
    let agent = p["agent"]
        .as_str()
        .map(|a| format!("  [agent {a}]"))
        .unwrap_or_default();
    let exited = if p["exited"] == true {
        "  (exited)"
    } else {
        ""
    };
    let exe = p["exe"]
        .as_str()
        .unwrap_or_else(|| p["comm"].as_str().unwrap_or("?"));
    format!("{} {exe} uid {}{agent}{exited}{marker}", p["pid"], p["uid"])
}

pub fn print_tree(out: &mut impl Write, mode: Output, v: &Value) -> Result<(), CtlError> {
    if mode.is_json() {
        return output::write_json(out, mode, v);
    }
    let mut depth = 0;
    for a in v["ancestors"].as_array().into_iter().flatten() {
        writeln!(out, "{}{}", "  ".repeat(depth), line(a, ""))?;
        depth += 1;
    }
    fn walk(out: &mut impl Write, p: &Value, depth: usize, me: bool) -> std::io::Result<()> {
        writeln!(
            out,
            "{}{}",
            "  ".repeat(depth),
            line(p, if me { "  <==" } else { "" })
        )?;
        for c in p["children"].as_array().into_iter().flatten() {
            walk(out, c, depth + 1, false)?;
        }
        Ok(())
    }
    walk(out, &v["process"], depth, true)?;
    if v["truncated"] == true {
        writeln!(out, "(descendants truncated)")?;
    }
    Ok(())
}
