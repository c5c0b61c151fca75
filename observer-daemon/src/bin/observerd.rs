//! `observerd`: the observer daemon.
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use observer_daemon::{
    config::Config,
    daemon::{self, EventsOutput, RunOptions},
};

#[derive(Parser)]
#[command(
    name = "observerd",
    version,
    about = "eBPF host observer for AI agents"
)]
struct Cli {
    /// Configuration file (see observer.toml in the repository for every key).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Write enriched events as JSON lines to PATH, or to stdout with `-`.
    #[arg(long, value_name = "PATH|-")]
    events_jsonl: Option<String>,
    /// Validate the configuration and exit.
    #[arg(long)]
    check_config: bool,
}

fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let config = match &cli.config {
        Some(path) => Config::load(path)?,
        None => Config::defaults(),
    };
    if cli.check_config {
        println!("configuration ok");
        return Ok(());
    }
    let events = match cli.events_jsonl.as_deref() {
        None => EventsOutput::None,
        Some("-") => EventsOutput::Stdout,
        Some(path) => EventsOutput::File(PathBuf::from(path)),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(daemon::run(RunOptions { config, events }))
}
