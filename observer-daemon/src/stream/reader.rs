//! The plaintext ring reader: drains `TLS_EVENTS`, decodes each record and
//! hands it to the stream layer with `try_send`, so a slow parser never
//! stalls the kernel side. What it cannot hand on is counted (as
//! `channel_full:tls_data` or a decode reason) in the same place as the
//! event ring's drops, and becomes a `loss` record like them.
use std::{sync::Arc, time::Duration};

use aya::maps::{MapData, RingBuf};
use observer_common::EventKind;
use tokio::{
    io::{unix::AsyncFd, Interest},
    sync::{mpsc, watch},
};

use crate::{
    pipeline::reader::UserDrops,
    stream::plaintext::{decode, Plaintext},
};

/// Reads until `stop` turns true, then drains what is left and returns the
/// number of records read.
pub async fn run(
    ring: RingBuf<MapData>,
    tx: mpsc::Sender<Plaintext>,
    drops: Arc<UserDrops>,
    poll: Duration,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<u64> {
    // SAFETY: the RingBuf owns its map fd for its whole life inside the
    // AsyncFd and always returns that same fd.
    let mut fd = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(|e| e.into_parts().1)?;
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut total = 0u64;
    loop {
        tokio::select! {
            ready = fd.readable_mut() => {
                let mut guard = ready?;
                total += drain(guard.get_inner_mut(), &tx, &drops);
                guard.clear_ready();
            }
            _ = tick.tick() => total += drain(fd.get_mut(), &tx, &drops),
            _ = stop.changed() => {
                total += drain(fd.get_mut(), &tx, &drops);
                return Ok(total);
            }
        }
    }
}

/// Consumes every record currently in the ring buffer.
pub fn drain(ring: &mut RingBuf<MapData>, tx: &mpsc::Sender<Plaintext>, drops: &UserDrops) -> u64 {
    let mut n = 0;
    while let Some(item) = ring.next() {
        n += 1;
        match decode(&item) {
            Ok(chunk) => {
                if tx.try_send(chunk).is_err() {
                    drops.count_channel_full(EventKind::TlsData);
                }
            }
            Err(err) => drops.count_decode(&err),
        }
    }
    n
}
