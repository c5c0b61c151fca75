//! `cargo xtask bench ctl`: `observerctl` over a large store (default
//! 1,000,000 receipts written by the real library pipeline through the
//! `receipt_pipeline` example, spread over 8 agent chains).
//!
//! - Filtered queries (`receipts --jsonl` by agent and a one-second window,
//!   by agent with `--limit 100`, by a 100 ms window): p50 and p90 of
//!   the whole command (process start, open, query, JSON out), against the
//!   100 ms target and against the same SQL run in this process on the same
//!   store (the baseline: what SQLite alone takes).
//! - `verify`: receipts per second, against the 10,000/s target and against
//!   `observerd verify` on the same store (same library: the ratio should
//!   be 1).
//! - `export --format ocsf|cloudevents|jsonl` of the whole store, into a
//!   pipe (the command's own rate: against the 50,000/s target and against
//!   reading the same rows in this process, SQLite alone) and with `--out
//!   FILE` (against writing as many bytes to a file on the same disk), with
//!   the peak resident memory of the export (it streams: constant memory).
use std::{
    path::Path,
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{bail, Context as _};

use crate::bench_kit::median;

#[derive(clap::Args)]
pub struct CtlArgs {
    /// Receipts in the store the ctl section queries.
    #[arg(long, default_value_t = 1_000_000)]
    ctl_receipts: u64,
    /// Runs of each query (p50 and p90 reported).
    #[arg(long, default_value_t = 21)]
    ctl_queries: usize,
}

const TARGET_QUERY_MS: f64 = 100.0;
const TARGET_VERIFY: f64 = 10_000.0;
const TARGET_EXPORT: f64 = 50_000.0;
const AGENTS: usize = 8;

pub fn run(root: &Path, work: &Path, args: &CtlArgs) -> anyhow::Result<()> {
    let dir = work.join("ctl");
    std::fs::create_dir_all(&dir)?;
    println!(
        "ctl: building a store of {} receipts over {AGENTS} agent chains",
        args.ctl_receipts
    );
    let start = Instant::now();
    let status = Command::new(root.join("target/release/examples/receipt_pipeline"))
        .args(["--count", &args.ctl_receipts.to_string()])
        .args(["--agents", &AGENTS.to_string()])
        .args(["--baseline-seconds", "0", "--verify-threads", "0"])
        .arg("--dir")
        .arg(&dir)
        .stdout(Stdio::null())
        .status()
        .context("running the receipt_pipeline example")?;
    if !status.success() {
        bail!("receipt_pipeline failed: {status}");
    }
    println!("  store built in {:.0} s", start.elapsed().as_secs_f64());
    let db = dir.join("observer.db");
    let ctl = root.join("target/release/observerctl");
    let conn =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let (lo, hi): (i64, i64) = conn.query_row(
        "SELECT MIN(issued_ns), MAX(issued_ns) FROM receipts",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    // At the pipeline's ~4,000 receipts/s over 8 chains, a second of one
    // agent and 100 ms of all agents are a few hundred rows each: what an
    // incident query returns, not a dump of the store.
    let second = 1_000_000_000i64;
    let tenth = second / 10;
    // Windows ending in the middle of the store's time range.
    let mid = lo + (hi - lo) / 2;
    let rfc = |ns: i64| {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns as u64);
        humantime::format_rfc3339_nanos(t).to_string()
    };
    let agent = "bench-agent-3";
    // The SQL baseline reads the stored columns (the envelope text and the
    // signature's bytes apart): SQLite's own cost, without the envelope's
    // reassembly that observerctl does (stored_envelope.rs).
    let queries: Vec<(&str, Vec<String>, String, Vec<rusqlite::types::Value>)> = vec![
        (
            "agent + 1 s window",
            vec![
                "--agent".into(),
                agent.into(),
                "--since".into(),
                rfc(mid - second),
                "--until".into(),
                rfc(mid),
            ],
            "SELECT r.envelope_text, r.sig, c.context FROM receipts r LEFT JOIN contexts c ON c.leaf_index = r.leaf_index \
             WHERE r.agent_id = ?1 AND r.issued_ns >= ?2 AND r.issued_ns <= ?3 ORDER BY r.issued_ns, r.leaf_index"
                .into(),
            vec![agent.to_string().into(), (mid - second).into(), mid.into()],
        ),
        (
            "agent, latest 100",
            vec!["--agent".into(), agent.into(), "--limit".into(), "100".into()],
            "SELECT r.envelope_text, r.sig, c.context FROM receipts r LEFT JOIN contexts c ON c.leaf_index = r.leaf_index \
             WHERE r.agent_id = ?1 ORDER BY r.issued_ns DESC, r.leaf_index DESC LIMIT 100"
                .into(),
            vec![agent.to_string().into()],
        ),
        (
            "100 ms window",
            vec![
                "--since".into(),
                rfc(mid - tenth),
                "--until".into(),
                rfc(mid),
            ],
            "SELECT r.envelope_text, r.sig, c.context FROM receipts r LEFT JOIN contexts c ON c.leaf_index = r.leaf_index \
             WHERE r.issued_ns >= ?1 AND r.issued_ns <= ?2 ORDER BY r.issued_ns, r.leaf_index"
                .into(),
            vec![(mid - tenth).into(), mid.into()],
        ),
    ];
    for (name, filters, sql, params) in &queries {
        let mut ctl_ms = Vec::new();
        let mut rows = 0usize;
        for _ in 0..args.ctl_queries {
            let t = Instant::now();
            let out = Command::new(&ctl)
                .arg("--db")
                .arg(&db)
                .args(["receipts", "--jsonl"])
                .args(filters)
                .stderr(Stdio::inherit())
                .output()
                .context("running observerctl")?;
            ctl_ms.push(t.elapsed().as_secs_f64() * 1e3);
            if !out.status.success() {
                bail!("observerctl receipts {filters:?} failed: {}", out.status);
            }
            rows = out.stdout.iter().filter(|b| **b == b'\n').count();
        }
        let mut sql_ms = Vec::new();
        for _ in 0..args.ctl_queries {
            let t = Instant::now();
            let mut stmt = conn.prepare(sql)?;
            let n = stmt
                .query_map(rusqlite::params_from_iter(params.iter()), |r| {
                    Ok(r.get::<_, String>(0)?.len())
                })?
                .count();
            sql_ms.push(t.elapsed().as_secs_f64() * 1e3);
            if n != rows {
                bail!("{name}: observerctl returned {rows} rows, SQL {n}");
            }
        }
        let p50 = median(&ctl_ms);
        let p90 = quantile(&ctl_ms, 0.9);
        let base = median(&sql_ms);
        println!(
            "  query {name}: {rows} rows, p50 {p50:.1} ms, p90 {p90:.1} ms (target < {TARGET_QUERY_MS} ms: {}); \
             SQL alone p50 {base:.1} ms, ratio {:.1}",
            if p50 < TARGET_QUERY_MS { "met" } else { "NOT met" },
            p50 / base.max(0.001)
        );
    }
    // Verify before exporting: an export writes several GB, which evicts
    // the store from the page cache, and the two verifiers must read it
    // alike.
    let seed = dir.join("master.seed");
    let time = |program: &Path, args: &[&str]| -> anyhow::Result<f64> {
        let t = Instant::now();
        let status = Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .status()
            .with_context(|| format!("running {}", program.display()))?;
        if !status.success() {
            bail!("{} {args:?} failed: {status}", program.display());
        }
        Ok(t.elapsed().as_secs_f64())
    };
    let db_s = db.display().to_string();
    let seed_s = seed.display().to_string();
    let ctl_s = time(
        &ctl,
        &["--db", &db_s, "verify", "--master-seed", &seed_s, "--json"],
    )?;
    let observerd_s = time(
        &root.join("target/release/observerd"),
        &["verify", "--db", &db_s, "--master-seed", &seed_s, "--json"],
    )?;
    let n = args.ctl_receipts as f64;
    println!(
        "  verify: observerctl {:.0} receipts/s (target >= {TARGET_VERIFY}: {}), observerd verify {:.0}/s, ratio {:.2}",
        n / ctl_s,
        if n / ctl_s >= TARGET_VERIFY { "met" } else { "NOT met" },
        n / observerd_s,
        observerd_s / ctl_s
    );
    export(&ctl, &db, &dir, &conn, args.ctl_receipts)
}

/// Export throughput of each format, against reading the same rows.
fn export(
    ctl: &Path,
    db: &Path,
    dir: &Path,
    conn: &rusqlite::Connection,
    receipts: u64,
) -> anyhow::Result<()> {
    let t = Instant::now();
    let mut stmt = conn.prepare(
        "SELECT r.envelope_text, r.sig, c.context FROM receipts r LEFT JOIN contexts c ON c.leaf_index = r.leaf_index \
         ORDER BY r.leaf_index",
    )?;
    let mut bytes = 0usize;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        bytes += r.get_ref(0)?.as_str()?.len();
        bytes += r.get_ref(1)?.as_blob_or_null()?.map_or(0, <[u8]>::len);
        bytes += r.get_ref(2)?.as_str_or_null()?.map_or(0, str::len);
    }
    let sql_rate = receipts as f64 / t.elapsed().as_secs_f64();
    println!(
        "  export baseline: reading the {receipts} rows ({} MB) in log order: {sql_rate:.0} receipts/s",
        bytes / 1_000_000
    );
    for format in ["jsonl", "cloudevents", "ocsf"] {
        // Into a pipe read by this process: the command's own rate.
        let t = Instant::now();
        let (status, piped_bytes, rss_kb, stderr) = run_measured(
            Command::new(ctl)
                .arg("--db")
                .arg(db)
                .args(["export", "--format", format]),
        )?;
        let piped_secs = t.elapsed().as_secs_f64();
        if status != 0 {
            bail!("observerctl export --format {format} failed: exit {status}: {stderr}");
        }
        // Into a file: fsynced and renamed, so the disk's write rate counts.
        let out = dir.join(format!("export.{format}"));
        let t = Instant::now();
        let (status, _, _, stderr) = run_measured(
            Command::new(ctl)
                .arg("--db")
                .arg(db)
                .args(["export", "--format", format, "--out"])
                .arg(&out),
        )?;
        let file_secs = t.elapsed().as_secs_f64();
        if status != 0 {
            bail!("observerctl export --format {format} --out failed: exit {status}: {stderr}");
        }
        let size = std::fs::metadata(&out)?.len();
        std::fs::remove_file(&out)?;
        let disk_rate = disk_write_rate(dir, size)?;
        let piped = receipts as f64 / piped_secs;
        let file = receipts as f64 / file_secs;
        println!(
            "  export {format}: into a pipe {piped:.0} receipts/s (target >= {TARGET_EXPORT}: {}), \
             {} MB, peak RSS {} MB, ratio to reading the rows {:.2}; into a file {file:.0} receipts/s \
             ({}), ratio {:.2} to writing the same bytes to a file on this disk ({:.0} MB/s)",
            if piped >= TARGET_EXPORT { "met" } else { "NOT met" },
            piped_bytes / 1_000_000,
            rss_kb / 1024,
            piped / sql_rate,
            if file >= TARGET_EXPORT { "met" } else { "NOT met" },
            (size as f64 / file_secs) / disk_rate,
            disk_rate / 1e6
        );
    }
    Ok(())
}

/// Runs `cmd` to its end: (exit status, bytes it wrote to stdout, peak
/// resident KiB, stderr). Stdout is read (and dropped) here as fast as the
/// child writes; the peak comes from wait4's rusage of this one child.
fn run_measured(cmd: &mut Command) -> anyhow::Result<(i32, u64, i64, String)> {
    use std::io::Read as _;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning")?;
    let stderr_reader = child.stderr.take().map(|mut e| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = e.read_to_string(&mut text);
            text
        })
    });
    let mut stdout_bytes = 0u64;
    if let Some(mut o) = child.stdout.take() {
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match o.read(&mut buf)? {
                0 => break,
                n => stdout_bytes += n as u64,
            }
        }
    }
    let stderr = stderr_reader
        .map(|h| h.join().unwrap_or_default())
        .unwrap_or_default();
    let mut status = 0;
    // SAFETY: rusage is plain data, filled by the kernel.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, which std has not reaped.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    if pid < 0 {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    Ok((code, stdout_bytes, usage.ru_maxrss, stderr))
}

/// Bytes per second of writing `bytes` (rounded up to 4 KiB) to a new file
/// in `dir` in 4 MiB `O_DIRECT` writes, fsynced, as the export's `--out`
/// does: the disk's own rate, the baseline of an export into a file.
fn disk_write_rate(dir: &Path, bytes: u64) -> anyhow::Result<f64> {
    use std::{io::Write as _, os::unix::fs::OpenOptionsExt as _};
    const CHUNK: usize = 4 << 20;
    let path = dir.join("disk-baseline");
    let mut storage = vec![b'x'; CHUNK + 4096];
    let start = storage.as_ptr().align_offset(4096);
    let chunk = &mut storage[start..start + CHUNK];
    let bytes = bytes.div_ceil(4096) * 4096;
    let t = Instant::now();
    let mut f = std::fs::File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path)
        .with_context(|| format!("opening {} with O_DIRECT", path.display()))?;
    let mut left = bytes;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        f.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    f.sync_all()?;
    let secs = t.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(&path)?;
    Ok(bytes as f64 / secs)
}

pub(crate) fn quantile(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * q).round() as usize]
}
