//! A wall clock that steps while observerd runs, seen by the daemon alone:
//! libfaketime (LD_PRELOAD) moves CLOCK_REALTIME for the daemon process
//! only, from a file the test rewrites; the host's clock is never touched.
//! Boot time is not faked (FAKETIME_DONT_FAKE_MONOTONIC), as on a real host
//! where NTP steps only the wall clock.
//!
//! The daemon starts an hour behind (a machine without an RTC), is stepped
//! 3 h forward, then 2 h back to the true time. Each step becomes an
//! `observer.clock_step` receipt; retention (30 min) keeps the receipts
//! issued before the forward step, which are young by today's clock; the
//! verifier, on the true clock, accepts the receipts issued while the
//! daemon's clock was 2 h ahead because a later receipt recorded the
//! backward step.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]

use std::{path::Path, time::Duration};

use observer_testkit::{stored_receipts, stored_receipts_of, verify_store, Daemon, StateDir, WAIT};

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
const HOUR_NS: i64 = 3_600_000_000_000;

fn set_fake_offset(file: &Path, text: &str) {
    std::fs::write(file, format!("{text}\n")).unwrap();
}

/// A nanosecond count, carried as a decimal string.
fn ns(v: &serde_json::Value) -> i64 {
    v.as_str().unwrap().parse().unwrap()
}

/// Waits until the store holds `n` clock step receipts; returns their
/// `step_ns`.
fn wait_for_steps(db: &Path, n: usize) -> Vec<i64> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let steps = stored_receipts_of(db, "observer.clock_step");
        if steps.len() >= n {
            return steps
                .iter()
                .map(|r| ns(&r.context.as_ref().unwrap()["step_ns"]))
                .collect();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no clock step receipt {n}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until retention has checked `n` times (its debug line) or pruned.
fn wait_for_retention_checks(d: &Daemon, n: usize) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let log = d.stderr_text();
        if log.matches("retention: nothing issued before").count() >= n
            || log.contains("retention: pruning")
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "retention never checked {n} times:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn steps_become_receipts_and_neither_prune_nor_fail_verification() {
    assert!(
        Path::new(LIBFAKETIME).exists(),
        "libfaketime is needed: apt-get install faketime"
    );
    let dir = tempfile::tempdir().unwrap();
    let offset_file = dir.path().join("faketime");
    set_fake_offset(&offset_file, "-3600");
    let offset = offset_file.display().to_string();
    let config = "[files]\nprefixes = []\nsuffixes = []\n\
        [receipts]\nstore = \"@DIR@/observer.db\"\nmaster_seed = \"@DIR@/master.seed\"\n\
        retention = \"30m\"\n";
    let d = Daemon::start_with(
        StateDir::Shared(dir.path().to_owned()),
        config,
        &[],
        &[
            ("LD_PRELOAD", LIBFAKETIME),
            ("FAKETIME_TIMESTAMP_FILE", &offset),
            ("FAKETIME_NO_CACHE", "1"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
            ("RUST_LOG", "info,observer_daemon::pipeline::prune=debug"),
        ],
    );
    let db = d.store();
    wait_for_retention_checks(&d, 1);
    let started = stored_receipts_of(&db, "observer.start");
    assert_eq!(started.len(), 1);
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let start_issued = humantime::parse_rfc3339(started[0].payload["issued_at"].as_str().unwrap())
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    assert!(
        start_issued < now_ns - HOUR_NS / 2,
        "the daemon's clock was not behind: {start_issued} vs {now_ns}"
    );

    // NTP finds the clock an hour behind and steps it (here, 2 h past the
    // true time, so that the next step can set it back).
    set_fake_offset(&offset_file, "+7200");
    let steps = wait_for_steps(&db, 1);
    assert!(
        (steps[0] - 3 * HOUR_NS).abs() < 1_000_000_000,
        "step {} ns",
        steps[0]
    );
    // Retention looks again under the new clock: the receipts from before
    // the step are 30 min old by the daemon's new clock minus the step,
    // minutes old in truth, and stay.
    wait_for_retention_checks(&d, 2);
    assert!(!d.stderr_text().contains("retention: pruning"));
    assert_eq!(stored_receipts_of(&db, "observer.start").len(), 1);
    assert_eq!(
        stored_receipts(&db)[0].leaf,
        0,
        "the log's start was pruned"
    );

    // Then back to the true time.
    set_fake_offset(&offset_file, "+0");
    let steps = wait_for_steps(&db, 2);
    assert!(
        (steps[1] + 2 * HOUR_NS).abs() < 1_000_000_000,
        "step {} ns",
        steps[1]
    );
    let step = stored_receipts_of(&db, "observer.clock_step")[1].clone();
    let context = step.context.unwrap();
    assert_eq!(
        ns(&context["new_offset_ns"]) - ns(&context["old_offset_ns"]),
        steps[1]
    );
    let seed = d.master_seed();
    d.stop();

    // Receipts issued between the steps are 2 h ahead of the verifier's
    // clock: the recorded backward step accounts for them.
    let report = verify_store(&db, &seed, vec![]);
    assert!(report.ok(), "{:#?}", report.failures);
    assert!(report.checks["issued_at"].pass >= 4);
}
