//! The clickhouse sink's inserts, on its delivery thread: a batch's rows
//! as `INSERT INTO <db>.<table> (<columns>) FORMAT JSONEachRow` POSTs over
//! ClickHouse's HTTP interface, through the http sink's client (same
//! TCP/TLS transport, proxy and response bounds).
//!
//! A backlog's receipts go as one long insert: each full batch's rows are
//! written into an open POST (chunked), and the insert ends after a batch
//! short of `batch_max` (the backlog is drained), at [`INSERT_ROWS_MAX`]
//! rows, or when no batch came for [`OPEN_IDLE`]. ClickHouse writes one
//! part per insert and merges parts afterwards, so 20,000-row parts
//! instead of 2,000-row ones save most of its merging, without the sink
//! holding more than a batch in memory.
use std::{
    io::Write as _,
    sync::Arc,
    time::{Duration, Instant},
};

use flate2::{write::GzEncoder, Compression};

use base64::Engine;
use rustls::ClientConfig;

use super::rows;
use crate::forward::{
    config::ClickHouseConfig,
    http::{
        client::{self, Client},
        proxy::Proxy,
        response::Response,
    },
    pipeline::{Deliver, Taken},
    sink::SendError,
};

/// The tables a batch is inserted into, in this order: the keys its
/// `observer.key` receipts announced, its receipts, then its checkpoints,
/// so a checkpoint in ClickHouse comes after every receipt it covers.
pub const TABLES: [&str; 3] = ["keys", "receipts", "checkpoints"];

/// Most receipts one insert takes (fewer when half of what the sink's
/// `max_unconfirmed` leaves beside a batch is less: the runner sends no
/// more than that before the insert is answered).
pub const INSERT_ROWS_MAX: usize = 20_000;

/// An open insert that got no batch for this long ends (the backlog ended
/// exactly at a full batch).
pub const OPEN_IDLE: Duration = Duration::from_secs(1);

/// One batch: its rows per table of [`TABLES`] (JSONEachRow; empty: no
/// insert).
pub struct Rows {
    pub tables: [Vec<u8>; 3],
    /// Receipts in `tables[1]`.
    pub receipts: usize,
    /// The batch held `batch_max` receipts: more are probably waiting.
    pub full: bool,
}

/// The receipts insert under way.
struct Open {
    rows: usize,
    last_batch: Instant,
    /// Checkpoint rows of the batches in it: inserted once it is answered,
    /// so a checkpoint never shows before the receipts it covers.
    checkpoints: Vec<u8>,
    gzip: Option<GzEncoder<Vec<u8>>>,
}

pub struct Inserter {
    /// The sink's `url`, for messages.
    url: String,
    database: String,
    gzip: bool,
    /// "Authorization: Basic ...\r\n", or "" (the server's default user).
    auth: String,
    client: Client,
    /// Receipts an insert may take.
    rows_max: usize,
    open: Option<Open>,
}

impl Inserter {
    /// `rows_max`: receipts an insert may take (at least one batch).
    pub fn new(
        cfg: &ClickHouseConfig,
        password: Option<String>,
        tls: Option<Arc<ClientConfig>>,
        proxy: Option<Proxy>,
        rows_max: usize,
    ) -> Result<Inserter, String> {
        let auth = match (&cfg.user, password) {
            (None, None) => String::new(),
            (user, password) => {
                let creds = format!(
                    "{}:{}",
                    user.as_deref().unwrap_or("default"),
                    password.unwrap_or_default()
                );
                format!(
                    "Authorization: Basic {}\r\n",
                    base64::engine::general_purpose::STANDARD.encode(creds)
                )
            }
        };
        let client = Client::for_sink(&cfg.url, tls, &cfg.tls, proxy, cfg.timeout_ms)?;
        Ok(Inserter {
            url: cfg.url.clone(),
            database: cfg.database.clone(),
            gzip: cfg.gzip,
            auth,
            client,
            rows_max,
            open: None,
        })
    }

    /// The request target of an insert into `table`. The database is an
    /// identifier (checked at start) and the columns are ours: only the
    /// spaces of the statement need escaping in the query string.
    fn target(&self, table: &str) -> String {
        let statement = format!(
            "INSERT INTO {}.{table} ({}) FORMAT JSONEachRow",
            self.database,
            rows::columns(table).unwrap_or_default()
        );
        format!(
            "{}{}query={}",
            self.client.url.path,
            if self.client.url.path.contains('?') {
                "&"
            } else {
                "?"
            },
            statement.replace(' ', "%20")
        )
    }

    fn headers(&self) -> String {
        let mut headers = String::from("Content-Type: text/plain; charset=utf-8\r\n");
        headers.push_str(&self.auth);
        if self.gzip {
            headers.push_str("Content-Encoding: gzip\r\n");
        }
        headers
    }

    /// A 2xx answer, or the error it is.
    fn answered(&self, table: &str, resp: &Response) -> Result<(), SendError> {
        match resp.status {
            200..=299 => Ok(()),
            401 | 403 => Err(SendError::new(
                "unauthorized",
                format!("HTTP {} from {}", resp.status, self.url),
                0,
            )),
            s => Err(SendError::new(
                "http_status",
                format!(
                    "HTTP {s} from {} inserting into {}.{table}: {}",
                    self.url,
                    self.database,
                    // ClickHouse's answer: "Code: 60, e.displayText() = ...".
                    String::from_utf8_lossy(&resp.body[..resp.body.len().min(300)]).trim()
                ),
                0,
            )),
        }
    }

    /// Writes receipt rows into the open insert, starting one if needed.
    fn stream(&mut self, receipts: &[u8], count: usize) -> Result<(), SendError> {
        if self.open.is_none() {
            let (target, headers) = (self.target("receipts"), self.headers());
            self.client.start_chunked(&target, &headers)?;
            self.open = Some(Open {
                rows: 0,
                last_batch: Instant::now(),
                checkpoints: Vec::new(),
                gzip: self
                    .gzip
                    .then(|| GzEncoder::new(Vec::new(), Compression::fast())),
            });
        }
        let Some(open) = self.open.as_mut() else {
            return Ok(());
        };
        open.rows += count;
        open.last_batch = Instant::now();
        match open.gzip.as_mut() {
            None => self.client.chunk(receipts),
            Some(gz) => {
                gz.write_all(receipts)
                    .map_err(|e| SendError::new("encode", e, 0))?;
                // What the encoder has produced so far (it appends to the
                // vector and never reads it back).
                let out = std::mem::take(gz.get_mut());
                self.client.chunk(&out)
            }
        }
    }

    /// Ends the open insert and waits for its answer, then inserts the
    /// checkpoints of its batches.
    fn finish(&mut self) -> Result<(), SendError> {
        let Some(open) = self.open.take() else {
            return Ok(());
        };
        if let Some(gz) = open.gzip {
            let rest = gz.finish().map_err(|e| SendError::new("encode", e, 0))?;
            self.client.chunk(&rest)?;
        }
        let resp = self.client.finish_chunked()?;
        self.answered("receipts", &resp)?;
        if !open.checkpoints.is_empty() {
            self.insert("checkpoints", &open.checkpoints)?;
        }
        Ok(())
    }

    /// One INSERT of JSONEachRow `rows` into `table`.
    fn insert(&mut self, table: &str, rows: &[u8]) -> Result<(), SendError> {
        let (target, headers) = (self.target(table), self.headers());
        let gzipped;
        let body = if self.gzip {
            gzipped = client::gzip(rows)?;
            &gzipped
        } else {
            rows
        };
        let resp = self.client.post(&target, &headers, body)?;
        self.answered(table, &resp)
    }
}

impl Deliver for Inserter {
    type Batch = Rows;

    /// Keys first (after the insert under way ends: they belong to
    /// receipts after it), then the receipts into the open insert, the
    /// checkpoints held until it is answered. A batch is delivered when
    /// every insert it is in answered 200. A failed insert fails the
    /// batches in it, which are sent again whole (the runner counts them
    /// as unconfirmed: `maybe_delivered` 0); the tables are
    /// ReplacingMergeTrees keyed by the row's identity, so a re-sent row
    /// collapses into the first (docs/fleet.md).
    fn deliver(&mut self, batch: &Rows) -> Result<Taken, SendError> {
        let [keys, receipts, checkpoints] = &batch.tables;
        let result = (|| {
            if !keys.is_empty() {
                self.finish()?;
                self.insert("keys", keys)?;
            }
            if !receipts.is_empty() {
                self.stream(receipts, batch.receipts)?;
            }
            match self.open.as_mut() {
                Some(open) => open.checkpoints.extend_from_slice(checkpoints),
                None if !checkpoints.is_empty() => self.insert("checkpoints", checkpoints)?,
                None => {}
            }
            let more = batch.full && self.open.as_ref().is_some_and(|o| o.rows < self.rows_max);
            if more {
                return Ok(Taken::Open);
            }
            self.finish()?;
            Ok(Taken::Delivered)
        })();
        result.map_err(|mut e: SendError| {
            e.maybe_delivered = 0;
            e
        })
    }

    fn deadline(&self) -> Option<Instant> {
        self.open.as_ref().map(|o| o.last_batch + OPEN_IDLE)
    }

    fn flush(&mut self) -> Result<(), SendError> {
        self.finish().map_err(|mut e| {
            e.maybe_delivered = 0;
            e
        })
    }

    fn reset(&mut self) {
        self.open = None;
        self.client.reset();
    }
}
