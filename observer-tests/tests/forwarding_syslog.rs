//! Forwarding to a real rsyslog (apt) over TCP, over TLS with a test CA and
//! a client certificate, and over UDP: every receipt the store holds
//! arrives, in log order, with the store's hash, chain, seq and risk; the
//! store's checkpoints arrive too; no more than max_unconfirmed records go
//! out before the receiver confirms them.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]
mod forwarding_kit;

use std::time::Duration;

use forwarding_kit::*;
use observer_daemon::receipt::store::Store;
use observer_testkit::{
    scrape::{metrics, sample},
    *,
};
use serde_json::{json, Value};

#[test]
fn rsyslog_tcp_receives_every_receipt_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let rs_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let rsyslog = Rsyslog::start(rs_dir.path(), port, Mode::Tcp);
    let mport = free_port();
    let (exe, d) = agent_with_sinks(
        dir.path(),
        &format!(
            "[metrics]\nlisten = \"127.0.0.1:{mport}\"\n{}{}",
            syslog_sink("rsyslog", port, ""),
            // A second sink with a filter no receipt matches: its cursor
            // follows the log, and only checkpoints pass.
            "[[sinks]]\nname = \"none\"\ntype = \"file\"\n[sinks.filter]\nrisks = [\"high\"]\nagents = [\"nobody\"]\n[sinks.file]\npath = \"@DIR@/filtered.jsonl\"\n"
        ),
    );
    agent_execs(&exe, 30);
    let db = d.store();
    // Delivered and confirmed while running, before any stop.
    wait_until("the agent's exits committed", WAIT, || {
        stored_receipts_of(&db, "process.exit").len() > 30
    });
    let n = stored_receipts(&db).len() as u64;
    assert!(n > 60, "{n} receipts");
    wait_until("delivery of the agent's receipts", WAIT, || {
        sample(
            &metrics(mport),
            "observer_sink_delivered_total{sink=\"rsyslog\",type=\"syslog\"}",
        ) >= n
    });
    assert!(rsyslog.received().len() as u64 >= n);
    let m = metrics(mport);
    assert_eq!(
        sample(
            &m,
            "observer_sink_resent_total{sink=\"rsyslog\",type=\"syslog\"}"
        ),
        0,
        "{m}"
    );
    wait_until("the filtering sink's cursor", WAIT, || {
        let m = metrics(mport);
        sample(&m, "observer_sink_cursor{sink=\"none\",type=\"file\"}") >= n
            && sample(
                &m,
                "observer_sink_filtered_total{sink=\"none\",type=\"file\"}",
            ) >= n
    });
    d.stop();
    // The stop's receipts and the final checkpoint, flushed at SIGTERM.
    let final_size = Store::open_read_only(&db)
        .unwrap()
        .latest_checkpoint()
        .unwrap()
        .unwrap()
        .size;
    assert_eq!(
        final_size,
        stored_receipts(&db).len() as u64,
        "a final checkpoint covers the log"
    );
    wait_until("the final checkpoint", WAIT, || {
        rsyslog
            .received()
            .last()
            .is_some_and(|m| m.sd.get("size") == Some(&final_size.to_string()))
    });
    let got = rsyslog.received();
    assert_exact_stream(&got, &db);
    // The forwarded final checkpoint verifies the host log (a truncated
    // log would fail against it).
    let note: Value = serde_json::from_str(&got.last().unwrap().msg).unwrap();
    let note = note["checkpoint"]["note"].as_str().unwrap().to_string();
    let report = verify_store(&db, &dir.path().join("master.seed"), vec![note]);
    assert!(report.ok(), "{:#?}", report.failures);
    let filtered: Vec<u64> = std::fs::read_to_string(dir.path().join("filtered.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["record"], "checkpoint", "{l}");
            v["checkpoint"]["size"].as_u64().unwrap()
        })
        .collect();
    let stored_cps: Vec<u64> = Store::open_read_only(&db)
        .unwrap()
        .checkpoints()
        .unwrap()
        .iter()
        .map(|c| c.size)
        .collect();
    assert_eq!(filtered, stored_cps, "checkpoints pass every filter");
    let cursor = std::fs::read_to_string(dir.path().join("sinks/rsyslog.cursor")).unwrap();
    assert_eq!(
        cursor,
        format!("next_leaf={final_size}\ncheckpoint_size={final_size}\n")
    );
}

/// `max_unconfirmed` is a hard window: with confirmation held off (a
/// 10-minute `ack_delay_ms`), a sink sends while a whole batch fits in the
/// window and then nothing more, so one failure can never resend more.
///
/// A read is `batch_max` receipts plus the checkpoints between them, and how
/// many checkpoints the log holds depends on timing (one per second while
/// receipts arrive): so the test pins the window's bounds, not a count of
/// batches. The runner reads again while `sent + batch_max <=
/// max_unconfirmed`, so it stops with 15 < sent <= 25 records.
#[test]
fn syslog_sink_sends_no_more_than_max_unconfirmed_records_before_confirmation() {
    let dir = tempfile::tempdir().unwrap();
    let rs_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let rsyslog = Rsyslog::start(rs_dir.path(), port, Mode::Tcp);
    let mport = free_port();
    let (exe, d) = agent_with_sinks(
        dir.path(),
        &format!(
            "[metrics]\nlisten = \"127.0.0.1:{mport}\"\n[forwarding]\nflush_timeout_ms = 1000\n\
             [[sinks]]\nname = \"window\"\ntype = \"syslog\"\nbatch_max = 10\nmax_unconfirmed = 25\n\
             retry_initial_ms = 100\nretry_max_ms = 1000\n\
             [sinks.syslog]\naddress = \"127.0.0.1:{port}\"\nack_delay_ms = 600000\n"
        ),
    );
    agent_execs(&exe, 20);
    let db = d.store();
    wait_until("the agent's exits committed", WAIT, || {
        stored_receipts_of(&db, "process.exit").len() > 20
    });
    wait_until(
        "more than max_unconfirmed - batch_max records",
        2 * WAIT,
        || rsyslog.received().len() > 15,
    );
    // Another batch would pass the window; give it every chance to show up
    // if the runner ignored the window.
    std::thread::sleep(Duration::from_secs(2));
    let recs: Vec<Rec> = rsyslog.received().iter().map(rec_of).collect();
    let (want, _) = expected(&db);
    assert!(
        recs.len() > 15 && recs.len() <= 25,
        "{} records sent with none confirmed, window 25, batch 10",
        recs.len()
    );
    assert!(want.len() > 40, "the log holds more: {}", want.len());
    assert_eq!(
        recs,
        want[..recs.len()],
        "the log's first records, in order"
    );
    let m = metrics(mport);
    let series = |name: &str| format!("{name}{{sink=\"window\",type=\"syslog\"}}");
    assert_eq!(
        sample(&m, &series("observer_sink_delivered_total")),
        0,
        "{m}"
    );
    assert!(
        sample(&m, &series("observer_sink_backlog")) > 15,
        "the rest waits: {m}"
    );
    d.stop();
}

#[test]
fn rsyslog_tls_with_client_certificate_receives_ocsf() {
    let dir = tempfile::tempdir().unwrap();
    let rs_dir = tempfile::tempdir().unwrap();
    pki::make_pki(rs_dir.path());
    let port = free_port();
    let rsyslog = Rsyslog::start(rs_dir.path(), port, Mode::Tls);
    let p = rs_dir.path().display();
    let tls = format!(
        "transport = \"tls\"\n[sinks.syslog.tls]\nca_file = \"{p}/ca.pem\"\ncert_file = \"{p}/client.pem\"\nkey_file = \"{p}/client.key\"\nserver_name = \"localhost\"\n"
    );
    let (exe, d) = agent_with_sinks(
        dir.path(),
        &syslog_sink("tls", port, &tls)
            .replace("type = \"syslog\"", "type = \"syslog\"\nformat = \"ocsf\""),
    );
    agent_execs(&exe, 10);
    let db = d.store();
    d.stop();
    let final_size = stored_receipts(&db).len().to_string();
    wait_until("the final checkpoint over TLS", WAIT, || {
        rsyslog
            .received()
            .last()
            .is_some_and(|m| m.sd.get("size") == Some(&final_size))
    });
    let got = rsyslog.received();
    let (want, _) = expected(&db);
    assert_eq!(got.iter().map(rec_of).collect::<Vec<_>>(), want);
    let stored = stored_receipts(&db);
    let mut execs = 0;
    for (m, r) in got
        .iter()
        .filter(|m| m.sd_id == "receipt@32473")
        .zip(&stored)
    {
        let ev: Value = serde_json::from_str(&m.msg).unwrap();
        assert_eq!(ev["capture_topology"], "passive_telemetry");
        assert_eq!(ev["metadata"]["uid"], r.hash.as_str());
        assert_eq!(ev["metadata"]["sequence"], r.seq);
        let signature = &serde_json::from_str::<Value>(&r.envelope).unwrap()["signature"];
        assert_eq!(
            ev["unmapped"]["observer"]["signer"],
            json!({"alg": signature["alg"], "kid": signature["kid"]})
        );
        assert_eq!(ev["raw_data"], r.envelope.as_str());
        if r.payload["action_type"] == "process.exec" {
            execs += 1;
            assert_eq!(ev["class_uid"], 1007);
            assert_eq!(ev["type_uid"], 100701);
            let ctx = r.context.as_ref().unwrap();
            assert_eq!(ev["process"]["pid"], ctx["process"]["pid"]);
            assert_eq!(ev["process"]["file"]["path"], ctx["process"]["exe"]);
        }
    }
    assert!(execs >= 10, "{execs} exec receipts");

    // The same collector refuses a client without a certificate, and a
    // sink that trusts another CA refuses the collector: nothing is
    // delivered, the errors are counted by reason.
    let other = tempfile::tempdir().unwrap();
    pki::make_pki(other.path());
    let mport = free_port();
    let bad = format!(
        "transport = \"tls\"\n[sinks.syslog.tls]\nca_file = \"{}/ca.pem\"\nserver_name = \"localhost\"\n",
        other.path().display()
    );
    let dir2 = tempfile::tempdir().unwrap();
    let before = rsyslog.received().len();
    let (_exe, d2) = agent_with_sinks(
        dir2.path(),
        &format!(
            "[metrics]\nlisten = \"127.0.0.1:{mport}\"\n{}",
            syslog_sink("wrongca", port, &bad)
        ),
    );
    wait_until("TLS errors counted", WAIT, || {
        sample(
            &metrics(mport),
            "observer_sink_errors_total{sink=\"wrongca\",type=\"syslog\",reason=\"tls\"}",
        ) >= 2
    });
    let m = metrics(mport);
    assert_eq!(
        sample(
            &m,
            "observer_sink_delivered_total{sink=\"wrongca\",type=\"syslog\"}"
        ),
        0
    );
    assert!(
        sample(
            &m,
            "observer_sink_backlog{sink=\"wrongca\",type=\"syslog\"}"
        ) > 0,
        "{m}"
    );
    drop(d2);
    assert_eq!(rsyslog.received().len(), before);
    assert!(!dir2.path().join("sinks/wrongca.cursor").exists());
}

#[test]
fn rsyslog_udp_receives_cloudevents() {
    let dir = tempfile::tempdir().unwrap();
    let rs_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let rsyslog = Rsyslog::start(rs_dir.path(), port, Mode::Udp);
    // Small batches: UDP has no flow control, the receiver's buffer must
    // hold what one batch sends.
    let sinks = syslog_sink("udp", port, "transport = \"udp\"").replace(
        "type = \"syslog\"",
        "type = \"syslog\"\nformat = \"cloudevents\"\nbatch_max = 20",
    );
    let (exe, d) = agent_with_sinks(dir.path(), &sinks);
    agent_execs(&exe, 5);
    let db = d.store();
    d.stop();
    let final_size = stored_receipts(&db).len().to_string();
    wait_until("the final checkpoint over UDP", WAIT, || {
        rsyslog
            .received()
            .last()
            .is_some_and(|m| m.sd.get("size") == Some(&final_size))
    });
    let got = rsyslog.received();
    let (want, _) = expected(&db);
    assert_eq!(got.iter().map(rec_of).collect::<Vec<_>>(), want);
    for (m, r) in got
        .iter()
        .filter(|m| m.sd_id == "receipt@32473")
        .zip(stored_receipts(&db))
    {
        let ev: Value = serde_json::from_str(&m.msg).unwrap();
        assert_eq!(ev["specversion"], "1.0");
        assert_eq!(ev["id"], r.hash.as_str());
        assert_eq!(ev["source"], r.chain.as_str());
        assert_eq!(
            ev["type"],
            format!(
                "dev.observer.receipt.{}",
                r.payload["action_type"].as_str().unwrap()
            )
        );
        assert_eq!(ev["time"], r.payload["issued_at"]);
        assert_eq!(ev["data"]["capture_topology"], "passive_telemetry");
        assert_eq!(
            ev["data"]["receipt"],
            serde_json::from_str::<Value>(&r.envelope).unwrap()
        );
    }
}
