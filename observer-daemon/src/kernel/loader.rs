//! Loads the embedded eBPF object, fills its filter maps, and attaches every
//! program, naming the program and the reason when something fails.
use std::path::{Path, PathBuf};

use aya::{
    maps::{lpm_trie::Key, Array, HashMap, LpmTrie, MapData, PerCpuArray, RingBuf},
    programs::{ProgramError, ProgramFd, RawTracePoint, TracePoint},
    Ebpf, EbpfLoader,
};
use observer_common::{
    IoStreamKey, KernelConfig, KindCounters, PREFIX_KEY_LEN, PROCESS_EXCLUDED, SUFFIX_KEY_LEN,
};

/// The object built by build.rs from observer-ebpf.
pub(crate) static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/observer"));

pub use crate::kernel::load_error::LoadError;

/// What a program attaches to.
pub(crate) enum Hook {
    TracePoint(&'static [(&'static str, &'static str)]),
    RawTracePoint(&'static str),
}

pub(crate) const PROGRAMS: &[(&str, Hook)] = &[
    (
        "execveat_enter",
        Hook::TracePoint(&[("syscalls", "sys_enter_execveat")]),
    ),
    (
        "exec_exit",
        Hook::TracePoint(&[
            ("syscalls", "sys_exit_execve"),
            ("syscalls", "sys_exit_execveat"),
        ]),
    ),
    (
        "process_exec",
        Hook::TracePoint(&[("sched", "sched_process_exec")]),
    ),
    (
        "process_exit",
        Hook::TracePoint(&[("sched", "sched_process_exit")]),
    ),
    ("process_fork", Hook::RawTracePoint("sched_process_fork")),
    (
        "sockaddr_enter",
        Hook::TracePoint(&[
            ("syscalls", "sys_enter_connect"),
            ("syscalls", "sys_enter_bind"),
        ]),
    ),
    (
        "connect_exit",
        Hook::TracePoint(&[("syscalls", "sys_exit_connect")]),
    ),
    (
        "bind_exit",
        Hook::TracePoint(&[("syscalls", "sys_exit_bind")]),
    ),
    (
        "listen_enter",
        Hook::TracePoint(&[("syscalls", "sys_enter_listen")]),
    ),
    (
        "listen_exit",
        Hook::TracePoint(&[("syscalls", "sys_exit_listen")]),
    ),
    (
        "accept_exit",
        Hook::TracePoint(&[
            ("syscalls", "sys_exit_accept"),
            ("syscalls", "sys_exit_accept4"),
        ]),
    ),
    (
        "openat_exit",
        Hook::TracePoint(&[("syscalls", "sys_exit_openat")]),
    ),
    (
        "openat2_exit",
        Hook::TracePoint(&[("syscalls", "sys_exit_openat2")]),
    ),
];

/// Pipe and socket capture of watched processes (`io.rs`): attached only
/// when it is on, so a host that does not use it pays nothing on its
/// reads and writes.
const IO_PROGRAMS: &[(&str, Hook)] = &[
    (
        "write_exit",
        Hook::TracePoint(&[("syscalls", "sys_exit_write")]),
    ),
    (
        "read_exit",
        Hook::TracePoint(&[("syscalls", "sys_exit_read")]),
    ),
    (
        "sendto_exit",
        Hook::TracePoint(&[("syscalls", "sys_exit_sendto")]),
    ),
    (
        "recvfrom_exit",
        Hook::TracePoint(&[("syscalls", "sys_exit_recvfrom")]),
    ),
    (
        "writev_exit",
        Hook::TracePoint(&[("syscalls", "sys_exit_writev")]),
    ),
    (
        "readv_exit",
        Hook::TracePoint(&[("syscalls", "sys_exit_readv")]),
    ),
];

/// The tracepoint programs to load and attach, in order: the pipe and
/// socket ones only when that capture is on.
pub(crate) fn programs(io: bool) -> impl Iterator<Item = &'static (&'static str, Hook)> {
    PROGRAMS
        .iter()
        .chain(IO_PROGRAMS.iter().filter(move |_| io))
}

/// Settings the loader needs.
pub struct LoadOptions<'a> {
    pub kernel: KernelConfig,
    pub ring_buffer_bytes: u32,
    pub prefixes: &'a [String],
    pub suffixes: &'a [String],
    /// Executables whose processes the kernel watches from exec on.
    pub watched_executables: &'a [String],
    /// The names programs (DNS, TLS SNI, socket owners), when enabled.
    pub names: Option<NamesLoad<'a>>,
    /// Bytes of the plaintext ring; `None` when plaintext capture is off
    /// (the ring then takes one page).
    pub plaintext_ring_bytes: Option<u32>,
}

/// Where and how the names programs run.
pub struct NamesLoad<'a> {
    /// cgroup v2 directory they attach to.
    pub cgroup: &'a Path,
    pub config: observer_common::NamesConfig,
    /// Entries of the socket-owner LRU map.
    pub owner_entries: u32,
}

/// The loaded, attached probes and the maps the daemon uses.
pub struct Probes {
    /// Owns the programs; dropping it detaches them.
    pub ebpf: Ebpf,
    pub events: RingBuf<MapData>,
    /// Plaintext (`PlaintextEvent`s), apart from `events`.
    pub plaintext: RingBuf<MapData>,
    /// Pipes and sockets whose bytes the kernel stops copying.
    pub io_muted: HashMap<MapData, IoStreamKey, u8>,
    pub counters: PerCpuArray<MapData, KindCounters>,
    /// `PROCESS_WATCHED` / `PROCESS_EXCLUDED` per tgid.
    pub process_flags: Array<MapData, u8>,
    /// Path filters and watched executables, for policy reloads.
    pub filters: PathFilters,
    pub attached: Vec<String>,
    /// A handle on each loaded program, for its kernel-side skip counter.
    pub programs: Vec<(&'static str, ProgramFd)>,
}

/// Mounts tracefs if it is not mounted; tracepoint attachment needs it.
pub fn ensure_tracefs() -> Result<PathBuf, LoadError> {
    for candidate in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
        if Path::new(candidate).join("events").is_dir() {
            return Ok(PathBuf::from(candidate));
        }
    }
    let target = "/sys/kernel/tracing";
    nix::mount::mount(
        Some("tracefs"),
        target,
        Some("tracefs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|e| LoadError::Tracefs(e.into()))?;
    Ok(PathBuf::from(target))
}

pub fn load(opts: &LoadOptions) -> Result<Probes, LoadError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(LoadError::NotRoot);
    }
    ensure_tracefs()?;
    let mut loader = EbpfLoader::new();
    loader
        .map_max_entries("EVENTS", opts.ring_buffer_bytes)
        .map_max_entries("TLS_EVENTS", opts.plaintext_ring_bytes.unwrap_or(4096))
        .override_global("CONFIG", &opts.kernel, true);
    if let Some(n) = &opts.names {
        loader
            .map_max_entries("SOCK_OWNERS", n.owner_entries)
            .override_global("NAMES_CONFIG", &n.config, true);
    }
    let mut ebpf = loader.load(EBPF_OBJECT)?;
    let mut filters = PathFilters::take(&mut ebpf)?;
    filters.apply(&FilterSet {
        prefixes: opts.prefixes.to_vec(),
        suffixes: opts.suffixes.to_vec(),
        watched_executables: opts.watched_executables.to_vec(),
    })?;
    let mut process_flags: Array<MapData, u8> = take_map(&mut ebpf, "PROCESS_FLAGS")?;
    // Exclude ourselves before attaching, so our own writes never become events.
    process_flags
        .set(std::process::id(), PROCESS_EXCLUDED, 0)
        .map_err(|source| LoadError::Fill {
            map: "PROCESS_FLAGS",
            source,
        })?;
    let io = opts.kernel.io_capture_bytes > 0;
    let mut attached = attach_all(&mut ebpf, io)?;
    if let Some(n) = &opts.names {
        attached.extend(crate::kernel::names_attach::attach(&mut ebpf, n.cgroup)?);
    }
    let programs = program_fds(&ebpf, io)?;
    Ok(Probes {
        programs,
        events: take_map(&mut ebpf, "EVENTS")?,
        plaintext: take_map(&mut ebpf, "TLS_EVENTS")?,
        io_muted: take_map(&mut ebpf, "IO_MUTED")?,
        counters: take_map(&mut ebpf, "COUNTERS")?,
        process_flags,
        filters,
        attached,
        ebpf,
    })
}

fn take_map<T: TryFrom<aya::maps::Map>>(
    ebpf: &mut Ebpf,
    map: &'static str,
) -> Result<T, LoadError> {
    let raw = ebpf.take_map(map).ok_or(LoadError::Map { map })?;
    T::try_from(raw).map_err(|_| LoadError::Map { map })
}

fn fill_error(map: &'static str) -> impl Fn(aya::maps::MapError) -> LoadError {
    move |source| LoadError::Fill { map, source }
}

/// The kernel's path filters and watched-executable trie, kept after load
/// so a policy reload can change them: new entries are added before stale
/// ones are removed, so no open of interest slips through meanwhile.
pub struct PathFilters {
    prefixes: LpmTrie<MapData, [u8; PREFIX_KEY_LEN], u32>,
    first_bytes: Array<MapData, u8>,
    suffixes: LpmTrie<MapData, [u8; SUFFIX_KEY_LEN], u32>,
    last_bytes: Array<MapData, u8>,
    exes: LpmTrie<MapData, [u8; PREFIX_KEY_LEN], u32>,
    current: FilterSet,
}

/// What the filters hold.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FilterSet {
    pub prefixes: Vec<String>,
    pub suffixes: Vec<String>,
    pub watched_executables: Vec<String>,
}

fn prefix_key(p: &str) -> Key<[u8; PREFIX_KEY_LEN]> {
    let mut data = [0u8; PREFIX_KEY_LEN];
    data[..p.len()].copy_from_slice(p.as_bytes());
    Key::new(p.len() as u32 * 8, data)
}

fn suffix_key(s: &str) -> Key<[u8; SUFFIX_KEY_LEN]> {
    let mut data = [0u8; SUFFIX_KEY_LEN];
    for (i, b) in s.bytes().rev().enumerate() {
        data[i] = b;
    }
    Key::new(s.len() as u32 * 8, data)
}

/// Path plus its NUL (zeroed already): an exact match, not a prefix.
fn exe_key(x: &str) -> Key<[u8; PREFIX_KEY_LEN]> {
    let mut data = [0u8; PREFIX_KEY_LEN];
    data[..x.len()].copy_from_slice(x.as_bytes());
    Key::new((x.len() as u32 + 1) * 8, data)
}

/// Indexes of the prefix prefilter (first two bytes; a one-byte prefix
/// matches whatever its second byte is).
fn first_byte_indexes(prefixes: &[String]) -> std::collections::BTreeSet<u32> {
    let mut out = std::collections::BTreeSet::new();
    for p in prefixes.iter().map(|p| p.as_bytes()) {
        let seconds: Vec<u8> = match p.get(1) {
            Some(b) => vec![*b],
            None => (0..=255).collect(),
        };
        for second in seconds {
            out.insert(u32::from(u16::from_le_bytes([p[0], second])));
        }
    }
    out
}

/// Indexes of the suffix prefilter (`last | second_last << 8`; a one-byte
/// suffix matches whatever byte precedes it, or none).
fn last_bytes_indexes(suffixes: &[String]) -> std::collections::BTreeSet<u32> {
    let mut out = std::collections::BTreeSet::new();
    for s in suffixes.iter().map(|s| s.as_bytes()) {
        let Some((&last, head)) = s.split_last() else {
            continue;
        };
        let seconds: Vec<u8> = match head.last() {
            Some(b) => vec![*b],
            None => (0..=255).collect(),
        };
        for second in seconds {
            out.insert(u32::from(last) | u32::from(second) << 8);
        }
    }
    out
}

fn valid_filters(f: &FilterSet) -> bool {
    f.prefixes
        .iter()
        .all(|p| !p.is_empty() && p.len() < PREFIX_KEY_LEN)
        && f.suffixes
            .iter()
            .all(|s| !s.is_empty() && s.len() <= SUFFIX_KEY_LEN)
        && f.watched_executables
            .iter()
            .all(|x| x.len() + 1 < PREFIX_KEY_LEN)
}

impl PathFilters {
    fn take(ebpf: &mut Ebpf) -> Result<PathFilters, LoadError> {
        Ok(PathFilters {
            prefixes: take_map(ebpf, "PATH_PREFIXES")?,
            first_bytes: take_map(ebpf, "PREFIX_FIRST_BYTES")?,
            suffixes: take_map(ebpf, "PATH_SUFFIXES")?,
            last_bytes: take_map(ebpf, "SUFFIX_LAST_BYTES")?,
            exes: take_map(ebpf, "WATCHED_EXES")?,
            current: FilterSet::default(),
        })
    }

    pub fn current(&self) -> &FilterSet {
        &self.current
    }

    /// Makes the kernel's filters hold exactly `new`. On an error the
    /// filters may hold part of `new` besides the old set, and
    /// [`Self::current`] says so (both), so a later apply removes it.
    pub fn apply(&mut self, new: &FilterSet) -> Result<(), LoadError> {
        if !valid_filters(new) {
            return Err(LoadError::Filter);
        }
        let old = self.current.clone();
        let result = self.insert_then_remove(&old, new);
        self.current = match result {
            Ok(()) => new.clone(),
            Err(_) => union(&old, new),
        };
        result
    }

    fn insert_then_remove(&mut self, old: &FilterSet, new: &FilterSet) -> Result<(), LoadError> {
        for p in &new.prefixes {
            self.prefixes
                .insert(&prefix_key(p), 1, 0)
                .map_err(fill_error("PATH_PREFIXES"))?;
        }
        for i in first_byte_indexes(&new.prefixes) {
            self.first_bytes
                .set(i, 1, 0)
                .map_err(fill_error("PREFIX_FIRST_BYTES"))?;
        }
        for s in &new.suffixes {
            self.suffixes
                .insert(&suffix_key(s), 1, 0)
                .map_err(fill_error("PATH_SUFFIXES"))?;
        }
        for i in last_bytes_indexes(&new.suffixes) {
            self.last_bytes
                .set(i, 1, 0)
                .map_err(fill_error("SUFFIX_LAST_BYTES"))?;
        }
        for x in &new.watched_executables {
            self.exes
                .insert(&exe_key(x), 1, 0)
                .map_err(fill_error("WATCHED_EXES"))?;
        }
        // Then what the new set no longer holds.
        for p in old.prefixes.iter().filter(|p| !new.prefixes.contains(p)) {
            let _ = self.prefixes.remove(&prefix_key(p));
        }
        let keep = first_byte_indexes(&new.prefixes);
        for i in first_byte_indexes(&old.prefixes).difference(&keep) {
            self.first_bytes
                .set(*i, 0, 0)
                .map_err(fill_error("PREFIX_FIRST_BYTES"))?;
        }
        for s in old.suffixes.iter().filter(|s| !new.suffixes.contains(s)) {
            let _ = self.suffixes.remove(&suffix_key(s));
        }
        let keep = last_bytes_indexes(&new.suffixes);
        for i in last_bytes_indexes(&old.suffixes).difference(&keep) {
            self.last_bytes
                .set(*i, 0, 0)
                .map_err(fill_error("SUFFIX_LAST_BYTES"))?;
        }
        for x in old
            .watched_executables
            .iter()
            .filter(|x| !new.watched_executables.contains(x))
        {
            let _ = self.exes.remove(&exe_key(x));
        }
        Ok(())
    }
}

fn union(a: &FilterSet, b: &FilterSet) -> FilterSet {
    let both = |x: &[String], y: &[String]| {
        let mut v: Vec<String> = x.iter().chain(y).cloned().collect();
        v.sort();
        v.dedup();
        v
    };
    FilterSet {
        prefixes: both(&a.prefixes, &b.prefixes),
        suffixes: both(&a.suffixes, &b.suffixes),
        watched_executables: both(&a.watched_executables, &b.watched_executables),
    }
}

fn program_fds(ebpf: &Ebpf, io: bool) -> Result<Vec<(&'static str, ProgramFd)>, LoadError> {
    programs(io)
        .map(|(program, _)| {
            let prog = ebpf
                .program(program)
                .ok_or(LoadError::MissingProgram { program })?;
            let fd = prog
                .fd()
                .and_then(|fd| fd.try_clone().map_err(ProgramError::from))
                .map_err(|source| LoadError::Load { program, source })?;
            Ok((*program, fd))
        })
        .collect()
}

fn attach_all(ebpf: &mut Ebpf, io: bool) -> Result<Vec<String>, LoadError> {
    let mut attached = Vec::new();
    for (program, hook) in programs(io) {
        let prog = ebpf
            .program_mut(program)
            .ok_or(LoadError::MissingProgram { program })?;
        match hook {
            Hook::TracePoint(targets) => {
                let tp: &mut TracePoint = prog
                    .try_into()
                    .map_err(|source| LoadError::Load { program, source })?;
                tp.load()
                    .map_err(|source| LoadError::Load { program, source })?;
                for (category, name) in *targets {
                    tp.attach(category, name)
                        .map_err(|source| LoadError::Attach {
                            program,
                            target: format!("tracepoint {category}/{name}"),
                            source,
                        })?;
                    attached.push(format!("{program} -> {category}/{name}"));
                }
            }
            Hook::RawTracePoint(name) => {
                let rtp: &mut RawTracePoint = prog
                    .try_into()
                    .map_err(|source| LoadError::Load { program, source })?;
                rtp.load()
                    .map_err(|source| LoadError::Load { program, source })?;
                rtp.attach(name).map_err(|source| LoadError::Attach {
                    program,
                    target: format!("raw_tracepoint {name}"),
                    source,
                })?;
                attached.push(format!("{program} -> raw_tp/{name}"));
            }
        }
    }
    Ok(attached)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn suffix_prefilter_holds_the_last_two_bytes() {
        let set = last_bytes_indexes(&strings(&[".ckpt", "/.netrc"]));
        let index = |a: u8, b: u8| u32::from(b) | u32::from(a) << 8;
        assert_eq!(
            set.into_iter().collect::<Vec<_>>(),
            vec![index(b'p', b't'), index(b'r', b'c')]
        );
        // A one-byte suffix matches after any byte, and alone (index 0 above).
        let one = last_bytes_indexes(&strings(&["~"]));
        assert_eq!(one.len(), 256);
        assert!(one.contains(&index(0, b'~')) && one.contains(&index(b'x', b'~')));
        // `.txt` is not let through by `.ckpt`'s last byte any more.
        assert!(!last_bytes_indexes(&strings(&[".ckpt"])).contains(&index(b'x', b't')));
    }

    #[test]
    fn prefix_prefilter_holds_the_first_two_bytes() {
        let set = first_byte_indexes(&strings(&["/root/.ssh/", "/"]));
        assert_eq!(set.len(), 256, "a one-byte prefix covers every second byte");
        assert!(set.contains(&u32::from(u16::from_le_bytes([b'/', b'r']))));
    }
}
