//! `cargo xtask deb`: the Debian package, built with cargo-deb from
//! `[package.metadata.deb]` in observer-daemon/Cargo.toml. One unit source
//! (systemd/observerd.service, which names what `cargo xtask install`
//! installs: /usr/local/bin) is staged with the packaged path, /usr/bin,
//! together with observerctl's man pages and completions, under
//! target/deb-stage, where the package metadata takes them from.
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

#[derive(clap::Args)]
pub struct DebArgs {
    /// Skip `cargo build --release` (use the existing target/release).
    #[arg(long)]
    pub no_build: bool,
}

/// What the unit says for `cargo xtask install`, and what it says in the
/// package.
pub const INSTALLED_EXEC: &str = "ExecStart=/usr/local/bin/observerd ";
pub const PACKAGED_EXEC: &str = "ExecStart=/usr/bin/observerd ";

/// The staged unit text: the repository's unit with the packaged path.
pub fn packaged_unit(unit: &str) -> anyhow::Result<String> {
    if unit.matches(INSTALLED_EXEC).count() != 1 {
        bail!(
            "systemd/observerd.service: expected exactly one line starting with {INSTALLED_EXEC:?}"
        );
    }
    Ok(unit.replace(INSTALLED_EXEC, PACKAGED_EXEC))
}

/// Stages the unit and the man pages under `root`/target/deb-stage.
fn stage(root: &Path) -> anyhow::Result<PathBuf> {
    let stage = root.join("target/deb-stage");
    if stage.exists() {
        std::fs::remove_dir_all(&stage).with_context(|| format!("clearing {}", stage.display()))?;
    }
    std::fs::create_dir_all(&stage)?;
    let unit_src = root.join("systemd/observerd.service");
    let unit = std::fs::read_to_string(&unit_src)
        .with_context(|| format!("reading {}", unit_src.display()))?;
    // cargo-deb (like dh_installsystemd --name observerd) looks for
    // <package>.<unit>.service in the unit directory.
    std::fs::write(
        stage.join("observer.observerd.service"),
        packaged_unit(&unit)?,
    )?;
    crate::man::generate(&stage)?;
    Ok(stage)
}

/// Builds the package; returns the path of the .deb.
pub fn run(root: &Path, args: &DebArgs) -> anyhow::Result<PathBuf> {
    crate::setup::ensure_cargo_deb()?;
    if !args.no_build {
        crate::build_release_binaries()?;
    }
    stage(root)?;
    let out = root.join("target/debian");
    if out.exists() {
        // Only this build's package is left for `apt install ./observer_*.deb`.
        std::fs::remove_dir_all(&out).with_context(|| format!("clearing {}", out.display()))?;
    }
    let out_arg = format!("{}/", out.display());
    crate::cargo(&[
        "deb",
        "--package",
        "observer-daemon",
        "--no-build",
        "--output",
        &out_arg,
    ])?;
    let debs: Vec<PathBuf> = std::fs::read_dir(&out)
        .with_context(|| format!("reading {}", out.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    match &debs[..] {
        [deb] => {
            println!("{}", deb.display());
            Ok(deb.clone())
        }
        _ => bail!("expected one .deb in {}, found {debs:?}", out.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_packaged_unit_differs_only_in_the_executable_path() {
        let unit =
            std::fs::read_to_string(crate::workspace_root().join("systemd/observerd.service"))
                .unwrap();
        let packaged = packaged_unit(&unit).unwrap();
        let diff: Vec<(&str, &str)> = unit
            .lines()
            .zip(packaged.lines())
            .filter(|(a, b)| a != b)
            .collect();
        assert_eq!(
            diff,
            [(
                "ExecStart=/usr/local/bin/observerd --config /etc/observer/observer.toml",
                "ExecStart=/usr/bin/observerd --config /etc/observer/observer.toml"
            )]
        );
        assert!(packaged_unit("[Service]\nExecStart=/opt/x\n").is_err());
    }
}
