//! Attaches the plaintext uprobes to each watched process, and only to it:
//! a perf event per (program, process, file), so an unwatched process
//! never hits a breakpoint and pays nothing. It runs on its own thread and
//! owns the loaded eBPF object (dropping it detaches every program), so
//! attaching, which reads ELF files, never holds up the event pipeline.
//!
//! Per process it attaches the configured system libraries (before the
//! process maps them: Python loads libssl on its first `import ssl`) and
//! every TLS library or executable with TLS symbols found in
//! /proc/PID/maps, again at each rescan for libraries loaded later. Each
//! file's symbols are read once per (device, inode); an executable without
//! them that is a Bun single-file executable (Claude Code) is searched for
//! BoringSSL's functions by code signature (tls_signatures).
use std::{
    collections::{HashMap, HashSet},
    num::NonZeroU32,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{
        mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError},
        Arc,
    },
    time::Duration,
};

use aya::{
    programs::{
        uprobe::{UProbeLinkId, UProbeScope},
        UProbe,
    },
    Ebpf,
};

use crate::{
    kernel::{
        load_error::LoadError,
        tls_signatures::{find_bun_tls, BunTls},
        tls_symbols::{
            executable_files, find_tls_functions, may_hold_tls, MappedFile, TlsOffsets,
            TLS_FUNCTIONS,
        },
    },
    pipeline::reader::UserDrops,
    stream::visibility::{PlaintextVisibility, ProcessTls},
};

/// The entry programs, in the order of [`TLS_FUNCTIONS`].
const ENTRY_PROGRAMS: [&str; 4] = ["ssl_write", "ssl_write_ex", "ssl_read", "ssl_read_ex"];
/// The one return program, attached at all four functions.
const RETURN_PROGRAM: &str = "ssl_return";

/// What the enricher tells the attacher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsRequest {
    /// A watched process started, exec'd or was found running (and its
    /// registered agent).
    Watch(u32, Option<Arc<str>>),
    /// A watched process exited: its perf events are closed.
    Exited(u32),
    /// The daemon stops: hand the eBPF object back.
    Stop,
}

/// A file as the kernel names it: device and inode.
type FileKey = (u64, u64);

/// How a process's TLS traffic can be seen (for logs, doctor and status).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Visibility {
    /// Files whose TLS functions are hooked for the process.
    pub hooked: Vec<PathBuf>,
    /// Files examined that define no usable TLS functions (a static TLS
    /// stack such as Bun's, Go's or rustls leaves its executable here).
    pub without_symbols: Vec<PathBuf>,
}

/// What examining one file found: its TLS functions, or for an executable
/// known to carry a static TLS stack, why they were not found.
#[derive(Debug, Clone, Default)]
struct Examined {
    offsets: Option<TlsOffsets>,
    not_visible: Option<String>,
}

impl Examined {
    fn usable(&self) -> bool {
        self.offsets.is_some_and(|o| o.usable())
    }
}

struct Attached {
    files: HashSet<FileKey>,
    links: Vec<(&'static str, UProbeLinkId)>,
    visibility: Visibility,
}

pub struct TlsAttacher {
    ebpf: Ebpf,
    eager: Vec<(PathBuf, FileKey)>,
    /// Symbols of every file examined, by (device, inode).
    files: HashMap<FileKey, Examined>,
    procs: HashMap<u32, Attached>,
    /// The registered agent of each watched process, as last told.
    agents: HashMap<u32, Option<Arc<str>>>,
    /// What `observerctl status` shows.
    shown: Arc<PlaintextVisibility>,
}

impl TlsAttacher {
    /// Loads the five programs into the kernel (the verifier runs here)
    /// and takes ownership of the object.
    pub fn new(mut ebpf: Ebpf, eager: &[PathBuf]) -> Result<TlsAttacher, LoadError> {
        for program in ENTRY_PROGRAMS.iter().chain([&RETURN_PROGRAM]) {
            uprobe(&mut ebpf, program)?
                .load()
                .map_err(|source| LoadError::Load { program, source })?;
        }
        let eager = eager
            .iter()
            .filter_map(|p| match std::fs::metadata(p) {
                Ok(m) => Some((p.clone(), (m.dev(), m.ino()))),
                Err(e) => {
                    log::warn!("plaintext: library {} not attached: {e}", p.display());
                    None
                }
            })
            .collect();
        Ok(TlsAttacher {
            ebpf,
            eager,
            files: HashMap::new(),
            procs: HashMap::new(),
            agents: HashMap::new(),
            shown: Arc::default(),
        })
    }

    /// The table `observerctl status` reads, kept current by this attacher.
    pub fn visibility_table(&self) -> Arc<PlaintextVisibility> {
        self.shown.clone()
    }

    /// Serves requests until every sender is gone; rescans the watched
    /// processes' maps each `rescan`. Returns the object so the caller
    /// decides when the programs detach.
    pub fn run(mut self, rx: Receiver<TlsRequest>, rescan: Duration) -> Ebpf {
        loop {
            match rx.recv_timeout(rescan) {
                Ok(TlsRequest::Watch(tgid, agent)) => {
                    self.agents.insert(tgid, agent);
                    self.attach_process(tgid);
                }
                Ok(TlsRequest::Exited(tgid)) => self.detach_process(tgid),
                Ok(TlsRequest::Stop) => return self.ebpf,
                Err(RecvTimeoutError::Timeout) => {
                    let pids: Vec<u32> = self.procs.keys().copied().collect();
                    for tgid in pids {
                        self.attach_process(tgid);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return self.ebpf,
            }
        }
    }

    /// What is hooked for `tgid` so far.
    pub fn visibility(&self, tgid: u32) -> Option<&Visibility> {
        self.procs.get(&tgid).map(|a| &a.visibility)
    }

    /// Hooks every TLS file of `tgid` not hooked yet. A process that is
    /// gone is forgotten.
    pub fn attach_process(&mut self, tgid: u32) {
        let Some(pid) = NonZeroU32::new(tgid) else {
            return;
        };
        let Ok(maps) = std::fs::read_to_string(format!("/proc/{tgid}/maps")) else {
            self.detach_process(tgid);
            return;
        };
        let exe = std::fs::read_link(format!("/proc/{tgid}/exe")).ok();
        let mapped = executable_files(&maps);
        let root = PathBuf::from(format!("/proc/{tgid}/root"));
        let mut candidates: Vec<(PathBuf, PathBuf, FileKey)> = self
            .eager
            .iter()
            .map(|(p, key)| (p.clone(), p.clone(), *key))
            .collect();
        for f in mapped.iter().cloned() {
            if may_hold_tls(&f, exe.as_deref()) {
                let key = (libc::makedev(f.dev_major, f.dev_minor), f.inode);
                // Opened through the process's root: right inside containers.
                let open = root.join(f.path.strip_prefix("/").unwrap_or(&f.path));
                candidates.push((f.path, open, key));
            }
        }
        let entry = self.procs.entry(tgid).or_insert_with(|| Attached {
            files: HashSet::new(),
            links: Vec::new(),
            visibility: Visibility::default(),
        });
        let todo: Vec<_> = candidates
            .into_iter()
            .filter(|(_, _, key)| entry.files.insert(*key))
            .collect();
        for (shown, open, key) in todo {
            let offsets = self
                .files
                .entry(key)
                .or_insert_with(|| examine(&open, &shown))
                .offsets;
            let attached = self.procs.get_mut(&tgid).expect("inserted above");
            match offsets {
                Some(o) if o.usable() => match attach_file(&mut self.ebpf, &o, &open, pid) {
                    Ok(links) => {
                        attached.links.extend(links);
                        // Per process (an agent may start thousands): debug;
                        // `observerctl status` shows the standing picture.
                        log::debug!(
                            "plaintext: pid {tgid}: TLS through {} is visible",
                            shown.display()
                        );
                        attached.visibility.hooked.push(shown);
                    }
                    Err((links, e)) => {
                        attached.links.extend(links);
                        log::warn!("plaintext: pid {tgid}: {}: {e}", shown.display());
                    }
                },
                _ => attached.visibility.without_symbols.push(shown),
            }
        }
        self.show(tgid, exe, &mapped);
    }

    /// Updates what status shows for `tgid`: the files it maps whose TLS
    /// functions are hooked for it.
    fn show(&self, tgid: u32, exe: Option<PathBuf>, mapped: &[MappedFile]) {
        let Some(attached) = self.procs.get(&tgid) else {
            return;
        };
        let key = |f: &MappedFile| (libc::makedev(f.dev_major, f.dev_minor), f.inode);
        let visible_through = mapped
            .iter()
            .filter(|f| {
                attached.files.contains(&key(f))
                    && self.files.get(&key(f)).is_some_and(Examined::usable)
            })
            .map(|f| f.path.display().to_string())
            .collect();
        // The executable's own reason (a Bun build whose signature is not
        // known), if examining it gave one.
        let not_visible = mapped
            .iter()
            .filter(|f| Some(f.path.as_path()) == exe.as_deref())
            .find_map(|f| self.files.get(&key(f))?.not_visible.clone());
        self.shown.set(
            tgid,
            ProcessTls {
                agent: self
                    .agents
                    .get(&tgid)
                    .cloned()
                    .flatten()
                    .map(|a| a.to_string()),
                exe: exe.map(|e| e.display().to_string()),
                visible_through,
                not_visible,
            },
        );
    }

    /// Closes `tgid`'s perf events.
    pub fn detach_process(&mut self, tgid: u32) {
        self.shown.remove(tgid);
        self.agents.remove(&tgid);
        let Some(attached) = self.procs.remove(&tgid) else {
            return;
        };
        for (program, link) in attached.links {
            if let Ok(p) = uprobe(&mut self.ebpf, program) {
                let _ = p.detach(link);
            }
        }
    }
}

/// The TLS functions of the file at `path` (`shown` in logs): by symbol,
/// else, for a Bun executable, by BoringSSL's code signature. No offsets
/// if it cannot be read or is not ELF (logged once: the cache remembers
/// the answer).
fn examine(path: &Path, shown: &Path) -> Examined {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            log::debug!("plaintext: cannot read {}: {e}", path.display());
            return Examined::default();
        }
    };
    let by_symbol = match find_tls_functions(&bytes) {
        Ok(o) => o,
        Err(e) => {
            log::debug!("plaintext: {} is not readable ELF: {e}", path.display());
            return Examined::default();
        }
    };
    if by_symbol.usable() {
        return Examined {
            offsets: Some(by_symbol),
            not_visible: None,
        };
    }
    // Once per file: an agent's executable, worth a line at info.
    match find_bun_tls(&bytes) {
        BunTls::NotBun => Examined {
            offsets: Some(by_symbol),
            not_visible: None,
        },
        BunTls::Found { bun, offsets } => {
            log::info!(
                "plaintext: {} is a Bun v{bun} executable: its BoringSSL SSL_write/SSL_read found by signature",
                shown.display()
            );
            Examined {
                offsets: Some(offsets),
                not_visible: None,
            }
        }
        BunTls::NotFound { reason, .. } => {
            log::info!("plaintext: {}: {reason}", shown.display());
            Examined {
                offsets: Some(by_symbol),
                not_visible: Some(reason),
            }
        }
    }
}

type Links = Vec<(&'static str, UProbeLinkId)>;

/// An entry and a return probe at each function the file defines, for
/// `pid` only. On an error the links made so far come back with it.
fn attach_file(
    ebpf: &mut Ebpf,
    offsets: &TlsOffsets,
    path: &Path,
    pid: NonZeroU32,
) -> Result<Links, (Links, String)> {
    let mut links = Vec::new();
    for (i, offset) in offsets.offsets.iter().enumerate() {
        let Some(offset) = *offset else { continue };
        for program in [ENTRY_PROGRAMS[i], RETURN_PROGRAM] {
            let result = uprobe(ebpf, program)
                .map_err(|e| e.to_string())
                .and_then(|p| {
                    p.attach(offset, path, UProbeScope::OneProcess(pid))
                        .map_err(|e| format!("{program} at {} {offset:#x}: {e}", TLS_FUNCTIONS[i]))
                });
            match result {
                Ok(link) => links.push((program, link)),
                Err(e) => return Err((links, e)),
            }
        }
    }
    Ok(links)
}

fn uprobe<'a>(ebpf: &'a mut Ebpf, program: &'static str) -> Result<&'a mut UProbe, LoadError> {
    ebpf.program_mut(program)
        .ok_or(LoadError::MissingProgram { program })?
        .try_into()
        .map_err(|source| LoadError::Load { program, source })
}

/// The enricher's end: never blocks the event pipeline. A full queue
/// loses the request, counted as the user drop `tls_attach_queue_full`
/// (in loss records and status): a lost `Watch` leaves that process's TLS
/// unseen until its next exec.
#[derive(Clone)]
pub struct TlsRequests {
    pub tx: SyncSender<TlsRequest>,
    pub drops: Arc<UserDrops>,
}

impl TlsRequests {
    pub fn send(&self, request: TlsRequest) {
        match self.tx.try_send(request) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(r)) => {
                let lost = self.drops.count_tls_attach_lost();
                log::debug!("plaintext: attach queue full, {r:?} lost ({lost} so far)");
            }
        }
    }
}
