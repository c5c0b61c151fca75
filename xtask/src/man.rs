//! `cargo xtask man [--out DIR]`: observerctl's man pages (one per
//! subcommand, roff) and shell completions (bash, zsh, fish), generated
//! from the same clap definitions the binary parses.
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::CommandFactory;
use clap_complete::Shell;

#[derive(clap::Args)]
pub struct ManArgs {
    /// Output directory (man pages in DIR/man1, completions in DIR/completions).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

pub fn run(args: ManArgs, root: &Path) -> anyhow::Result<()> {
    let out = args
        .out
        .unwrap_or_else(|| root.join("target/observerctl-docs"));
    generate(&out)?;
    println!(
        "man pages in {}, completions in {}",
        out.join("man1").display(),
        out.join("completions").display()
    );
    Ok(())
}

/// Writes the man pages to `out`/man1 and the completions to
/// `out`/completions (also the Debian package's staging, xtask/src/deb.rs).
pub fn generate(out: &Path) -> anyhow::Result<()> {
    let man = out.join("man1");
    let completions = out.join("completions");
    for dir in [&man, &completions] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let cmd = observer_ctl::cli::Cli::command();
    clap_mangen::generate_to(cmd.clone(), &man)
        .with_context(|| format!("writing man pages to {}", man.display()))?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd.clone(), "observerctl", &completions)
            .with_context(|| format!("writing {shell} completions"))?;
    }
    Ok(())
}
