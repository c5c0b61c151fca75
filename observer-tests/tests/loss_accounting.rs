//! Every event the kernel produced is either delivered or counted as lost.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]

use nix::sys::signal::Signal;
use observer_testkit::*;

#[test]
fn delivered_plus_counted_drops_equals_generated_exactly() {
    const N: usize = 300;
    let suffix = format!(".{}-loss", unique("l"));
    // A one-page ring buffer holds only a handful of file_open records.
    let extra =
        "[kernel]\nring_buffer_bytes = 4096\nwakeup_bytes = 0\ncounters_interval_ms = 200\n";
    let mut d = Daemon::start(&config(&[&suffix], extra));
    let dir = tempfile::tempdir().unwrap();
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
    d.wait_for(|r| r["kind"] == "loss");
    let records = d.stop();

    let delivered = records
        .iter()
        .filter(|r| {
            is_event(r, "file_open")
                && r["file_open"]["path"]
                    .as_str()
                    .is_some_and(|p| p.ends_with(&suffix))
        })
        .count() as u64;
    let field =
        |r: &serde_json::Value, a: &str, b: &str| r[a]["file_open"][b].as_u64().unwrap_or(0);
    let losses: Vec<_> = records.iter().filter(|r| r["kind"] == "loss").collect();
    let kernel_dropped: u64 = losses
        .iter()
        .map(|r| field(r, "kernel", "ringbuf_full") + field(r, "kernel", "read_error"))
        .sum();
    let user_dropped: u64 = losses
        .iter()
        .map(|r| r["user"]["channel_full:file_open"].as_u64().unwrap_or(0))
        .sum();
    assert!(
        kernel_dropped > 0,
        "a 4 KiB ring buffer with a stopped reader must overflow"
    );
    assert_eq!(
        delivered + kernel_dropped + user_dropped,
        N as u64,
        "delivered {delivered}, kernel drops {kernel_dropped}, user drops {user_dropped}"
    );

    let stop = records
        .iter()
        .find(|r| r["kind"] == "observer_stop")
        .expect("stop record");
    let totals = &stop["kernel"]["file_open"];
    assert_eq!(
        totals["emitted"].as_u64().unwrap(),
        delivered + user_dropped
    );
    assert_eq!(
        totals["dropped_ringbuf_full"].as_u64().unwrap()
            + totals["dropped_read_error"].as_u64().unwrap(),
        kernel_dropped
    );
}
