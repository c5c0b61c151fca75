//! `cargo xtask bench probes`: what the probes cost an exec storm and an
//! openat storm (baseline and attached rounds alternating, the workload
//! pinned to one CPU), with each program's own run time from bpf_stats.
use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

use crate::bench_kit::{
    best_high, best_low, median, warn_if_other_observers, Daemon, PinToLastCpu,
};
use crate::tiny_exe::write_tiny_exit;

/// The storms' sizes and rounds (flattened into `cargo xtask bench`'s
/// arguments: the flags are the same).
#[derive(clap::Args)]
pub struct ProbeArgs {
    /// fork+exec count of the exec storm (of a static binary: ~60 us each,
    /// so a round is a few seconds of CPU).
    #[arg(long, default_value_t = 50_000)]
    pub execs: u32,
    /// open+close count of each openat storm.
    #[arg(long, default_value_t = 1_000_000)]
    pub opens: u32,
    /// Alternating baseline/attached rounds of each openat storm.
    #[arg(long, default_value_t = 5)]
    pub rounds: u32,
    /// Alternating baseline/attached rounds of each exec storm.
    #[arg(long, default_value_t = 4)]
    pub exec_rounds: u32,
    /// Execs by the registered agent per round of its exec storm.
    #[arg(long, default_value_t = 20_000)]
    pub watched_execs: u32,
}

pub fn run(root: &Path, work: &Path, args: &ProbeArgs) -> anyhow::Result<()> {
    let default_config = std::fs::read_to_string(root.join("observer.toml"))?;
    let tiny = work.join("tiny-exit");
    write_tiny_exit(&tiny)?;
    let plain = work.join("plain.txt");
    std::fs::write(&plain, "uninteresting")?;

    warn_if_other_observers()?;
    let _pinned = PinToLastCpu::new()?;
    println!("observer benchmark: ratios are attached / baseline, best round of each (median in brackets)");
    exec_storms(root, work, &tiny, args, &default_config)?;
    let filtered = openat_rounds(root, work, &plain, args, &default_config)?;
    println!(
        "openat storm ({} open+close of an uninteresting file), default filter: baseline {:.0}/s, \
         attached {:.0}/s, ratio {:.3} [{:.3}] (reference 0.90; an empty program alone reaches 0.83-0.90)",
        args.opens,
        filtered.base,
        filtered.attached,
        filtered.attached / filtered.base,
        filtered.median_ratio
    );
    // An empty program on the same tracepoint runs beside ours in the same
    // storm: what ours costs above it is the program's own work (the
    // tracepoint's and the kernel's accounting cost are the same for both).
    let empty = crate::bench_bpf::empty_openat_program()?;
    let d = Daemon::start(root, work, &default_config, false)?;
    let mut empty_time = (0, 0);
    let probe = with_probe_stats(&d, || {
        let before = crate::bench_bpf::stats(&[crate::bench_bpf::EMPTY_TP])?;
        openat_storm(&plain, args.opens)?;
        let after = crate::bench_bpf::stats(&[crate::bench_bpf::EMPTY_TP])?;
        empty_time = (after.0 - before.0, after.1 - before.1);
        Ok(())
    })?;
    d.stop()?;
    drop(empty);
    let per_open_ns = probe.total_ns / f64::from(args.opens);
    let base_pair_ns = 1e9 / filtered.base;
    println!(
        "openat storm, probe time measured by the kernel (bpf_stats): {per_open_ns:.0} ns per open = \
         {:.2}% of a {base_pair_ns:.0} ns open+close; ratio from probe time alone {:.3}; per open: {}",
        100.0 * per_open_ns / base_pair_ns,
        base_pair_ns / (base_pair_ns + per_open_ns),
        program_breakdown(&probe.by_program, f64::from(args.opens))
    );
    let (open_ns, open_runs) = probe
        .by_program
        .iter()
        .filter(|(name, _, _)| name.starts_with("openat"))
        .fold((0, 0), |(ns, runs), p| (ns + p.1, runs + p.2));
    let ours = open_ns as f64 / open_runs.max(1) as f64;
    let floor = empty_time.0 as f64 / empty_time.1.max(1) as f64;
    println!(
        "openat program's own cost: {ours:.0} ns per run, an empty program on the same tracepoint in the \
         same storm {floor:.0} ns per run: {:.0} ns above it (target <= 50)",
        ours - floor
    );
    let unfiltered_config =
        "[files]\nprefixes = [\"/\"]\nsuffixes = []\n[kernel]\nopen_dedup_ms = 0\n".to_string();
    let unfiltered = openat_rounds(root, work, &plain, args, &unfiltered_config)?;
    println!(
        "openat storm, unfiltered (every open emitted): baseline {:.0}/s, attached {:.0}/s, ratio {:.3} [{:.3}]; \
         events delivered {:.0}/s, drops {}",
        unfiltered.base,
        unfiltered.attached,
        unfiltered.attached / unfiltered.base,
        unfiltered.median_ratio,
        unfiltered.delivered_per_sec,
        unfiltered.drops
    );
    // Someone may have started an observer while we measured.
    warn_if_other_observers()
}

/// The exec storm by an unwatched process (target <= 1.03) and by a
/// registered agent, whose every descendant is watched (target <= 1.10),
/// each against the same storm with no daemon, rounds alternating; then
/// the probes' own time per exec from bpf_stats.
fn exec_storms(
    root: &Path,
    work: &Path,
    tiny: &Path,
    args: &ProbeArgs,
    default_config: &str,
) -> anyhow::Result<()> {
    let rounds = args.exec_rounds.max(1);
    let mut plain = ExecRounds::default();
    for _ in 0..rounds {
        plain.base.push(exec_storm(tiny, args.execs)?);
        let d = Daemon::start(root, work, default_config, true)?;
        plain.attached.push(exec_storm(tiny, args.execs)?);
        plain.add(d.stop()?);
    }
    let stats_execs = (args.execs / 4).max(1);
    let d = Daemon::start(root, work, default_config, true)?;
    let probe = with_probe_stats(&d, || exec_storm(tiny, stats_execs).map(|_| ()))?;
    d.stop()?;
    let per_exec_ns = probe.total_ns / f64::from(stats_execs);
    let base_exec_ns = best_low(&plain.base) * 1e9 / f64::from(args.execs);
    let opens = probe
        .by_program
        .iter()
        .filter(|(name, _, _)| name.starts_with("openat"))
        .map(|(_, _, runs)| *runs)
        .sum::<u64>() as f64
        / f64::from(stats_execs);
    println!(
        "exec storm, probe time measured by the kernel (bpf_stats, {stats_execs} execs): {per_exec_ns:.0} ns \
         per exec = {:.2}% of a {:.0} us exec (target <= 3%); per exec: {}; host background removed: {:.0} ns per exec",
        100.0 * per_exec_ns / base_exec_ns,
        base_exec_ns / 1e3,
        program_breakdown(&probe.by_program, f64::from(stats_execs)),
        probe.background_ns / f64::from(stats_execs)
    );
    plain.print(
        &format!(
            "exec storm ({} fork+exec of a static exit(0) binary, no file opens of its own; host-wide \
             opens per exec {opens:.2})",
            args.execs
        ),
        1.03,
    );

    let agent = work.join("bench-exec-agent-sh");
    std::fs::copy("/bin/sh", &agent)?;
    let agent_config = format!(
        "{default_config}\n[[agents]]\nid = \"bench-exec-agent\"\nexecutables = [{:?}]\n",
        agent.display().to_string()
    );
    let script = format!(
        "i=0; while [ $i -lt {} ]; do {}; i=$((i+1)); done",
        args.watched_execs,
        tiny.display()
    );
    let agent_storm = || -> anyhow::Result<f64> {
        let before = children_cpu();
        let status = Command::new(&agent).arg("-c").arg(&script).status()?;
        if !status.success() {
            bail!("agent exec storm failed: {status}");
        }
        Ok(children_cpu() - before)
    };
    let mut watched = ExecRounds::default();
    for _ in 0..rounds {
        watched.base.push(agent_storm()?);
        let d = Daemon::start(root, work, &agent_config, true)?;
        watched.attached.push(agent_storm()?);
        watched.add(d.stop()?);
    }
    watched.print(
        &format!(
            "exec storm by a registered agent ({} execs of the static binary by a copy of sh; every \
             process watched)",
            args.watched_execs
        ),
        1.10,
    );
    let d = Daemon::start(root, work, &agent_config, true)?;
    let cpu0 = d.cpu_secs()?;
    let probe = with_probe_stats(&d, || agent_storm().map(|_| ()))?;
    let daemon_cpu = d.cpu_secs()? - cpu0;
    d.stop()?;
    let n = f64::from(args.watched_execs);
    println!(
        "exec storm by a registered agent, probe time (bpf_stats): {:.0} ns per exec = {:.2}% of the \
         agent's {:.0} us per exec; per exec: {}; daemon {:.0} us CPU per exec (attribution, receipts)",
        probe.total_ns / n,
        100.0 * probe.total_ns / (best_low(&watched.base) * 1e9),
        best_low(&watched.base) * 1e6 / n,
        program_breakdown(&probe.by_program, n),
        daemon_cpu * 1e6 / n
    );
    Ok(())
}

/// Baseline and attached CPU seconds of alternating exec-storm rounds.
#[derive(Default)]
struct ExecRounds {
    base: Vec<f64>,
    attached: Vec<f64>,
    daemon_cpu: Vec<f64>,
    events: u64,
    drops: u64,
}

impl ExecRounds {
    fn add(&mut self, stats: crate::bench_kit::DaemonStats) {
        self.daemon_cpu.push(stats.cpu_secs);
        self.drops += stats.dropped(&["exec", "fork", "exit"]);
        self.events += stats.emitted(&["exec"]);
    }

    /// The best-round ratio with the median's and every round's own, and a
    /// warning when the rounds disagree by more than the target's margin.
    fn print(&self, what: &str, target: f64) {
        let (b, a) = (best_low(&self.base), best_low(&self.attached));
        let per_round: Vec<f64> = self
            .attached
            .iter()
            .zip(&self.base)
            .map(|(a, b)| a / b)
            .collect();
        let (lo, hi) = per_round
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
        println!(
            "{what}: baseline {b:.2} s CPU, attached {a:.2} s CPU, ratio {:.3} [{:.3}] (target <= {target:.2}); \
             rounds {} (spread {:.3}); daemon {:.2} s CPU incl. startup; exec events {}; drops {} (target 0)",
            a / b,
            median(&self.attached) / median(&self.base),
            per_round.iter().map(|r| format!("{r:.3}")).collect::<Vec<_>>().join(" "),
            hi - lo,
            median(&self.daemon_cpu),
            self.events,
            self.drops
        );
        if hi - lo > target - 1.0 {
            println!(
                "  warning: the rounds' ratios spread by {:.3}, more than the target's {:.2} margin: \
                 something else used the CPU; rerun on a quiet machine before trusting this line",
                hi - lo,
                target - 1.0
            );
        }
    }
}

struct OpenResult {
    base: f64,
    attached: f64,
    median_ratio: f64,
    delivered_per_sec: f64,
    drops: u64,
}

fn openat_rounds(
    root: &Path,
    work: &Path,
    plain: &Path,
    args: &ProbeArgs,
    config: &str,
) -> anyhow::Result<OpenResult> {
    let (mut base, mut attached, mut delivered, mut drops) =
        (Vec::new(), Vec::new(), Vec::new(), 0);
    for _ in 0..args.rounds {
        base.push(f64::from(args.opens) / openat_storm(plain, args.opens)?);
        let d = Daemon::start(root, work, config, false)?;
        let secs = openat_storm(plain, args.opens)?;
        attached.push(f64::from(args.opens) / secs);
        let stats = d.stop()?;
        delivered.push((stats.emitted(&["file_open"]) - stats.user_drops()) as f64 / secs);
        drops += stats.dropped(&["file_open"]);
    }
    Ok(OpenResult {
        base: best_high(&base),
        attached: best_high(&attached),
        median_ratio: median(&attached) / median(&base),
        delivered_per_sec: median(&delivered),
        drops,
    })
}

/// CPU seconds (user + system) the children of `n` fork+execs used.
pub(crate) fn exec_storm(binary: &Path, n: u32) -> anyhow::Result<f64> {
    let before = children_cpu();
    for _ in 0..n {
        let status = Command::new(binary).status().context("exec storm")?;
        if !status.success() {
            bail!("{} failed: {status}", binary.display());
        }
    }
    Ok(children_cpu() - before)
}

/// Wall seconds for `n` open+close pairs.
pub(crate) fn openat_storm(path: &Path, n: u32) -> anyhow::Result<f64> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())?;
    let start = Instant::now();
    for _ in 0..n {
        // SAFETY: a valid NUL-terminated path; the fd is closed at once.
        let fd = unsafe { libc::open(c_path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            bail!(
                "open {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            );
        }
        // SAFETY: fd was just opened by us.
        unsafe { libc::close(fd) };
    }
    Ok(start.elapsed().as_secs_f64())
}

pub(crate) fn children_cpu() -> f64 {
    // SAFETY: getrusage writes into a valid rusage struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// One program's share of a measurement: name, run time in ns, runs.
type ProgramTime = (String, u64, u64);

/// Time the programs of the daemon `d` ran during `work`, as measured by
/// the kernel (kernel.bpf_stats_enabled), less what they ran in an idle
/// window of the same length right after (`background`): the file-open
/// program runs on every open on the host, a build's or the daemon's own
/// included, and that is not the workload's cost. Only the programs `d`
/// holds count, so an observerd someone else starts meanwhile (a test) is
/// not billed to ours. The kernel's own timing of each run (about 100 ns
/// here) is included, so the figures err on the high side.
fn with_probe_stats(
    d: &Daemon,
    work: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<ProbeTime> {
    const SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";
    let ids = d.program_ids()?;
    let previous = std::fs::read_to_string(SYSCTL)?;
    std::fs::write(SYSCTL, "1")?;
    let measured = (|| {
        let before = program_stats(&ids)?;
        let started = Instant::now();
        work()?;
        let took = started.elapsed();
        let after = program_stats(&ids)?;
        // Let the daemon finish the workload's events before the idle window.
        std::thread::sleep(Duration::from_secs(1));
        let idle_start = program_stats(&ids)?;
        std::thread::sleep(took);
        let idle_end = program_stats(&ids)?;
        Ok::<_, anyhow::Error>((delta(&before, &after), delta(&idle_start, &idle_end)))
    })();
    std::fs::write(SYSCTL, previous.trim())?;
    let (busy, idle) = measured?;
    let mut by_program: Vec<ProgramTime> = busy
        .into_iter()
        .map(|(name, ns, runs)| {
            let (idle_ns, idle_runs) = idle
                .iter()
                .find(|(n, _, _)| *n == name)
                .map_or((0, 0), |(_, ns, runs)| (*ns, *runs));
            (
                name,
                ns.saturating_sub(idle_ns),
                runs.saturating_sub(idle_runs),
            )
        })
        .filter(|(_, ns, _)| *ns > 0)
        .collect();
    by_program.sort_by_key(|p| std::cmp::Reverse(p.1));
    Ok(ProbeTime {
        total_ns: by_program.iter().map(|(_, ns, _)| *ns).sum::<u64>() as f64,
        background_ns: idle.iter().map(|(_, ns, _)| *ns).sum::<u64>() as f64,
        by_program,
    })
}

/// What `with_probe_stats` measured.
struct ProbeTime {
    /// Program time of the workload (background removed).
    total_ns: f64,
    /// Program time of the idle window of the same length.
    background_ns: f64,
    by_program: Vec<ProgramTime>,
}

/// Per program (by name) of `after` less `before`.
fn delta(
    before: &std::collections::HashMap<u32, ProgramTime>,
    after: &std::collections::HashMap<u32, ProgramTime>,
) -> Vec<ProgramTime> {
    after
        .iter()
        .map(|(id, (name, ns, runs))| {
            let (_, ns0, runs0) = before.get(id).cloned().unwrap_or_default();
            (name.clone(), ns - ns0, runs - runs0)
        })
        .collect()
}

/// "name ns/unit (runs/unit)" for each program, `per` units of work.
fn program_breakdown(by_program: &[ProgramTime], per: f64) -> String {
    by_program
        .iter()
        .map(|(name, ns, runs)| {
            format!(
                "{name} {:.0} ns ({:.2} runs)",
                *ns as f64 / per,
                *runs as f64 / per
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Program id to (name, run time ns, run count) for `ids`.
fn program_stats(
    ids: &std::collections::HashSet<u32>,
) -> anyhow::Result<std::collections::HashMap<u32, ProgramTime>> {
    let mut stats = std::collections::HashMap::new();
    for info in aya::programs::loaded_programs() {
        let info = info?;
        if ids.contains(&info.id()) {
            stats.insert(
                info.id(),
                (
                    info.name_as_str().unwrap_or("?").to_string(),
                    info.run_time().as_nanos() as u64,
                    info.run_count(),
                ),
            );
        }
    }
    Ok(stats)
}
