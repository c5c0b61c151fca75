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
    os::fd::OwnedFd,
    path::{Path, PathBuf},
    time::Instant,
};

use crate::{
    bench_bpf::{
        attach_raw_tracepoint, empty_openat_program, load_empty, stats,
        BPF_PROG_TYPE_RAW_TRACEPOINT, EMPTY_RAW, EMPTY_TP,
    },
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
            open_ns = open_ns.min(openat_storm(&plain, BATCH)? * 1e9 / f64::from(BATCH));
        }
        let mut other_ns = f64::INFINITY;
        for _ in 0..args.floor_syscalls / BATCH {
            other_ns = other_ns.min(other_storm(BATCH) * 1e9 / f64::from(BATCH));
        }
        Ok(Times {
            open_ns,
            other_ns,
            exec_us: exec_storm(&tiny, args.floor_execs)? * 1e6 / f64::from(args.floor_execs),
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
            open_ns as f64 / f64::from(opens),
            open_ns as f64 / open_runs.max(1) as f64,
            open_runs as f64 / f64::from(opens),
            other_ns as f64 / f64::from(args.floor_syscalls),
            other_runs
        );
    }
    Ok(())
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
