//! `clickhouse` sink: each batch becomes `INSERT INTO <db>.<table> FORMAT
//! JSONEachRow` POSTs over ClickHouse's HTTP interface, through the http
//! sink's client (same TCP/TLS transport, proxy and response bounds).
//! Plain JSONEachRow rather than a client crate: it is what the oldest
//! server we support (Debian's 18.16) reads reliably, and it keeps the
//! sink on its synchronous thread.
//!
//! A batch is delivered when every insert it needs answered 200, in this
//! order: the keys its `observer.key` receipts announced (read from the
//! store, as it records them), its receipts, then its checkpoints. So a
//! checkpoint in ClickHouse comes after every receipt it covers. A failed
//! insert fails the batch, which is sent again whole; the tables are
//! ReplacingMergeTrees keyed by the row's identity, so a re-sent row
//! collapses into the first (docs/fleet.md).
use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use base64::Engine;
use rustls::ClientConfig;

use super::{
    config::ClickHouseConfig,
    http::{
        client::{self, Client},
        proxy::Proxy,
        Url,
    },
    sink::{SendError, Sink},
};
use crate::{
    export::{Item, ReceiptItem},
    receipt::store::{Store, StoreError},
};

pub mod rows;

/// The action type whose receipts announce keys.
const KEY_ACTION: &str = "observer.key";

/// A retention prune's `observer.policy` receipt: its context names the
/// cut and the chain heads and keys there.
fn is_prune_anchor(r: &ReceiptItem) -> bool {
    r.action_type == "observer.policy"
        && r.context
            .as_deref()
            .is_some_and(|c| c.contains("\"event\":\"prune\""))
}

pub struct ClickHouseSink {
    cfg: ClickHouseConfig,
    /// The log's origin (`<deployer_id>/host/<hostname>`): every row's host.
    host: String,
    /// "Authorization: Basic ...\r\n", or "" (the server's default user).
    auth: String,
    client: Client,
    /// The receipt store, read for the keys `observer.key` receipts
    /// announced; opened read-only when first needed.
    store_path: PathBuf,
    store: Option<Store>,
    /// The sink's `batch_max`: a batch with this many receipts is full.
    batch_max: usize,
    /// When the previous batch was inserted.
    last_insert: Option<Instant>,
}

impl ClickHouseSink {
    pub fn new(
        cfg: ClickHouseConfig,
        host: String,
        password: Option<String>,
        tls: Option<Arc<ClientConfig>>,
        proxy: Option<Proxy>,
        store_path: PathBuf,
        batch_max: usize,
    ) -> Result<ClickHouseSink, String> {
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
        Ok(ClickHouseSink {
            cfg,
            host,
            auth,
            client,
            store_path,
            store: None,
            batch_max,
            last_insert: None,
        })
    }

    /// The rows of `batch`, per table: (keys, receipts, checkpoints).
    fn encode(&mut self, batch: &[Item]) -> Result<[Vec<u8>; 3], StoreError> {
        let (mut keys, mut receipts, mut checkpoints) = (Vec::new(), Vec::new(), Vec::new());
        for item in batch {
            match item {
                Item::Receipt(r) => {
                    rows::push_receipt(&mut receipts, &self.host, r);
                    if r.action_type == KEY_ACTION {
                        for k in self.store()?.keys_introduced_by(&r.receipt_hash)? {
                            rows::push_key(&mut keys, &self.host, &k, &r.receipt_hash);
                        }
                    } else if is_prune_anchor(r) {
                        // Keys announced in the pruned prefix never reach a
                        // sink added after the prune with their receipts:
                        // they travel with the anchor that vouches for them.
                        // A sink that had them sends duplicates, which the
                        // table's ReplacingMergeTree collapses.
                        for (k, by) in self.store()?.keys_of_pruned_receipts()? {
                            rows::push_key(&mut keys, &self.host, &k, &by);
                        }
                    }
                }
                Item::Checkpoint(c) => rows::push_checkpoint(&mut checkpoints, &self.host, c),
            }
        }
        Ok([keys, receipts, checkpoints])
    }

    fn store(&mut self) -> Result<&Store, StoreError> {
        let store = match self.store.take() {
            Some(s) => s,
            None => Store::open_read_only(&self.store_path)?,
        };
        Ok(self.store.insert(store))
    }

    /// One INSERT of JSONEachRow `rows` into `table`.
    fn insert(&mut self, table: &str, rows: &[u8]) -> Result<(), SendError> {
        // The database is an identifier (checked at start) and the columns
        // are ours: only the spaces of the statement need escaping in the
        // query string.
        let statement = format!(
            "INSERT INTO {}.{table} ({}) FORMAT JSONEachRow",
            self.cfg.database,
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
        let body = if self.cfg.gzip {
            headers.push_str("Content-Encoding: gzip\r\n");
            client::gzip(rows)?
        } else {
            rows.to_vec()
        };
        let resp = self.client.post(&target, &headers, &body)?;
        match resp.status {
            200..=299 => Ok(()),
            401 | 403 => Err(SendError::new(
                "unauthorized",
                format!("HTTP {} from {}", resp.status, self.cfg.url),
                0,
            )),
            s => Err(SendError::new(
                "http_status",
                format!(
                    "HTTP {s} from {} inserting into {}.{table}: {}",
                    self.cfg.url,
                    self.cfg.database,
                    // ClickHouse's answer: "Code: 60, e.displayText() = ...".
                    String::from_utf8_lossy(&resp.body[..resp.body.len().min(300)]).trim()
                ),
                0,
            )),
        }
    }
}

impl Sink for ClickHouseSink {
    fn send(&mut self, batch: &[Item]) -> Result<(), SendError> {
        let tables = self.encode(batch).map_err(|e| {
            self.store = None;
            SendError::new("keys", format!("reading the announced keys: {e}"), 0)
        })?;
        let receipts = batch
            .iter()
            .filter(|i| matches!(i, Item::Receipt(_)))
            .count();
        // A small batch waits out the insert interval (on this sink's own
        // thread; what arrives meanwhile makes the next batch larger).
        if let Some(last) = self.last_insert.filter(|_| receipts < self.batch_max) {
            let interval = Duration::from_millis(self.cfg.insert_interval_ms);
            std::thread::sleep(interval.saturating_sub(last.elapsed()));
        }
        // Items of the batch in the inserts before each table's.
        let before = [0, 0, receipts];
        for ((table, rows), done) in ["keys", "receipts", "checkpoints"]
            .into_iter()
            .zip(&tables)
            .zip(before)
        {
            if rows.is_empty() {
                continue;
            }
            self.insert(table, rows).map_err(|mut e| {
                // Inserts that answered 200 are in ClickHouse; one whose
                // answer was lost may be too.
                e.maybe_delivered = if e.maybe_delivered == client::AFTER_REQUEST {
                    batch.len()
                } else {
                    done
                };
                e
            })?;
        }
        self.last_insert = Some(Instant::now());
        Ok(())
    }

    fn reset(&mut self) {
        self.client.reset();
    }
}
