//! `observerctl`: queries, verification, proofs, audit packs, keys and
//! erasure over the receipt store (docs/observerctl.md). Parsing and error
//! reporting only; the commands are in the observer_ctl library (one file
//! per command under `cmd/`) over observer-daemon's and observer-receipts'
//! libraries.
use std::{io::Write, process::ExitCode};

use clap::Parser;
use observer_ctl::{
    cli::{self, Cli},
    cmd, output, CtlError, Output,
};

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
    match cmd::run(cli, &mut out) {
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
