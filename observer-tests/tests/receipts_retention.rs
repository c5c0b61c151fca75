//! Receipt retention: pruning a prefix behind a signed anchor leaves the
//! rest verifiable, and the running daemon prunes aged receipts.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]
mod receipts_kit;

use std::process::Command;

use observer_testkit::*;
use receipts_kit::*;

#[test]
fn retention_prunes_a_prefix_behind_a_signed_anchor_and_the_rest_verifies() {
    use observer_daemon::receipt::{keys::MasterSeed, pipeline::PipelineConfig, retention};
    let run = run_agent("");
    let db = run.dir.path().join("observer.db");
    let seed = run.dir.path().join("master.seed");
    let before = stored_receipts(&db);
    let chain: Vec<_> = before
        .iter()
        .filter(|r| r.payload["agent_id"] == "test-agent")
        .collect();
    // Everything issued before the third agent receipt ages out.
    let target = chain[2];
    let cutoff = humantime::parse_rfc3339(target.payload["issued_at"].as_str().unwrap())
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let cfg = PipelineConfig {
        store: db.clone(),
        signing_threads: 1,
        queue_capacity: 16,
        checkpoint_interval: std::time::Duration::from_secs(1),
        batch_max: 16,
        waiting_for_room: None,
    };
    let cut = retention::prune_offline(
        &cfg,
        identity(),
        MasterSeed::load_existing(&seed).unwrap(),
        cutoff,
    )
    .unwrap()
    .expect("something to prune");
    assert!(
        cut > 0 && cut <= target.leaf,
        "cut {cut}, target leaf {}",
        target.leaf
    );
    let after = stored_receipts(&db);
    assert!(after.iter().all(|r| r.leaf >= cut));
    assert_eq!(after.first().unwrap().leaf, cut);
    let anchor = after.last().unwrap();
    assert_eq!(anchor.payload["action_type"], "observer.policy");
    let ctx = anchor.context.as_ref().unwrap();
    assert_eq!(ctx["event"], "prune");
    assert_eq!(ctx["cut"], cut);
    let report = verify_store(&db, &seed, vec![]);
    assert!(report.ok(), "{:#?}", report.failures);
    assert_eq!(report.pruned_below, cut);
    assert_eq!(report.receipts, after.len() as u64);
    assert!(report.checkpoints_before_cut >= 1 || report.checkpoints_verified >= 1);

    // A forged anchor (a chain head moved) is refused, and with it the
    // remaining log cannot be verified.
    let t = tampered_copy(&db, "anchor");
    let forged = serde_json::to_string(ctx)
        .unwrap()
        .replacen("\"seq\":", "\"seq\":1", 1);
    exec_sql(
        &t,
        "UPDATE contexts SET context = ?2 WHERE leaf_index = ?1",
        rusqlite::params![anchor.leaf, forged],
    );
    let report = verify_store(&t, &seed, vec![]);
    assert!(!report.ok());
    assert!(
        report
            .failures
            .iter()
            .any(|f| f.check == "prune_anchor"
                && f.reason.contains("does not match its payload_digest")),
        "{:#?}",
        report.failures
    );
}

#[test]
fn the_daemon_prunes_aged_receipts_while_running() {
    let dir = tempfile::tempdir().unwrap();
    let exe = copy_executable("/bin/sh", dir.path(), &unique("aging"));
    let d = Daemon::start_in(
        StateDir::Shared(dir.path().to_owned()),
        &agent_config(
            "aging-agent",
            &exe,
            "[receipts]\nstore = \"@DIR@/observer.db\"\nmaster_seed = \"@DIR@/master.seed\"\nretention = \"2s\"\n",
        ),
    );
    let db = dir.path().join("observer.db");
    assert!(Command::new(&exe)
        .args(["-c", "exit 0"])
        .status()
        .unwrap()
        .success());
    // Wait for a prune that removes the agent's first receipts.
    let start = std::time::Instant::now();
    let anchor = loop {
        let prunes: Vec<_> = stored_receipts_of(&db, "observer.policy")
            .into_iter()
            .filter(|r| r.context.as_ref().unwrap()["event"] == "prune")
            .collect();
        if let Some(p) = prunes.last().filter(|p| {
            p.context.as_ref().unwrap()["chains"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| {
                    c["issuer_id"]
                        .as_str()
                        .unwrap()
                        .ends_with("/agent/aging-agent")
                })
        }) {
            break p.clone();
        }
        assert!(start.elapsed() < WAIT, "no prune within {WAIT:?}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    // The agent keeps acting after the prune; its chain continues.
    assert!(Command::new(&exe)
        .args(["-c", "exit 0"])
        .status()
        .unwrap()
        .success());
    std::thread::sleep(std::time::Duration::from_millis(500));
    d.stop();
    let cut = anchor.context.as_ref().unwrap()["cut"].as_u64().unwrap();
    let report = verify_store(&db, &dir.path().join("master.seed"), vec![]);
    assert!(report.ok(), "{:#?}", report.failures);
    assert!(report.pruned_below >= cut);
    assert!(stored_receipts(&db)
        .iter()
        .all(|r| r.leaf >= report.pruned_below));
}
