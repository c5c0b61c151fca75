//! The daemon's plaintext side: the attacher thread that owns the eBPF
//! object and hooks watched processes' TLS libraries, the reader of the
//! plaintext ring (TLS calls, and pipe and local socket calls), and the
//! stream layer that turns it into LLM API calls. Off (`[plaintext]
//! enabled = false`), the object stays with the run loop and the ring
//! takes one page.
use std::{
    sync::{mpsc::sync_channel, Arc},
    thread::JoinHandle,
    time::Duration,
};

use anyhow::Context as _;
use aya::{
    maps::{MapData, RingBuf},
    Ebpf,
};

pub use crate::daemon::stream_intake::{Intake, IoMuted};
use tokio::sync::{mpsc, watch};

use crate::{
    daemon::stream_intake::{take_in, IntakeSetup},
    kernel::tls_attach::{TlsAttacher, TlsRequest, TlsRequests},
    pipeline::{inbox::Msg, reader::UserDrops},
    stream::{config::PlaintextSection, connection::Limits, visibility::PlaintextVisibility},
};

/// Attach requests waiting for the attacher thread.
const REQUEST_QUEUE: usize = 4096;

/// Who holds the eBPF object, so the run loop can detach everything first
/// at shutdown.
pub enum KernelObject {
    Owned(Ebpf),
    Attacher(JoinHandle<Ebpf>, TlsRequests),
}

impl KernelObject {
    /// Detaches every program (the attacher stops and hands the object
    /// back to be dropped).
    pub fn detach(self) {
        match self {
            KernelObject::Owned(ebpf) => drop(ebpf),
            KernelObject::Attacher(thread, requests) => {
                // Blocking is fine here: the thread is draining its queue.
                let _ = requests.tx.send(TlsRequest::Stop);
                match thread.join() {
                    Ok(ebpf) => drop(ebpf),
                    Err(_) => log::error!("plaintext: the attacher thread panicked"),
                }
            }
        }
    }
}

/// Loads the plaintext programs and starts the attacher when enabled.
pub fn start_attacher(
    cfg: &PlaintextSection,
    ebpf: Ebpf,
    drops: Arc<UserDrops>,
) -> anyhow::Result<(
    KernelObject,
    Option<TlsRequests>,
    Option<Arc<PlaintextVisibility>>,
)> {
    if !cfg.enabled {
        return Ok((KernelObject::Owned(ebpf), None, None));
    }
    let eager = cfg.eager_libraries();
    let attacher = TlsAttacher::new(ebpf, &eager).context("plaintext: loading the TLS uprobes")?;
    log::info!(
        "plaintext: TLS capture on ({} bytes per call); libraries attached for every watched process: {}",
        cfg.capture_bytes,
        eager.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    );
    let shown = attacher.visibility_table();
    let (tx, rx) = sync_channel(REQUEST_QUEUE);
    let rescan = Duration::from_millis(cfg.rescan_interval_ms);
    let thread = std::thread::Builder::new()
        .name("observer-tls-attach".into())
        .spawn(move || attacher.run(rx, rescan))
        .context("starting the plaintext attacher")?;
    let requests = TlsRequests { tx, drops };
    Ok((
        KernelObject::Attacher(thread, requests.clone()),
        Some(requests),
        Some(shown),
    ))
}

/// Reads the plaintext ring until `stop`, and runs the stream layer on it
/// (`stream_intake`): HTTP and LLM API calls, MCP sessions and tool
/// calls, each sent to the writer as a record of the calling process.
pub fn start_reader(
    cfg: &PlaintextSection,
    ring: RingBuf<MapData>,
    muted: IoMuted,
    writer: mpsc::Sender<Msg>,
    drops: Arc<UserDrops>,
    poll: Duration,
    stop: watch::Receiver<bool>,
) -> Option<(
    tokio::task::JoinHandle<std::io::Result<u64>>,
    tokio::task::JoinHandle<Intake>,
)> {
    if !cfg.enabled {
        return None;
    }
    let (tx, rx) = mpsc::channel(cfg.channel_capacity);
    let reader = tokio::spawn(crate::stream::reader::run(
        ring,
        tx,
        drops.clone(),
        poll,
        stop,
    ));
    let limits = Limits {
        body_cap: cfg.capture_bytes as usize,
        max_connections: 4096,
    };
    let intake = tokio::spawn(take_in(
        rx,
        IntakeSetup {
            writer,
            drops,
            muted,
            bound: cfg.capture_bytes,
            limits,
            mcp_message_bytes: cfg.mcp_message_bytes as usize,
        },
    ));
    Some((reader, intake))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full attacher queue never blocks the enricher and loses nothing
    /// uncounted: each lost request is a `tls_attach_queue_full` drop.
    #[test]
    fn attach_requests_lost_to_a_full_queue_are_counted() {
        let (tx, rx) = sync_channel(1);
        let drops = Arc::new(UserDrops::default());
        let requests = TlsRequests {
            tx,
            drops: drops.clone(),
        };
        for pid in 1..=3 {
            requests.send(TlsRequest::Watch(pid, None));
        }
        assert_eq!(rx.try_recv(), Ok(TlsRequest::Watch(1, None)));
        assert_eq!(drops.snapshot()["tls_attach_queue_full"], 2);
    }
}
