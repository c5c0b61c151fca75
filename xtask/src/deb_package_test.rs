//! The Debian package: `cargo xtask deb` builds it (release build reused),
//! its file list, modes, conffiles, Depends and maintainer scripts are
//! exactly what docs/packaging.md says, and it really installs on this
//! machine with apt-get, verifies, runs, removes and purges cleanly.
//!
//! The test installs into / and refuses to run (fails, touching nothing)
//! if any observer installation is present, so it never destroys a
//! developer's `cargo xtask install` or configuration.
use std::{
    collections::BTreeMap,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    process::{Command, Output},
};

fn root() -> PathBuf {
    crate::workspace_root()
}

fn run(cmd: &str, args: &[&str]) -> Output {
    let out = Command::new(cmd)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What an installed observer leaves on a machine.
const FOOTPRINT: &[&str] = &[
    "/etc/observer",
    "/var/lib/observer",
    "/var/log/observer",
    "/usr/bin/observerd",
    "/usr/bin/observerctl",
    "/usr/local/bin/observerd",
    "/usr/lib/systemd/system/observerd.service",
    "/etc/systemd/system/observerd.service",
    "/etc/systemd/system/multi-user.target.wants/observerd.service",
];

fn package_installed() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", "observer"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("installed"))
}

fn group_exists() -> bool {
    Command::new("getent")
        .args(["group", "observer"])
        .output()
        .unwrap()
        .status
        .success()
}

/// Purges the package when dropped (a failing test leaves nothing behind)
/// and removes the `observer` group if the test created it.
struct Installed {
    group_existed: bool,
    purged: bool,
}

impl Installed {
    fn install(deb: &Path) -> Installed {
        let present: Vec<&&str> = FOOTPRINT
            .iter()
            .filter(|p| Path::new(p).symlink_metadata().is_ok())
            .collect();
        assert!(
            present.is_empty() && !package_installed(),
            "REFUSING to install the observer package on this machine: an observer \
             installation is present ({present:?}, package installed: {}). This test \
             installs into / and purges; it will not overwrite or delete an existing \
             configuration or store. Remove it (or run the test on another machine).",
            package_installed()
        );
        let guard = Installed {
            group_existed: group_exists(),
            purged: false,
        };
        let arg = deb.to_str().unwrap();
        run(
            "apt-get",
            &[
                "-o",
                "DPkg::Lock::Timeout=300",
                "install",
                "-y",
                "-q",
                "--no-install-recommends",
                arg,
            ],
        );
        guard
    }

    fn apt(&mut self, action: &str) {
        run(
            "apt-get",
            &[
                "-o",
                "DPkg::Lock::Timeout=300",
                action,
                "-y",
                "-q",
                "observer",
            ],
        );
        if action == "purge" {
            self.purged = true;
        }
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        if !self.purged {
            let _ = Command::new("apt-get")
                .args([
                    "-o",
                    "DPkg::Lock::Timeout=300",
                    "purge",
                    "-y",
                    "-q",
                    "observer",
                ])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status();
        }
        if !self.group_existed {
            let _ = Command::new("groupdel").arg("observer").status();
        }
    }
}

/// Regular files below `dir`, relative to it.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            out.extend(
                files_under(&e.path())
                    .into_iter()
                    .map(|p| Path::new(&e.file_name()).join(p)),
            );
        } else {
            out.push(PathBuf::from(e.file_name()));
        }
    }
    out
}

/// The files the package must hold, with their modes.
fn expected_files() -> BTreeMap<String, &'static str> {
    let root = root();
    let mut m = BTreeMap::new();
    let exe = "-rwxr-xr-x";
    let conf = "-rw-r-----";
    let doc = "-rw-r--r--";
    m.insert("/usr/bin/observerd".into(), exe);
    m.insert("/usr/bin/observerctl".into(), exe);
    m.insert("/etc/observer/observer.toml".into(), conf);
    for p in files_under(&root.join("policies")) {
        m.insert(format!("/etc/observer/policies/{}", p.display()), conf);
    }
    m.insert("/usr/lib/systemd/system/observerd.service".into(), doc);
    let man = files_under(&root.join("target/deb-stage/man1"));
    assert!(
        man.contains(&PathBuf::from("observerctl.1")),
        "staged man pages: {man:?}"
    );
    for p in man {
        // cargo-deb gzips man pages, as dh_compress does.
        m.insert(format!("/usr/share/man/man1/{}.gz", p.display()), doc);
    }
    m.insert(
        "/usr/share/bash-completion/completions/observerctl".into(),
        doc,
    );
    m.insert("/usr/share/observer/clickhouse/schema.sql".into(), doc);
    m.insert("/usr/share/doc/observer/README.md".into(), doc);
    m.insert("/usr/share/doc/observer/copyright".into(), doc);
    for p in files_under(&root.join("docs")) {
        if p.extension().is_some_and(|e| e == "md") {
            m.insert(format!("/usr/share/doc/observer/{}", p.display()), doc);
        }
    }
    m
}

fn build_deb() -> PathBuf {
    // What `cargo xtask deb` does: the release binaries (a no-op when
    // target/release is current), the staged unit and man pages, cargo deb.
    let path = crate::deb::run(&root(), &crate::deb::DebArgs { no_build: false }).unwrap();
    assert_eq!(
        path.file_name().unwrap().to_str().unwrap(),
        format!("observer_{}-1_amd64.deb", env!("CARGO_PKG_VERSION"))
    );
    path
}

fn mode_of(path: &str) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .permissions()
        .mode()
        & 0o7777
}

fn gid_of_group() -> u32 {
    let out = run("getent", &["group", "observer"]);
    stdout(&out).split(':').nth(2).unwrap().parse().unwrap()
}

fn observerd_running() -> bool {
    std::fs::read_dir("/proc").unwrap().any(|e| {
        std::fs::read_link(e.unwrap().path().join("exe"))
            .is_ok_and(|exe| exe == Path::new("/usr/bin/observerd"))
    })
}

#[test]
fn the_debian_package_installs_runs_and_purges() {
    let deb = build_deb();
    let deb_arg = deb.to_str().unwrap();

    // Control fields.
    let info = stdout(&run("dpkg-deb", &["--info", deb_arg]));
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.trim_start().strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} in\n{info}"))
            .to_string()
    };
    assert_eq!(field("Package"), "observer");
    assert_eq!(field("Version"), format!("{}-1", env!("CARGO_PKG_VERSION")));
    assert_eq!(field("Architecture"), "amd64");
    assert_eq!(field("Section"), "admin");
    // Depends: our two plus what dpkg-shlibdeps computes from the binaries'
    // symbols ($auto). That part follows the build (libgcc-s1 appears when
    // the unwinder's symbols are referenced), so only its shape is fixed:
    // libc6 with a version floor, and nothing but shared-library packages.
    let depends = field("Depends");
    let depends: Vec<&str> = depends.split(", ").collect();
    for ours in ["adduser", "init-system-helpers"] {
        assert!(depends.contains(&ours), "{ours} missing: {depends:?}");
    }
    assert!(
        depends.iter().any(|d| d.starts_with("libc6 (>= 2.")),
        "no libc6 floor: {depends:?}"
    );
    assert!(
        depends
            .iter()
            .all(|d| ["adduser", "init-system-helpers"].contains(d) || d.starts_with("lib")),
        "an unexpected dependency: {depends:?}"
    );
    for script in ["conffiles", "postinst", "prerm", "postrm"] {
        assert!(
            info.lines()
                .any(|l| l.contains(" bytes,") && l.split_whitespace().any(|w| w == script)),
            "{script} missing from\n{info}"
        );
    }

    // Maintainer scripts and conffiles.
    let control = root().join("target/deb-control");
    let _ = std::fs::remove_dir_all(&control);
    run(
        "dpkg-deb",
        &["--control", deb_arg, control.to_str().unwrap()],
    );
    let read = |f: &str| std::fs::read_to_string(control.join(f)).unwrap();
    let expected = expected_files();
    let mut conffiles: Vec<String> = read("conffiles").lines().map(str::to_string).collect();
    conffiles.sort();
    let want: Vec<String> = expected
        .keys()
        .filter(|p| p.starts_with("/etc/"))
        .cloned()
        .collect();
    assert_eq!(conffiles, want);
    let postinst = read("postinst");
    assert!(
        postinst.contains("addgroup --system --quiet observer"),
        "{postinst}"
    );
    assert!(
        postinst.contains("deb-systemd-helper enable 'observerd.service'")
            || postinst.contains("deb-systemd-helper enable observerd.service"),
        "{postinst}"
    );
    assert!(postinst.contains("daemon-reload"), "{postinst}");
    // Enabled, never started by the package (only restarted on upgrade if
    // it was running).
    assert!(!postinst.contains(" start "), "{postinst}");
    assert!(postinst.contains("try-restart"), "{postinst}");
    let prerm = read("prerm");
    assert!(prerm.contains("deb-systemd-invoke stop"), "{prerm}");
    assert!(prerm.contains("observerd.service"), "{prerm}");
    let postrm = read("postrm");
    assert!(
        postrm.contains("rm -rf /var/lib/observer /var/log/observer"),
        "{postrm}"
    );
    assert!(postrm.contains("deb-systemd-helper purge"), "{postrm}");

    // Files and modes: exactly the expected files, all root-owned, every
    // directory 0755.
    let contents = stdout(&run("dpkg-deb", &["--contents", deb_arg]));
    let mut files = BTreeMap::new();
    for line in contents.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f[1], "0/0", "{line}");
        let path = f[5].trim_start_matches('.').to_string();
        if f[0].starts_with('d') {
            assert_eq!(f[0], "drwxr-xr-x", "{line}");
        } else {
            files.insert(path, f[0]);
        }
    }
    let expected_modes: BTreeMap<String, &str> = expected.clone();
    assert_eq!(files, expected_modes);

    let mut installed = Installed::install(&deb);

    // The packaged unit runs the packaged binary and passes systemd's check.
    let unit_path = "/usr/lib/systemd/system/observerd.service";
    let unit = std::fs::read_to_string(unit_path).unwrap();
    assert!(
        unit.lines()
            .any(|l| l == "ExecStart=/usr/bin/observerd --config /etc/observer/observer.toml"),
        "{unit}"
    );
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no", unit_path])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let ours: Vec<_> = stderr
        .lines()
        .filter(|l| l.contains("observerd.service"))
        .collect();
    assert!(ours.is_empty(), "{ours:#?}");
    // Enabled (deb-systemd-helper's symlink), not started.
    assert_eq!(
        std::fs::read_link("/etc/systemd/system/multi-user.target.wants/observerd.service")
            .unwrap(),
        Path::new("/lib/systemd/system/observerd.service")
    );
    assert!(!observerd_running());

    // Group and permissions.
    assert!(group_exists());
    let gid = gid_of_group();
    for dir in [
        "/etc/observer",
        "/etc/observer/policies",
        "/etc/observer/policies/indicators",
    ] {
        assert_eq!(mode_of(dir), 0o750, "{dir}");
        assert_eq!(std::fs::metadata(dir).unwrap().gid(), gid, "{dir}");
    }
    for (path, mode) in &expected {
        let want = match *mode {
            "-rwxr-xr-x" => 0o755,
            "-rw-r-----" => 0o640,
            _ => 0o644,
        };
        assert_eq!(mode_of(path), want, "{path}");
        let meta = std::fs::metadata(path).unwrap();
        assert_eq!(meta.uid(), 0, "{path}");
        let want_gid = if path.starts_with("/etc/observer") {
            gid
        } else {
            0
        };
        assert_eq!(meta.gid(), want_gid, "{path}");
    }
    assert_eq!(
        std::fs::read("/etc/observer/observer.toml").unwrap(),
        std::fs::read(root().join("observer.toml")).unwrap()
    );

    // The binaries run.
    let version = stdout(&run("/usr/bin/observerctl", &["--version"]));
    assert_eq!(
        version.trim(),
        format!("observerctl {}", env!("CARGO_PKG_VERSION"))
    );
    let check = stdout(&run(
        "/usr/bin/observerd",
        &[
            "--config",
            "/etc/observer/observer.toml",
            "--check-policies",
            "/etc/observer/policies",
        ],
    ));
    assert!(check.starts_with("policies ok: "), "{check}");
    // observerctl with no --config reads the installed configuration, which
    // points at the installed policies: the set the daemon will start with
    // (no daemon runs, so observerctl loads it as the daemon would).
    let show = stdout(&run(
        "/usr/bin/observerctl",
        &[
            "--socket",
            "/nonexistent/observer.sock",
            "policy",
            "show",
            "--json",
        ],
    ));
    let show: serde_json::Value = serde_json::from_str(&show).unwrap();
    assert_eq!(show["source"], "policies_dir", "{show}");
    assert_eq!(show["policies_dir"], "/etc/observer/policies", "{show}");
    assert!(
        show["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == "ai-api-egress-unregistered"),
        "{show}"
    );

    // The installed daemon, started as the unit starts it with the
    // installed configuration unedited: shadow-AI detection is on, and the
    // installed observerctl finds the finding with no flags (it reads
    // /etc/observer/observer.toml for the store).
    {
        use crate::installed_daemon::*;
        let run_dir_existed = Path::new("/run/observer").exists();
        let mut command = Command::new("/usr/bin/observerd");
        command.args(["--config", "/etc/observer/observer.toml"]);
        let daemon = Running::spawn(command, &root().join("target/deb-observerd.stderr"));
        let finding = unregistered_curl_is_found(&daemon, || {
            findings_via(Path::new("/usr/bin/observerctl"), &[])
        });
        assert_finding_and_start(&finding, &daemon, "/etc/observer/policies");
        let status = daemon.stop();
        assert!(status.success(), "observerd exited with {status}");
        if !run_dir_existed {
            let _ = std::fs::remove_dir_all("/run/observer");
        }
    }

    // remove keeps the configuration and the state; purge removes both.
    std::fs::create_dir_all("/var/lib/observer").unwrap();
    std::fs::write("/var/lib/observer/observer.db", b"state").unwrap();
    installed.apt("remove");
    assert!(!Path::new("/usr/bin/observerd").exists());
    assert!(!Path::new(unit_path).exists());
    assert!(Path::new("/etc/observer/observer.toml").exists());
    assert!(Path::new("/var/lib/observer/observer.db").exists());
    installed.apt("purge");
    let left: Vec<&&str> = FOOTPRINT
        .iter()
        .filter(|p| Path::new(p).symlink_metadata().is_ok())
        .collect();
    assert!(left.is_empty(), "left after purge: {left:?}");
    assert!(!package_installed());
    // The group stays (Debian does not delete system groups).
    assert!(group_exists());
}
