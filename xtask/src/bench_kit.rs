//! What the benchmark sections share: the daemon under test (started,
//! measured and stopped), CPU pinning, medians and best rounds, and the
//! configuration edits that point a daemon at a scratch state directory.
use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use serde_json::Value;

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

pub(crate) fn best_low(values: &[f64]) -> f64 {
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

/// Runs the child on the first `n` CPUs, whatever our own pinning (threads
/// it makes inherit it).
pub fn on_cpus(cmd: &mut Command, n: usize) -> &mut Command {
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            for cpu in 0..n.clamp(1, libc::CPU_SETSIZE as usize) {
                libc::CPU_SET(cpu, &mut set);
            }
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
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
    pub(crate) fn emitted(&self, kinds: &[&str]) -> u64 {
        kinds
            .iter()
            .map(|k| self.counters["kernel"][k]["emitted"].as_u64().unwrap_or(0))
            .sum()
    }

    pub(crate) fn dropped(&self, kinds: &[&str]) -> u64 {
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

    pub(crate) fn user_drops(&self) -> u64 {
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
    pub(crate) fn program_ids(&self) -> anyhow::Result<std::collections::HashSet<u32>> {
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

    /// Moves every thread of the daemon off the last CPU (where
    /// `PinToLastCpu` runs the workload), so what the daemon does per
    /// event shows as its CPU, not as time taken from the workload: on a
    /// host with more cores than this one it runs beside the agent.
    /// Threads made later inherit it from the one that makes them.
    pub(crate) fn keep_off_last_cpu(&self) -> anyhow::Result<()> {
        // SAFETY: sysconf has no preconditions.
        let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize;
        if cpus < 2 {
            return Ok(());
        }
        let dir = format!("/proc/{}/task", self.child.id());
        for entry in std::fs::read_dir(&dir).with_context(|| dir.clone())? {
            let Some(tid) = entry?
                .file_name()
                .to_str()
                .and_then(|t| t.parse::<i32>().ok())
            else {
                continue;
            };
            // SAFETY: sched_setaffinity on a thread of our child with a
            // zero-initialised, valid cpu_set_t.
            unsafe {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                for cpu in 0..cpus - 1 {
                    libc::CPU_SET(cpu, &mut set);
                }
                if libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                    bail!(
                        "sched_setaffinity {tid}: {}",
                        std::io::Error::last_os_error()
                    );
                }
            }
        }
        Ok(())
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

/// Loaded programs named like one of ours (any observer's).
pub(crate) fn our_programs() -> anyhow::Result<Vec<u32>> {
    // Program names as the kernel stores them (15 bytes at most).
    let ours: Vec<&str> = observer_testkit::probes::SYSCALL_PROGRAMS
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
