//! `cargo xtask fuzz [--seconds N] [TARGET...]`: runs the cargo-fuzz
//! targets of `fuzz/` (the DNS and ClientHello parsers) one after the
//! other, each for N seconds of libFuzzer, starting from the checked-in
//! seeds. New inputs go to `fuzz/corpus/<target>` (not committed); a crash
//! stops the run with libFuzzer's report and the input in
//! `fuzz/artifacts/<target>/`, to be added as a fixture test.
use std::process::Command;

use anyhow::{bail, Context as _};

/// cargo-fuzz, pinned like bpf-linker.
pub const CARGO_FUZZ_VERSION: &str = "0.13.1";
pub const TARGETS: &[&str] = &["dns", "sni"];

#[derive(clap::Args)]
pub struct FuzzArgs {
    /// Seconds of fuzzing per target.
    #[arg(long, default_value_t = 120)]
    seconds: u32,
    /// Targets to run (default: all).
    targets: Vec<String>,
}

fn ensure_cargo_fuzz() -> anyhow::Result<()> {
    let current = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if current.contains(CARGO_FUZZ_VERSION) {
        return Ok(());
    }
    let status = Command::new("cargo")
        .args(["install", "cargo-fuzz", "--version", CARGO_FUZZ_VERSION])
        .args(["--locked", "--force"])
        .status()
        .context("running cargo install cargo-fuzz")?;
    if !status.success() {
        bail!("cargo install cargo-fuzz failed with {status}");
    }
    Ok(())
}

pub fn run(root: &std::path::Path, args: &FuzzArgs) -> anyhow::Result<()> {
    ensure_cargo_fuzz()?;
    let targets: Vec<&str> = if args.targets.is_empty() {
        TARGETS.to_vec()
    } else {
        args.targets.iter().map(String::as_str).collect()
    };
    let fuzz = root.join("fuzz");
    for t in &targets {
        if !TARGETS.contains(t) {
            bail!(
                "unknown fuzz target `{t}` (targets: {})",
                TARGETS.join(", ")
            );
        }
        let corpus = fuzz.join("corpus").join(t);
        std::fs::create_dir_all(&corpus)
            .with_context(|| format!("creating {}", corpus.display()))?;
        let status = Command::new("cargo")
            .arg(format!("+{}", crate::setup::EBPF_TOOLCHAIN))
            .args(["fuzz", "run", t])
            .arg(&corpus)
            .arg(fuzz.join("seeds").join(t))
            .arg("--")
            .arg(format!("-max_total_time={}", args.seconds))
            .current_dir(&fuzz)
            .env_remove("RUSTC")
            .env_remove("CARGO")
            .status()
            .context("running cargo fuzz")?;
        if !status.success() {
            bail!("fuzz target `{t}` failed ({status}): see fuzz/artifacts/{t}/");
        }
        println!("fuzz: {t}: {} s without a crash", args.seconds);
    }
    Ok(())
}
