//! The streamed answers of the control socket (`receipts` and `follow`):
//! after the usual `{"v":1,"ok":true,"result":...}` line, one receipt row
//! per line (the bytes `observerctl receipts --jsonl` prints), interleaved
//! with protocol lines that start with `{"v":` (a row never does: its
//! members are sorted and it has no `v`). A stream ends with an `end` line
//! or an error line.
use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use serde_json::{json, Value};
use tokio::{io::AsyncWriteExt, net::unix::OwnedWriteHalf};

use super::PROTOCOL_VERSION;

/// Protocol lines start with this; rows never do.
pub const PROTOCOL_PREFIX: &str = "{\"v\":";

/// Counters of the streamed answers, reported by `status`.
#[derive(Default)]
pub struct StreamCounters {
    /// Followers connected now.
    pub followers: AtomicU64,
    /// Streams dropped because the client stopped reading: one write did
    /// not complete within `control.timeout_ms`.
    pub dropped_slow: AtomicU64,
    /// Times a follower fell more than the feed's capacity behind and read
    /// the missed receipts back from the store.
    pub lagged: AtomicU64,
}

impl StreamCounters {
    pub fn to_json(&self) -> Value {
        json!({
            "followers": self.followers.load(Ordering::Relaxed),
            "streams_dropped_slow": self.dropped_slow.load(Ordering::Relaxed),
            "followers_lagged": self.lagged.load(Ordering::Relaxed),
        })
    }
}

/// `{"v":1,"end":{...}}`: the stream is complete.
pub fn end(detail: Value) -> Value {
    json!({"v": PROTOCOL_VERSION, "end": detail})
}

/// `{"v":1,"notice":"lagged",...}`: the follower missed commit notices;
/// rows from log index `from_leaf` on are read back from the store.
pub fn lagged(from_leaf: u64, missed_ranges: u64) -> Value {
    json!({"v": PROTOCOL_VERSION, "notice": "lagged", "from_leaf": from_leaf, "missed_ranges": missed_ranges})
}

/// Why a stream stopped early.
#[derive(Debug)]
pub enum Stop {
    /// The client went away (write failed).
    Gone,
    /// The client stopped reading: dropped and counted.
    Stalled,
}

/// Writes `bytes` within `timeout`. A client that stops reading fills the
/// socket buffer and the write stalls; it is then dropped (and counted),
/// so a stuck follower holds its slot for at most `timeout`.
pub async fn write(
    out: &mut OwnedWriteHalf,
    bytes: &[u8],
    timeout: Duration,
    counters: &StreamCounters,
) -> Result<(), Stop> {
    match tokio::time::timeout(timeout, out.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Stop::Gone),
        Err(_) => {
            counters.dropped_slow.fetch_add(1, Ordering::Relaxed);
            log::warn!(
                "control socket: dropped a stream whose client stopped reading for {} ms",
                timeout.as_millis()
            );
            Err(Stop::Stalled)
        }
    }
}

/// Writes one JSON protocol line.
pub async fn write_value(
    out: &mut OwnedWriteHalf,
    value: &Value,
    timeout: Duration,
    counters: &StreamCounters,
) -> Result<(), Stop> {
    write(out, format!("{value}\n").as_bytes(), timeout, counters).await
}
