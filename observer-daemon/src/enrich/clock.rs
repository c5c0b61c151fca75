//! Following the wall clock. Event times are boot time (the kernel's
//! `bpf_ktime_get_boot_ns`) plus the offset CLOCK_REALTIME - CLOCK_BOOTTIME.
//! That offset changes when the wall clock is stepped (NTP on a machine
//! without an RTC, an operator's `date -s`). The writer re-reads it at every
//! tick (every 200 ms) and the kernel's timerfd with
//! TFD_TIMER_CANCEL_ON_SET makes it re-read at once when CLOCK_REALTIME is
//! set. A change of at least [`STEP_MIN_NS`] is a step: it becomes an
//! `observer.clock_step` receipt, and times from then on use the new
//! offset. Smaller changes (NTP slewing) are followed silently.
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use serde_json::{json, Value};
use tokio::{
    io::unix::AsyncFd,
    sync::{mpsc, watch},
};

use crate::{format::BootClock, pipeline::inbox::Msg, receipt::payload};

/// The receipt that records a step.
pub const STEP_ACTION: &str = "observer.clock_step";

/// An offset change of at least this much is a step. Slewing moves the
/// offset by at most 0.5 ms per second; reading the two clocks one after
/// the other varies by microseconds.
pub const STEP_MIN_NS: i128 = 100_000_000;

/// A step of the wall clock seen against the boot clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub old_offset_ns: i128,
    pub new_offset_ns: i128,
    /// CLOCK_BOOTTIME when the step was seen.
    pub seen_boot_ns: u64,
}

impl Step {
    /// New minus old: positive when the clock moved forward.
    pub fn step_ns(&self) -> i128 {
        self.new_offset_ns - self.old_offset_ns
    }

    /// The `observer.clock_step` receipt's context.
    pub fn context(&self) -> Value {
        let at = |offset: i128| {
            payload::issued_at((i128::from(self.seen_boot_ns) + offset).max(0) as u64)
        };
        // Decimal strings: nanosecond counts pass 2^53, the largest
        // integer a receipt's JSON (I-JSON) may carry as a number.
        json!({
            "old_offset_ns": self.old_offset_ns.to_string(),
            "new_offset_ns": self.new_offset_ns.to_string(),
            "step_ns": self.step_ns().to_string(),
            "seen_boot_ns": self.seen_boot_ns.to_string(),
            "old_time": at(self.old_offset_ns),
            "new_time": at(self.new_offset_ns),
        })
    }
}

/// Re-reads the offset into `clock`; returns the step if it moved by at
/// least [`STEP_MIN_NS`].
pub fn follow(clock: &mut BootClock) -> Option<Step> {
    let seen_boot_ns = BootClock::boot_ns_now();
    let now = BootClock::now();
    let old = *clock;
    *clock = now;
    ((now.offset_ns() - old.offset_ns()).abs() >= STEP_MIN_NS).then(|| Step {
        old_offset_ns: old.offset_ns(),
        new_offset_ns: now.offset_ns(),
        seen_boot_ns,
    })
}

/// A timerfd on CLOCK_REALTIME that becomes readable (its read fails with
/// ECANCELED) when the clock is set.
struct SetWatch(AsyncFd<OwnedFd>);

impl SetWatch {
    fn new() -> std::io::Result<SetWatch> {
        // SAFETY: plain syscall; the fd is owned below.
        let fd = unsafe {
            libc::timerfd_create(libc::CLOCK_REALTIME, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC)
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd is a new descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        arm(&fd)?;
        // SAFETY: the AsyncFd owns the descriptor; nothing closes or
        // replaces it while registered.
        let fd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
            .map_err(std::io::Error::from)?;
        Ok(SetWatch(fd))
    }

    /// Waits until the clock is set (or the far timer expires).
    async fn wait(&self) -> std::io::Result<()> {
        loop {
            let mut guard = self.0.readable().await?;
            let mut expirations = [0u8; 8];
            // SAFETY: reads 8 bytes into a valid buffer.
            let n = unsafe {
                libc::read(
                    self.0.get_ref().as_raw_fd(),
                    expirations.as_mut_ptr().cast(),
                    expirations.len(),
                )
            };
            if n >= 0 {
                arm(self.0.get_ref())?;
                return Ok(());
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::ECANCELED) => {
                    // The clock was set: re-arm, or the next read fails
                    // at once again.
                    arm(self.0.get_ref())?;
                    return Ok(());
                }
                Some(libc::EAGAIN) => guard.clear_ready(),
                _ => return Err(e),
            }
        }
    }
}

/// Arms the timer at an absolute time far ahead, cancelled on a clock set.
fn arm(fd: &OwnedFd) -> std::io::Result<()> {
    const FAR_AHEAD_S: libc::time_t = 100 * 365 * 86_400;
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid clock id and out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) };
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: now.tv_sec.saturating_add(FAR_AHEAD_S),
            tv_nsec: 0,
        },
    };
    // SAFETY: valid fd and timer spec; the old value is not wanted.
    let rc = unsafe {
        libc::timerfd_settime(
            fd.as_raw_fd(),
            libc::TFD_TIMER_ABSTIME | libc::TFD_TIMER_CANCEL_ON_SET,
            &spec,
            std::ptr::null_mut(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Wakes the writer (a tick, where it re-reads the offset) whenever the
/// kernel reports that CLOCK_REALTIME was set, until `stop`. Without the
/// timerfd the ticks alone still find the step, up to 200 ms later.
pub async fn wake_on_set(tx: mpsc::Sender<Msg>, mut stop: watch::Receiver<bool>) {
    let watch = match SetWatch::new() {
        Ok(w) => w,
        Err(e) => {
            log::warn!("clock: no timerfd for clock steps ({e}); steps are found at the next tick");
            return;
        }
    };
    loop {
        tokio::select! {
            r = watch.wait() => {
                if let Err(e) = r {
                    log::warn!("clock: timerfd: {e}; steps are found at the next tick");
                    return;
                }
                // A full channel wakes the writer anyway.
                let _ = tx.try_send(Msg::Tick);
            }
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unchanged_clock_is_no_step() {
        let mut clock = BootClock::now();
        assert_eq!(follow(&mut clock), None);
    }

    #[test]
    fn the_step_receipt_names_both_offsets_and_times() {
        let step = Step {
            old_offset_ns: 1_000_000_000_000,
            new_offset_ns: 1_000_000_000_000 + 3_600_000_000_000,
            seen_boot_ns: 5_000_000_000,
        };
        assert_eq!(
            step.context(),
            json!({
                "old_offset_ns": "1000000000000",
                "new_offset_ns": "4600000000000",
                "step_ns": "3600000000000",
                "seen_boot_ns": "5000000000",
                "old_time": "1970-01-01T00:16:45.000000000Z",
                "new_time": "1970-01-01T01:16:45.000000000Z",
            })
        );
    }
}
