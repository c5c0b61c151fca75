//! Forwarding through failures: a 30 s receiver outage under load loses
//! nothing and never blocks capture, a daemon killed mid-delivery resumes
//! from its cursor, and the forwarding metrics pass promtool and count what
//! happened.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]
mod forwarding_kit;

use std::{
    collections::HashSet,
    io::Write,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use forwarding_kit::*;
use observer_testkit::{
    scrape::{metrics, sample},
    *,
};

/// First occurrences in order, and how many were duplicates.
fn dedup(recs: Vec<Rec>) -> (Vec<Rec>, usize) {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut dups = 0;
    for r in recs {
        if seen.insert(r.clone()) {
            out.push(r);
        } else {
            dups += 1;
        }
    }
    (out, dups)
}

/// An agent exec'ing in a loop until dropped.
struct Load(Child);

impl Load {
    fn start(exe: &Path) -> Load {
        Load(
            Command::new(exe)
                // About 10 execs a second, each with its exit and the
                // file opens of the dynamic loader: a steady load the
                // signers keep up with on a shared 2-core machine.
                .args(["-c", "while :; do /bin/true; sleep 0.1; done"])
                .spawn()
                .unwrap(),
        )
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn outage_of_30s_under_load_loses_nothing_and_never_blocks_capture() {
    let dir = tempfile::tempdir().unwrap();
    let rs_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut rsyslog = Rsyslog::start(rs_dir.path(), port, Mode::Tcp);
    let mport = free_port();
    let (exe, d) = agent_with_sinks(
        dir.path(),
        &format!(
            "[metrics]\nlisten = \"127.0.0.1:{mport}\"\n{}",
            syslog_sink("rsyslog", port, "").replace(
                "retry_max_ms = 1000",
                "retry_max_ms = 1000\nmax_unconfirmed = 1000"
            )
        ),
    );
    let db = d.store();
    let load = Load::start(&exe);
    wait_until("first deliveries", WAIT, || rsyslog.received().len() > 100);
    rsyslog.stop();
    let size_at_outage = stored_receipts(&db).len();
    std::thread::sleep(Duration::from_secs(30));
    let size_after_outage = stored_receipts(&db).len();
    let m = metrics(mport);
    // Capture went on: hundreds of receipts committed while the
    // collector was down, and they wait in the backlog.
    assert!(
        size_after_outage > size_at_outage + 300,
        "{size_at_outage} -> {size_after_outage}"
    );
    assert!(
        sample(
            &m,
            "observer_sink_backlog{sink=\"rsyslog\",type=\"syslog\"}"
        ) > 300,
        "{m}"
    );
    assert!(
        sample(
            &m,
            "observer_sink_retries_total{sink=\"rsyslog\",type=\"syslog\"}"
        ) > 0
    );
    rsyslog.restart();
    std::thread::sleep(Duration::from_secs(3));
    drop(load);
    let start = Instant::now();
    while sample(
        &metrics(mport),
        "observer_sink_backlog{sink=\"rsyslog\",type=\"syslog\"}",
    ) != 0
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "backlog not drained: {}\n{}",
            metrics(mport),
            d.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let m = metrics(mport);
    for line in m.lines().filter(|l| {
        l.starts_with("observer_kernel_dropped_total")
            || l.starts_with("observer_user_dropped_total")
    }) {
        assert!(line.ends_with(" 0"), "capture dropped events: {line}");
    }
    let resent = sample(
        &m,
        "observer_sink_resent_total{sink=\"rsyslog\",type=\"syslog\"}",
    );
    let records = d.stop();
    let stop = records
        .iter()
        .rev()
        .find(|r| r["kind"] == "observer_stop")
        .unwrap();
    for (kind, k) in stop["kernel"].as_object().unwrap() {
        assert_eq!(k["dropped_ringbuf_full"], 0, "{kind}");
        assert_eq!(k["dropped_read_error"], 0, "{kind}");
    }
    assert!(
        stop["user_drops"]
            .as_object()
            .unwrap()
            .values()
            .all(|v| v == 0),
        "{stop}"
    );
    let final_size = stored_receipts(&db).len().to_string();
    wait_until("the final checkpoint", WAIT, || {
        rsyslog
            .received()
            .last()
            .is_some_and(|m| m.sd.get("size") == Some(&final_size))
    });
    let got: Vec<Rec> = rsyslog.received().iter().map(rec_of).collect();
    let (want, _) = expected(&db);
    let total = got.len();
    let (firsts, dups) = dedup(got);
    // Nothing lost, order preserved, duplicates only re-sends (counted).
    assert_eq!(firsts, want);
    assert!(
        dups as u64 <= resent,
        "{dups} duplicates, {resent} counted as re-sent"
    );
    assert!(resent <= 1000, "bounded by max_unconfirmed");
    eprintln!(
        "outage: {total} messages for {} records, {dups} duplicates, {resent} re-sent",
        want.len()
    );
}

#[test]
fn daemon_killed_mid_delivery_resumes_from_the_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let rs_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let rsyslog = Rsyslog::start(rs_dir.path(), port, Mode::Tcp);
    // Small batches and a long confirmation delay keep delivery behind.
    let sinks = syslog_sink("rsyslog", port, "")
        .replace(
            "retry_max_ms = 1000",
            "retry_max_ms = 1000\nbatch_max = 10\nmax_unconfirmed = 200",
        )
        .replace("ack_delay_ms = 300", "ack_delay_ms = 1000")
        .replace("flush_timeout_ms = 15000", "flush_timeout_ms = 30000");
    let (exe, d) = agent_with_sinks(dir.path(), &sinks);
    agent_execs(&exe, 300);
    let cursor = dir.path().join("sinks/rsyslog.cursor");
    wait_until("a cursor mid-way", WAIT, || {
        std::fs::read_to_string(&cursor).is_ok()
    });
    let db = d.store();
    d.kill();
    let text = std::fs::read_to_string(&cursor).unwrap();
    let at_kill: u64 = text
        .lines()
        .next()
        .unwrap()
        .trim_start_matches("next_leaf=")
        .parse()
        .unwrap();
    let size_at_kill = stored_receipts(&db).len() as u64;
    assert!(
        at_kill > 0 && at_kill < size_at_kill,
        "cursor {at_kill} of {size_at_kill}"
    );
    let (_exe2, d2) = {
        let d2 = Daemon::start_in(
            StateDir::Shared(dir.path().to_owned()),
            &agent_config("fwd-agent", &exe, &sinks),
        );
        ((), d2)
    };
    agent_execs(&exe, 5);
    let t = Instant::now();
    let stderr = d2.stderr.clone();
    d2.stop();
    let final_size = stored_receipts(&db).len().to_string();
    eprintln!(
        "stop took {:?}; {final_size} receipts; received {}; {}",
        t.elapsed(),
        rsyslog.received().len(),
        std::fs::read_to_string(&stderr).unwrap_or_default()
    );
    wait_until("the final checkpoint", Duration::from_secs(30), || {
        rsyslog
            .received()
            .last()
            .is_some_and(|m| m.sd.get("size") == Some(&final_size))
    });
    let got: Vec<Rec> = rsyslog.received().iter().map(rec_of).collect();
    let (want, _) = expected(&db);
    let (firsts, dups) = dedup(got.clone());
    assert_eq!(firsts, want, "nothing lost, in order");
    // Resumed from the cursor: what was confirmed before the kill is not
    // sent again; only the unconfirmed tail (at most the in-flight window)
    // is: at most max_unconfirmed records, checkpoints included.
    let first_resumed = got
        .iter()
        .position(|r| matches!(r, Rec::Receipt { index, .. } if *index == at_kill))
        .unwrap();
    assert!(got[..first_resumed]
        .iter()
        .all(|r| !matches!(r, Rec::Receipt { index, .. } if *index >= at_kill)));
    assert!(dups <= 200, "{dups} duplicates");
    assert!(
        got.iter()
            .filter(|r| matches!(r, Rec::Receipt { index, .. } if *index < at_kill))
            .count() as u64
            == at_kill
    );
}

/// `promtool check metrics` (the prometheus apt package) on the endpoint's
/// output.
fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (apt install prometheus)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn metrics_pass_promtool_and_count_what_happened() {
    let dir = tempfile::tempdir().unwrap();
    let mport = free_port();
    let out = dir.path().join("archive.jsonl");
    let sinks = format!(
        "[metrics]\nlisten = \"127.0.0.1:{mport}\"\n[[sinks]]\nname = \"archive\"\ntype = \"file\"\n[sinks.file]\npath = \"{}\"\n",
        out.display()
    );
    let (exe, d) = agent_with_sinks(dir.path(), &sinks);
    let db = d.store();
    // Settled: everything committed is delivered, the kernel counters are
    // published, and it stays so across more than one counters interval
    // (1 s) and the file sink's 1 s acknowledgement delay. A single match
    // is not enough: under load the sink can catch up with the log in the
    // middle of a burst that is still being committed.
    let settled = |m: &str| -> Option<u64> {
        let n = stored_receipts(&db).len() as u64;
        (sample(m, "observer_log_size") == n
            && sample(m, "observer_sink_cursor{sink=\"archive\",type=\"file\"}") == n
            && m.contains("\nobserver_kernel_events_total{kind=\"exec\"} "))
        .then_some(n)
    };
    let idle = || {
        let start = Instant::now();
        loop {
            assert!(
                start.elapsed() < WAIT,
                "timed out waiting for metrics to settle"
            );
            let Some(n) = settled(&metrics(mport)) else {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            };
            std::thread::sleep(Duration::from_millis(1500));
            let m = metrics(mport);
            if settled(&m) == Some(n) {
                return m;
            }
        }
    };
    let before = idle();
    promtool_check(&before);
    agent_execs(&exe, 10);
    wait_until("the agent's exits committed", WAIT, || {
        stored_receipts_of(&db, "process.exit").len() > 10
    });
    let after = idle();
    promtool_check(&after);
    let delta = |series: &str| sample(&after, series) - sample(&before, series);
    // 10 execs of /bin/true and the agent's own: exec and exit receipts,
    // and the file opens of its loader.
    assert!(delta("observer_receipts_committed_total") >= 22, "{after}");
    assert!(delta("observer_kernel_events_total{kind=\"exec\"}") >= 11);
    assert!(delta("observer_kernel_events_total{kind=\"exit\"}") >= 11);
    assert_eq!(
        delta("observer_sink_delivered_total{sink=\"archive\",type=\"file\"}"),
        delta("observer_receipts_committed_total")
            + delta("observer_sink_checkpoints_delivered_total{sink=\"archive\",type=\"file\"}")
    );
    assert_eq!(
        sample(
            &after,
            "observer_sink_backlog{sink=\"archive\",type=\"file\"}"
        ),
        0
    );
    assert_eq!(
        sample(&after, "observer_chains"),
        2,
        "observer and fwd-agent"
    );
    for line in after.lines().filter(|l| {
        l.starts_with("observer_kernel_dropped_total")
            || l.starts_with("observer_user_dropped_total")
    }) {
        assert!(line.ends_with(" 0"), "{line}");
    }
    d.stop();
}
