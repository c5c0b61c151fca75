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
use tokio::sync::{mpsc, watch};

use observer_common::{EventKind, IoStreamKey};

use crate::{
    format::BootClock,
    kernel::tls_attach::{TlsAttacher, TlsRequest, TlsRequests},
    pipeline::{
        inbox::{Msg, StreamRecord},
        reader::UserDrops,
    },
    record::Detail,
    stream::{
        config::PlaintextSection,
        connection::{Connections, Finished, Limits},
        llm::call::llm_call,
        plaintext::Plaintext,
        visibility::PlaintextVisibility,
    },
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

/// What the stream layer did this run (reported at stop).
#[derive(Debug, Default, Clone, Copy)]
pub struct Intake {
    pub chunks: u64,
    pub bytes: u64,
    /// Calls the capture bound cut short.
    pub truncated: u64,
    /// HTTP requests seen (with their answers or not).
    pub exchanges: u64,
    /// Of them, LLM API calls (each an `llm_request` record).
    pub llm_calls: u64,
    /// HTTP/2 connections (their streams are among `exchanges`).
    pub http2: u64,
    /// Pipes and local sockets muted in the kernel (nothing parsed).
    pub muted: u64,
    /// Streams the parsers gave up (a parse error or a capture gap they
    /// could not pass; for HTTP/2 a direction of a connection).
    pub abandoned: u64,
    /// Connections that were neither HTTP/1.x nor HTTP/2 (not followed).
    pub not_http: u64,
}

/// The kernel's map of muted pipes and local sockets.
pub type IoMuted = aya::maps::HashMap<MapData, IoStreamKey, u8>;

/// How long a connection may stay silent before its open messages end.
const IDLE: Duration = Duration::from_secs(30);
/// How long the connections of a process that exited wait for pieces
/// still in the ring before their open messages end.
const GONE_GRACE: Duration = Duration::from_secs(1);

/// Reads the plaintext ring until `stop`, and runs the stream layer on it:
/// connections, HTTP/1.1, LLM API calls, each sent to the writer as an
/// `llm_request` record of the calling process.
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
    let intake = tokio::spawn(take_in(rx, writer, drops, muted, cfg.capture_bytes, limits));
    Some((reader, intake))
}

async fn take_in(
    mut rx: mpsc::Receiver<Plaintext>,
    writer: mpsc::Sender<Msg>,
    drops: Arc<UserDrops>,
    mut muted: IoMuted,
    bound: u32,
    limits: Limits,
) -> Intake {
    let mut intake = Intake::default();
    let mut conns = Connections::new(limits);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let finished = tokio::select! {
            chunk = rx.recv() => match chunk {
                Some(chunk) => {
                    intake.chunks += 1;
                    intake.bytes += chunk.data.len() as u64;
                    // The last piece the bound allowed, with bytes after it.
                    let end = chunk.offset as u64 + chunk.data.len() as u64;
                    intake.truncated += u64::from(chunk.remaining() > 0 && end == u64::from(bound));
                    conns.push(chunk)
                }
                None => {
                    let last = conns.close_all();
                    send(last, &writer, &drops, &mut intake);
                    intake.abandoned = conns.abandoned;
                    intake.not_http = conns.not_http;
                    return intake;
                }
            },
            _ = tick.tick() => {
                let now = BootClock::boot_ns_now();
                let mut done = conns.expire(now.saturating_sub(IDLE.as_nanos() as u64));
                done.extend(conns.close_gone(
                    |tgid| std::path::Path::new(&format!("/proc/{tgid}")).exists(),
                    now.saturating_sub(GONE_GRACE.as_nanos() as u64),
                ));
                done
            }
        };
        send(finished, &writer, &drops, &mut intake);
        for (tgid, ino) in conns.take_muted() {
            intake.muted += 1;
            let key = IoStreamKey { tgid, _pad: 0, ino };
            if let Err(e) = muted.insert(key, 1, 0) {
                // Not fatal: the stream's bytes keep coming and are
                // ignored here.
                log::debug!("plaintext: muting pid {tgid} inode {ino}: {e}");
            }
        }
    }
}

/// Hands LLM API calls to the writer without waiting: a full inbox loses
/// the record, counted as `channel_full:tls_data`.
fn send(
    finished: Vec<Finished>,
    writer: &mpsc::Sender<Msg>,
    drops: &UserDrops,
    intake: &mut Intake,
) {
    for f in finished {
        let ex = match f {
            Finished::Exchange(ex) => ex,
            Finished::Http2 { header, conn } => {
                intake.http2 += 1;
                log::info!(
                    "plaintext: pid {} ({}) opened an HTTP/2 connection ({conn:?})",
                    header.tgid,
                    header.comm
                );
                continue;
            }
        };
        intake.exchanges += 1;
        let Some(detail) = llm_call(&ex) else {
            continue;
        };
        intake.llm_calls += 1;
        let record = StreamRecord {
            header: ex.header,
            event: "llm_request",
            detail: Detail::LlmRequest(Box::new(detail)),
        };
        if writer.try_send(Msg::Stream(record)).is_err() {
            drops.count_channel_full(EventKind::TlsData);
        }
    }
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
