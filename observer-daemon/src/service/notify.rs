//! The systemd notification protocol (sd_notify(3)) without libsystemd:
//! one datagram per state change to the socket in `$NOTIFY_SOCKET`.
//! READY=1 once the probes are attached and the receipt store is open,
//! STOPPING=1 when shutdown begins, WATCHDOG=1 every half watchdog period,
//! EXTEND_TIMEOUT_USEC while a start waits for room in a full store.
use std::{
    io,
    os::{
        linux::net::SocketAddrExt,
        unix::net::{SocketAddr, UnixDatagram},
    },
    time::Duration,
};

pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
}

impl Notifier {
    /// The notifier systemd asked for, if it did (no `$NOTIFY_SOCKET`
    /// outside a `Type=notify` service).
    pub fn from_env() -> io::Result<Option<Notifier>> {
        let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
            return Ok(None);
        };
        let path = path.to_string_lossy().into_owned();
        let addr = match path.strip_prefix('@') {
            // Abstract namespace socket.
            Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
            None => SocketAddr::from_pathname(&path)?,
        };
        Ok(Some(Notifier {
            socket: UnixDatagram::unbound()?,
            addr,
        }))
    }

    pub fn notify(&self, state: &str) -> io::Result<()> {
        self.socket
            .send_to_addr(state.as_bytes(), &self.addr)
            .map(|_| ())
    }

    /// Half the watchdog period systemd set for this process, if any.
    pub fn watchdog_interval() -> Option<Duration> {
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
        let pid_matches = std::env::var("WATCHDOG_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            .is_none_or(|p| p == std::process::id());
        (pid_matches && usec > 0).then(|| Duration::from_micros(usec / 2))
    }
}

/// While a start waits for room in a full receipt store: keeps systemd's
/// start timeout (90 s by default) ahead of the next attempt, which comes
/// within `next_attempt`, and says why the start takes long. Without it
/// systemd would kill the start and restart it into the same full disk.
pub fn waiting_for_room(next_attempt: Duration) {
    if let Ok(Some(notifier)) = Notifier::from_env() {
        let _ = notifier.notify(&format!(
            "EXTEND_TIMEOUT_USEC={}\nSTATUS=waiting for room in the receipt store's file system",
            (next_attempt * 3).as_micros()
        ));
    }
}
