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

use super::protocol::PROTOCOL_VERSION;

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

/// A protocol line: the object's members with `"v"` moved first (a
/// `Value` prints its members sorted), so every protocol line starts with
/// [`PROTOCOL_PREFIX`] and a client tells it from a row by its first bytes.
pub fn protocol_line(value: &Value) -> String {
    let mut rest = value.clone();
    if let Some(members) = rest.as_object_mut() {
        members.remove("v");
    }
    let rest = rest.to_string();
    match rest.strip_prefix('{').filter(|r| *r != "}") {
        Some(members) => format!("{PROTOCOL_PREFIX}{PROTOCOL_VERSION},{members}\n"),
        None => format!("{PROTOCOL_PREFIX}{PROTOCOL_VERSION}}}\n"),
    }
}

/// Writes one JSON protocol line.
pub async fn write_value(
    out: &mut OwnedWriteHalf,
    value: &Value,
    timeout: Duration,
    counters: &StreamCounters,
) -> Result<(), Stop> {
    write(out, protocol_line(value).as_bytes(), timeout, counters).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_lines_start_with_the_version_and_rows_never_do() {
        assert_eq!(
            protocol_line(&super::super::protocol::ok(json!({"following": true}))),
            "{\"v\":1,\"ok\":true,\"result\":{\"following\":true}}\n"
        );
        assert_eq!(
            protocol_line(&lagged(7, 2)),
            "{\"v\":1,\"from_leaf\":7,\"missed_ranges\":2,\"notice\":\"lagged\"}\n"
        );
        assert_eq!(protocol_line(&json!({})), "{\"v\":1}\n");
        // A row's members are sorted and it has no "v": it starts with
        // its action type.
        let row = json!({"action_type": "process.exec", "v": null, "agent_id": "a"});
        assert!(!row.to_string().starts_with(PROTOCOL_PREFIX));
        let line = protocol_line(&json!({"v": 1, "end": {"rows": 3}}));
        let back: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back, json!({"v": 1, "end": {"rows": 3}}));
    }
}
