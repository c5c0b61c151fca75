//! The ring-buffer reader: drains kernel records, decodes them and hands
//! them on with `try_send`, so it never waits on downstream work. What it
//! cannot hand on is counted by reason, never silently lost.
use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicU64, Ordering},
    sync::Arc,
    time::Duration,
};

use aya::maps::{MapData, RingBuf};
use observer_common::{EventKind, EVENT_KIND_COUNT};
use tokio::{
    io::{unix::AsyncFd, Interest},
    sync::{mpsc, watch},
};

use crate::{
    event::{decode, DecodeError},
    pipeline::inbox::Msg,
};

/// User-space drop counters, shared by the reader and the loss tracker.
#[derive(Default)]
pub struct UserDrops {
    channel_full: [AtomicU64; EVENT_KIND_COUNT as usize],
    decode: [AtomicU64; 3],
    /// Requests to hook a watched process's TLS lost to a full attacher
    /// queue: that process's TLS traffic goes unseen.
    tls_attach_queue_full: AtomicU64,
}

const DECODE_REASONS: [&str; 3] = ["decode_short", "decode_unknown_kind", "decode_bad_length"];

impl UserDrops {
    pub fn count_channel_full(&self, kind: EventKind) {
        self.channel_full[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a lost attach request; returns the total so far.
    pub fn count_tls_attach_lost(&self) -> u64 {
        self.tls_attach_queue_full.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn count_decode(&self, err: &DecodeError) {
        let i = DECODE_REASONS
            .iter()
            .position(|r| *r == err.reason())
            .unwrap_or(0);
        self.decode[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Totals by reason: `channel_full:<kind>`, `decode_*` and
    /// `tls_attach_queue_full`.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for kind in EventKind::ALL {
            out.insert(
                format!("channel_full:{}", kind.name()),
                self.channel_full[kind as usize].load(Ordering::Relaxed),
            );
        }
        for (i, reason) in DECODE_REASONS.iter().enumerate() {
            out.insert(
                (*reason).to_string(),
                self.decode[i].load(Ordering::Relaxed),
            );
        }
        out.insert(
            "tls_attach_queue_full".to_string(),
            self.tls_attach_queue_full.load(Ordering::Relaxed),
        );
        out
    }
}

/// Reads until `stop` turns true, then drains what is left and returns.
pub async fn run(
    ring: RingBuf<MapData>,
    tx: mpsc::Sender<Msg>,
    drops: Arc<UserDrops>,
    poll: Duration,
    stop: watch::Receiver<bool>,
) -> std::io::Result<u64> {
    read_ring(ring, poll, stop, |r| drain(r, &tx, &drops)).await
}

/// The loop of every ring reader: `drain` empties the ring each time the
/// kernel signals (epoll, once enough bytes wait), on a `poll` timer for
/// the quieter records in between, and once more when `stop` turns true.
/// Returns the records drained.
pub async fn read_ring(
    ring: RingBuf<MapData>,
    poll: Duration,
    mut stop: watch::Receiver<bool>,
    mut drain: impl FnMut(&mut RingBuf<MapData>) -> u64,
) -> std::io::Result<u64> {
    // SAFETY: the RingBuf owns its map fd, keeps it open for its whole life
    // inside the AsyncFd, and always returns that same fd.
    let mut fd = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(|e| e.into_parts().1)?;
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut total = 0u64;
    loop {
        tokio::select! {
            ready = fd.readable_mut() => {
                let mut guard = ready?;
                total += drain(guard.get_inner_mut());
                guard.clear_ready();
            }
            _ = tick.tick() => total += drain(fd.get_mut()),
            _ = stop.changed() => {
                total += drain(fd.get_mut());
                return Ok(total);
            }
        }
    }
}

/// Consumes every record currently in the ring buffer.
fn drain(ring: &mut RingBuf<MapData>, tx: &mpsc::Sender<Msg>, drops: &UserDrops) -> u64 {
    let mut n = 0;
    while let Some(item) = ring.next() {
        n += 1;
        match decode(&item) {
            Ok(ev) => {
                let kind = ev.header.kind;
                // Full: enrichment is behind. Closed: the writer stopped and
                // the daemon is shutting down. Either way the event is counted.
                if tx.try_send(Msg::Event(ev)).is_err() {
                    drops.count_channel_full(kind);
                }
            }
            Err(err) => drops.count_decode(&err),
        }
    }
    n
}
