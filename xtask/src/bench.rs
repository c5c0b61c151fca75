//! `cargo xtask bench`: what the probes cost the traced workload. Every
//! figure is a ratio against a baseline measured in the same run, with
//! baseline and attached rounds alternating so drift hits both alike. The
//! workload is pinned to one CPU, and the best round of each side is
//! compared: on a shared VM, noise only ever adds time, so the fastest round
//! is the closest to the true cost (medians are printed too).
//!
//! `cargo xtask bench` runs every section; `cargo xtask bench probes` or
//! `cargo xtask bench receipts` runs one (the receipt section is in
//! [`crate::bench_receipts`], the names and policy sections in
//! [`crate::bench_names`]).
use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use serde_json::Value;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Section {
    /// What the probes cost the traced workload (exec and openat storms).
    Probes,
    /// Signed receipts: pipeline throughput, latency, size, verification,
    /// and the real daemon end to end.
    Receipts,
    /// observerctl over a 1,000,000-receipt store: filtered query latency
    /// and verify throughput.
    Ctl,
    /// Names: a loopback connect storm with TLS ClientHellos (cost and SNI
    /// attribution), and the DNS and SNI parse rates.
    Names,
    /// Forwarding throughput per sink type (syslog TCP and TLS to rsyslog,
    /// HTTP, file) and the catch-up time after a 10-minute backlog.
    Forward,
    /// Rule evaluation cost per event with the shipped policies, against
    /// the JSON serialisation of the same events.
    Policy,
    /// What the hook itself costs: empty programs on the openat perf
    /// tracepoint and on the sys_exit raw tracepoint against the daemon's
    /// open path (only when named: `cargo xtask bench floor`).
    Floor,
}

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Sections to run (default: all).
    #[arg(value_enum)]
    sections: Vec<Section>,
    /// fork+exec count of the exec storm.
    #[arg(long, default_value_t = 20_000)]
    execs: u32,
    /// open+close count of each openat storm.
    #[arg(long, default_value_t = 1_000_000)]
    opens: u32,
    /// Alternating baseline/attached rounds of each openat storm.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// Alternating baseline/attached rounds of the exec storm.
    #[arg(long, default_value_t = 2)]
    exec_rounds: u32,
    /// TCP connects (each sending a ClientHello) per connect-storm round.
    #[arg(long, default_value_t = 20_000)]
    pub connects: u32,
    #[command(flatten)]
    pub receipts: crate::bench_receipts::ReceiptArgs,
    #[command(flatten)]
    pub ctl: crate::bench_ctl::CtlArgs,
    #[command(flatten)]
    pub forward: crate::bench_forward::ForwardArgs,
    #[command(flatten)]
    pub floor: crate::bench_floor::FloorArgs,
}

impl BenchArgs {
    pub fn runs(&self, section: Section) -> bool {
        if section == Section::Floor {
            return self.sections.contains(&section);
        }
        self.sections.is_empty() || self.sections.contains(&section)
    }
}

pub fn run(root: &Path, args: &BenchArgs) -> anyhow::Result<()> {
    let work = std::env::temp_dir().join(format!("observer-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let result = run_in(root, &work, args);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn run_in(root: &Path, work: &Path, args: &BenchArgs) -> anyhow::Result<()> {
    if args.runs(Section::Probes) {
        probes(root, work, args)?;
    }
    if args.runs(Section::Receipts) {
        crate::bench_receipts::run(root, work, &args.receipts)?;
    }
    if args.runs(Section::Ctl) {
        crate::bench_ctl::run(root, work, &args.ctl)?;
    }
    if args.runs(Section::Names) {
        crate::bench_names::run(root, work, args.connects, args.rounds)?;
    }
    if args.runs(Section::Policy) {
        crate::bench_names::policy(root)?;
    }
    if args.runs(Section::Forward) {
        crate::bench_forward::run(root, work, &args.forward)?;
    }
    if args.runs(Section::Floor) {
        crate::bench_floor::run(root, work, args.opens, &args.floor)?;
    }
    Ok(())
}

fn probes(root: &Path, work: &Path, args: &BenchArgs) -> anyhow::Result<()> {
    let default_config = std::fs::read_to_string(root.join("observer.toml"))?;
    let tiny = work.join("tiny-true");
    std::fs::copy("/bin/true", &tiny)?;
    let plain = work.join("plain.txt");
    std::fs::write(&plain, "uninteresting")?;

    warn_if_other_observers()?;
    let _pinned = PinToLastCpu::new()?;
    println!("observer benchmark: ratios are attached / baseline, best round of each (median in brackets)");

    let exec_rounds = args.exec_rounds.max(1);
    let mut base = Vec::new();
    let mut attached = Vec::new();
    let mut daemon_cpu = Vec::new();
    let mut exec_drops = 0;
    let mut exec_events = 0;
    for _ in 0..exec_rounds {
        base.push(exec_storm(&tiny, args.execs)?);
        let d = Daemon::start(root, work, &default_config, true)?;
        attached.push(exec_storm(&tiny, args.execs)?);
        let stats = d.stop()?;
        daemon_cpu.push(stats.cpu_secs);
        exec_drops += stats.dropped(&["exec", "fork", "exit"]);
        exec_events += stats.emitted(&["exec"]);
    }
    let (b, a) = (best_low(&base), best_low(&attached));
    let stats_execs = (args.execs / 4).max(1);
    let d = Daemon::start(root, work, &default_config, true)?;
    let probe = with_probe_stats(&d, || exec_storm(&tiny, stats_execs).map(|_| ()))?;
    d.stop()?;
    let per_exec_ns = probe.total_ns / stats_execs as f64;
    let base_exec_ns = b * 1e9 / args.execs as f64;
    println!(
        "exec storm, probe time measured by the kernel (bpf_stats, {stats_execs} execs): {per_exec_ns:.0} ns \
         per exec = {:.2}% of a {:.0} us exec (target <= 3%); per exec: {}; host background removed: {:.0} ns per exec",
        100.0 * per_exec_ns / base_exec_ns,
        base_exec_ns / 1e3,
        program_breakdown(&probe.by_program, stats_execs as f64),
        probe.background_ns / stats_execs as f64
    );
    println!(
        "exec storm ({} fork+exec of a tiny binary): baseline {:.2} s CPU, attached {:.2} s CPU, \
         ratio {:.3} [{:.3}] (target <= 1.03); daemon {:.2} s CPU incl. startup; exec events {}; \
         drops {} (target 0)",
        args.execs,
        b,
        a,
        a / b,
        median(&attached) / median(&base),
        median(&daemon_cpu),
        exec_events,
        exec_drops
    );

    let filtered = openat_rounds(root, work, &plain, args, &default_config)?;
    println!(
        "openat storm ({} open+close of an uninteresting file), default filter: baseline {:.0}/s, \
         attached {:.0}/s, ratio {:.3} [{:.3}] (target >= 0.90)",
        args.opens,
        filtered.base,
        filtered.attached,
        filtered.attached / filtered.base,
        filtered.median_ratio
    );
    let d = Daemon::start(root, work, &default_config, false)?;
    let probe = with_probe_stats(&d, || openat_storm(&plain, args.opens).map(|_| ()))?;
    d.stop()?;
    let per_open_ns = probe.total_ns / args.opens as f64;
    let base_pair_ns = 1e9 / filtered.base;
    println!(
        "openat storm, probe time measured by the kernel (bpf_stats): {per_open_ns:.0} ns per open = \
         {:.2}% of a {base_pair_ns:.0} ns open+close; ratio from probe time alone {:.3}",
        100.0 * per_open_ns / base_pair_ns,
        base_pair_ns / (base_pair_ns + per_open_ns)
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
    args: &BenchArgs,
    config: &str,
) -> anyhow::Result<OpenResult> {
    let (mut base, mut attached, mut delivered, mut drops) =
        (Vec::new(), Vec::new(), Vec::new(), 0);
    for _ in 0..args.rounds {
        base.push(args.opens as f64 / openat_storm(plain, args.opens)?);
        let d = Daemon::start(root, work, config, false)?;
        let secs = openat_storm(plain, args.opens)?;
        attached.push(args.opens as f64 / secs);
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

fn children_cpu() -> f64 {
    // SAFETY: getrusage writes into a valid rusage struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Program names as the kernel stores them (15 bytes at most).
const PROGRAM_NAMES: &[&str] = &[
    "execve_enter",
    "execveat_enter",
    "exec_exit",
    "sched_process_exec",
    "sched_process_exit",
    "sched_process_fork",
    "sockaddr_enter",
    "connect_exit",
    "bind_exit",
    "listen_enter",
    "listen_exit",
    "accept_exit",
    "openat_exit",
    "openat2_exit",
];

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

/// Loaded programs named like one of ours (any observer's).
fn our_programs() -> anyhow::Result<Vec<u32>> {
    let ours: Vec<&str> = PROGRAM_NAMES
        .iter()
        .map(|n| &n[..n.len().min(15)])
        .collect();
    let mut found = Vec::new();
    for info in aya::programs::loaded_programs() {
        let info = info?;
        if info.name_as_str().is_some_and(|n| ours.contains(&n)) {
            found.push(info.id());
        }
    }
    Ok(found)
}

/// Another observerd on the host (a test, `cargo xtask run`) taxes the
/// workloads of baseline and attached rounds alike, and its programs count
/// in the probe time measured by the kernel: say so before measuring.
pub fn warn_if_other_observers() -> anyhow::Result<()> {
    let others = our_programs()?.len();
    if others > 0 {
        println!(
            "WARNING: {others} programs of another observer are loaded: probe times and costs \
             below include them"
        );
    }
    Ok(())
}

fn best_low(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min)
}

pub(crate) fn best_high(values: &[f64]) -> f64 {
    values.iter().copied().fold(0.0, f64::max)
}

/// Pins the benchmark (and the workloads it forks) to the last CPU, so the
/// daemon's threads are the only other load there; every CPU again when
/// dropped.
pub(crate) struct PinToLastCpu;

impl PinToLastCpu {
    pub(crate) fn new() -> anyhow::Result<PinToLastCpu> {
        // SAFETY: sysconf has no preconditions.
        let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize;
        set_affinity(&[cpus - 1])?;
        Ok(PinToLastCpu)
    }
}

impl Drop for PinToLastCpu {
    fn drop(&mut self) {
        let all: Vec<usize> = (0..libc::CPU_SETSIZE as usize).collect();
        let _ = set_affinity(&all);
    }
}

fn set_affinity(cpus: &[usize]) -> anyhow::Result<()> {
    // SAFETY: sched_setaffinity on our own process with a zero-initialised,
    // valid cpu_set_t.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in cpus {
            libc::CPU_SET(cpu, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            bail!("sched_setaffinity: {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Lets a child run where the scheduler puts it, whatever our own pinning.
pub fn unpinned(cmd: &mut Command) -> &mut Command {
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            for cpu in 0..libc::CPU_SETSIZE as usize {
                libc::CPU_SET(cpu, &mut set);
            }
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
            Ok(())
        })
    }
}

/// `config` (TOML text) with the `[receipts]` keys in `keys` set to the
/// given TOML values: lines setting them in an existing `[receipts]` table
/// are replaced, and the table is added when the config has none. The
/// benchmark's daemons keep their store and master seed in its work
/// directory, never in the system's.
pub fn with_receipts_keys(config: &str, keys: &[(&str, String)]) -> String {
    let ours = keys
        .iter()
        .map(|(k, v)| format!("{k} = {v}\n"))
        .collect::<String>();
    let mut out = String::with_capacity(config.len() + ours.len() + 16);
    let mut in_receipts = false;
    let mut seen = false;
    for line in config.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            in_receipts = t == "[receipts]";
            if in_receipts {
                seen = true;
                out.push_str(line);
                out.push('\n');
                out.push_str(&ours);
                continue;
            }
        }
        let key = t.split_once('=').map(|(k, _)| k.trim());
        if in_receipts && key.is_some_and(|k| keys.iter().any(|(ours, _)| *ours == k)) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if !seen {
        out.push_str("\n[receipts]\n");
        out.push_str(&ours);
    }
    out
}

/// The `[receipts]` keys that put a daemon's store and master seed in `dir`.
pub fn state_in(dir: &Path) -> Vec<(&'static str, String)> {
    let quoted = |p: PathBuf| format!("{:?}", p.display().to_string());
    vec![
        ("store", quoted(dir.join("observer.db"))),
        ("master_seed", quoted(dir.join("master.seed"))),
    ]
}

pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// A release observerd started for one measurement.
pub struct Daemon {
    child: Child,
    stderr: PathBuf,
}

pub struct DaemonStats {
    pub cpu_secs: f64,
    pub counters: Value,
}

impl DaemonStats {
    fn emitted(&self, kinds: &[&str]) -> u64 {
        kinds
            .iter()
            .map(|k| self.counters["kernel"][k]["emitted"].as_u64().unwrap_or(0))
            .sum()
    }

    fn dropped(&self, kinds: &[&str]) -> u64 {
        let kernel: u64 = kinds
            .iter()
            .map(|k| {
                let c = &self.counters["kernel"][k];
                c["dropped_ringbuf_full"].as_u64().unwrap_or(0)
                    + c["dropped_read_error"].as_u64().unwrap_or(0)
            })
            .sum();
        let user: u64 = kinds
            .iter()
            .map(|k| {
                self.counters["user_drops"][format!("channel_full:{k}")]
                    .as_u64()
                    .unwrap_or(0)
            })
            .sum();
        kernel + user
    }

    fn user_drops(&self) -> u64 {
        self.counters["user_drops"]["channel_full:file_open"]
            .as_u64()
            .unwrap_or(0)
    }

    /// Every event lost in the kernel (ring buffer full, read errors) and
    /// every program run the kernel skipped.
    pub fn kernel_drops(&self) -> u64 {
        let sum = |v: &Value, fields: &[&str]| -> u64 {
            v.as_object().map_or(0, |o| {
                o.values()
                    .map(|c| {
                        if fields.is_empty() {
                            c.as_u64().unwrap_or(0)
                        } else {
                            fields.iter().map(|f| c[f].as_u64().unwrap_or(0)).sum()
                        }
                    })
                    .sum()
            })
        };
        sum(
            &self.counters["kernel"],
            &["dropped_ringbuf_full", "dropped_read_error"],
        ) + sum(&self.counters["kernel_skipped"], &[])
    }

    /// Every event lost in user space (channel full, decode errors).
    pub fn all_user_drops(&self) -> u64 {
        self.counters["user_drops"]
            .as_object()
            .map_or(0, |o| o.values().filter_map(Value::as_u64).sum())
    }
}

impl Daemon {
    /// Ids of the eBPF programs this daemon holds open (the `prog_id` of
    /// each program fd in /proc/<pid>/fdinfo).
    fn program_ids(&self) -> anyhow::Result<std::collections::HashSet<u32>> {
        let dir = format!("/proc/{}/fdinfo", self.child.id());
        let mut ids = std::collections::HashSet::new();
        for entry in std::fs::read_dir(&dir).with_context(|| dir.clone())? {
            // An fd closed since the listing has no fdinfo any more.
            let Ok(text) = std::fs::read_to_string(entry?.path()) else {
                continue;
            };
            if let Some(id) = text
                .lines()
                .find_map(|l| l.strip_prefix("prog_id:"))
                .and_then(|v| v.trim().parse().ok())
            {
                ids.insert(id);
            }
        }
        if ids.is_empty() {
            bail!("{dir}: the daemon holds no eBPF program");
        }
        Ok(ids)
    }

    /// Starts observerd with `config`, its receipt store and master seed in
    /// `work/state`.
    pub(crate) fn start(
        root: &Path,
        work: &Path,
        config: &str,
        write_events: bool,
    ) -> anyhow::Result<Daemon> {
        let config = with_receipts_keys(config, &state_in(&work.join("state")));
        Self::start_with(root, work, &config, write_events)
    }

    /// Starts observerd with `config` as it is.
    pub fn start_with(
        root: &Path,
        work: &Path,
        config: &str,
        write_events: bool,
    ) -> anyhow::Result<Daemon> {
        Self::start_exe(
            &root.join("target/release/observerd"),
            work,
            config,
            write_events,
        )
    }

    /// Starts the observerd binary `exe` with `config` as it is.
    pub fn start_exe(
        exe: &Path,
        work: &Path,
        config: &str,
        write_events: bool,
    ) -> anyhow::Result<Daemon> {
        let config_path = work.join("bench.toml");
        std::fs::write(&config_path, config)?;
        let stderr = work.join("observerd.stderr");
        let mut cmd = Command::new(exe);
        cmd.arg("--config").arg(&config_path);
        if write_events {
            cmd.arg("--events-jsonl").arg(work.join("events.jsonl"));
        }
        // The daemon runs where the scheduler puts it, not on the pinned CPU.
        unpinned(&mut cmd);
        let child = cmd
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr)?)
            .spawn()
            .context("starting observerd")?;
        let d = Daemon { child, stderr };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !d.log().contains("observerd ready") {
            if Instant::now() > deadline {
                bail!("observerd did not become ready: {}", d.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(d)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// CPU seconds the daemon has used so far.
    pub fn cpu_secs(&self) -> anyhow::Result<f64> {
        process_cpu(self.child.id())
    }

    pub fn stop(mut self) -> anyhow::Result<DaemonStats> {
        let cpu_secs = process_cpu(self.child.id())?;
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait()?;
        if !status.success() {
            bail!("observerd failed: {}", self.log());
        }
        let log = self.log();
        let line = log
            .lines()
            .find_map(|l| {
                l.split_once("final counters: ")
                    .map(|(_, json)| json.to_string())
            })
            .context("observerd did not log its final counters")?;
        Ok(DaemonStats {
            cpu_secs,
            counters: serde_json::from_str(&line)?,
        })
    }
}

impl Drop for Daemon {
    /// A benchmark that failed half way still stops its daemon.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: signalling our own child, which has not been reaped.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            let _ = self.child.wait();
        }
    }
}

/// utime + stime of a running process, from /proc/<pid>/stat.
fn process_cpu(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after_comm = stat.rsplit_once(')').context("malformed stat")?.1;
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks / hz)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_keys_replace_existing_lines_or_add_the_table() {
        let keys = state_in(Path::new("/w"));
        let repo = std::fs::read_to_string(crate::workspace_root().join("observer.toml")).unwrap();
        let out = with_receipts_keys(&repo, &keys);
        assert!(!out.contains("/var/lib/observer"));
        assert_eq!(out.matches("\nstore = ").count(), 1);
        assert_eq!(out.matches("\nmaster_seed = ").count(), 1);
        assert!(out.contains("store = \"/w/observer.db\"\n"));
        assert!(out.contains("enabled = true"));

        let bare = with_receipts_keys("[files]\nprefixes = []\n", &keys);
        assert_eq!(
            bare,
            "[files]\nprefixes = []\n\n[receipts]\nstore = \"/w/observer.db\"\nmaster_seed = \"/w/master.seed\"\n"
        );
    }
}
