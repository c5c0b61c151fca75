//! Verification rate of an existing receipt store: runs `verify_store`
//! (every check of RECEIPTS.md) over it several times and prints, per
//! round, receipts per wall second, CPU microseconds per receipt
//! (getrusage of this process, user + system) and the CPU utilisation.
//!
//! CPU per receipt is the figure that other work on the machine disturbs
//! least; at `threads` cores the rate ceiling is about
//! `threads * 1e6 / cpu_us_per_receipt` times the parallel efficiency.
//!
//! Usage: `verify_rate <dir with observer.db and master.seed> [rounds]
//! [threads] [--independent]`. Create the store with
//! `receipt_pipeline --count 20000 --dir <dir>`.
use std::{
    path::PathBuf,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, Context as _};
use observer_daemon::receipt::{
    keys::{ChainKey, MasterSeed},
    store::Store,
    verify::{verify_store, VerifyOptions},
};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .context("usage: verify_rate <dir> [rounds] [threads]")?,
    );
    let rounds: usize = args.next().map_or(Ok(5), |s| s.parse())?;
    let threads: usize = args.next().map_or(Ok(2), |s| s.parse())?;
    let independent = args.next().as_deref() == Some("--independent");
    let master = MasterSeed::load_existing(&dir.join("master.seed"))?;
    let master_public_key = ChainKey::master_key(&master).public_key().to_vec();
    let store = Store::open_read_only(&dir.join("observer.db"))?;
    for round in 1..=rounds {
        let cpu0 = self_cpu_secs();
        let start = Instant::now();
        let report = verify_store(
            &store,
            &VerifyOptions {
                master_public_key: master_public_key.clone(),
                now_unix_ns: SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64,
                external_checkpoints: Vec::new(),
                independent,
                threads,
            },
        )?;
        let wall = start.elapsed().as_secs_f64();
        let cpu = self_cpu_secs() - cpu0;
        if !report.ok() {
            // Every failure and the check counts, to compare builds.
            for f in &report.failures {
                println!("{f:?}");
            }
            println!("{:?}", report.checks);
            bail!(
                "the store does not verify: {} failures",
                report.failures.len()
            );
        }
        let signatures = report.checks.get("signature").map_or(0, |c| c.pass);
        if signatures != report.receipts {
            bail!(
                "{signatures} signatures passed, of {} receipts",
                report.receipts
            );
        }
        let n = report.receipts as f64;
        println!(
            "round {round}: {} receipts, {:.0} receipts/s, CPU {:.1} us/receipt, {:.0}% CPU",
            report.receipts,
            n / wall,
            cpu * 1e6 / n,
            cpu / wall * 100.0
        );
    }
    Ok(())
}

/// User + system CPU seconds of this process, all threads.
fn self_cpu_secs() -> f64 {
    // SAFETY: getrusage writes into a valid rusage struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}
