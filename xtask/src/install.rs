//! `cargo xtask install`: the release binary, the systemd unit, the default
//! configuration and policies, and the `observer` group. Existing
//! configuration and policy files are kept (an upgrade never overwrites
//! what an administrator edited); binaries and the unit are replaced.
use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _};

#[derive(clap::Args)]
pub struct InstallArgs {
    /// Stage everything under this directory instead of / (packaging,
    /// tests); the group is then not created.
    #[arg(long)]
    pub destdir: Option<PathBuf>,
    /// Skip `cargo build --release` (use the existing target/release).
    #[arg(long)]
    pub no_build: bool,
}

/// What goes where: (source relative to the workspace, destination, mode).
const BINARIES: &[(&str, &str, u32)] = &[
    ("target/release/observerd", "usr/local/bin/observerd", 0o755),
    (
        "target/release/observerctl",
        "usr/local/bin/observerctl",
        0o755,
    ),
];
const UNIT: (&str, &str, u32) = (
    "systemd/observerd.service",
    "etc/systemd/system/observerd.service",
    0o644,
);
const CONFIG: (&str, &str, u32) = ("observer.toml", "etc/observer/observer.toml", 0o640);
const POLICY_DIR: (&str, &str) = ("policies", "etc/observer/policies");

pub const GROUP: &str = "observer";

fn copy(src: &Path, dst: &Path, mode: u32, replace: bool) -> anyhow::Result<bool> {
    if !replace && dst.exists() {
        println!("kept     {}", dst.display());
        return Ok(false);
    }
    if let Some(dir) = dst.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // Copy to a temporary name and rename: a running observerd keeps its
    // old executable, and no reader sees a half-written file.
    let tmp = dst.with_extension("xtask-new");
    std::fs::copy(src, &tmp)
        .with_context(|| format!("copying {} to {}", src.display(), tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(&tmp, dst).with_context(|| format!("installing {}", dst.display()))?;
    println!("installed {} ({mode:o})", dst.display());
    Ok(true)
}

fn ensure_group() -> anyhow::Result<()> {
    let exists = Command::new("getent")
        .args(["group", GROUP])
        .output()
        .context("running getent")?
        .status
        .success();
    if exists {
        return Ok(());
    }
    let status = Command::new("groupadd")
        .args(["--system", GROUP])
        .status()
        .context("running groupadd")?;
    if !status.success() {
        bail!("groupadd --system {GROUP} failed with {status}");
    }
    println!("created group {GROUP}");
    Ok(())
}

/// Installs from `root` (the workspace) into `dest` ("/" for the host).
pub fn install_into(root: &Path, dest: &Path) -> anyhow::Result<()> {
    for (src, dst, mode) in BINARIES.iter().chain([&UNIT]) {
        copy(&root.join(src), &dest.join(dst), *mode, true)?;
    }
    copy(&root.join(CONFIG.0), &dest.join(CONFIG.1), CONFIG.2, false)?;
    install_policies(&root.join(POLICY_DIR.0), &dest.join(POLICY_DIR.1))?;
    // The configuration names the master seed and may name tokens: root
    // only, readable by the observer group (observerctl users).
    std::fs::set_permissions(
        dest.join("etc/observer"),
        std::fs::Permissions::from_mode(0o750),
    )?;
    Ok(())
}

/// Copies the policy tree (agents.toml, rules.toml, indicators/...),
/// keeping files that are already installed: they may have been edited.
fn install_policies(src: &Path, dst: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dst).with_context(|| format!("creating {}", dst.display()))?;
    for entry in std::fs::read_dir(src).with_context(|| format!("{}", src.display()))? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            install_policies(&entry.path(), &dst.join(entry.file_name()))?;
        } else if kind.is_file() {
            copy(&entry.path(), &dst.join(entry.file_name()), 0o640, false)?;
        }
    }
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(0o750))?;
    Ok(())
}

/// What members of the observer group must read under `dest`: the
/// configuration directory (to reach its files), observer.toml, and the
/// policy tree's directories and regular files (`observerctl policy`).
/// Links are never followed; other files (keys, tokens) are left out.
pub fn group_readable(dest: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut paths = vec![dest.join("etc/observer"), dest.join(CONFIG.1)];
    let mut dirs = vec![dest.join(POLICY_DIR.1)];
    while let Some(dir) = dirs.pop() {
        paths.push(dir.clone());
        for entry in std::fs::read_dir(&dir).with_context(|| format!("{}", dir.display()))? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                dirs.push(entry.path());
            } else if kind.is_file() {
                paths.push(entry.path());
            }
        }
    }
    Ok(paths)
}

pub fn run(root: &Path, args: &InstallArgs) -> anyhow::Result<()> {
    // Root is checked before anything is built or installed.
    if args.destdir.is_none() {
        crate::require_root("cargo xtask install")?;
    }
    if !args.no_build {
        crate::setup::ensure_ebpf_build()?;
        crate::build_release_binaries()?;
    }
    match &args.destdir {
        Some(dest) => install_into(root, dest),
        None => {
            ensure_group()?;
            install_into(root, Path::new("/"))?;
            // The group on what observerctl users read, and nothing else:
            // keys or tokens an administrator puts in /etc/observer stay
            // root's alone (no chgrp -R).
            let status = Command::new("chgrp")
                .args(["--no-dereference", GROUP])
                .args(group_readable(Path::new("/"))?)
                .status()
                .context("running chgrp")?;
            if !status.success() {
                bail!("chgrp {GROUP} on the configuration failed with {status}");
            }
            let _ = Command::new("systemctl").arg("daemon-reload").status();
            println!("now: systemctl enable --now observerd");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_every_file_and_keeps_edited_config() {
        let root = crate::workspace_root();
        let dest = std::env::temp_dir().join(format!("xtask-install-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dest);
        // A stand-in binary where the release build would be: the test
        // checks placement and modes, not the build.
        let fake_root = dest.join("src");
        for (src, ..) in BINARIES {
            let p = fake_root.join(src);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, b"#!/bin/sh\n").unwrap();
        }
        for f in [UNIT.0, CONFIG.0] {
            std::fs::create_dir_all(fake_root.join(f).parent().unwrap()).unwrap();
            std::fs::copy(root.join(f), fake_root.join(f)).unwrap();
        }
        install_policies(&root.join("policies"), &fake_root.join("policies")).unwrap();
        let stage = dest.join("stage");
        install_into(&fake_root, &stage).unwrap();
        let mode = |p: &str| {
            std::fs::metadata(stage.join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("usr/local/bin/observerd"), 0o755);
        assert_eq!(mode("etc/systemd/system/observerd.service"), 0o644);
        assert_eq!(mode("etc/observer/observer.toml"), 0o640);
        assert_eq!(mode("etc/observer"), 0o750);
        assert_eq!(
            std::fs::read(stage.join("etc/systemd/system/observerd.service")).unwrap(),
            std::fs::read(root.join(UNIT.0)).unwrap()
        );
        assert!(stage.join("etc/observer/policies/README.md").exists());
        // The whole policy tree, indicator lists included.
        assert_eq!(
            std::fs::read(stage.join("etc/observer/policies/indicators/ai_endpoints.toml"))
                .unwrap(),
            std::fs::read(root.join("policies/indicators/ai_endpoints.toml")).unwrap()
        );
        assert_eq!(mode("etc/observer/policies/indicators"), 0o750);
        assert_eq!(mode("etc/observer/policies/rules.toml"), 0o640);
        // The group goes on the configuration and the policies only: a
        // key put beside them stays out of the list.
        std::fs::write(stage.join("etc/observer/sink.token"), "secret").unwrap();
        let grouped = group_readable(&stage).unwrap();
        assert!(grouped.contains(&stage.join("etc/observer")));
        assert!(grouped.contains(&stage.join("etc/observer/observer.toml")));
        assert!(grouped.contains(&stage.join("etc/observer/policies/indicators/ai_endpoints.toml")));
        assert!(grouped.contains(&stage.join("etc/observer/policies/indicators")));
        assert!(!grouped.contains(&stage.join("etc/observer/sink.token")));
        assert!(grouped.iter().all(|p| !p.ends_with("sink.token")));
        // An edited configuration survives a second install.
        std::fs::write(stage.join("etc/observer/observer.toml"), "# edited\n").unwrap();
        install_into(&fake_root, &stage).unwrap();
        assert_eq!(
            std::fs::read_to_string(stage.join("etc/observer/observer.toml")).unwrap(),
            "# edited\n"
        );
        std::fs::remove_dir_all(&dest).unwrap();
    }

    /// `cargo xtask install --destdir`, then the staged observerd started
    /// as the unit starts it, with the staged configuration unedited: the
    /// unregistered curl to an AI API is a finding. The daemon runs in a
    /// private mount namespace where the staged /etc/observer is bound on
    /// /etc/observer (over an overlay of the host's /etc, never written),
    /// /var/lib is the test's directory and /run a tmpfs, so the
    /// configuration's real paths are used without touching the host's.
    #[test]
    fn a_destdir_install_finds_an_unregistered_curl_with_no_edit() {
        use crate::installed_daemon::*;
        let root = crate::workspace_root();
        let dest = root.join("target/xtask-install-run");
        let _ = std::fs::remove_dir_all(&dest);
        let stage = dest.join("stage");
        run(
            &root,
            &InstallArgs {
                destdir: Some(stage.clone()),
                no_build: false,
            },
        )
        .unwrap();
        // The configuration is installed byte for byte.
        assert_eq!(
            std::fs::read(stage.join(CONFIG.1)).unwrap(),
            std::fs::read(root.join(CONFIG.0)).unwrap()
        );
        let var_lib = dest.join("var-lib");
        std::fs::create_dir(&var_lib).unwrap();
        let script = format!(
            "mount -t tmpfs tmpfs /run && mkdir /run/etc-upper /run/etc-work && \
             mount -t overlay overlay -o lowerdir=/etc,upperdir=/run/etc-upper,workdir=/run/etc-work /etc && \
             rm -rf /etc/observer && mkdir /etc/observer && \
             mount --bind {stage}/etc/observer /etc/observer && \
             mount --bind {var_lib} /var/lib && \
             exec {stage}/usr/local/bin/observerd --config /etc/observer/observer.toml",
            stage = stage.display(),
            var_lib = var_lib.display()
        );
        let mut command = Command::new("unshare");
        command.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
        let daemon = Running::spawn(command, &dest.join("observerd.stderr"));
        let store = var_lib.join("observer/observer.db");
        let observerctl = stage.join("usr/local/bin/observerctl");
        let finding = unregistered_curl_is_found(&daemon, || {
            findings_via(&observerctl, &["--db", store.to_str().unwrap()])
        });
        assert_finding_and_start(&finding, &daemon, "/etc/observer/policies");
        let status = daemon.stop();
        assert!(status.success(), "observerd exited with {status}");
        std::fs::remove_dir_all(&dest).unwrap();
    }
}
