//! The daemon's background tasks beside the reader and the writer: loss
//! accounting from the kernel's and user space's counters, systemd's
//! watchdog, and the tick that lets the writer close time windows while no
//! events arrive.
use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use aya::{
    maps::{MapData, PerCpuArray},
    programs::ProgramFd,
};
use observer_common::KindCounters;
use tokio::sync::{mpsc, watch};

use crate::{
    format::rfc3339,
    pipeline::{
        inbox::Msg,
        loss::{read_kernel, read_skipped, LossTracker, Snapshot},
        reader::UserDrops,
    },
    record::Record,
    service::notify::Notifier,
};

/// Every counter of lost events, kernel and user space.
pub(super) struct Counters {
    pub(super) kernel: PerCpuArray<MapData, KindCounters>,
    pub(super) programs: Vec<(&'static str, ProgramFd)>,
    pub(super) user: Arc<UserDrops>,
}

impl Counters {
    pub(super) fn snapshot(&self) -> Snapshot {
        Snapshot {
            kernel: read_kernel(&self.kernel),
            user: self.user.snapshot(),
            skipped: read_skipped(&self.programs),
        }
    }
}

pub(super) async fn account_losses(
    counters: Counters,
    shared: Arc<std::sync::Mutex<Option<Snapshot>>>,
    tx: mpsc::Sender<Msg>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) -> (Counters, LossTracker) {
    let mut tracker = LossTracker::default();
    let mut tick = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return (counters, tracker),
        }
        let time = rfc3339(SystemTime::now());
        let snapshot = counters.snapshot();
        if let Ok(mut s) = shared.lock() {
            *s = Some(snapshot.clone());
        }
        if let Some(loss) = tracker.update(snapshot, time) {
            log::warn!(
                message_id = crate::service::journal::message_id::EVENTS_LOST,
                lost = loss.total;
                "lost {} events: kernel {:?}, user {:?}, skipped {:?}",
                loss.total,
                loss.kernel,
                loss.user,
                loss.kernel_skipped
            );
            // Loss records wait for room: they must not be dropped themselves.
            if tx.send(Msg::Record(Record::Loss(loss))).await.is_err() {
                return (counters, tracker);
            }
        }
    }
}

/// Pings systemd's watchdog until shutdown begins. The drain after that is
/// bounded by the unit's stop timeout.
pub(super) async fn keep_watchdog_fed(
    n: Notifier,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(e) = n.notify("WATCHDOG=1") {
                    log::warn!("systemd watchdog: {e}");
                }
            }
            _ = stop.changed() => return,
        }
    }
}

/// Lets the writer stage close time windows while no events arrive.
pub(super) async fn tick(tx: mpsc::Sender<Msg>, mut stop: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.changed() => return,
        }
        // A full channel already wakes the writer; a lost tick is harmless.
        let _ = tx.try_send(Msg::Tick);
    }
}
