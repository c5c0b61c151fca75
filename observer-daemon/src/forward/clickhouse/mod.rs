//! `clickhouse` sink: each batch's rows go to ClickHouse's HTTP interface
//! as JSONEachRow inserts ([`insert`]). Plain JSONEachRow rather than a
//! client crate: it is what the oldest server we support (Debian's 18.16)
//! reads reliably.
//!
//! The runner's thread reads and encodes a batch while the sink's
//! delivery thread inserts the one before ([`super::pipeline`]), and a
//! backlog's full batches go as one long insert ([`insert`]): encoding
//! and ClickHouse's parsing run side by side, and ClickHouse gets parts of
//! up to 20,000 rows. A batch counts as delivered, and the cursor moves
//! past it, only when every insert it is in answered 200 (keys, receipts,
//! checkpoints, in that order); a failed insert fails its batches and
//! every batch after them, which are sent again from the cursor.
use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use rustls::ClientConfig;

use super::{
    config::ClickHouseConfig,
    http::proxy::Proxy,
    pipeline::Pipeline,
    sink::{SendError, Sink},
};
use crate::{
    export::{Item, ReceiptItem},
    receipt::store::{Store, StoreError},
};

pub mod insert;
pub mod rows;

use insert::{Inserter, Rows};

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

/// The sink's `batch_max` and `max_unconfirmed`.
pub struct Window {
    pub batch_max: usize,
    pub max_unconfirmed: usize,
}

pub struct ClickHouseSink {
    /// The log's origin (`<deployer_id>/host/<hostname>`): every row's host.
    host: String,
    /// The receipt store, read for the keys `observer.key` receipts
    /// announced; opened read-only when first needed.
    store_path: PathBuf,
    store: Option<Store>,
    /// The sink's `batch_max`: a batch with this many receipts is full.
    batch_max: usize,
    /// How long a batch that is not full waits after the previous insert.
    insert_interval: Duration,
    /// When the previous insert began (its batch was handed over).
    last_insert: Option<Instant>,
    inserts: Pipeline<Inserter>,
}

impl ClickHouseSink {
    pub fn new(
        cfg: &ClickHouseConfig,
        host: String,
        password: Option<String>,
        tls: Option<Arc<ClientConfig>>,
        proxy: Option<Proxy>,
        store_path: PathBuf,
        window: Window,
    ) -> Result<ClickHouseSink, String> {
        let Window {
            batch_max,
            max_unconfirmed,
        } = window;
        // The runner sends no more than max_unconfirmed records (receipts
        // and checkpoints) before the first of them is confirmed: an
        // insert that came near would stall the runner until its idle
        // deadline. Half the room leaves a margin for the checkpoints.
        let rows_max = insert::INSERT_ROWS_MAX
            .min(max_unconfirmed.saturating_sub(batch_max) / 2)
            .max(batch_max);
        Ok(ClickHouseSink {
            host,
            store_path,
            store: None,
            batch_max,
            insert_interval: Duration::from_millis(cfg.insert_interval_ms),
            last_insert: None,
            inserts: Pipeline::new(Inserter::new(cfg, password, tls, proxy, rows_max)?),
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
        // A small batch waits out the insert interval (on the runner's
        // thread: what arrives meanwhile makes the next batch larger).
        if let Some(last) = self.last_insert.filter(|_| receipts < self.batch_max) {
            std::thread::sleep(self.insert_interval.saturating_sub(last.elapsed()));
        }
        self.inserts.hand_over(Rows {
            tables,
            receipts,
            full: receipts >= self.batch_max,
        })?;
        self.last_insert = Some(Instant::now());
        Ok(())
    }

    fn in_delivery(&mut self) -> Result<usize, SendError> {
        self.inserts.in_delivery()
    }

    fn reset(&mut self) {
        self.inserts.reset();
    }
}
