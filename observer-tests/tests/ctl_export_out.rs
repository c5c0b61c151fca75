//! `observerctl export --out`: the file is written whole and atomically,
//! and progress bars appear only on a terminal.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]
mod ctl_export_kit;

use std::{
    path::Path,
    process::{Command, Stdio},
};

use ctl_export_kit::*;
use observer_testkit::*;
use serde_json::Value;

#[test]
fn export_out_is_written_whole_and_atomically() {
    let f = fixture();
    let db = f.db();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export.ocsf");
    let r = ctl(
        CtlTarget::Db(&db),
        &[
            "--json",
            "export",
            "--format",
            "ocsf",
            "--out",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let summary: Value = serde_json::from_str(&r.stdout).unwrap();
    let stdout = ctl(CtlTarget::Db(&db), &["export", "--format", "ocsf"]).stdout;
    assert_eq!(std::fs::read_to_string(&file).unwrap(), stdout);
    assert_eq!(summary["format"], "ocsf");
    assert_eq!(summary["receipts"], stored_receipts(&db).len());
    assert_eq!(summary["checkpoints"], checkpoint_sizes(&db).len());
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        vec!["export.ocsf".to_string()],
        "no temporary file left"
    );
    // An existing file is replaced whole.
    std::fs::write(&file, "old").unwrap();
    let r = ctl(
        CtlTarget::Db(&db),
        &[
            "export",
            "--format",
            "ocsf",
            "--agent",
            "nobody",
            "--out",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "");
    // A directory that does not exist: a clear error, exit 2, nothing written.
    let missing = dir.path().join("no/such/dir/out.jsonl");
    let r = ctl(
        CtlTarget::Db(&db),
        &[
            "--json",
            "export",
            "--format",
            "jsonl",
            "--out",
            missing.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 2);
    let err: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(err["error"]["kind"], "io", "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("out.jsonl.tmp"),
        "{err}"
    );
    assert!(!missing.exists());
    // A bad format is a usage error.
    let r = ctl(CtlTarget::Db(&db), &["export", "--format", "xml"]);
    assert_eq!(r.code, 2);
}

/// Runs observerctl under `script`, which gives it a terminal: the
/// progress bar appears on the terminal, the records still go to the file.
fn on_a_terminal(db: &Path, args: &str) -> String {
    let cmd = format!("{} --db {} {args}", observerctl(), db.display());
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn progress_bars_only_on_a_terminal() {
    let f = fixture();
    let db = f.db();
    let n = stored_receipts(&db).len();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("e.jsonl");
    let tty = on_a_terminal(
        &db,
        &format!("export --format jsonl --out {}", file.display()),
    );
    assert!(tty.contains(&format!("/{n} receipts exported")), "{tty:?}");
    assert!(
        tty.contains(&format!("{}: {n} receipts", file.display())),
        "{tty:?}"
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap().lines().count(),
        n + checkpoint_sizes(&db).len()
    );
    let seed = f.dir.path().join("master.seed");
    let tty = on_a_terminal(&db, &format!("verify --master-seed {}", seed.display()));
    assert!(tty.contains(&format!("/{n} receipts verified")), "{tty:?}");
    assert!(tty.contains("verification passed"), "{tty:?}");
    // Not in JSON mode, even on a terminal; never when stderr is a pipe.
    let tty = on_a_terminal(
        &db,
        &format!("--json verify --master-seed {}", seed.display()),
    );
    assert!(!tty.contains("receipts verified"), "{tty:?}");
    let r = ctl(
        CtlTarget::Db(&db),
        &["verify", "--master-seed", seed.to_str().unwrap()],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stderr, "");
}
