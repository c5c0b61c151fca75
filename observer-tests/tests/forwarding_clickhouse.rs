//! Forwarding into a real ClickHouse (Debian's clickhouse-server 18.16,
//! started by the test with the shipped schema): the tables hold every
//! receipt, checkpoint and key of the store exactly; a replay's duplicates
//! collapse; a server stopped during forwarding loses nothing; a wrong
//! password is refused without showing it.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]
mod clickhouse_kit;
mod forwarding_kit;

use std::{path::Path, time::Duration};

use clickhouse_kit::{expected, ClickHouse, PASSWORD};
use forwarding_kit::*;
use observer_testkit::{
    scrape::{metrics, sample},
    *,
};

/// A daemon config fragment: one clickhouse sink named `fleet` with the
/// server's settings, quick retries, and the metrics endpoint on `mport`.
fn clickhouse_sink(ch: &ClickHouse, password_file: &Path, mport: u16, extra: &str) -> String {
    format!(
        "[metrics]\nlisten = \"127.0.0.1:{mport}\"\n\
         [forwarding]\nflush_timeout_ms = 15000\n\
         [[sinks]]\nname = \"fleet\"\ntype = \"clickhouse\"\nretry_initial_ms = 100\nretry_max_ms = 1000\n{extra}\
         [sinks.clickhouse]\n{}",
        ch.sink_settings(password_file)
    )
}

fn sink_metric(mport: u16, name: &str) -> u64 {
    sample(
        &metrics(mport),
        &format!("{name}{{sink=\"fleet\",type=\"clickhouse\"}}"),
    )
}

fn count_final(ch: &ClickHouse, table: &str) -> u64 {
    ch.count(&format!("SELECT count() FROM observer.{table} FINAL"))
}

#[test]
fn clickhouse_holds_the_store_exactly_and_a_replay_collapses() {
    let dir = tempfile::tempdir().unwrap();
    let ch_dir = tempfile::tempdir().unwrap();
    let ch = ClickHouse::start(ch_dir.path());
    let mport = free_port();
    // gzip is off by default; this sink sends gzip bodies, the others not,
    // so both encodings reach a real server.
    let sinks = clickhouse_sink(&ch, &dir.path().join("ch.password"), mport, "") + "gzip = true\n";
    let (exe, d) = agent_with_sinks(dir.path(), &sinks);
    agent_execs(&exe, 20);
    let db = d.store();
    let stderr = d.stderr.clone();
    // The stop signs a final checkpoint and flushes it to the sink.
    d.stop();
    let daemon_log = std::fs::read_to_string(&stderr).unwrap();
    expected::assert_holds_exactly(&ch, &db);
    let receipts = stored_receipts(&db).len() as u64;
    assert!(receipts > 40, "{receipts} receipts (20 execs and exits)");
    // Every row arrived once: nothing to collapse yet.
    assert_eq!(ch.count("SELECT count() FROM observer.receipts"), receipts);
    // The password reached neither the log nor the store.
    assert!(!daemon_log.contains(PASSWORD), "{daemon_log}");
    let raw_store = std::fs::read(&db).unwrap();
    assert!(!raw_store
        .windows(PASSWORD.len())
        .any(|w| w == PASSWORD.as_bytes()));

    // A replay: without its cursor the sink sends the whole log again, in
    // batches of 5 this time. Merges are held so the duplicates stay
    // visible until asked for, and so are the parts each insert made.
    ch.query("SYSTEM STOP MERGES observer.receipts");
    let parts = || {
        ch.count("SELECT count() FROM system.parts WHERE database = 'observer' AND table = 'receipts' AND active")
    };
    let parts_before = parts();
    std::fs::remove_file(dir.path().join("sinks/fleet.cursor")).unwrap();
    let replay_sinks = sinks.replace("[sinks.clickhouse]", "batch_max = 5\n[sinks.clickhouse]");
    let d = Daemon::start_in(
        StateDir::Shared(dir.path().to_owned()),
        &agent_config("fwd-agent", &exe, &replay_sinks),
    );
    wait_until("the replay", WAIT, || {
        sink_metric(mport, "observer_sink_delivered_total") > receipts
    });
    d.stop();
    let after = stored_receipts(&db).len() as u64;
    // The backlog's full batches went as one gzip'd insert, written while
    // it was read: a part for it, and a few for what the daemon signed
    // afterwards (3 in all here), not one per batch of 5 (17 or more).
    let replay_parts = parts() - parts_before;
    assert!(
        replay_parts >= 1 && replay_parts <= after / 5 / 2,
        "{replay_parts} parts for {after} receipts in batches of 5"
    );
    // The replayed rows are there twice until merged...
    assert_eq!(
        ch.count("SELECT count() FROM observer.receipts"),
        receipts + after
    );
    // ... and collapse into one each: at once with FINAL, for good after
    // OPTIMIZE.
    assert_eq!(count_final(&ch, "receipts"), after);
    expected::assert_holds_exactly(&ch, &db);
    ch.query("SYSTEM START MERGES observer.receipts");
    for table in ["receipts", "checkpoints", "keys"] {
        ch.query(&format!("OPTIMIZE TABLE observer.{table} FINAL"));
    }
    assert_eq!(ch.count("SELECT count() FROM observer.receipts"), after);
    assert_eq!(
        ch.count("SELECT count() FROM observer.checkpoints"),
        count_final(&ch, "checkpoints")
    );
    expected::assert_holds_exactly(&ch, &db);
}

#[test]
fn clickhouse_stopped_during_forwarding_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ch_dir = tempfile::tempdir().unwrap();
    let mut ch = ClickHouse::start(ch_dir.path());
    let mport = free_port();
    // Small batches: the outage falls between many deliveries.
    let sinks = clickhouse_sink(
        &ch,
        &dir.path().join("ch.password"),
        mport,
        "batch_max = 20\n",
    );
    let (exe, d) = agent_with_sinks(dir.path(), &sinks);
    let db = d.store();
    agent_execs(&exe, 30);
    wait_until("first rows in ClickHouse", WAIT, || {
        ch.count("SELECT count() FROM observer.receipts") > 0
    });
    ch.stop();
    // Capture and signing go on while the server is down; the sink
    // retries and its backlog grows.
    agent_execs(&exe, 60);
    let at_outage = stored_receipts(&db).len() as u64;
    wait_until("failed retries", WAIT, || {
        sink_metric(mport, "observer_sink_retries_total") >= 3
    });
    // Down long enough for the backoff to reach retry_max_ms.
    std::thread::sleep(Duration::from_secs(15));
    assert!(sink_metric(mport, "observer_sink_backlog") > 0);
    let m = metrics(mport);
    assert!(
        sample(
            &m,
            "observer_sink_errors_total{sink=\"fleet\",type=\"clickhouse\",reason=\"connect\"}"
        ) > 0,
        "{m}"
    );
    ch.restart();
    agent_execs(&exe, 10);
    wait_until("the backlog drained", Duration::from_secs(60), || {
        sink_metric(mport, "observer_sink_backlog") == 0
    });
    d.stop();
    assert!(stored_receipts(&db).len() as u64 > at_outage);
    // Every receipt of the store exactly once after FINAL, with every
    // column as stored; the checkpoints and keys too.
    expected::assert_holds_exactly(&ch, &db);
    assert_eq!(
        ch.count("SELECT uniqExact(receipt_hash) FROM observer.receipts"),
        stored_receipts(&db).len() as u64
    );
}

#[test]
fn a_wrong_password_is_refused_and_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let ch_dir = tempfile::tempdir().unwrap();
    let ch = ClickHouse::start(ch_dir.path());
    let mport = free_port();
    let password_file = dir.path().join("ch.password");
    let sinks = clickhouse_sink(&ch, &password_file, mport, "");
    // The right user, a wrong password (still 0600).
    std::fs::write(&password_file, "not-the-password-91c2\n").unwrap();
    let (_exe, d) = agent_with_sinks(dir.path(), &sinks);
    wait_until("refusals", WAIT, || {
        sample(
            &metrics(mport),
            "observer_sink_errors_total{sink=\"fleet\",type=\"clickhouse\",reason=\"unauthorized\"}",
        ) >= 2
    });
    assert_eq!(sink_metric(mport, "observer_sink_delivered_total"), 0);
    let stderr = d.stderr.clone();
    d.stop();
    assert_eq!(ch.count("SELECT count() FROM observer.receipts"), 0);
    let log = std::fs::read_to_string(stderr).unwrap();
    assert!(log.contains("HTTP 401"), "{log}");
    assert!(!log.contains("not-the-password-91c2"), "{log}");
}
