//! What every command takes: the output mode, the configuration in force
//! and the paths it gives, and the small helpers the commands share (time
//! windows, the store query of a selection, verdicts).
use std::{
    io::Write,
    path::{Path, PathBuf},
};

use observer_daemon::{
    config::Config,
    receipt::{payload::now_unix_ns, query::Query},
};

use crate::{
    cli::{self, Cli, Selection},
    output, selection,
    time::parse_time,
    CtlError, Output, Paths,
};

/// The installed daemon's configuration (`cargo xtask install`, the Debian
/// package), read when no --config is given so that store, socket and seed
/// paths never need repeating.
const INSTALLED_CONFIG: &str = "/etc/observer/observer.toml";

/// A command's surroundings, from the global flags.
pub struct Ctx {
    pub mode: Output,
    /// The configuration file in force, if any.
    pub config_file: Option<PathBuf>,
    pub config: Config,
    pub paths: Paths,
    /// The daemon's control socket.
    pub socket: PathBuf,
}

impl Ctx {
    /// Reads the configuration the global flags name.
    pub fn new(cli: &Cli) -> Result<Ctx, CtlError> {
        let config_file = config_path(cli);
        let config = load_config(config_file.as_deref())?;
        let paths = Paths {
            db: cli.db.clone().unwrap_or(config.receipts.store.clone()),
            master_seed: config.receipts.master_seed.clone(),
        };
        let socket = cli.socket.clone().unwrap_or(config.control.socket.clone());
        Ok(Ctx {
            mode: Output::from_flags(cli.json, cli.jsonl),
            config_file,
            config,
            paths,
            socket,
        })
    }
}

/// The configuration file in force: --config, else the installed one if
/// it exists, else none (the defaults).
fn config_path(cli: &Cli) -> Option<PathBuf> {
    let installed = Path::new(INSTALLED_CONFIG);
    match &cli.config {
        Some(p) => Some(p.clone()),
        None if installed.exists() => Some(installed.to_path_buf()),
        None => None,
    }
}

fn load_config(config_file: Option<&Path>) -> Result<Config, CtlError> {
    match config_file {
        Some(p) => Config::load(p).map_err(|e| CtlError::Usage(e.to_string())),
        None => Ok(Config::defaults()),
    }
}

/// `--since` and `--until` as Unix nanoseconds.
pub fn window(
    since: &Option<String>,
    until: &Option<String>,
) -> Result<(Option<u64>, Option<u64>), CtlError> {
    let now = now_unix_ns();
    Ok((
        since
            .as_deref()
            .map(|t| parse_time("--since", t, now))
            .transpose()?,
        until
            .as_deref()
            .map(|t| parse_time("--until", t, now))
            .transpose()?,
    ))
}

/// The store query of a command line selection (local times in the
/// system time zone).
pub fn query_of(sel: Selection, limit: Option<u64>) -> Result<Query, CtlError> {
    selection::query_of(&sel, limit, now_unix_ns(), &jiff::tz::TimeZone::system())
}

/// The exit status of a verification.
pub fn verdict(ok: bool) -> u8 {
    if ok {
        cli::EXIT_OK
    } else {
        cli::EXIT_VERIFY_FAILED
    }
}

/// An input file's bytes.
pub fn read_file(path: &Path) -> Result<Vec<u8>, CtlError> {
    std::fs::read(path).map_err(|e| CtlError::Usage(format!("{}: {e}", path.display())))
}

/// A proof's or an audit pack's verification report: the JSON report, or
/// its checks and the verdict as text.
pub fn print_verdict(
    out: &mut impl Write,
    mode: Output,
    v: &serde_json::Value,
    what: &str,
) -> Result<(), CtlError> {
    if mode.is_json() {
        return output::write_json(out, mode, v);
    }
    if let Some(checks) = v["checks"].as_array() {
        for c in checks {
            writeln!(
                out,
                "  {:<18} {:<13} {}",
                output::s(c, &["check"]),
                output::s(c, &["outcome"]),
                output::s(c, &["detail"])
            )?;
        }
    } else if let Some(checks) = v["checks"].as_object() {
        for (k, c) in checks {
            writeln!(
                out,
                "  {k:<20} pass {:>7}  fail {:>5}",
                c["pass"], c["fail"]
            )?;
        }
    }
    if v["ok"] == true {
        writeln!(out, "{what} verified")?;
    } else {
        let f = &v["first_failure"];
        let text = match f {
            serde_json::Value::String(s) => s.clone(),
            other => {
                let st = |k: &str| other[k].as_str().unwrap_or_default().to_string();
                if st("chain").is_empty() {
                    format!("{}: {}", st("check"), st("reason"))
                } else {
                    format!(
                        "chain {} seq {} receipt {}: {}: {}",
                        st("chain"),
                        other["seq"],
                        st("receipt_hash"),
                        st("check"),
                        st("reason")
                    )
                }
            }
        };
        writeln!(out, "{what} verification FAILED: {text}")?;
    }
    Ok(())
}
