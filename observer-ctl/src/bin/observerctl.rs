//! `observerctl`: queries, verification, proofs, audit packs, keys and
//! erasure over the receipt store (docs/observerctl.md). Parsing and
//! dispatch only; the work is in the observer_ctl library (one module per
//! command) over observer-daemon's and observer-receipts' libraries.
use std::{io::Write, path::PathBuf, process::ExitCode};

use clap::Parser;
use observer_ctl::{
    self as ctl, agents, audit_pack,
    cli::{
        self, AgentsCommand, AuditPackCommand, Cli, Command, ExportFormat, KeysCommand,
        PolicyCommand, ReceiptsCommand, Selection,
    },
    daemon, doctor, erase, export, follow, keys, output, policy, progress, proof, receipts,
    selection, stats,
    time::parse_time,
    verify, CtlError, Output, Paths,
};
use observer_daemon::{
    config::Config,
    receipt::{
        keys as receipt_keys, payload::now_unix_ns, rotation as crate_rotation,
        verify::VerifyOptions,
    },
};
use observer_receipts::verify::{audit_pack::verify_audit_pack, proof::verify_proof};
use serde_json::json;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let json_requested = args.iter().any(|a| a == "--json" || a == "--jsonl");
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
                || !json_requested
            {
                let _ = e.print();
                return ExitCode::from(if e.use_stderr() { cli::EXIT_USAGE } else { 0 });
            }
            // clap's own message, first line, without its "error: " prefix.
            let rendered = e.render().to_string();
            let message = rendered
                .lines()
                .next()
                .map(|l| l.trim_start_matches("error: ").to_string())
                .filter(|l| !l.is_empty())
                .unwrap_or_else(|| e.kind().to_string());
            let err = CtlError::Usage(message);
            println!("{}", output::error_object(&err));
            return ExitCode::from(cli::EXIT_USAGE);
        }
    };
    let mode = Output::from_flags(cli.json, cli.jsonl);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match run(cli, mode, &mut out) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if mode.is_json() {
                let _ = writeln!(out, "{}", output::error_object(&e));
            } else {
                eprintln!("observerctl: {}", output::sanitise(&e.to_string()));
            }
            ExitCode::from(e.exit_code())
        }
    }
}

/// The installed daemon's configuration (`cargo xtask install`, the Debian
/// package), read when no --config is given so that store, socket and seed
/// paths never need repeating.
const INSTALLED_CONFIG: &str = "/etc/observer/observer.toml";

/// The configuration file in force: --config, else the installed one if
/// it exists, else none (the defaults).
fn config_path(cli: &Cli) -> Option<PathBuf> {
    let installed = std::path::Path::new(INSTALLED_CONFIG);
    match &cli.config {
        Some(p) => Some(p.clone()),
        None if installed.exists() => Some(installed.to_path_buf()),
        None => None,
    }
}

fn load_config(config_file: Option<&std::path::Path>) -> Result<Config, CtlError> {
    match config_file {
        Some(p) => Config::load(p).map_err(|e| CtlError::Usage(e.to_string())),
        None => Ok(Config::defaults()),
    }
}

fn paths(cli: &Cli, config: &Config) -> Paths {
    Paths {
        db: cli.db.clone().unwrap_or(config.receipts.store.clone()),
        master_seed: config.receipts.master_seed.clone(),
    }
}

fn window(
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
fn query_of(
    sel: Selection,
    limit: Option<u64>,
) -> Result<observer_daemon::receipt::query::Query, CtlError> {
    selection::query_of(&sel, limit, now_unix_ns(), &jiff::tz::TimeZone::system())
}

fn verdict(ok: bool) -> u8 {
    if ok {
        cli::EXIT_OK
    } else {
        cli::EXIT_VERIFY_FAILED
    }
}

fn read_file(path: &PathBuf) -> Result<Vec<u8>, CtlError> {
    std::fs::read(path).map_err(|e| CtlError::Usage(format!("{}: {e}", path.display())))
}

fn run(cli: Cli, mode: Output, out: &mut impl Write) -> Result<u8, CtlError> {
    let config_file = config_path(&cli);
    let config = load_config(config_file.as_deref())?;
    let p = paths(&cli, &config);
    let socket = cli.socket.clone().unwrap_or(config.control.socket.clone());
    match cli.command {
        Command::Status => {
            let v = daemon::status(&socket)?;
            daemon::print_status(out, mode, &v)?;
        }
        Command::Agents {
            tree: Some(AgentsCommand::Tree { pid }),
        } => {
            let v = daemon::tree(&socket, pid)?;
            daemon::print_tree(out, mode, &v)?;
        }
        Command::Doctor => {
            let v = doctor::run(config_file.as_deref())?;
            doctor::print(out, mode, &v)?;
            return Ok(if v["ok"] == true {
                cli::EXIT_OK
            } else {
                cli::EXIT_DOCTOR_FAILED
            });
        }
        Command::Policy(PolicyCommand::Check { dir }) => {
            let v = policy::check(&dir, &config)?;
            policy::print_check(out, mode, &v)?;
        }
        Command::Policy(PolicyCommand::Show) => {
            let v = policy::show(&socket, &config)?;
            policy::print_show(out, mode, &v)?;
        }
        Command::Receipts { show: None, filter } => {
            let q = query_of(filter.selection, filter.limit)?;
            follow::receipts_command(&p.db, &socket, &q, mode, out)?;
        }
        Command::Receipts {
            show: Some(ReceiptsCommand::Show { receipt, pubkey }),
            ..
        } => {
            let pinned = pubkey.as_deref().map(ctl::read_pubkey).transpose()?;
            let store = ctl::open_store(&p.db)?;
            let hash = ctl::resolve_receipt(&store, &receipt)?;
            let v = receipts::show(&store, &hash, pinned)?;
            receipts::print_show(out, mode, &v)?;
        }
        Command::Tail {
            follow,
            lines,
            filter,
        } => {
            let q = query_of(filter.selection, None)?;
            let lines = filter.limit.unwrap_or(lines);
            follow::tail_command(&p.db, &socket, &q, lines, follow, mode, out)?;
        }
        Command::Agents { tree: None } => {
            let store = ctl::open_store(&p.db)?;
            agents::print_agents(out, mode, &agents::agents(&store)?)?;
        }
        Command::Shadow { window: w } => {
            let (since, until) = window(&w.since, &w.until)?;
            let store = ctl::open_store(&p.db)?;
            agents::print_shadow(out, mode, &agents::shadow(&store, since, until)?)?;
        }
        Command::Stats { selection, top } => {
            let q = query_of(selection, None)?;
            let store = ctl::open_store(&p.db)?;
            stats::print(out, mode, &stats::stats(&store, &q, top)?)?;
        }
        Command::Verify(args) => {
            let (since_ns, _) = window(&args.since, &None)?;
            // Pinned: --pubkey; else the genesis master key the daemon
            // wrote beside the seed (after a rotation the seed derives a
            // later master, which cannot anchor the receipts before it);
            // else the key the seed derives (a store that never rotated).
            let genesis = match (&args.pubkey, &args.master_seed) {
                (None, None) => crate_rotation::read_genesis_public(&p.master_seed)
                    .map_err(|e| CtlError::Usage(format!("genesis master key: {e}")))?,
                _ => None,
            };
            let master_public_key = match (&args.pubkey, genesis, &args.master_seed) {
                (Some(path), ..) => ctl::read_pubkey(path)?,
                (None, Some(genesis), _) => genesis,
                (None, None, seed) => {
                    let seed = ctl::load_master_seed(seed.as_ref().unwrap_or(&p.master_seed))?;
                    receipt_keys::ChainKey::master_key(&seed)
                        .public_key()
                        .to_vec()
                }
            };
            let external_checkpoints = args
                .checkpoint
                .iter()
                .map(|c| {
                    read_file(c).and_then(|b| {
                        String::from_utf8(b).map_err(|_| {
                            CtlError::Usage(format!("checkpoint {}: not UTF-8", c.display()))
                        })
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let store = ctl::open_store(&p.db)?;
            let (v, ok) = verify::run(
                &store,
                &VerifyOptions {
                    master_public_key,
                    now_unix_ns: now_unix_ns(),
                    external_checkpoints,
                    independent: args.independent,
                    threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
                },
                &verify::Scope {
                    since_ns,
                    chain: args.chain,
                },
                progress::wanted(mode),
            )?;
            verify::print(out, mode, &p.db, &v)?;
            return Ok(verdict(ok));
        }
        Command::Proof {
            receipt,
            out: file,
            mode: file_mode,
        } => {
            let store = ctl::open_store(&p.db)?;
            let hash = ctl::resolve_receipt(&store, &receipt)?;
            let text = proof::make_proof(&store, &hash)?;
            match file {
                Some(f) => {
                    export::write_bytes(&f, text.as_bytes(), file_mode)?;
                    if mode.is_json() {
                        output::write_json(
                            out,
                            mode,
                            &json!({"receipt_hash": hex::encode(&hash), "out": f}),
                        )?;
                    }
                }
                None => out.write_all(text.as_bytes())?,
            }
        }
        Command::VerifyProof { file, pubkey } => {
            let master = ctl::read_pubkey(&pubkey)?;
            let text = String::from_utf8_lossy(&read_file(&file)?).into_owned();
            let report = verify_proof(&text, &master);
            print_verdict(out, mode, &report.to_json(), "proof")?;
            return Ok(verdict(report.ok));
        }
        Command::AuditPack(AuditPackCommand::Export {
            start,
            end,
            out: file,
            mode: file_mode,
            master_seed,
        }) => {
            let now = now_unix_ns();
            let start = parse_time("--start", &start, now)?;
            let end = parse_time("--end", &end, now)?;
            let seed = ctl::load_master_seed(master_seed.as_ref().unwrap_or(&p.master_seed))?;
            let master = receipt_keys::ChainKey::master_key(&seed);
            let store = ctl::open_store(&p.db)?;
            let (bytes, summary) = audit_pack::export(&store, start, end, &master)?;
            export::write_bytes(&file, &bytes, file_mode)?;
            if mode.is_json() {
                output::write_json(out, mode, &summary)?;
            } else {
                writeln!(
                    out,
                    "{}: {} receipts in {} chains, {} checkpoints, {}",
                    file.display(),
                    summary["receipts"],
                    summary["chains"],
                    summary["checkpoints"],
                    summary["bundle_digest"].as_str().unwrap_or_default()
                )?;
            }
        }
        Command::AuditPack(AuditPackCommand::Verify { bundle, pubkey }) => {
            let master = ctl::read_pubkey(&pubkey)?;
            let bytes = read_file(&bundle)?;
            let report = verify_audit_pack(&bytes, &master);
            print_verdict(out, mode, &report.to_json(), "audit pack")?;
            return Ok(verdict(report.ok));
        }
        Command::Keys(KeysCommand::Show) => {
            let store = ctl::open_store(&p.db)?;
            output::write_list(
                out,
                mode,
                "keys",
                &keys::show(&store)?,
                &[
                    ("KID", |r| output::s(r, &["kid"])),
                    ("AGENT", |r| output::s(r, &["agent_id"])),
                    ("MASTER", |r| output::s(r, &["master"])),
                    ("GEN", |r| output::s(r, &["generation"])),
                    ("STATUS", |r| output::s(r, &["status"])),
                    ("ISSUER_ID", |r| output::s(r, &["issuer_id"])),
                ],
            )?;
        }
        Command::Keys(KeysCommand::Rotate { reason }) => {
            let v = keys::rotate(&socket, reason.as_deref())?;
            keys::print_rotation(out, mode, &v)?;
        }
        Command::Keys(KeysCommand::Export { master }) => {
            let store = ctl::open_store(&p.db)?;
            let v = if master {
                keys::master_jwk(&store)?
            } else {
                keys::jwks(&store)?
            };
            // A JWK (Set) is JSON whatever the output mode.
            output::write_json(
                out,
                if mode == Output::Jsonl {
                    mode
                } else {
                    Output::Json
                },
                &v,
            )?;
        }
        Command::Export(args) => {
            let format = match args.format {
                ExportFormat::Ocsf => observer_daemon::export::Format::Ocsf,
                ExportFormat::Cloudevents => observer_daemon::export::Format::Cloudevents,
                ExportFormat::Jsonl => observer_daemon::export::Format::Receipt,
            };
            let q = query_of(args.selection, None)?;
            let store = ctl::open_store(&p.db)?;
            let show = progress::wanted(mode);
            let total = if show { export::count(&store, &q)? } else { 0 };
            let mut bar = progress::Progress::new("receipts exported", total, show);
            match &args.out {
                Some(file) => {
                    let summary =
                        export::write_file(&store, &q, format, file, args.mode, &mut bar)?;
                    bar.finish();
                    let v = summary.to_json(format, Some(file.as_path()));
                    if mode.is_json() {
                        output::write_json(out, mode, &v)?;
                    } else {
                        writeln!(
                            out,
                            "{}: {} receipts and {} checkpoints ({})",
                            file.display(),
                            summary.receipts,
                            summary.checkpoints,
                            export::format_name(format)
                        )?;
                    }
                }
                // The records are the output, whatever the output mode.
                None => {
                    export::widen_stdout_pipe();
                    // No BufWriter: the export writes whole batches of lines,
                    // which the locked stdout passes to write(2) as they are;
                    // a buffer would only copy them once more.
                    export::write(&store, &q, format, &mut *out, &mut bar)?;
                }
            }
        }
        Command::Erase {
            receipt,
            reason,
            master_seed,
        } => {
            let hash = ctl::resolve_receipt(&ctl::open_store(&p.db)?, &receipt)?;
            let seed = ctl::load_master_seed(master_seed.as_ref().unwrap_or(&p.master_seed))?;
            let v = erase::erase(&p.db, &hash, seed, &reason)?;
            if mode.is_json() {
                output::write_json(out, mode, &v)?;
            } else {
                writeln!(
                    out,
                    "erased the context of {}; recorded by observer.policy receipt {}",
                    v["erased"].as_str().unwrap_or_default(),
                    v["erasure_receipt"].as_str().unwrap_or_default()
                )?;
            }
        }
    }
    Ok(cli::EXIT_OK)
}

fn print_verdict(
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
