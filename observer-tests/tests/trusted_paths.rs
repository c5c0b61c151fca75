//! Paths observerd trusts must be root's and closed to others, and are
//! opened without following links (issue #16): a master seed or a policy
//! directory owned by another user stops the start, a link planted at a
//! sink cursor's temporary name is not written through, and observerctl's
//! output files are 0600 unless `--mode` widens them.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]

use std::{
    os::unix::fs::{symlink, MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use observer_testkit::{observerctl, observerd, shipped_policies, Daemon, StateDir, WAIT};

fn nobody() -> u32 {
    nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("a nobody user")
        .uid
        .as_raw()
}

fn chown_nobody(path: &Path) {
    std::os::unix::fs::chown(path, Some(nobody()), None).unwrap();
}

/// Runs observerd on `config` in `dir` until it exits (it must refuse to
/// start); its exit status and stderr.
fn refused_start(dir: &Path, config: &str) -> (ExitStatus, String) {
    let config_path = dir.join("observer.toml");
    std::fs::write(&config_path, config.replace("@DIR@", dir.to_str().unwrap())).unwrap();
    let stderr_path = dir.join("stderr.log");
    let mut child = Command::new(observerd())
        .arg("--config")
        .arg(&config_path)
        .arg("--events-jsonl")
        .arg(dir.join("events.jsonl"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    // A deadline only so that a daemon that wrongly starts cannot hang
    // the suite; the assertion is on the exit and the message.
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "observerd did not refuse to start: {}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, std::fs::read_to_string(&stderr_path).unwrap())
}

fn receipts_config() -> String {
    "[receipts]\nstore = \"@DIR@/observer.db\"\nmaster_seed = \"@DIR@/master.seed\"\n\
     [control]\nsocket = \"@DIR@/observer.sock\"\n"
        .to_string()
}

#[test]
fn a_master_seed_owned_by_another_user_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("master.seed");
    std::fs::write(&seed, [7u8; 32]).unwrap();
    std::fs::set_permissions(&seed, std::fs::Permissions::from_mode(0o600)).unwrap();
    chown_nobody(&seed);
    let (status, stderr) = refused_start(dir.path(), &receipts_config());
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "master seed: {}: is owned by uid {} (nobody); it must be owned by root",
            seed.display(),
            nobody()
        )),
        "{stderr}"
    );
    // Refused, not replaced.
    assert_eq!(std::fs::read(&seed).unwrap(), [7u8; 32]);
    assert_eq!(std::fs::metadata(&seed).unwrap().uid(), nobody());
}

/// A copy of the shipped policies in `dir/policies`.
fn copy_policies(dir: &Path) -> PathBuf {
    let shipped = shipped_policies();
    let policies = dir.join("policies");
    std::fs::create_dir_all(policies.join("indicators")).unwrap();
    for entry in ["agents.toml", "rules.toml"]
        .into_iter()
        .map(PathBuf::from)
        .chain(
            std::fs::read_dir(shipped.join("indicators"))
                .unwrap()
                .map(|e| Path::new("indicators").join(e.unwrap().file_name())),
        )
    {
        std::fs::copy(shipped.join(&entry), policies.join(&entry)).unwrap();
        std::fs::set_permissions(
            policies.join(&entry),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
    }
    policies
}

#[test]
fn a_policy_directory_owned_by_another_user_or_a_group_writable_policy_file_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let policies = copy_policies(dir.path());
    let config = format!("policies_dir = \"@DIR@/policies\"\n{}", receipts_config());

    chown_nobody(&policies);
    let (status, stderr) = refused_start(dir.path(), &config);
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}: is owned by uid {} (nobody)",
            policies.display(),
            nobody()
        )),
        "{stderr}"
    );

    std::os::unix::fs::chown(&policies, Some(0), None).unwrap();
    let agents = policies.join("agents.toml");
    std::fs::set_permissions(&agents, std::fs::Permissions::from_mode(0o664)).unwrap();
    let (status, stderr) = refused_start(dir.path(), &config);
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}: has mode 0664: its group or others may write to it",
            agents.display()
        )),
        "{stderr}"
    );
}

#[test]
fn a_link_planted_at_the_cursor_temporary_name_is_not_written_through() {
    let dir = tempfile::tempdir().unwrap();
    let sinks = dir.path().join("sinks");
    std::fs::create_dir(&sinks).unwrap();
    let victim = dir.path().join("victim");
    let original = b"a root-owned file the daemon must not truncate\n";
    std::fs::write(&victim, original).unwrap();
    let planted = sinks.join("out.cursor.tmp");
    symlink(&victim, &planted).unwrap();

    let d = Daemon::start_in(
        StateDir::Shared(dir.path().to_owned()),
        "[[sinks]]\nname = \"out\"\ntype = \"file\"\n[sinks.file]\npath = \"@DIR@/forwarded.jsonl\"\n",
    );
    // The sink delivers the start's own receipts, then stores its cursor:
    // the planted link is refused (logged, counted) instead of followed.
    let deadline = Instant::now() + WAIT;
    while !d.stderr_text().contains("is a symbolic link") {
        assert!(Instant::now() < deadline, "{}", d.stderr_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    let stderr = d.stderr_text();
    assert!(
        stderr.contains(&format!(
            "cursor: {}: is a symbolic link",
            planted.display()
        )),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&victim).unwrap(), original);
    assert!(std::fs::symlink_metadata(&planted).unwrap().is_symlink());
    drop(d);
    assert_eq!(std::fs::read(&victim).unwrap(), original);
}

#[test]
fn observerctl_export_writes_0600_and_mode_widens_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("observer.db");
    drop(observer_daemon::receipt::store::Store::open(&db).unwrap());
    let export = |out: &Path, extra: &[&str]| {
        let output = Command::new(observerctl())
            .arg("--db")
            .arg(&db)
            .args(["export", "--format", "jsonl", "--out"])
            .arg(out)
            .args(extra)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o7777;

    let private = dir.path().join("private.jsonl");
    export(&private, &[]);
    assert_eq!(mode(&private), 0o600);

    let shared = dir.path().join("shared.jsonl");
    export(&shared, &["--mode", "0640"]);
    assert_eq!(mode(&shared), 0o640);

    // A link planted at the temporary name is refused, its target kept.
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "keep").unwrap();
    let out = dir.path().join("again.jsonl");
    symlink(&victim, dir.path().join("again.jsonl.tmp")).unwrap();
    let output = Command::new(observerctl())
        .arg("--db")
        .arg(&db)
        .args(["export", "--format", "jsonl", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is a symbolic link"), "{stderr}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
    assert!(!out.exists());
}
