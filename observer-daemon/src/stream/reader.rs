//! The plaintext ring reader: drains `TLS_EVENTS`, decodes each record and
//! hands it to the stream layer with `try_send`, so a slow parser never
//! stalls the kernel side. What it cannot hand on is counted (as
//! `channel_full:tls_data` / `channel_full:io_data` or a decode reason) in the same place as the
//! event ring's drops, and becomes a `loss` record like them.
use std::{sync::Arc, time::Duration};

use aya::maps::{MapData, RingBuf};
use tokio::sync::{mpsc, watch};

use crate::{
    pipeline::reader::{read_ring, UserDrops},
    stream::plaintext::{decode, Plaintext},
};

/// Reads until `stop` turns true, then drains what is left and returns the
/// number of records read.
pub async fn run(
    ring: RingBuf<MapData>,
    tx: mpsc::Sender<Plaintext>,
    drops: Arc<UserDrops>,
    poll: Duration,
    stop: watch::Receiver<bool>,
) -> std::io::Result<u64> {
    read_ring(ring, poll, stop, |r| drain(r, &tx, &drops)).await
}

/// Consumes every record currently in the ring buffer.
pub fn drain(ring: &mut RingBuf<MapData>, tx: &mpsc::Sender<Plaintext>, drops: &UserDrops) -> u64 {
    let mut n = 0;
    while let Some(item) = ring.next() {
        n += 1;
        match decode(&item) {
            Ok(chunk) => {
                let kind = chunk.header.kind;
                if tx.try_send(chunk).is_err() {
                    drops.count_channel_full(kind);
                }
            }
            Err(err) => drops.count_decode(&err),
        }
    }
    n
}
