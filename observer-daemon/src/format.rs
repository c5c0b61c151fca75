//! Small pure conversions for output: errno names, open flags, wait
//! statuses, socket types, and kernel boot time to wall-clock time.
use std::time::{Duration, SystemTime};

/// `ENOENT` for 2; `None` for 0 and non-negative results.
pub fn errno_name(result: i32) -> Option<String> {
    (result < 0).then(|| format!("{:?}", nix::errno::Errno::from_raw(-result)))
}

const OPEN_FLAGS: &[(u32, &str)] = &[
    (libc::O_CREAT as u32, "O_CREAT"),
    (libc::O_EXCL as u32, "O_EXCL"),
    (libc::O_NOCTTY as u32, "O_NOCTTY"),
    (libc::O_TRUNC as u32, "O_TRUNC"),
    (libc::O_APPEND as u32, "O_APPEND"),
    (libc::O_NONBLOCK as u32, "O_NONBLOCK"),
    (libc::O_DSYNC as u32, "O_DSYNC"),
    (libc::O_DIRECT as u32, "O_DIRECT"),
    (libc::O_LARGEFILE as u32, "O_LARGEFILE"),
    (libc::O_DIRECTORY as u32, "O_DIRECTORY"),
    (libc::O_NOFOLLOW as u32, "O_NOFOLLOW"),
    (libc::O_NOATIME as u32, "O_NOATIME"),
    (libc::O_CLOEXEC as u32, "O_CLOEXEC"),
    (libc::O_PATH as u32, "O_PATH"),
];

/// `O_RDONLY|O_CLOEXEC` style rendering of open(2) flags.
pub fn open_flags(flags: u32) -> String {
    let access = match flags & libc::O_ACCMODE as u32 {
        0 => "O_RDONLY",
        1 => "O_WRONLY",
        _ => "O_RDWR",
    };
    let mut out = vec![access.to_string()];
    let mut known = libc::O_ACCMODE as u32;
    // O_SYNC includes O_DSYNC's bit; name it once.
    if flags & libc::O_SYNC as u32 == libc::O_SYNC as u32 {
        out.push("O_SYNC".into());
        known |= libc::O_SYNC as u32;
    }
    for (bit, name) in OPEN_FLAGS {
        if flags & bit != 0 && known & bit == 0 {
            out.push((*name).into());
            known |= bit;
        }
    }
    if flags & !known != 0 {
        out.push(format!("0x{:x}", flags & !known));
    }
    out.join("|")
}

/// (exit code, signal, core dumped) of a wait(2) status.
pub fn wait_status(status: u32) -> (Option<i32>, Option<i32>, bool) {
    let signal = (status & 0x7f) as i32;
    if signal == 0 {
        (Some(((status >> 8) & 0xff) as i32), None, false)
    } else {
        (None, Some(signal), status & 0x80 != 0)
    }
}

pub fn socket_type(t: u16) -> String {
    match i32::from(t) {
        libc::SOCK_STREAM => "stream".into(),
        libc::SOCK_DGRAM => "dgram".into(),
        libc::SOCK_RAW => "raw".into(),
        libc::SOCK_SEQPACKET => "seqpacket".into(),
        0 => "unknown".into(),
        n => n.to_string(),
    }
}

pub fn family(f: u16) -> &'static str {
    match i32::from(f) {
        libc::AF_INET => "inet",
        libc::AF_INET6 => "inet6",
        _ => "other",
    }
}

/// Maps `bpf_ktime_get_boot_ns()` values to wall-clock time, using the
/// offset between CLOCK_REALTIME and CLOCK_BOOTTIME. The offset is taken at
/// startup and re-read as the wall clock moves (see [`crate::enrich::clock`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootClock {
    realtime_minus_boot_ns: i128,
}

impl BootClock {
    pub fn now() -> BootClock {
        let boot = clock_ns(libc::CLOCK_BOOTTIME);
        let real = clock_ns(libc::CLOCK_REALTIME);
        BootClock {
            realtime_minus_boot_ns: real - boot,
        }
    }

    /// CLOCK_REALTIME minus CLOCK_BOOTTIME, in nanoseconds.
    pub fn offset_ns(&self) -> i128 {
        self.realtime_minus_boot_ns
    }

    pub fn boot_ns_now() -> u64 {
        clock_ns(libc::CLOCK_BOOTTIME) as u64
    }

    pub fn wall(&self, boot_ns: u64) -> SystemTime {
        let ns = (i128::from(boot_ns) + self.realtime_minus_boot_ns).max(0) as u64;
        SystemTime::UNIX_EPOCH + Duration::from_nanos(ns)
    }

    pub fn rfc3339(&self, boot_ns: u64) -> String {
        rfc3339(self.wall(boot_ns))
    }
}

pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_nanos(t).to_string()
}

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid clock id and a valid out pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_names() {
        assert_eq!(errno_name(-2).as_deref(), Some("ENOENT"));
        assert_eq!(errno_name(-111).as_deref(), Some("ECONNREFUSED"));
        assert_eq!(errno_name(0), None);
        assert_eq!(errno_name(5), None);
    }

    #[test]
    fn open_flag_text() {
        assert_eq!(open_flags(0), "O_RDONLY");
        assert_eq!(
            open_flags(libc::O_WRONLY as u32 | libc::O_CREAT as u32 | libc::O_TRUNC as u32),
            "O_WRONLY|O_CREAT|O_TRUNC"
        );
        assert_eq!(
            open_flags(libc::O_RDONLY as u32 | libc::O_CLOEXEC as u32),
            "O_RDONLY|O_CLOEXEC"
        );
        assert_eq!(open_flags(libc::O_SYNC as u32), "O_RDONLY|O_SYNC");
    }

    #[test]
    fn wait_statuses() {
        assert_eq!(wait_status(3 << 8), (Some(3), None, false));
        assert_eq!(wait_status(9), (None, Some(9), false));
        assert_eq!(wait_status(0x80 | 11), (None, Some(11), true));
    }

    #[test]
    fn boot_clock_maps_now_to_now() {
        let clock = BootClock::now();
        let wall = clock.wall(BootClock::boot_ns_now());
        let skew = SystemTime::now().duration_since(wall).unwrap_or_default();
        assert!(skew < Duration::from_secs(1), "{skew:?}");
    }
}
