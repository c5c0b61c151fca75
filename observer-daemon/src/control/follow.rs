//! `follow` over the control socket (`observerctl tail -f`): the latest
//! `lines` matches, then every matching receipt as the writer commits it.
//! The writer announces committed log ranges on a bounded broadcast
//! (receipt::feed); the follower reads each range's rows from the store
//! with its filter and writes them as `receipts --jsonl` prints them. A
//! follower that misses ranges (the broadcast overflowed while it was
//! writing) is told `lagged` and reads everything after its last row back
//! from the store: nothing is skipped. The stream has no deadline, but
//! each write has one: a client that stops reading is dropped and counted.
use std::{sync::atomic::Ordering, time::Duration};

use serde_json::{json, Value};
use tokio::{
    io::{AsyncReadExt, BufReader},
    net::unix::{OwnedReadHalf, OwnedWriteHalf},
    sync::{broadcast::error::RecvError, watch},
};

use super::{
    protocol::{error, ok},
    query,
    state::State,
    wire,
};
use crate::receipt::{
    query::{self as receipts, Query, QueryError, QueryRow},
    store::Store,
};

/// The most rows `lines` may ask for before the follow starts.
pub const MAX_LINES: u64 = 10_000;

/// Log indexes read from the store at once while catching up, so a large
/// backlog is streamed in bounded pieces.
const CATCH_UP_CHUNK: i64 = 512;

/// Counts the follower while it is connected.
struct Following<'a>(&'a wire::StreamCounters);

impl<'a> Following<'a> {
    fn new(c: &'a wire::StreamCounters) -> Self {
        c.followers.fetch_add(1, Ordering::Relaxed);
        Following(c)
    }
}

impl Drop for Following<'_> {
    fn drop(&mut self) {
        self.0.followers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The store connection moves to a blocking thread for each read.
struct Reader {
    store: Option<Store>,
    q: Query,
}

impl Reader {
    /// The rows with log indexes in (after, upto] matching the filter, as
    /// JSON lines.
    async fn range(&mut self, after: i64, upto: i64) -> Result<Vec<u8>, String> {
        let q = Query {
            limit: None,
            after_leaf: Some((after, upto)),
            ..self.q.clone()
        };
        self.run(move |store| rows(receipts::query(store, &q)))
            .await
    }

    async fn run<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&Store) -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        let store = self.store.take().ok_or("the store connection was lost")?;
        let (store, got) = tokio::task::spawn_blocking(move || {
            let got = f(&store);
            (store, got)
        })
        .await
        .map_err(|e| format!("the store reader failed: {e}"))?;
        self.store = Some(store);
        got
    }
}

fn rows(found: Result<Vec<QueryRow>, QueryError>) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for row in found.map_err(|e| e.to_string())? {
        serde_json::to_writer(&mut out, &row).map_err(|e| e.to_string())?;
        out.push(b'\n');
    }
    Ok(out)
}

/// `{"v":1,"cmd":"follow","filter":{...},"lines":N}`.
pub async fn serve_follow(
    req: &Value,
    mut read: BufReader<OwnedReadHalf>,
    out: &mut OwnedWriteHalf,
    state: &State,
    timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let counters = &state.streams;
    let _following = Following::new(counters);
    let start = query::parse_filter(req).and_then(|f| {
        let path = query::store_path(state)?;
        let writer = state.sources.writer.clone().ok_or_else(|| {
            error(
                "unavailable",
                "receipts are disabled in this daemon: nothing to follow",
            )
        })?;
        let lines = match &req["lines"] {
            Value::Null => 10,
            v => v.as_u64().filter(|n| *n <= MAX_LINES).ok_or_else(|| {
                error(
                    "bad_request",
                    &format!("\"lines\" must be a whole number of at most {MAX_LINES}"),
                )
            })?,
        };
        Ok((f, path, writer, lines))
    });
    let (filter, path, writer, lines) = match start {
        Ok(s) => s,
        Err(refusal) => {
            let _ = wire::write_value(out, &refusal, timeout, counters).await;
            return;
        }
    };
    // Subscribe before reading where the log ends: a commit in between
    // is announced and its rows are then read (not before, not twice).
    let mut feed = state.sources.feed.subscribe();
    let q = filter.query();
    let initial_q = Query {
        limit: Some(lines),
        ..q.clone()
    };
    let opened = tokio::task::spawn_blocking(move || -> Result<(Store, i64, Vec<u8>), String> {
        let store = Store::open_read_only(&path).map_err(|e| e.to_string())?;
        let last = receipts::newest_leaf(&store)
            .map_err(|e| e.to_string())?
            .map_or(-1, |l| l as i64);
        let leaf = |r: &QueryRow| r.fields["leaf_index"].as_i64().unwrap_or(-1);
        let mut initial = if lines == 0 {
            Vec::new()
        } else {
            receipts::query(&store, &initial_q).map_err(|e| e.to_string())?
        };
        initial.retain(|r| leaf(r) <= last);
        Ok((store, last, rows(Ok(initial))?))
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r);
    let (store, mut last, initial) = match opened {
        Ok(o) => o,
        Err(e) => {
            let refusal = error("failed", &format!("reading the receipt store: {e}"));
            let _ = wire::write_value(out, &refusal, timeout, counters).await;
            return;
        }
    };
    let mut reader = Reader {
        store: Some(store),
        q,
    };
    let header = ok(json!({"following": true, "log_size": last + 1}));
    if wire::write_value(out, &header, timeout, counters)
        .await
        .is_err()
        || wire::write(out, &initial, timeout, counters).await.is_err()
    {
        return;
    }
    let mut scratch = [0u8; 256];
    loop {
        let upto = tokio::select! {
            got = feed.recv() => match got {
                Ok(c) => c.end as i64 - 1,
                Err(RecvError::Lagged(missed)) => {
                    counters.lagged.fetch_add(1, Ordering::Relaxed);
                    let notice = wire::lagged((last + 1) as u64, missed);
                    if wire::write_value(out, &notice, timeout, counters).await.is_err() {
                        return;
                    }
                    writer.log_size.load(Ordering::Relaxed) as i64 - 1
                }
                Err(RecvError::Closed) => {
                    let end = wire::end(json!({"reason": "the receipt writer stopped"}));
                    let _ = wire::write_value(out, &end, timeout, counters).await;
                    return;
                }
            },
            // The client says nothing after its request: anything read is
            // ignored, and end of file means it is gone.
            n = read.read(&mut scratch) => match n {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            },
            _ = stop.changed() => {
                let end = wire::end(json!({"reason": "the daemon is stopping"}));
                let _ = wire::write_value(out, &end, timeout, counters).await;
                return;
            }
        };
        while last < upto {
            let to = upto.min(last + CATCH_UP_CHUNK);
            let bytes = match reader.range(last, to).await {
                Ok(b) => b,
                Err(e) => {
                    let failed = error("failed", &format!("reading the receipt store: {e}"));
                    let _ = wire::write_value(out, &failed, timeout, counters).await;
                    return;
                }
            };
            if wire::write(out, &bytes, timeout, counters).await.is_err() {
                return;
            }
            last = to;
        }
    }
}
