//! observerctl's failures: errors are JSON objects with documented exit
//! codes, and an unprivileged user cannot read the store.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]
mod observerctl_kit;

use std::{os::unix::fs::PermissionsExt, path::Path, process::Command};

use observer_testkit::*;
use observerctl_kit::*;
use serde_json::Value;

#[test]
fn errors_are_json_objects_with_exit_codes() {
    let f = fixture();
    let missing = ctl(
        CtlTarget::Db(Path::new("/nonexistent/dir/observer.db")),
        &["receipts", "--json"],
    );
    assert_eq!(missing.code, 4);
    let e = missing.json();
    assert_eq!(e["error"]["kind"], "store_unreadable");
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("/nonexistent/dir/observer.db"));
    assert_eq!(e.as_object().unwrap().len(), 1);

    let bad_since = ctl(
        CtlTarget::Db(&f.db()),
        &["receipts", "--json", "--since", "the day before"],
    );
    assert_eq!(bad_since.code, 2);
    let e = bad_since.json();
    assert_eq!(e["error"]["kind"], "usage");
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("--since \"the day before\""));

    let bad_flag = ctl(CtlTarget::Db(&f.db()), &["receipts", "--json", "--colour"]);
    assert_eq!(bad_flag.code, 2);
    assert_eq!(bad_flag.json()["error"]["kind"], "usage");
    let human = ctl(
        CtlTarget::Db(&f.db()),
        &["receipts", "--since", "the day before"],
    );
    assert_eq!(human.code, 2);
    assert!(
        human.stderr.starts_with("observerctl: --since"),
        "{}",
        human.stderr
    );
    assert!(human.stdout.is_empty());

    let not_there = ctl(
        CtlTarget::Db(&f.db()),
        &["receipts", "show", &"ab".repeat(32), "--json"],
    );
    assert_eq!(not_there.code, 2);
    assert!(not_there.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not in the store"));

    let not_a_store = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(not_a_store.path(), b"not sqlite at all, just text").unwrap();
    let r = ctl(CtlTarget::Db(not_a_store.path()), &["agents", "--json"]);
    assert_eq!(r.code, 4);
    assert_eq!(r.json()["error"]["kind"], "store_unreadable");
}

#[test]
fn an_unprivileged_user_cannot_read_the_store() {
    let f = fixture();
    // A world-traversable directory: only the store's own 0600 mode stops
    // the reader.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let db = dir.path().join("observer.db");
    std::fs::copy(f.db(), &db).unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o600)).unwrap();
    let bin = copy_executable(observerctl(), dir.path(), "observerctl");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(&bin)
        .arg("--db")
        .arg(&db)
        .args(["receipts", "--json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "store_unreadable");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("Permission denied") && msg.contains("run as root"),
        "{msg}"
    );
    // And root can.
    assert_eq!(ctl(CtlTarget::Db(&db), &["agents", "--json"]).code, 0);
}
