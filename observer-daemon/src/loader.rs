//! Loads the embedded eBPF object, fills its filter maps, and attaches every
//! program, naming the program and the reason when something fails.
use std::path::{Path, PathBuf};

use aya::{
    maps::{lpm_trie::Key, Array, HashMap, LpmTrie, MapData, PerCpuArray, RingBuf},
    programs::{ProgramError, ProgramFd, RawTracePoint, TracePoint},
    Ebpf, EbpfLoader,
};
use observer_common::{
    KernelConfig, KindCounters, PREFIX_KEY_LEN, PROCESS_EXCLUDED, SUFFIX_KEY_LEN,
};

/// The object built by build.rs from observer-ebpf.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/observer"));

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("observerd must run as root (it loads eBPF programs and reads other processes' /proc entries)")]
    NotRoot,
    #[error("tracefs is not mounted and mounting it at /sys/kernel/tracing failed: {0}")]
    Tracefs(std::io::Error),
    #[error("loading the eBPF object failed: {0}")]
    Object(#[from] aya::EbpfError),
    #[error("eBPF program `{program}` is missing from the object")]
    MissingProgram { program: &'static str },
    #[error("eBPF map `{map}` is missing or has the wrong type")]
    Map { map: &'static str },
    #[error("eBPF program `{program}` failed to load: {source}")]
    Load {
        program: &'static str,
        source: ProgramError,
    },
    #[error("eBPF program `{program}` failed to attach to {target}: {source}")]
    Attach {
        program: &'static str,
        target: String,
        source: ProgramError,
    },
    #[error("filling map `{map}` failed: {source}")]
    Fill {
        map: &'static str,
        source: aya::maps::MapError,
    },
}

/// What a program attaches to.
enum Hook {
    TracePoint(&'static [(&'static str, &'static str)]),
    RawTracePoint(&'static str),
}

const PROGRAMS: &[(&str, Hook)] = &[
    (
        "execve_enter",
        Hook::TracePoint(&[("syscalls", "sys_enter_execve")]),
    ),
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
        "sched_process_exec",
        Hook::TracePoint(&[("sched", "sched_process_exec")]),
    ),
    (
        "sched_process_exit",
        Hook::TracePoint(&[("sched", "sched_process_exit")]),
    ),
    (
        "sched_process_fork",
        Hook::RawTracePoint("sched_process_fork"),
    ),
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
    pub counters: PerCpuArray<MapData, KindCounters>,
    /// `PROCESS_WATCHED` / `PROCESS_EXCLUDED` per tgid.
    pub process_flags: HashMap<MapData, u32, u32>,
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
        .override_global("CONFIG", &opts.kernel, true);
    if let Some(n) = &opts.names {
        loader
            .map_max_entries("SOCK_OWNERS", n.owner_entries)
            .override_global("NAMES_CONFIG", &n.config, true);
    }
    let mut ebpf = loader.load(EBPF_OBJECT)?;
    fill_path_filters(&mut ebpf, opts)?;
    let mut process_flags: HashMap<MapData, u32, u32> = take_map(&mut ebpf, "PROCESS_FLAGS")?;
    // Exclude ourselves before attaching, so our own writes never become events.
    process_flags
        .insert(std::process::id(), PROCESS_EXCLUDED, 0)
        .map_err(|source| LoadError::Fill {
            map: "PROCESS_FLAGS",
            source,
        })?;
    let mut attached = attach_all(&mut ebpf)?;
    if let Some(n) = &opts.names {
        attached.extend(crate::names::attach::attach(&mut ebpf, n.cgroup)?);
    }
    let programs = program_fds(&ebpf)?;
    Ok(Probes {
        programs,
        events: take_map(&mut ebpf, "EVENTS")?,
        counters: take_map(&mut ebpf, "COUNTERS")?,
        process_flags,
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

/// A typed handle on a map the loaded object keeps owning.
fn map_mut<'a, T>(ebpf: &'a mut Ebpf, map: &'static str) -> Result<T, LoadError>
where
    T: TryFrom<&'a mut aya::maps::Map>,
{
    let raw = ebpf.map_mut(map).ok_or(LoadError::Map { map })?;
    T::try_from(raw).map_err(|_| LoadError::Map { map })
}

fn fill_error(map: &'static str) -> impl Fn(aya::maps::MapError) -> LoadError {
    move |source| LoadError::Fill { map, source }
}

/// The prefix and suffix tries, and the one-lookup prefilter tables in
/// front of them (first two bytes of a prefix, last byte of a suffix).
fn fill_path_filters(ebpf: &mut Ebpf, opts: &LoadOptions) -> Result<(), LoadError> {
    let mut prefixes: LpmTrie<&mut MapData, [u8; PREFIX_KEY_LEN], u32> =
        map_mut(ebpf, "PATH_PREFIXES")?;
    for p in opts.prefixes {
        let mut data = [0u8; PREFIX_KEY_LEN];
        data[..p.len()].copy_from_slice(p.as_bytes());
        let key = Key::new(p.len() as u32 * 8, data);
        prefixes
            .insert(&key, 1, 0)
            .map_err(fill_error("PATH_PREFIXES"))?;
    }
    let mut first_bytes: Array<&mut MapData, u8> = map_mut(ebpf, "PREFIX_FIRST_BYTES")?;
    for p in opts.prefixes.iter().map(|p| p.as_bytes()) {
        // A one-byte prefix matches whatever its second byte is.
        let seconds: Vec<u8> = match p.get(1) {
            Some(b) => vec![*b],
            None => (0..=255).collect(),
        };
        for second in seconds {
            let index = u16::from_le_bytes([p[0], second]) as u32;
            first_bytes
                .set(index, 1, 0)
                .map_err(fill_error("PREFIX_FIRST_BYTES"))?;
        }
    }
    let mut suffixes: LpmTrie<&mut MapData, [u8; SUFFIX_KEY_LEN], u32> =
        map_mut(ebpf, "PATH_SUFFIXES")?;
    for s in opts.suffixes {
        let mut data = [0u8; SUFFIX_KEY_LEN];
        for (i, b) in s.bytes().rev().enumerate() {
            data[i] = b;
        }
        let key = Key::new(s.len() as u32 * 8, data);
        suffixes
            .insert(&key, 1, 0)
            .map_err(fill_error("PATH_SUFFIXES"))?;
    }
    let mut exes: LpmTrie<&mut MapData, [u8; PREFIX_KEY_LEN], u32> = map_mut(ebpf, "WATCHED_EXES")?;
    for x in opts.watched_executables {
        // Path plus its NUL (zeroed already): an exact match, not a prefix.
        let mut data = [0u8; PREFIX_KEY_LEN];
        data[..x.len()].copy_from_slice(x.as_bytes());
        let key = Key::new((x.len() as u32 + 1) * 8, data);
        exes.insert(&key, 1, 0)
            .map_err(fill_error("WATCHED_EXES"))?;
    }
    let mut last_bytes: Array<&mut MapData, u8> = map_mut(ebpf, "SUFFIX_LAST_BYTE")?;
    for last in opts.suffixes.iter().filter_map(|s| s.bytes().last()) {
        last_bytes
            .set(last as u32, 1, 0)
            .map_err(fill_error("SUFFIX_LAST_BYTE"))?;
    }
    Ok(())
}

fn program_fds(ebpf: &Ebpf) -> Result<Vec<(&'static str, ProgramFd)>, LoadError> {
    PROGRAMS
        .iter()
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

fn attach_all(ebpf: &mut Ebpf) -> Result<Vec<String>, LoadError> {
    let mut attached = Vec::new();
    for (program, hook) in PROGRAMS {
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
