//! Tells the control socket's followers (`observerctl tail -f`) that the
//! writer committed receipts: a bounded broadcast of committed log ranges,
//! not of the rows. A follower reads the rows of a range from the store
//! with its own filter, so a follower that falls behind (the channel says
//! by how many ranges) loses nothing: the store holds every row, and the
//! next range it reads starts where it stopped.
use tokio::sync::broadcast;

/// Ranges kept for a follower that has not read them yet. The writer
/// commits a batch every few milliseconds at most, so this is seconds of
/// commits; a follower further behind is told it lagged and reads the
/// store from where it was.
pub const FEED_CAPACITY: usize = 1024;

/// Receipts with log indexes in `[first, end)` were committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    pub first: u64,
    pub end: u64,
}

/// The writer's side; cheap to clone a receiver from.
pub struct CommitFeed {
    tx: broadcast::Sender<Committed>,
}

impl Default for CommitFeed {
    fn default() -> Self {
        CommitFeed {
            tx: broadcast::channel(FEED_CAPACITY).0,
        }
    }
}

impl CommitFeed {
    /// Never blocks: without followers the range is dropped; a full
    /// channel overwrites the oldest range (its followers see `Lagged`).
    pub fn publish(&self, first: u64, end: u64) {
        let _ = self.tx.send(Committed { first, end });
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Committed> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::broadcast::error::TryRecvError;

    #[test]
    fn a_follower_that_falls_behind_is_told_by_how_much() {
        let feed = CommitFeed::default();
        let mut rx = feed.subscribe();
        for i in 0..FEED_CAPACITY as u64 + 3 {
            feed.publish(i, i + 1);
        }
        assert_eq!(rx.try_recv(), Err(TryRecvError::Lagged(3)));
        assert_eq!(rx.try_recv(), Ok(Committed { first: 3, end: 4 }));
    }
}
