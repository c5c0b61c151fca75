//! Startup scan of /proc for processes that were running before the probes
//! attached, so their later activity is attributed with full context.
use std::{os::unix::fs::MetadataExt, path::Path};

use procfs::process::{all_processes, Process as ProcfsProcess};

use crate::{
    enrich::cgroup::{find_cgroup2_mount, parse_proc_cgroup},
    enrich::process_table::{Origin, Process},
};

/// Every readable process; unreadable ones (raced exits) are skipped.
pub fn scan() -> Vec<Process> {
    let Ok(all) = all_processes() else {
        return Vec::new();
    };
    let ticks = procfs::ticks_per_second().max(1);
    let cgroup2 = find_cgroup2_mount();
    all.filter_map(Result::ok)
        .filter_map(|p| {
            let mut out = describe(&p, ticks)?;
            out.image.cgroup_id = cgroup2.as_deref().and_then(|m| cgroup_id(p.pid, m));
            Some(out)
        })
        .collect()
}

/// The id of the process's cgroup v2, as the kernel's exec events carry it
/// (the cgroup directory's inode number), so agents registered by cgroup
/// path or systemd unit are recognised among processes that were already
/// running, such as an agent service that outlives a restart of observerd.
fn cgroup_id(pid: i32, mount: &Path) -> Option<u64> {
    let contents = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = parse_proc_cgroup(&contents)?;
    std::fs::metadata(mount.join(path.trim_start_matches('/')))
        .ok()
        .map(|m| m.ino())
}

fn describe(p: &ProcfsProcess, ticks_per_second: u64) -> Option<Process> {
    let stat = p.stat().ok()?;
    let start_boot_ns = stat.starttime.saturating_mul(1_000_000_000) / ticks_per_second;
    let mut out = Process::new(
        p.pid as u32,
        stat.ppid as u32,
        start_boot_ns,
        Origin::ProcScan,
    );
    out.image.comm = stat.comm;
    out.image.exe = p.exe().ok().map(|e| e.display().to_string());
    out.image.argv = p.cmdline().unwrap_or_default();
    if let Ok(status) = p.status() {
        out.image.uid = status.ruid;
        out.image.gid = status.rgid;
    }
    out.image.loginuid = p.loginuid().ok().filter(|u| *u != u32::MAX);
    Some(out)
}
