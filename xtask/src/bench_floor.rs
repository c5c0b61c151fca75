//! `cargo xtask bench floor`: what the hook itself costs, before any work in
//! the program. The openat storm, a storm of cheap non-open syscalls
//! (getpid + close(-1)) and an exec storm run with, in turn:
//!
//! - nothing attached (the baseline),
//! - an empty program on the `syscalls/sys_exit_openat` perf tracepoint,
//! - an empty raw tracepoint program on `sys_exit` (every syscall exit),
//! - the daemon of this build with the repository's `observer.toml`,
//! - each `--floor-daemon` binary (another build to compare) likewise.
//!
//! All variants run once per round, in a rotating order, and each figure is
//! the median over rounds of the per-round ratio to that round's baseline,
//! so drift on a shared VM hits every variant alike. Within a round the
//! openat and getpid storms are timed in batches of 200 pairs and the
//! fastest batch counts; the exec storm sums CPU time as before. A second pass turns on
//! `kernel.bpf_stats_enabled` and reads the time the kernel measured inside
//! the programs (it includes the measuring itself; the empty programs show
//! how much).
//!
//! The empty programs are two instructions (`r0 = 0; exit`) loaded with
//! the bpf syscall directly, so the measurement needs no eBPF build.
use std::{
    ffi::CString,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{bail, Context as _};

use crate::{
    bench_kit::{median, Daemon, PinToLastCpu},
    bench_probes::{exec_storm, openat_storm},
};

#[derive(clap::Args)]
pub struct FloorArgs {
    /// Rounds of the floor section (each runs every variant once).
    #[arg(long, default_value_t = 7)]
    pub floor_rounds: u32,
    /// getpid+close(-1) pairs of each non-open syscall storm.
    #[arg(long, default_value_t = 1_000_000)]
    pub floor_syscalls: u32,
    /// fork+execs of each exec storm in the floor section.
    #[arg(long, default_value_t = 2_000)]
    pub floor_execs: u32,
    /// Another observerd binary to measure next to this build's (repeatable).
    #[arg(long)]
    pub floor_daemon: Vec<PathBuf>,
}

/// Pairs per timed batch: the openat and getpid storms report their
/// fastest batch, which on a loaded VM is the one nobody preempted (a whole
/// storm's wall time there mostly measures the other tenants).
const BATCH: u32 = 200;

/// Names the kernel stores for the file-open programs of any build.
const OPEN_PROGRAMS: &[&str] = &["openat_exit", "openat2_exit", "open_exit"];
pub(crate) const EMPTY_TP: &str = "floor_tp";
const EMPTY_RAW: &str = "floor_raw_tp";

enum Variant {
    Baseline,
    EmptyTracepoint,
    EmptyRawTracepoint,
    Daemon(PathBuf),
}

impl Variant {
    fn label(&self, root: &Path) -> String {
        match self {
            Variant::Baseline => "no program".into(),
            Variant::EmptyTracepoint => "empty prog, tracepoint sys_exit_openat".into(),
            Variant::EmptyRawTracepoint => "empty prog, raw_tp sys_exit".into(),
            Variant::Daemon(exe) if exe.starts_with(root) => "observerd (this build)".into(),
            Variant::Daemon(exe) => format!("observerd {}", exe.display()),
        }
    }
}

/// What a variant holds attached while the storms run.
enum Attached {
    Nothing,
    Program { _prog: OwnedFd, _link: OwnedFd },
    Daemon(Daemon),
}

#[derive(Default, Clone)]
struct Times {
    open_ns: f64,
    other_ns: f64,
    exec_us: f64,
}

pub fn run(root: &Path, work: &Path, opens: u32, args: &FloorArgs) -> anyhow::Result<()> {
    let config = std::fs::read_to_string(root.join("observer.toml"))?;
    let tiny = work.join("tiny-exit");
    crate::tiny_exe::write_tiny_exit(&tiny)?;
    let plain = work.join("plain.txt");
    std::fs::write(&plain, "uninteresting")?;
    crate::bench_kit::warn_if_other_observers()?;
    let _pinned = PinToLastCpu::new()?;

    let mut variants = vec![
        Variant::Baseline,
        Variant::EmptyTracepoint,
        Variant::EmptyRawTracepoint,
        Variant::Daemon(root.join("target/release/observerd")),
    ];
    variants.extend(args.floor_daemon.iter().cloned().map(Variant::Daemon));

    let storms = || -> anyhow::Result<Times> {
        let mut open_ns = f64::INFINITY;
        for _ in 0..opens / BATCH {
            open_ns = open_ns.min(openat_storm(&plain, BATCH)? * 1e9 / BATCH as f64);
        }
        let mut other_ns = f64::INFINITY;
        for _ in 0..args.floor_syscalls / BATCH {
            other_ns = other_ns.min(other_storm(BATCH) * 1e9 / BATCH as f64);
        }
        Ok(Times {
            open_ns,
            other_ns,
            exec_us: exec_storm(&tiny, args.floor_execs)? * 1e6 / args.floor_execs as f64,
        })
    };

    let rounds = args.floor_rounds.max(1) as usize;
    let mut results: Vec<Vec<Times>> = vec![Vec::new(); variants.len()];
    for round in 0..rounds {
        for k in 0..variants.len() {
            let i = (k + round) % variants.len();
            let attached = attach(&variants[i], work, &config)?;
            let times = storms();
            detach(attached)?;
            results[i].push(times?);
        }
        eprintln!("floor: round {}/{rounds} done", round + 1);
    }

    println!(
        "hook floor ({rounds} rounds, medians; open+close and getpid+close: fastest batch of {BATCH}; \
         ratio = per-round variant / baseline time, so 1.10 = 10% slower; openat throughput ratio = \
         1 / time ratio)"
    );
    println!(
        "{:<44} {:>9} {:>7} {:>9} {:>11} {:>7} {:>9} {:>7}",
        "variant", "open+close", "ratio", "thruput", "getpid+close", "ratio", "exec us", "ratio"
    );
    let base = &results[0];
    for (v, times) in variants.iter().zip(&results) {
        let ratio = |f: fn(&Times) -> f64| {
            median(
                &times
                    .iter()
                    .zip(base)
                    .map(|(t, b)| f(t) / f(b))
                    .collect::<Vec<_>>(),
            )
        };
        let open_ratio = ratio(|t| t.open_ns);
        println!(
            "{:<44} {:>8.0}ns {:>7.3} {:>8.3}x {:>10.0}ns {:>7.3} {:>9.0} {:>7.3}",
            v.label(root),
            median(&times.iter().map(|t| t.open_ns).collect::<Vec<_>>()),
            open_ratio,
            1.0 / open_ratio,
            median(&times.iter().map(|t| t.other_ns).collect::<Vec<_>>()),
            ratio(|t| t.other_ns),
            median(&times.iter().map(|t| t.exec_us).collect::<Vec<_>>()),
            ratio(|t| t.exec_us),
        );
    }

    println!("probe time measured by the kernel (bpf_stats; includes its own accounting):");
    for v in &variants[1..] {
        let attached = attach(v, work, &config)?;
        let names: &[&str] = match v {
            Variant::EmptyTracepoint => &[EMPTY_TP],
            Variant::EmptyRawTracepoint => &[EMPTY_RAW],
            _ => OPEN_PROGRAMS,
        };
        let (open_ns, open_runs) = with_stats(names, || openat_storm(&plain, opens).map(|_| ()))?;
        let (other_ns, other_runs) = with_stats(names, || {
            other_storm(args.floor_syscalls);
            Ok(())
        })?;
        detach(attached)?;
        println!(
            "  {:<44} openat storm: {:.0} ns per open ({:.0} ns per run, {:.2} runs per open); \
             getpid+close storm: {:.1} ns per pair ({} runs)",
            v.label(root),
            open_ns as f64 / opens as f64,
            open_ns as f64 / open_runs.max(1) as f64,
            open_runs as f64 / opens as f64,
            other_ns as f64 / args.floor_syscalls as f64,
            other_runs
        );
    }
    Ok(())
}

/// An empty program attached to `sys_exit_openat` (program and link; it
/// runs until both are dropped), named [`EMPTY_TP`] in bpf_stats.
pub(crate) fn empty_openat_program() -> anyhow::Result<(OwnedFd, OwnedFd)> {
    let prog = load_empty(BPF_PROG_TYPE_TRACEPOINT, EMPTY_TP)?;
    let link = attach_tracepoint(&prog, "syscalls", "sys_exit_openat")?;
    Ok((prog, link))
}

fn attach(v: &Variant, work: &Path, config: &str) -> anyhow::Result<Attached> {
    Ok(match v {
        Variant::Baseline => Attached::Nothing,
        Variant::EmptyTracepoint => {
            let (prog, link) = empty_openat_program()?;
            Attached::Program {
                _prog: prog,
                _link: link,
            }
        }
        Variant::EmptyRawTracepoint => {
            let prog = load_empty(BPF_PROG_TYPE_RAW_TRACEPOINT, EMPTY_RAW)?;
            let link = attach_raw_tracepoint(&prog, "sys_exit")?;
            Attached::Program {
                _prog: prog,
                _link: link,
            }
        }
        Variant::Daemon(exe) => {
            let config = crate::bench_kit::with_receipts_keys(
                config,
                &crate::bench_kit::state_in(&work.join("state")),
            );
            Attached::Daemon(Daemon::start_exe(exe, work, &config, false)?)
        }
    })
}

fn detach(a: Attached) -> anyhow::Result<()> {
    if let Attached::Daemon(d) = a {
        d.stop()?;
    }
    Ok(())
}

/// Seconds for `n` getpid + close(-1) pairs: two syscalls that are
/// neither opens nor traced by any of our programs.
fn other_storm(n: u32) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        // SAFETY: getpid has no arguments; close(-1) only fails with EBADF.
        unsafe {
            libc::syscall(libc::SYS_getpid);
            libc::close(-1);
        }
    }
    start.elapsed().as_secs_f64()
}

/// (run time ns, run count) of the loaded programs named in `names`,
/// spent during `work`, with kernel.bpf_stats_enabled on.
fn with_stats(
    names: &[&str],
    work: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<(u64, u64)> {
    const SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";
    let previous = std::fs::read_to_string(SYSCTL)?;
    std::fs::write(SYSCTL, "1")?;
    let before = stats(names);
    let result = work();
    let after = stats(names);
    std::fs::write(SYSCTL, previous.trim())?;
    result?;
    let (b, a) = (before?, after?);
    Ok((a.0 - b.0, a.1 - b.1))
}

/// (run time ns, run count) so far of the loaded programs named in `names`.
pub(crate) fn stats(names: &[&str]) -> anyhow::Result<(u64, u64)> {
    let (mut ns, mut runs) = (0, 0);
    for info in aya::programs::loaded_programs() {
        let info = info?;
        if info
            .name_as_str()
            .is_some_and(|n| names.iter().any(|w| w[..w.len().min(15)] == *n))
        {
            ns += info.run_time().as_nanos() as u64;
            runs += info.run_count();
        }
    }
    Ok((ns, runs))
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_RAW_TRACEPOINT_OPEN: libc::c_long = 17;
const BPF_PROG_TYPE_TRACEPOINT: u32 = 5;
const BPF_PROG_TYPE_RAW_TRACEPOINT: u32 = 17;

/// The BPF_PROG_LOAD members of `union bpf_attr` we set, zero-padded to
/// the size of the kernel's union.
#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    rest: [u8; 80],
}

/// `r0 = 0; exit`.
const EMPTY_PROGRAM: [u64; 2] = [0x0000_0000_0000_00b7, 0x0000_0000_0000_0095];

fn bpf(cmd: libc::c_long, attr: *const u8, size: usize) -> anyhow::Result<OwnedFd> {
    // SAFETY: attr points to `size` initialised bytes laid out as the
    // kernel's union bpf_attr for `cmd`.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr, size) };
    if fd < 0 {
        bail!("bpf({cmd}): {}", std::io::Error::last_os_error());
    }
    // SAFETY: a new descriptor the kernel just gave us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn load_empty(prog_type: u32, name: &str) -> anyhow::Result<OwnedFd> {
    let license = c"GPL";
    let mut prog_name = [0u8; 16];
    prog_name[..name.len().min(15)].copy_from_slice(&name.as_bytes()[..name.len().min(15)]);
    let attr = ProgLoadAttr {
        prog_type,
        insn_cnt: EMPTY_PROGRAM.len() as u32,
        insns: EMPTY_PROGRAM.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        prog_flags: 0,
        prog_name,
        rest: [0; 80],
    };
    bpf(
        BPF_PROG_LOAD,
        &attr as *const ProgLoadAttr as *const u8,
        std::mem::size_of::<ProgLoadAttr>(),
    )
    .with_context(|| format!("loading the empty program {name}"))
}

fn attach_raw_tracepoint(prog: &OwnedFd, tracepoint: &str) -> anyhow::Result<OwnedFd> {
    #[repr(C)]
    struct RawTpAttr {
        name: u64,
        prog_fd: u32,
        _pad: u32,
    }
    let name = CString::new(tracepoint)?;
    let attr = RawTpAttr {
        name: name.as_ptr() as u64,
        prog_fd: prog.as_raw_fd() as u32,
        _pad: 0,
    };
    bpf(
        BPF_RAW_TRACEPOINT_OPEN,
        &attr as *const RawTpAttr as *const u8,
        std::mem::size_of::<RawTpAttr>(),
    )
    .with_context(|| format!("attaching to raw tracepoint {tracepoint}"))
}

/// A perf event on the tracepoint (CPU 0, every process, as aya attaches)
/// running `prog`.
fn attach_tracepoint(prog: &OwnedFd, category: &str, name: &str) -> anyhow::Result<OwnedFd> {
    const PERF_TYPE_TRACEPOINT: u32 = 2;
    const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;
    const PERF_EVENT_IOC_ENABLE: libc::c_ulong = 0x2400;
    const PERF_EVENT_IOC_SET_BPF: libc::c_ulong = 0x4004_2408;
    let id_path = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
        .iter()
        .map(|t| format!("{t}/events/{category}/{name}/id"))
        .find(|p| Path::new(p).exists())
        .context("tracefs is not mounted (run the daemon once to mount it)")?;
    let id: u64 = std::fs::read_to_string(&id_path)?.trim().parse()?;
    // struct perf_event_attr (PERF_ATTR_SIZE_VER7 = 128 bytes): type, size,
    // config, sample_period; everything else zero.
    let mut attr = [0u64; 16];
    attr[0] = PERF_TYPE_TRACEPOINT as u64 | (128u64 << 32);
    attr[1] = id;
    attr[2] = 1;
    // SAFETY: attr is a valid 128-byte perf_event_attr.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr.as_ptr(),
            -1 as libc::pid_t,
            0 as libc::c_int,
            -1 as libc::c_int,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        bail!(
            "perf_event_open {category}/{name}: {}",
            std::io::Error::last_os_error()
        );
    }
    // SAFETY: a new descriptor the kernel just gave us.
    let link = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // SAFETY: ioctls on our perf event with a program descriptor argument.
    unsafe {
        if libc::ioctl(link.as_raw_fd(), PERF_EVENT_IOC_SET_BPF, prog.as_raw_fd()) != 0 {
            bail!(
                "PERF_EVENT_IOC_SET_BPF: {}",
                std::io::Error::last_os_error()
            );
        }
        if libc::ioctl(link.as_raw_fd(), PERF_EVENT_IOC_ENABLE, 0) != 0 {
            bail!("PERF_EVENT_IOC_ENABLE: {}", std::io::Error::last_os_error());
        }
    }
    Ok(link)
}
