//! Developer tasks: `cargo xtask run | test | bench | fuzz | setup | install | deb`.
mod bench;
mod bench_bpf;
mod bench_clickhouse;
mod bench_ctl;
mod bench_fleet;
mod bench_fleet_query;
mod bench_floor;
mod bench_forward;
mod bench_http_receiver;
mod bench_kit;
mod bench_mcp;
mod bench_names;
mod bench_plaintext;
mod bench_probes;
mod bench_receipts;
mod bench_workload;
mod deb;
#[cfg(test)]
mod deb_package_test;
mod fuzz;
#[cfg(test)]
mod import_cycles;
mod install;
#[cfg(test)]
mod installed_daemon;
mod man;
mod setup;
mod tiny_exe;

use std::{path::PathBuf, process::Command};

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install the eBPF toolchain pieces (idempotent).
    Setup,
    /// Set up, build, and run observerd as root with the repository config,
    /// printing enriched events on stdout: the live view (one readable line
    /// per event) on a terminal, JSON lines when piped or with --json.
    Run {
        /// JSON lines on stdout even on a terminal. Passing your own
        /// --events-jsonl to observerd also keeps the JSON lines.
        #[arg(long)]
        json: bool,
        /// Extra arguments for observerd.
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// Set up, then run formatting and lint checks and every test,
    /// including the BPF integration tests (needs root).
    Test,
    /// Overhead and throughput benchmarks against a baseline measured in the
    /// same run (needs root): `bench` runs every section, `bench probes` or
    /// `bench receipts` one.
    // Boxed: the sections' flattened options make it far larger than the
    // other tasks (clippy's large_enum_variant).
    Bench(Box<bench::BenchArgs>),
    /// Run the cargo-fuzz targets (DNS and ClientHello parsers) for
    /// `--seconds` each, installing the pinned cargo-fuzz if needed.
    Fuzz(fuzz::FuzzArgs),
    /// Generate observerctl's man pages and shell completions from its
    /// clap definitions (default: target/observerctl-docs).
    Man(man::ManArgs),
    /// Build and install observerd, the systemd unit, the default
    /// configuration and policies (kept if present), and the `observer`
    /// group (needs root unless --destdir).
    Install(install::InstallArgs),
    /// Build the Debian package (target/debian/observer_*.deb) with
    /// cargo-deb: binaries in /usr/bin, the unit, configuration and
    /// policies as conffiles, man pages (docs/packaging.md).
    Deb(deb::DebArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Setup => setup::ensure_all(),
        Task::Man(args) => man::run(args, &workspace_root()),
        Task::Run { json, args } => {
            // Root first: nothing is installed or built for a run that
            // cannot load its probes.
            require_root("cargo xtask run")?;
            setup::ensure_ebpf_build()?;
            cargo(&["build", "--release", "--package", "observer-daemon"])?;
            let root = workspace_root();
            // The repository's policies (edits reload live), not the
            // installed directory observer.toml names.
            let mut observerd = Command::new(root.join("target/release/observerd"));
            observerd
                .arg("--config")
                .arg(root.join("observer.toml"))
                .arg("--policies-dir")
                .arg(root.join("policies"));
            let own_output = args
                .iter()
                .any(|a| a == "--events-jsonl" || a.starts_with("--events-jsonl="));
            if !own_output {
                let view = if json { "json" } else { "auto" };
                observerd.args(["--events-jsonl", "-", "--events-view", view]);
            }
            let status = observerd
                .args(args)
                .status()
                .context("starting observerd")?;
            if !status.success() {
                bail!("observerd exited with {status}");
            }
            Ok(())
        }
        Task::Test => {
            require_root("cargo xtask test (the integration tests load eBPF programs)")?;
            setup::ensure_test_tools()?;
            cargo(&["fmt", "--all", "--", "--check"])?;
            // The eBPF crate is linted on its own target with its toolchain;
            // it has no host build and no tests.
            let toolchain = format!("+{}", setup::EBPF_TOOLCHAIN);
            rustup_cargo(&[
                &toolchain,
                "clippy",
                "--package",
                "observer-ebpf",
                "--target",
                "bpfel-unknown-none",
                "-Z",
                "build-std=core",
                "--bins",
                "--",
                "-D",
                "warnings",
            ])?;
            let host = ["--workspace", "--exclude", "observer-ebpf"];
            cargo(
                &[
                    &["clippy"],
                    &host[..],
                    &["--all-targets", "--", "-D", "warnings"],
                ]
                .concat(),
            )?;
            // The integration tests (observer-tests) run the binaries a
            // build leaves in target/<profile>: cargo builds no binary of
            // another package for a test.
            cargo(&[&["build"], &host[..], &["--bins"]].concat())?;
            cargo(&[&["test"], &host[..], &["--no-fail-fast"]].concat())
        }
        Task::Bench(args) => {
            require_root("cargo xtask bench")?;
            setup::ensure_ebpf_build()?;
            build_release_binaries()?;
            if args.runs(bench::Section::Receipts) || args.runs(bench::Section::Ctl) {
                bench_receipts::build()?;
            }
            if args.runs(bench::Section::Names) || args.runs(bench::Section::Policy) {
                bench_names::build()?;
            }
            if args.runs(bench::Section::Forward) {
                bench_forward::build()?;
            }
            if args.runs(bench::Section::Fleet) {
                bench_fleet::build()?;
            }
            bench::run(&workspace_root(), &args)
        }
        Task::Fuzz(args) => fuzz::run(&workspace_root(), &args),
        Task::Install(args) => install::run(&workspace_root(), &args),
        Task::Deb(args) => {
            setup::ensure_all()?;
            deb::run(&workspace_root(), &args).map(|_| ())
        }
    }
}

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is in the workspace")
        .to_path_buf()
}

fn require_root(what: &str) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("{what} must run as root");
    }
    Ok(())
}

/// `cargo +toolchain ...` through rustup's proxy, not the running cargo.
fn rustup_cargo(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("cargo")
        .args(args)
        .current_dir(workspace_root())
        .env_remove("RUSTC")
        .env_remove("CARGO")
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed with {status}", args.join(" "));
    }
    Ok(())
}

/// The release binaries: observerd (observer-daemon) and observerctl
/// (observer-ctl, its own package).
pub fn build_release_binaries() -> anyhow::Result<()> {
    cargo(&[
        "build",
        "--release",
        "--package",
        "observer-daemon",
        "--package",
        "observer-ctl",
    ])
}

pub fn cargo(args: &[&str]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args(args)
        .current_dir(workspace_root())
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed with {status}", args.join(" "));
    }
    Ok(())
}
