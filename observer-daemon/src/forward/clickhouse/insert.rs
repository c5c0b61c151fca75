//! The clickhouse sink's inserts, on its delivery thread: a batch's rows
//! as `INSERT INTO <db>.<table> (<columns>) FORMAT JSONEachRow` POSTs over
//! ClickHouse's HTTP interface, through the http sink's client (same
//! TCP/TLS transport, proxy and response bounds).
use std::{sync::Arc, time::Duration};

use base64::Engine;
use rustls::ClientConfig;

use super::rows;
use crate::forward::{
    config::ClickHouseConfig,
    http::{
        client::{self, Client},
        proxy::Proxy,
        Url,
    },
    pipeline::Deliver,
    sink::SendError,
};

/// The tables a batch is inserted into, in this order: the keys its
/// `observer.key` receipts announced, its receipts, then its checkpoints,
/// so a checkpoint in ClickHouse comes after every receipt it covers.
pub const TABLES: [&str; 3] = ["keys", "receipts", "checkpoints"];

/// One batch's rows per table of [`TABLES`] (JSONEachRow; empty: no
/// insert).
pub struct Rows(pub [Vec<u8>; 3]);

pub struct Inserter {
    /// The sink's `url`, for messages.
    url: String,
    database: String,
    gzip: bool,
    /// "Authorization: Basic ...\r\n", or "" (the server's default user).
    auth: String,
    client: Client,
}

impl Inserter {
    pub fn new(
        cfg: &ClickHouseConfig,
        password: Option<String>,
        tls: Option<Arc<ClientConfig>>,
        proxy: Option<Proxy>,
    ) -> Result<Inserter, String> {
        let url = Url::parse(&cfg.url)?;
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
        let client = Client::new(
            url,
            tls,
            cfg.tls.server_name.clone(),
            proxy,
            Duration::from_millis(cfg.timeout_ms),
        );
        Ok(Inserter {
            url: cfg.url.clone(),
            database: cfg.database.clone(),
            gzip: cfg.gzip,
            auth,
            client,
        })
    }

    /// One INSERT of JSONEachRow `rows` into `table`.
    fn insert(&mut self, table: &str, rows: &[u8]) -> Result<(), SendError> {
        // The database is an identifier (checked at start) and the columns
        // are ours: only the spaces of the statement need escaping in the
        // query string.
        let statement = format!(
            "INSERT INTO {}.{table} ({}) FORMAT JSONEachRow",
            self.database,
            rows::columns(table).unwrap_or_default()
        );
        let target = format!(
            "{}{}query={}",
            self.client.url.path,
            if self.client.url.path.contains('?') {
                "&"
            } else {
                "?"
            },
            statement.replace(' ', "%20")
        );
        let mut headers = String::from("Content-Type: text/plain; charset=utf-8\r\n");
        headers.push_str(&self.auth);
        let gzipped;
        let body = if self.gzip {
            headers.push_str("Content-Encoding: gzip\r\n");
            gzipped = client::gzip(rows)?;
            &gzipped
        } else {
            rows
        };
        let resp = self.client.post(&target, &headers, body)?;
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
}

impl Deliver for Inserter {
    type Batch = Rows;

    /// A batch is delivered when every insert it needs answered 200. A
    /// failed insert fails the batch, which is sent again whole (the
    /// runner counts all of it as unconfirmed: `maybe_delivered` 0); the
    /// tables are ReplacingMergeTrees keyed by the row's identity, so a
    /// re-sent row collapses into the first (docs/fleet.md).
    fn deliver(&mut self, batch: &Rows) -> Result<(), SendError> {
        for (table, rows) in TABLES.into_iter().zip(&batch.0) {
            if !rows.is_empty() {
                self.insert(table, rows).map_err(|mut e| {
                    e.maybe_delivered = 0;
                    e
                })?;
            }
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.client.reset();
    }
}
