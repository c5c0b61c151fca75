//! `receipts` over the control socket: the history query of `observerctl
//! receipts` and `tail` (without -f) for members of the socket's group,
//! who cannot open the root-only (0600) store. The daemon runs the same
//! query code as observerctl (observer-receipts' `query`) on a blocking thread over a
//! read-only connection and streams the rows as they are read, through a
//! bounded channel: memory stays bounded however many rows match.
use std::{io::Write, path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::{net::unix::OwnedWriteHalf, sync::mpsc};

use super::{
    protocol::{error, ok},
    state::State,
    wire,
};
use crate::receipt::{query as receipts, store::Store};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Rows read ahead of a client that is still writing out earlier ones.
const ROWS_IN_FLIGHT: usize = 256;

/// The filter a client sends as `"filter": {...}`: observerctl's own
/// [`crate::receipt::query::Query`] (times already in ns since the epoch), so
/// the daemon runs exactly what the command line asked for. Unknown
/// members are refused, so a filter the daemon does not understand is
/// never silently widened; a client cannot pick the follow window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RemoteFilter(receipts::Query);

impl RemoteFilter {
    pub fn of(q: &receipts::Query) -> RemoteFilter {
        RemoteFilter(receipts::Query {
            after_leaf: None,
            ..q.clone()
        })
    }

    pub fn query(&self) -> receipts::Query {
        receipts::Query {
            after_leaf: None,
            ..self.0.clone()
        }
    }
}

/// The request's `"filter"` (absent: everything).
pub fn parse_filter(req: &Value) -> Result<RemoteFilter, Value> {
    match &req["filter"] {
        Value::Null => Ok(RemoteFilter::default()),
        f => serde_json::from_value(f.clone())
            .map_err(|e| error("bad_request", &format!("\"filter\": {e}"))),
    }
}

/// The store the daemon writes, or the refusal when receipts are off.
pub fn store_path(state: &State) -> Result<PathBuf, Value> {
    state.sources.store.clone().ok_or_else(|| {
        error(
            "unavailable",
            "receipts are disabled in this daemon: there is no store to read",
        )
    })
}

/// Hands each complete line written to it to the async side; fails once
/// the client is gone, which stops the query.
struct LineSender {
    tx: mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
    rows: u64,
}

impl Write for LineSender {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        while let Some(n) = memchr::memchr(b'\n', &self.buf) {
            let rest = self.buf.split_off(n + 1);
            let line = std::mem::replace(&mut self.buf, rest);
            self.tx.blocking_send(line).map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")
            })?;
            self.rows += 1;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `{"v":1,"cmd":"receipts","filter":{...}}`: the ok line, the rows in
/// the order `observerctl receipts` prints them, then `{"v":1,"end":
/// {"rows":N}}` (or an error line if the store fails midway).
pub async fn serve_receipts(
    req: &Value,
    out: &mut OwnedWriteHalf,
    state: &State,
    timeout: Duration,
) {
    let counters = &state.streams;
    let start = parse_filter(req).and_then(|f| Ok((f, store_path(state)?)));
    let (filter, path) = match start {
        Ok(s) => s,
        Err(refusal) => {
            let _ = wire::write_value(out, &refusal, timeout, counters).await;
            return;
        }
    };
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(ROWS_IN_FLIGHT);
    let q = filter.query();
    let reader = tokio::task::spawn_blocking(move || -> Result<u64, String> {
        let store = Store::open_read_only(&path).map_err(|e| e.to_string())?;
        let mut lines = LineSender {
            tx,
            buf: Vec::new(),
            rows: 0,
        };
        // The rows as `observerctl receipts --jsonl` prints them.
        receipts::for_each_row(&store, &q, |row| -> Result<(), BoxError> {
            serde_json::to_writer(&mut lines, &row)?;
            lines.write_all(b"\n")?;
            Ok(())
        })
        .map_err(|e| e.to_string())?;
        Ok(lines.rows)
    });
    if wire::write_value(out, &ok(json!({"stream": "receipts"})), timeout, counters)
        .await
        .is_err()
    {
        return;
    }
    while let Some(line) = rx.recv().await {
        if wire::write(out, &line, timeout, counters).await.is_err() {
            // Dropping the receiver stops the query at its next row.
            return;
        }
    }
    let last = match reader.await {
        Ok(Ok(rows)) => wire::end(json!({"rows": rows})),
        Ok(Err(e)) => error("failed", &format!("reading the receipt store: {e}")),
        Err(e) => error("failed", &format!("the query task failed: {e}")),
    };
    let _ = wire::write_value(out, &last, timeout, counters).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_round_trips_and_unknown_members_are_refused() {
        let q = receipts::Query {
            agent: vec!["a*".into(), "b".into()],
            dst: vec!["api.openai.com".into()],
            pid: vec![7],
            since_ns: Some(5),
            limit: Some(3),
            ..Default::default()
        };
        let f = RemoteFilter::of(&q);
        let sent = json!({"filter": f});
        let back = parse_filter(&sent).unwrap();
        assert_eq!(back, f);
        assert_eq!(back.query().agent, ["a*", "b"]);
        assert_eq!(back.query().dst, ["api.openai.com"]);
        assert_eq!(back.query().limit, Some(3));
        let refused = parse_filter(&json!({"filter": {"agnet": "a"}})).unwrap_err();
        assert_eq!(refused["error"]["kind"], "bad_request");
        let message = refused["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("\"filter\": unknown field `agnet`"),
            "{message}"
        );
    }
}
