//! Startup scan of /proc for processes that were running before the probes
//! attached, so their later activity is attributed with full context.
use procfs::process::{all_processes, Process as ProcfsProcess};

use crate::process_table::{Origin, Process};

/// Every readable process; unreadable ones (raced exits) are skipped.
pub fn scan() -> Vec<Process> {
    let Ok(all) = all_processes() else {
        return Vec::new();
    };
    let ticks = procfs::ticks_per_second().max(1);
    all.filter_map(Result::ok)
        .filter_map(|p| describe(&p, ticks))
        .collect()
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
