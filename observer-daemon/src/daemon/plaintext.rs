//! The daemon's plaintext side: the attacher thread that owns the eBPF
//! object and hooks watched processes' TLS libraries, and the reader of
//! the plaintext ring. Off (`[plaintext] enabled = false`), the object
//! stays with the run loop and the ring takes one page.
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
use tokio::sync::{mpsc, watch};

use crate::{
    kernel::tls_attach::{TlsAttacher, TlsRequest, TlsRequests},
    pipeline::reader::UserDrops,
    stream::{config::PlaintextSection, plaintext::Plaintext},
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
                let _ = requests.0.send(TlsRequest::Stop);
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
) -> anyhow::Result<(KernelObject, Option<TlsRequests>)> {
    if !cfg.enabled {
        return Ok((KernelObject::Owned(ebpf), None));
    }
    let eager = cfg.eager_libraries();
    let attacher = TlsAttacher::new(ebpf, &eager).context("plaintext: loading the TLS uprobes")?;
    log::info!(
        "plaintext: TLS capture on ({} bytes per call); libraries attached for every watched process: {}",
        cfg.capture_bytes,
        eager.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    );
    let (tx, rx) = sync_channel(REQUEST_QUEUE);
    let rescan = Duration::from_millis(cfg.rescan_interval_ms);
    let thread = std::thread::Builder::new()
        .name("observer-tls-attach".into())
        .spawn(move || attacher.run(rx, rescan))
        .context("starting the plaintext attacher")?;
    let requests = TlsRequests(tx);
    Ok((
        KernelObject::Attacher(thread, requests.clone()),
        Some(requests),
    ))
}

/// What the stream layer has taken in so far (reported at stop).
#[derive(Debug, Default, Clone, Copy)]
pub struct Intake {
    pub chunks: u64,
    pub bytes: u64,
    /// Calls the capture bound cut short.
    pub truncated: u64,
}

/// Reads the plaintext ring until `stop`, and takes in its chunks. The
/// parsers of LLM API and MCP traffic are not built yet: chunks are
/// counted and logged at debug level without their bytes.
pub fn start_reader(
    cfg: &PlaintextSection,
    ring: RingBuf<MapData>,
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
    let reader = tokio::spawn(crate::stream::reader::run(ring, tx, drops, poll, stop));
    let intake = tokio::spawn(take_in(rx, cfg.capture_bytes));
    Some((reader, intake))
}

async fn take_in(mut rx: mpsc::Receiver<Plaintext>, bound: u32) -> Intake {
    let mut intake = Intake::default();
    while let Some(chunk) = rx.recv().await {
        intake.chunks += 1;
        intake.bytes += chunk.data.len() as u64;
        // The last piece the bound allowed, with bytes of the call after it.
        let end = chunk.offset as u64 + chunk.data.len() as u64;
        intake.truncated += u64::from(chunk.remaining() > 0 && end == u64::from(bound));
        log::debug!(
            "plaintext: pid {} ssl {:#x} {} {} bytes (captured {})",
            chunk.header.tgid,
            chunk.ssl,
            chunk.call.name(),
            chunk.len,
            chunk.data.len()
        );
    }
    intake
}
