//! What a sink implements: deliver a batch and say when the receiver has
//! acknowledged it.
use std::time::Duration;

use crate::export::Item;

/// A failed delivery.
#[derive(Debug)]
pub struct SendError {
    /// Counted by reason in the sink's error counters.
    pub reason: &'static str,
    pub message: String,
    /// Records of the batch that may have reached the receiver before the
    /// failure; they are sent again (at-least-once duplicates).
    pub maybe_delivered: usize,
}

impl SendError {
    pub fn new(reason: &'static str, message: impl ToString, maybe_delivered: usize) -> SendError {
        SendError {
            reason,
            message: message.to_string(),
            maybe_delivered,
        }
    }
}

pub trait Sink: Send {
    /// Delivers `batch` in order; Ok once the receiver acknowledged it
    /// (HTTP 2xx, fsync, every byte acked by the collector's TCP stack).
    fn send(&mut self, batch: &[Item]) -> Result<(), SendError>;

    /// How long after `send` returned a batch counts as delivered, if the
    /// connection is still healthy then (see `healthy`). Zero: at once.
    fn confirm_after(&self) -> Duration {
        Duration::ZERO
    }

    /// False once the connection that carried unconfirmed batches broke:
    /// they are sent again.
    fn healthy(&mut self) -> bool {
        true
    }

    /// For a sink whose `send` returns before the receiver answered (it
    /// delivers on a thread of its own, see `pipeline`): how many of the
    /// batches sent last are still being delivered, or why one of them
    /// failed. The runner confirms only the batches before those; a
    /// failure sends everything unconfirmed again.
    fn in_delivery(&mut self) -> Result<usize, SendError> {
        Ok(0)
    }

    /// Forgets the connection after a failure; the next send reconnects.
    fn reset(&mut self) {}

    /// Records of the batches sent since the last call that the transport
    /// can never carry (a syslog message larger than a UDP datagram): they
    /// were skipped, so the cursor moves past them, and the runner counts
    /// them as unsendable.
    fn take_unsendable(&mut self) -> u64 {
        0
    }
}
