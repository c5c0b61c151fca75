//! `observerd`: the observer daemon.
use std::{io::Write as _, path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use observer_daemon::{
    config::Config,
    daemon::{self, EventsOutput, RunOptions},
    doctor, doctor_table,
    policy::Policy,
    receipt::{
        json, keys,
        store::Store,
        verify::{self, VerifyOptions},
    },
    service::journal::{self, LogTarget},
};

#[derive(Parser)]
#[command(
    name = "observerd",
    version,
    about = "eBPF host observer for AI agents"
)]
struct Cli {
    /// Configuration file (see observer.toml in the repository for every key).
    #[arg(long, value_name = "PATH", global = true)]
    config: Option<PathBuf>,
    /// Write enriched events as JSON lines to PATH, or to stdout with `-`.
    #[arg(long, value_name = "PATH|-")]
    events_jsonl: Option<String>,
    /// Policy directory, instead of the configuration's policies_dir
    /// (`cargo xtask run` passes the repository's policies/).
    #[arg(long, value_name = "DIR")]
    policies_dir: Option<PathBuf>,
    /// How `--events-jsonl -` shows events: `auto` draws the live view
    /// (one readable line per event, docs/observerctl.md "Live view") when
    /// stdout is a terminal and JSON lines otherwise; `live` and `json`
    /// choose. A file always gets JSON lines.
    #[arg(long, value_enum, default_value_t = EventsView::Auto)]
    events_view: EventsView,
    /// Validate the configuration and exit.
    #[arg(long)]
    check_config: bool,
    /// Validate a policy directory (agents.toml, rules.toml, indicators/)
    /// and exit: 0 if valid, 1 with `file:line:col: error` if not.
    #[arg(long, value_name = "DIR")]
    check_policies: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
enum EventsView {
    Auto,
    Live,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Verify a receipt store offline: signatures, keys, chains, digests,
    /// the Merkle log and its checkpoints. Exit status 1 on any failure.
    Verify {
        /// The SQLite receipt store.
        #[arg(long, value_name = "PATH")]
        db: PathBuf,
        /// The pinned master public key as an AKP JWK (JSON). Without it,
        /// <master_seed>.genesis.jwk when it exists (the genesis master,
        /// right after a key rotation too), else the key derived from the
        /// master seed (root only).
        #[arg(long, value_name = "FILE")]
        pubkey: Option<PathBuf>,
        /// Master seed to derive the public key from. Default: the
        /// configuration's receipts.master_seed.
        #[arg(long, value_name = "FILE", conflicts_with = "pubkey")]
        master_seed: Option<PathBuf>,
        /// A signed checkpoint kept off-host (repeatable): the log must
        /// still contain it (detects a truncated log).
        #[arg(long, value_name = "FILE")]
        checkpoint: Vec<PathBuf>,
        /// Also verify every signature with the second ML-DSA-65
        /// implementation (RustCrypto ml-dsa).
        #[arg(long)]
        independent: bool,
        /// Print the full report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check that this host can run observerd: privileges, BTF, tracefs,
    /// cgroup2, then load and attach every eBPF program this binary embeds
    /// (to a scratch cgroup; a running daemon is not disturbed), the
    /// deployer id and the policies in force. Exit status 1 if a check
    /// fails. `observerctl doctor` runs this.
    Doctor {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let log_target = journal::init("observerd");
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            match log_target {
                LogTarget::Journal => {
                    log::error!(message_id = journal::message_id::FAILED; "{e:#}");
                }
                LogTarget::Stderr => eprintln!("observerd: {e:#}"),
            }
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut config = match &cli.config {
        Some(path) => Config::load(path)?,
        None => Config::defaults(),
    };
    if let Some(dir) = &cli.policies_dir {
        config.policies_dir = Some(dir.clone());
    }
    if let Some(dir) = &cli.check_policies {
        return Ok(match Policy::load(dir, &config.agents) {
            Ok(p) => {
                println!(
                    "policies ok: {} ({} agents, {} rules, {} providers)",
                    p.digest,
                    p.registry.len(),
                    p.rules.rules.len(),
                    p.indicators.providers.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(1)
            }
        });
    }
    if let Some(Command::Doctor { json }) = cli.command {
        let report = doctor::run(&config);
        let mut out = std::io::stdout().lock();
        if json {
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        } else {
            doctor_table::write_table(&mut out, &report)?;
        }
        return Ok(if report["ok"] == true {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    if let Some(Command::Verify {
        db,
        pubkey,
        master_seed,
        checkpoint,
        independent,
        json,
    }) = cli.command
    {
        // As observerctl verify: without --pubkey or --master-seed, the
        // genesis master key written beside the seed (it stays right after
        // a key rotation), else the key the seed derives.
        let seed_path = &config.receipts.master_seed;
        let genesis = match (&pubkey, &master_seed) {
            (None, None) => observer_daemon::receipt::rotation::read_genesis_public(seed_path)
                .context("the genesis master key beside the seed")?,
            _ => None,
        };
        let master_public_key = match (pubkey, genesis) {
            (Some(path), _) => read_jwk(&path)?,
            (None, Some(genesis)) => genesis,
            (None, None) => {
                let path = master_seed.unwrap_or(config.receipts.master_seed.clone());
                let seed = keys::MasterSeed::load_existing(&path)
                    .with_context(|| format!("master seed {}", path.display()))?;
                keys::ChainKey::master_key(&seed).public_key().to_vec()
            }
        };
        let external_checkpoints = checkpoint
            .iter()
            .map(|p| {
                std::fs::read_to_string(p)
                    .with_context(|| format!("reading checkpoint {}", p.display()))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let store = Store::open_read_only(&db)?;
        let report = verify::verify_store(
            &store,
            &VerifyOptions {
                master_public_key,
                now_unix_ns: observer_daemon::pipeline::processor::now_unix_ns(),
                external_checkpoints,
                independent,
                threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            },
        )?;
        if json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print_report(&db, &report);
        }
        return Ok(if report.ok() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    if cli.check_config {
        println!("configuration ok");
        return Ok(ExitCode::SUCCESS);
    }
    let events = match cli.events_jsonl.as_deref() {
        None => EventsOutput::None,
        Some("-") => {
            use std::io::IsTerminal;
            let terminal = std::io::stdout().is_terminal();
            match cli.events_view {
                EventsView::Json => EventsOutput::Stdout,
                EventsView::Auto if !terminal => EventsOutput::Stdout,
                EventsView::Auto | EventsView::Live => EventsOutput::Live {
                    colour: observer_daemon::live_view::colour_wanted(terminal),
                },
            }
        }
        Some(path) => EventsOutput::File(PathBuf::from(path)),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(daemon::run(RunOptions { config, events }))?;
    Ok(ExitCode::SUCCESS)
}

fn read_jwk(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let jwk = json::parse_strict(&text).with_context(|| format!("{}", path.display()))?;
    keys::public_key_from_jwk(&jwk).with_context(|| format!("{}", path.display()))
}

fn print_report(db: &std::path::Path, report: &verify::Report) {
    println!(
        "{}: {} receipts in {} chains, log size {}, {} checkpoints verified, {} receipts after the newest checkpoint",
        db.display(),
        report.receipts,
        report.chains,
        report.log_size,
        report.checkpoints_verified,
        report.uncheckpointed
    );
    for (check, c) in &report.checks {
        println!(
            "  {check:<22} pass {:>8}  fail {:>6}  unverifiable {:>6}",
            c.pass, c.fail, c.unverifiable
        );
    }
    if report.erased_contexts > 0 {
        println!("  {} contexts erased on request", report.erased_contexts);
    }
    match report.first_failure() {
        None => println!("verification passed ({})", report.verifiers.join(", ")),
        Some(f) => {
            println!("verification FAILED: {} failures", report.failures.len());
            if f.chain.is_empty() {
                println!("first failure: {}: {}", f.check, f.reason);
            } else {
                println!(
                    "first failure: chain {} seq {} receipt {}: {}: {}",
                    f.chain, f.seq, f.receipt_hash, f.check, f.reason
                );
            }
        }
    }
}
