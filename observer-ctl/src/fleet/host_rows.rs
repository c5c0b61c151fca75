//! A host's receipt rows out of the fleet store, in log order, read on a
//! thread of their own and one host ahead of the verifier.
//!
//! Why: ClickHouse 18.16 sorts a host's rows by log index before it sends
//! the first one, and the verifier's threads would wait for that. So each
//! host's query starts while the verifier checks the previous host (when
//! at most [`START_NEXT_WITHIN`] of its rows are left), and ClickHouse
//! sends the sorted rows in small blocks ([`SORTED_BLOCK_ROWS`]). The rows are parsed on the
//! reading thread too. Each host's channel holds at most [`AHEAD`] rows:
//! memory stays bounded however large a host is.
use std::sync::{
    mpsc::{sync_channel, Receiver, SyncSender},
    Arc, Mutex, PoisonError,
};

use super::clickhouse::{quote, ClickHouse};
use crate::CtlError;

/// Rows a host's reader holds before it waits for the verifier (a row is
/// about 7 KB: an ML-DSA-65 signature in base64 and the context).
const AHEAD: usize = 1024;

/// The rows of the blocks ClickHouse sorts and sends a host's rows in.
const SORTED_BLOCK_ROWS: usize = 512;

/// A `receipts` row.
#[derive(PartialEq, Debug)]
pub struct Row {
    pub chain: String,
    pub seq: u64,
    pub leaf_index: u64,
    pub receipt_hash: String,
    pub envelope: String,
    pub context: Option<String>,
}

impl Row {
    /// The columns read, in the order [`Row::of`] takes them.
    const SELECT: &'static str = "chain, seq, leaf_index, receipt_hash, envelope, context";
    const COLUMNS: usize = 6;

    /// A row from its TabSeparated fields.
    fn of(fields: Vec<Option<String>>) -> Result<Row, CtlError> {
        let mut it = fields.into_iter();
        let mut text = |name: &str| {
            it.next().flatten().ok_or_else(|| {
                CtlError::Store(format!("fleet store: a receipt row without {name}"))
            })
        };
        let number = |name: &str, v: String| {
            v.parse::<u64>().map_err(|e| {
                CtlError::Store(format!("fleet store: a receipt row's {name} {v:?}: {e}"))
            })
        };
        let chain = text("chain")?;
        let seq = number("seq", text("seq")?)?;
        let leaf_index = number("leaf_index", text("leaf_index")?)?;
        let receipt_hash = text("receipt_hash")?;
        let envelope = text("envelope")?;
        let context = it.next().flatten();
        Ok(Row {
            chain,
            seq,
            leaf_index,
            receipt_hash,
            envelope,
            context,
        })
    }
}

type Item = Result<Row, CtlError>;

/// A host's query, not started yet.
struct Pending {
    ch: ClickHouse,
    host: String,
    tx: SyncSender<Item>,
}

/// Whoever needs a host's rows first starts its query: the verifier on
/// its first read, or the previous host's reader near that host's end.
type Slot = Arc<Mutex<Option<Pending>>>;

/// Starts the slot's query unless it was started already; whether it was
/// started now.
fn start(slot: &Slot) -> bool {
    let pending = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
    pending.is_some_and(|p| {
        spawn(p.ch, p.host, p.tx);
        true
    })
}

fn spawn(ch: ClickHouse, host: String, tx: SyncSender<Item>) {
    std::thread::spawn(move || read(&ch, &host, &tx));
}

/// Streams the host's rows into `tx`, then an error if the query failed.
/// Stops when the receiver is gone (the host was skipped, or verification
/// ended early).
fn read(ch: &ClickHouse, host: &str, tx: &SyncSender<Item>) {
    // Blocks of 512 rows rather than 65,536: ClickHouse merges its sorted
    // blocks into output blocks of max_block_size rows, and one of 65,536
    // (a whole host of 50,000 receipts, 330 MB) is ready only when the
    // whole sort is; small ones flow as they are merged. On 18.16, 50,000
    // receipts: first row after 0.3 s instead of 0.8 s, and 0.7 s of
    // ClickHouse's CPU instead of 1.2 s.
    let select = format!(
        "SELECT {} FROM {} WHERE host = {} ORDER BY leaf_index, receipt_hash \
         SETTINGS max_block_size = {SORTED_BLOCK_ROWS}",
        Row::SELECT,
        ch.table("receipts"),
        quote(host)
    );
    let gone = || CtlError::Io("the verifier stopped reading".into());
    let read = ch.for_each_tsv_row(&select, Row::COLUMNS, |fields| {
        tx.send(Row::of(fields)).map_err(|_| gone())
    });
    if let Err(e) = read {
        let _ = tx.send(Err(e));
    }
}

/// The next host's query starts when this many of the current host's
/// rows are left (at once for a smaller host): about 6 s of verifying, so
/// a query started early never idles long enough behind a large host for
/// ClickHouse to give up sending (`http_send_timeout`, 30 minutes).
const START_NEXT_WITHIN: u64 = 100_000;

/// One host's rows, in log order (a position's copies together).
pub struct HostRows {
    ch: ClickHouse,
    host: String,
    rx: Receiver<Item>,
    own: Slot,
    next: Option<Slot>,
    first: bool,
    /// The first host's, whose query [`read_ahead`] started.
    lead: bool,
    /// Rows not yet handed on (`None`: unknown, the next host starts when
    /// this one ends).
    left: Option<u64>,
}

impl HostRows {
    /// The next row; `None` after the last.
    pub fn recv(&mut self) -> Option<Item> {
        let item = if self.first {
            self.first_recv()
        } else {
            self.rx.recv().ok()
        };
        self.left = self.left.map(|n| n.saturating_sub(1));
        let near_end = item.is_none() || self.left.is_some_and(|n| n <= START_NEXT_WITHIN);
        if near_end {
            if let Some(next) = self.next.take() {
                start(&next);
            }
        }
        item
    }

    fn first_recv(&mut self) -> Option<Item> {
        self.first = false;
        let started_early = !start(&self.own) && !self.lead;
        // Counted only to know when to start the next host's query: the
        // last host has none, and skips the query.
        self.left = if self.next.is_some() {
            self.count()
        } else {
            None
        };
        let item = self.rx.recv().ok();
        if !(started_early && matches!(item, Some(Err(_)))) {
            return item;
        }
        // Started while the previous host was verified, and failed before
        // its first row: asked once more, now.
        let (tx, rx) = sync_channel(AHEAD);
        spawn(self.ch.clone(), self.host.clone(), tx);
        self.rx = rx;
        self.rx.recv().ok()
    }

    /// The host's rows in the store (copies included, as they are read).
    fn count(&self) -> Option<u64> {
        #[derive(serde::Deserialize)]
        struct Count {
            n: u64,
        }
        let rows: Vec<Count> = self
            .ch
            .rows(&format!(
                "SELECT count() AS n FROM {} WHERE host = {}",
                self.ch.table("receipts"),
                quote(&self.host)
            ))
            .ok()?;
        rows.first().map(|c| c.n)
    }
}

/// Each host's rows, to be read in this order; the first host's query
/// starts now.
pub fn read_ahead(ch: &ClickHouse, hosts: &[String]) -> Vec<HostRows> {
    let (slots, rxs): (Vec<Slot>, Vec<Receiver<Item>>) = hosts
        .iter()
        .map(|host| {
            let (tx, rx) = sync_channel(AHEAD);
            let pending = Pending {
                ch: ch.clone(),
                host: host.clone(),
                tx,
            };
            (Arc::new(Mutex::new(Some(pending))), rx)
        })
        .unzip();
    if let Some(first) = slots.first() {
        start(first);
    }
    rxs.into_iter()
        .enumerate()
        .map(|(i, rx)| HostRows {
            ch: ch.clone(),
            host: hosts[i].clone(),
            rx,
            own: Arc::clone(&slots[i]),
            next: slots.get(i + 1).cloned(),
            first: true,
            lead: i == 0,
            left: None,
        })
        .collect()
}
