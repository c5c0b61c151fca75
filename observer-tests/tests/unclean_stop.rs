//! After `kill -9` the receipts signed but not committed are gone, and
//! nobody counted them: the first receipt of every chain that continues
//! carries `unsigned_gap {count: null, from, to}`; after a clean stop, no
//! chain does.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]

use std::{collections::BTreeMap, path::Path, process::Command, time::Duration};

use observer_testkit::*;
use serde_json::{json, Value};

fn now_issued_at() -> String {
    let ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    observer_daemon::receipt::payload::issued_at(ns)
}

/// Runs the agent once and waits until its exit receipt is committed.
fn act(exe: &Path, db: &Path, code: i32) {
    let status = Command::new(exe)
        .args(["-c", &format!("exit {code}")])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(code));
    let start = std::time::Instant::now();
    while !stored_receipts(db).iter().any(|r| {
        r.payload["action_type"] == "process.exit"
            && r.context.as_ref().unwrap()["exit"]["exit_code"] == code
    }) {
        assert!(start.elapsed() < WAIT, "no exit receipt for code {code}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Head (seq, issued_at) of each chain.
fn heads(db: &Path) -> BTreeMap<String, (u64, String)> {
    let mut out = BTreeMap::new();
    for r in stored_receipts(db) {
        let issued = r.payload["issued_at"].as_str().unwrap().to_string();
        out.insert(r.chain.clone(), (r.seq, issued));
    }
    out
}

#[test]
fn the_first_receipt_of_each_chain_after_kill_9_reports_an_unknown_gap_and_none_after_a_clean_stop()
{
    let dir = tempfile::tempdir().unwrap();
    let exe = copy_executable("/bin/sh", dir.path(), &unique("unclean"));
    let config = agent_config("unclean-agent", &exe, "");
    let db = dir.path().join("observer.db");
    let seed = dir.path().join("master.seed");
    let shared = || StateDir::Shared(dir.path().to_owned());

    let first = Daemon::start_in(shared(), &config);
    act(&exe, &db, 3);
    first.kill();
    let killed_at = now_issued_at();
    let before = heads(&db);
    assert_eq!(
        before.len(),
        2,
        "the observer's and the agent's chain: {before:?}"
    );
    assert!(
        stored_receipts(&db)
            .iter()
            .all(|r| r.payload.get("unsigned_gap").is_none()),
        "no gap before the unclean stop"
    );

    let second = Daemon::start_in(shared(), &config);
    let restarted_by = now_issued_at();
    act(&exe, &db, 4);
    second.stop();
    let after_unclean = stored_receipts(&db);
    for (chain, (seq, last_issued)) in &before {
        let continued: Vec<_> = after_unclean
            .iter()
            .filter(|r| &r.chain == chain && r.seq > *seq)
            .collect();
        assert!(!continued.is_empty(), "{chain} continued");
        let first = continued[0];
        assert_eq!(first.seq, seq + 1);
        let gap = &first.payload["unsigned_gap"];
        // count is present and null: lost, number unknown.
        assert_eq!(
            gap.as_object()
                .map(|g| g.keys().cloned().collect::<Vec<_>>()),
            Some(vec!["count".into(), "from".into(), "to".into()]),
            "{chain}: {gap}"
        );
        assert_eq!(gap["count"], Value::Null);
        // From the chain's last stored receipt to the restart.
        assert_eq!(gap["from"], json!(last_issued), "{chain}");
        let to = gap["to"].as_str().unwrap();
        assert!(
            killed_at.as_str() <= to && to <= restarted_by.as_str(),
            "{chain}: to {to} not between the kill ({killed_at}) and the restart ({restarted_by})"
        );
        // Only the first receipt reports it.
        assert!(
            continued[1..]
                .iter()
                .all(|r| r.payload.get("unsigned_gap").is_none()),
            "{chain}"
        );
    }
    let report = verify_store(&db, &seed, vec![]);
    assert!(report.ok(), "{:#?}", report.failures);

    // A clean stop before: no chain reports a gap.
    let before = heads(&db);
    let third = Daemon::start_in(shared(), &config);
    act(&exe, &db, 5);
    third.stop();
    let after_clean: Vec<_> = stored_receipts(&db)
        .into_iter()
        .filter(|r| before.get(&r.chain).is_none_or(|(seq, _)| r.seq > *seq))
        .collect();
    assert!(after_clean.len() >= 4, "{}", after_clean.len());
    for chain in before.keys() {
        assert!(after_clean.iter().any(|r| &r.chain == chain), "{chain}");
    }
    for r in &after_clean {
        assert!(
            r.payload.get("unsigned_gap").is_none(),
            "leaf {}: {}",
            r.leaf,
            r.payload
        );
    }
    let report = verify_store(&db, &seed, vec![]);
    assert!(report.ok(), "{:#?}", report.failures);
}
