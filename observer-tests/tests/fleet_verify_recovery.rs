//! `observerctl fleet verify` over a fleet copy that did not arrive in one
//! clean pass: a minute without ClickHouse loses nothing, a context the
//! host erased after forwarding it is reported, a replay's duplicates are
//! counted once, and a host that pruned its log before its sink was added
//! is verified from its prune anchor on.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]
mod clickhouse_kit;
mod fleet_kit;
mod forwarding_kit;

use std::time::{Duration, Instant};

use clickhouse_kit::{expected, ClickHouse};
use fleet_kit::*;
use forwarding_kit::*;
use observer_testkit::{
    ctl::{ctl, CtlTarget},
    scrape::{metrics, sample},
    *,
};

#[test]
fn a_minute_without_clickhouse_loses_nothing_and_a_replay_counts_once() {
    let ch_dir = tempfile::tempdir().unwrap();
    let mut ch = ClickHouse::start(ch_dir.path());
    let (mut host, exe, d, mport) = start_host(&ch, "fleet-outage");
    let delivered = || {
        sample(
            &metrics(mport),
            "observer_sink_delivered_total{sink=\"fleet\",type=\"clickhouse\"}",
        )
    };
    agent_execs(&exe, 5);
    wait_until("the first receipts in ClickHouse", WAIT, || delivered() > 0);
    // A minute down, the agent busy meanwhile.
    ch.stop();
    let down = Instant::now();
    agent_execs(&exe, 10);
    std::thread::sleep(Duration::from_secs(60).saturating_sub(down.elapsed()));
    ch.restart();
    agent_execs(&exe, 5);
    d.stop();
    host.origin = expected::host_of(&host.db());
    expected::assert_holds_exactly(&ch, &host.db());
    let (_keys_dir, keys) = pinned(&host);
    let password = host.dir.path().join("ch.password");
    let (code, doc) = verify(&ch, &password, &keys, &[]);
    assert_eq!(code, 0, "{doc:#}");
    assert_eq!(
        report(&doc, &host)["receipts"].as_u64(),
        Some(stored_receipts(&host.db()).len() as u64)
    );

    // A context erased on the host after it was forwarded: the erasure
    // receipt travels, the fleet's copy of the context stays, and the
    // report says so without failing the log.
    let erased = agent_receipts(&host.db())[1].hash.clone();
    let out = ctl(
        CtlTarget::Dir(host.dir.path()),
        &["erase", &erased, "--reason", "data subject request (test)"],
    );
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let restart = || {
        Daemon::start_in(
            StateDir::Shared(host.dir.path().to_owned()),
            &agent_config(
                "fleet-agent",
                &exe,
                &host_config(&ch, host.dir.path(), "fleet-outage", mport),
            ),
        )
    };
    let d = restart();
    wait_until("the erasure forwarded", WAIT, || {
        ch.count(&format!(
            "SELECT count() FROM observer.receipts WHERE host = '{}' AND action = 'observer.policy' \
             AND position(context, '{erased}') > 0",
            host.origin
        )) == 1
    });
    d.stop();
    let stored = stored_receipts(&host.db()).len() as u64;
    let (code, doc) = verify(&ch, &password, &keys, &[]);
    assert_eq!(code, 0, "{doc:#}");
    let r = report(&doc, &host);
    assert_eq!(
        r["erasures_not_applied"].as_array().unwrap().len(),
        1,
        "{r:#}"
    );
    assert_eq!(
        r["erasures_not_applied"][0]["receipt_hash"],
        erased.as_str()
    );

    // A replay of the whole log (the erased context now among it), its
    // duplicates kept visible: each receipt is counted once, and the
    // erased copy is the one checked.
    ch.query("SYSTEM STOP MERGES observer.receipts");
    std::fs::remove_file(host.dir.path().join("sinks/fleet.cursor")).unwrap();
    let d = restart();
    wait_until("the replay", WAIT, || delivered() > stored);
    d.stop();
    let stored_now = stored_receipts(&host.db()).len() as u64;
    let rows = ch.count(&format!(
        "SELECT count() FROM observer.receipts WHERE host = '{}'",
        host.origin
    ));
    assert!(
        rows >= stored_now + stored,
        "{rows} rows: the replay's duplicates"
    );
    let (code, doc) = verify(&ch, &password, &keys, &[]);
    assert_eq!(code, 0, "{doc:#}");
    let r = report(&doc, &host);
    assert_eq!(r["receipts"].as_u64(), Some(stored_now), "{r:#}");
    assert_eq!(r["duplicates_collapsed"].as_u64(), Some(rows - stored_now));
    assert_eq!(r["erasures_not_applied"], serde_json::json!([]));
    assert_eq!(doc["receipts"].as_u64(), Some(stored_now));
}

/// A host pruned its log (retention) before its clickhouse sink was added:
/// the fleet's copy starts at the cut, the prune anchor among it vouches
/// for the chains' state there, and the copy verifies from the cut on. A
/// copy that lost its anchor is a log with a missing prefix.
#[test]
fn a_host_pruned_before_its_sink_was_added_verifies_from_its_prune_anchor() {
    use observer_daemon::receipt::{
        chain::Identity, keys::MasterSeed, payload, pipeline::PipelineConfig, retention,
    };
    let ch_dir = tempfile::tempdir().unwrap();
    let ch = ClickHouse::start(ch_dir.path());
    let dir = tempfile::tempdir().unwrap();
    let exe = copy_executable("/bin/sh", dir.path(), &unique("fleet-agent"));
    let store = "[receipts]\nstore = \"@DIR@/observer.db\"\nmaster_seed = \"@DIR@/master.seed\"\n\
                 hostname = \"fleet-pruned\"\n";
    let d = Daemon::start_in(
        StateDir::Shared(dir.path().to_owned()),
        &agent_config("fleet-agent", &exe, store),
    );
    agent_execs(&exe, 6);
    d.stop();
    let mut host = Host {
        dir,
        origin: String::new(),
    };
    let db = host.db();

    // Everything issued before the agent's fourth receipt ages out.
    let target = agent_receipts(&db)[3].clone();
    let cutoff = humantime::parse_rfc3339(target.payload["issued_at"].as_str().unwrap())
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let cfg = PipelineConfig {
        store: db.clone(),
        signing_threads: 1,
        queue_capacity: 16,
        checkpoint_interval: Duration::from_secs(1),
        batch_max: 16,
        waiting_for_room: None,
    };
    let identity = Identity {
        deployer_id: default_deployer_id(),
        hostname: "fleet-pruned".into(),
        mode: payload::Mode::Payload,
        observer_executable_hash: sha256_file(std::path::Path::new(
            observer_testkit::bins::observerd(),
        )),
    };
    let seed = MasterSeed::load_existing(&host.dir.path().join("master.seed")).unwrap();
    let cut = retention::prune_offline(&cfg, identity, seed, cutoff)
        .unwrap()
        .expect("something to prune");
    assert!(
        cut > 0 && cut <= target.leaf,
        "cut {cut}, target {}",
        target.leaf
    );

    // The sink is added now: it forwards the log from the cut on.
    let mport = free_port();
    let d = Daemon::start_in(
        StateDir::Shared(host.dir.path().to_owned()),
        &agent_config(
            "fleet-agent",
            &exe,
            &host_config(&ch, host.dir.path(), "fleet-pruned", mport),
        ),
    );
    agent_execs(&exe, 3);
    d.stop();
    host.origin = expected::host_of(&db);
    // Every receipt from the cut on, every checkpoint, and every key: the
    // keys announced below the cut travelled with the prune anchor.
    expected::assert_holds_exactly(&ch, &db);
    let in_fleet = |sql: &str| ch.count(&format!("{sql} WHERE host = '{}'", host.origin));
    assert_eq!(
        in_fleet("SELECT min(leaf_index) FROM observer.receipts"),
        cut,
        "the fleet's copy starts at the cut"
    );

    let (_keys_dir, keys) = pinned(&host);
    let password = host.dir.path().join("ch.password");
    let (code, doc) = verify(&ch, &password, &keys, &[]);
    assert_eq!(code, 0, "{doc:#}");
    let r = report(&doc, &host);
    let stored = stored_receipts(&db);
    assert_eq!(stored.first().unwrap().leaf, cut);
    assert_eq!(r["pruned_below"].as_u64(), Some(cut), "{r:#}");
    assert_eq!(r["receipts"].as_u64(), Some(stored.len() as u64));
    assert_eq!(
        r["log_size"].as_u64(),
        Some(stored.last().unwrap().leaf + 1)
    );

    // Without its anchor, the copy is a log whose first `cut` receipts are
    // missing.
    mutate(
        &ch,
        &format!(
            "ALTER TABLE observer.receipts DELETE WHERE host = '{}' AND action = 'observer.policy' \
             AND position(context, '\"event\":\"prune\"') > 0",
            host.origin
        ),
    );
    let (code, doc) = verify(&ch, &password, &keys, &[]);
    assert_eq!(code, 1, "{doc:#}");
    let r = report(&doc, &host);
    assert_eq!(r["pruned_below"], 0, "{r:#}");
    assert_eq!(r["first_failure"]["check"], "fleet_missing", "{r:#}");
    assert_eq!(
        r["missing"]["leaf_index"][0],
        serde_json::json!([0, cut]),
        "{r:#}"
    );
}
