//! Receipts survive crashes and report loss: kill -9 under load, restart,
//! verify; kernel drops become observer.loss receipts and unsigned_gap.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]

use std::{
    collections::HashMap,
    process::{Child, Command, Stdio},
    time::Duration,
};

use nix::sys::signal::Signal;
use observer_testkit::*;

/// An agent that execs /bin/true in a loop until killed.
struct BusyAgent(Child);

impl BusyAgent {
    fn start(exe: &std::path::Path) -> BusyAgent {
        BusyAgent(
            Command::new(exe)
                .args(["-c", "while :; do /bin/true; sleep 0.1; done"])
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }
}

impl Drop for BusyAgent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn kill_9_under_load_loses_no_committed_receipt_and_records_the_downtime() {
    let dir = tempfile::tempdir().unwrap();
    let exe = copy_executable("/bin/sh", dir.path(), &unique("busy"));
    let config = agent_config("busy-agent", &exe, "");
    let db = dir.path().join("observer.db");
    let seed = dir.path().join("master.seed");
    let _agent = BusyAgent::start(&exe);
    // Spread, reproducible kill moments 1.2..2.5 s after start: each run
    // lives past the 1 s checkpoint interval.
    let mut delays = (0..10u64).map(|i| 1200 + (i * 7919) % 1300);
    let mut committed: HashMap<u64, String> = HashMap::new();
    for round in 0..10 {
        let d = Daemon::start_in(StateDir::Shared(dir.path().to_owned()), &config);
        if round > 0 {
            // The restart says the previous run ended uncleanly, and since when
            // nothing was observed.
            let start = wait_for_receipt(&db, "observer.start", |r| {
                r.context.as_ref().unwrap()["pid"] == d.pid()
            });
            let ctx = start.context.unwrap();
            assert_eq!(ctx["previous_stop_unclean"], true, "round {round}: {ctx}");
            assert_eq!(ctx["previous_run"]["clean_stop"], false);
            assert!(
                ctx["unobserved"]["from"].is_string() && ctx["unobserved"]["to"].is_string(),
                "{ctx}"
            );
            let checkpointed = ctx["last_checkpoint"]["size"]
                .as_u64()
                .expect("a checkpoint");
            assert!(checkpointed <= ctx["log_size"].as_u64().unwrap(), "{ctx}");
        }
        std::thread::sleep(Duration::from_millis(delays.next().unwrap()));
        d.kill();
        let now = stored_receipts(&db);
        // Every receipt committed before is still there, at the same place.
        for r in &now {
            if let Some(h) = committed.get(&r.leaf) {
                assert_eq!(h, &r.hash, "round {round}: leaf {} changed", r.leaf);
            }
        }
        assert!(
            committed.len() <= now.len(),
            "round {round}: receipts disappeared"
        );
        let busy = now
            .iter()
            .filter(|r| r.payload["agent_id"] == "busy-agent")
            .count();
        assert!(busy > 0 || round > 0, "the busy agent produced receipts");
        committed = now.iter().map(|r| (r.leaf, r.hash.clone())).collect();
        // The second implementation re-checks everything in the last round.
        let report = verify_store_with(&db, &seed, vec![], round == 9);
        assert!(report.ok(), "round {round}: {:#?}", report.failures);
        assert_eq!(report.receipts, now.len() as u64);
    }
    let busy: Vec<_> = stored_receipts(&db)
        .into_iter()
        .filter(|r| r.payload["agent_id"] == "busy-agent")
        .collect();
    assert!(busy.len() > 100, "only {} receipts under load", busy.len());
}

fn wait_for_receipt(
    db: &std::path::Path,
    action_type: &str,
    pred: impl Fn(&StoredReceipt) -> bool,
) -> StoredReceipt {
    let start = std::time::Instant::now();
    loop {
        if db.exists() {
            if let Some(r) = stored_receipts_of(db, action_type)
                .into_iter()
                .find(|r| pred(r))
            {
                return r;
            }
        }
        assert!(start.elapsed() < WAIT, "no such receipt within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn kernel_drops_become_loss_receipts_with_exact_counts_and_gaps() {
    const N: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let exe = copy_executable("/bin/sh", dir.path(), &unique("lossy"));
    let suffix = format!(".{}-loss", unique("l"));
    let extra = format!(
        "[kernel]\nring_buffer_bytes = 16384\nwakeup_bytes = 0\ncounters_interval_ms = 200\nopen_dedup_ms = 0\n\
         [files]\nprefixes = []\nsuffixes = [{suffix:?}]\n"
    );
    let config = format!(
        "{extra}\n[[agents]]\nid = \"lossy-agent\"\nexecutables = [{:?}]\n",
        exe.display().to_string()
    );
    let mut d = Daemon::start_in(StateDir::Shared(dir.path().to_owned()), &config);
    let db = dir.path().join("observer.db");
    // The agent's chain exists before the loss.
    assert!(Command::new(&exe)
        .args(["-c", "exit 0"])
        .status()
        .unwrap()
        .success());
    wait_for_receipt(&db, "process.exec", |r| {
        r.payload["agent_id"] == "lossy-agent"
    });
    let paths: Vec<_> = (0..N)
        .map(|i| dir.path().join(format!("f{i}{suffix}")))
        .collect();
    for p in &paths {
        write_file(p, "x");
    }
    d.freeze();
    for p in &paths {
        std::fs::File::open(p).expect("open");
    }
    d.signal(Signal::SIGCONT);
    // The loss of the frozen opens: file_open records the full ring buffer
    // refused. Not any loss record: a small ring also overflows at start
    // when the host is busy (execs of other processes), and that one is
    // reported before the agent's chain exists.
    d.wait_for(|r| {
        r["kind"] == "loss"
            && r["kernel"]["file_open"]["ringbuf_full"]
                .as_u64()
                .is_some_and(|n| n > 0)
    });
    // The agent acts again after the loss: its next receipt carries the gap.
    let status = Command::new(&exe).args(["-c", "exit 5"]).status().unwrap();
    assert_eq!(status.code(), Some(5));
    std::thread::sleep(Duration::from_millis(1500));
    let records = d.stop();

    let rs = stored_receipts(&db);
    let losses: Vec<_> = rs
        .iter()
        .filter(|r| r.payload["action_type"] == "observer.loss")
        .collect();
    assert!(!losses.is_empty(), "a loss receipt");
    let sum = |field: &str| -> u64 {
        losses
            .iter()
            .map(|r| {
                r.context.as_ref().unwrap()["kernel"]["file_open"][field]
                    .as_u64()
                    .unwrap_or(0)
            })
            .sum()
    };
    let stop = rs
        .iter()
        .find(|r| r.payload["action_type"] == "observer.stop")
        .expect("stop receipt");
    let totals = &stop.context.as_ref().unwrap()["kernel"]["file_open"];
    assert!(sum("ringbuf_full") > 0);
    assert_eq!(
        sum("ringbuf_full"),
        totals["dropped_ringbuf_full"].as_u64().unwrap()
    );
    assert_eq!(
        sum("read_error"),
        totals["dropped_read_error"].as_u64().unwrap()
    );
    // Same numbers as the JSON-lines records of the same run.
    let jsonl_ringbuf: u64 = records
        .iter()
        .filter(|r| r["kind"] == "loss")
        .map(|r| {
            r["kernel"]["file_open"]["ringbuf_full"]
                .as_u64()
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(sum("ringbuf_full"), jsonl_ringbuf);

    // Each agent receipt reports exactly what was lost since the chain's
    // previous receipt (the loss receipts are in the log before it). Losses
    // before the chain existed are in observer.loss receipts only.
    let mut pending = 0u64;
    let mut gaps = 0;
    let mut chain_open = false;
    for r in &rs {
        match (
            r.payload["action_type"].as_str(),
            r.payload["agent_id"].as_str(),
        ) {
            (Some("observer.loss"), _) if chain_open => {
                pending += r.context.as_ref().unwrap()["total"].as_u64().unwrap();
            }
            (Some("observer.key"), _)
                if r.context.as_ref().unwrap()["issuer_id"]
                    .as_str()
                    .is_some_and(|i| i.ends_with("/agent/lossy-agent")) =>
            {
                chain_open = true;
            }
            (_, Some("lossy-agent")) => {
                let gap = &r.payload["unsigned_gap"];
                assert_eq!(
                    gap["count"].as_u64().unwrap_or(0),
                    pending,
                    "receipt {} of the log {:?}",
                    r.leaf,
                    rs.iter()
                        .map(|r| (
                            r.leaf,
                            r.payload["action_type"].clone(),
                            r.payload["agent_id"].clone(),
                            r.payload.get("unsigned_gap").cloned(),
                            r.payload["action_type"] == "observer.loss"
                        ))
                        .filter(|t| t.2 != "observer" || t.4)
                        .collect::<Vec<_>>()
                );
                if pending > 0 {
                    gaps += 1;
                    assert!(gap["from"].as_str().unwrap() <= gap["to"].as_str().unwrap());
                }
                pending = 0;
            }
            _ => {}
        }
    }
    assert!(
        gaps > 0,
        "the agent's receipt after the loss reports it: {:?}",
        rs.iter()
            .map(|r| (
                r.leaf,
                r.payload["action_type"].clone(),
                r.payload["agent_id"].clone(),
                r.payload.get("unsigned_gap").cloned(),
            ))
            .filter(|t| t.2 != "observer" || t.1 == "observer.loss")
            .collect::<Vec<_>>()
    );
    let report = verify_store(&db, &dir.path().join("master.seed"), vec![]);
    assert!(report.ok(), "{:#?}", report.failures);
}
