//! `cargo xtask bench receipts`: what signed receipts cost and how fast
//! they flow, each figure a ratio against its target and against a
//! baseline measured in the same run (raw ML-DSA-65 signing and verifying
//! of a payload of the same size, in the same process, just before each
//! round).
//!
//! - The library pipeline (`observer-daemon/examples/receipt_pipeline.rs`:
//!   real chain builder, signing pool, SQLite writer and store, real master
//!   seed, synthetic exec drafts) as fast as it accepts receipts, and paced
//!   at a fixed rate for its latency; then the offline verifier over the
//!   store it produced.
//! - The real daemon end to end: a registered agent (a copy of sh) runs
//!   /bin/true in a loop fed at a pace that yields the wanted receipt rate;
//!   the daemon's own `observer.stop` receipt says how long receipts took
//!   from the kernel event to their commit, and `observer.loss` receipts
//!   (there must be none) and the final counters say what was lost.
use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use serde_json::Value;

use crate::bench_kit::{median, state_in, unpinned, with_receipts_keys, Daemon};

#[derive(clap::Args)]
pub struct ReceiptArgs {
    /// Receipts of each max-throughput pipeline round.
    #[arg(long, default_value_t = 20_000)]
    receipts: u64,
    /// Max-throughput pipeline rounds (the best is reported, median in
    /// brackets).
    #[arg(long, default_value_t = 3)]
    receipt_rounds: u32,
    /// Receipts per second of the paced runs (pipeline and daemon).
    #[arg(long, default_value_t = 1000)]
    receipt_rate: u64,
    /// Seconds of each paced run.
    #[arg(long, default_value_t = 10.0)]
    receipt_seconds: f64,
}

/// Receipts per second, every receipt individually signed.
const TARGET_RATE: f64 = 4000.0;
/// p99 kernel event to committed receipt at 1,000 receipts/s.
const TARGET_P99_MS: f64 = 250.0;
/// Receipts verified per second on 2 cores.
const TARGET_VERIFY: f64 = 10_000.0;
const AGENT_ID: &str = "bench-agent";

/// Builds the pipeline example (the daemon is built by the caller).
pub fn build() -> anyhow::Result<()> {
    crate::cargo(&[
        "build",
        "--release",
        "--package",
        "observer-daemon",
        "--example",
        "receipt_pipeline",
    ])
}

pub fn run(root: &Path, work: &Path, args: &ReceiptArgs) -> anyhow::Result<()> {
    println!(
        "receipts: ratios are against the targets and against raw ML-DSA-65 signing and verifying measured in the same run"
    );
    crate::bench_kit::warn_if_other_observers()?;
    pipeline_max(root, work, args)?;
    pipeline_paced(root, work, args)?;
    let base_config = std::fs::read_to_string(root.join("observer.toml"))?;
    for window in [Some(0), None] {
        daemon_end_to_end(root, work, &base_config, args, window)?;
    }
    Ok(())
}

fn pipeline_max(root: &Path, work: &Path, args: &ReceiptArgs) -> anyhow::Result<()> {
    let rounds = args.receipt_rounds.max(1);
    let mut runs = Vec::new();
    for i in 0..rounds {
        let dir = work.join(format!("pipeline-max-{i}"));
        runs.push(example(
            root,
            &dir,
            &["--count", &args.receipts.to_string()],
        )?);
    }
    let col = |key: &str| -> Vec<f64> { runs.iter().map(|r| num(r, key)).collect() };
    let rate = col("receipts_per_s");
    let sign_1t = col("baseline_sign_1t_per_s");
    let sign_nt = col("baseline_sign_threads_per_s");
    let cpu = col("cpu_us_per_receipt");
    let verify = col("verify_per_s");
    let bytes = col("bytes_per_receipt");
    let (rate_best, s1, sn) = (best_high(&rate), best_high(&sign_1t), best_high(&sign_nt));
    let r = &runs[0];
    println!(
        "receipt pipeline, max throughput ({} synthetic exec receipts over {} agent chains, {} signing \
         threads, context {} B and payload {} B of JCS; best of {rounds} [median]):",
        args.receipts,
        r["agents"],
        r["signing_threads"],
        r["context_jcs_bytes"],
        r["payload_jcs_bytes"],
    );
    println!(
        "  {rate_best:.0} receipts/s [{:.0}] signed and committed = {:.2}x the 4,000/s target \
         (target >= 1.00); {:.2}x raw signing on one core ({s1:.0}/s), {:.2}x raw signing on {} \
         threads ({sn:.0}/s)",
        median(&rate),
        rate_best / TARGET_RATE,
        rate_best / s1,
        rate_best / sn,
        r["signing_threads"],
    );
    println!(
        "  CPU {:.0} us per receipt [{:.0}] (one raw signature: {:.0} us); {:.0} bytes per receipt on \
         disk (envelope {:.0} B, context {:.0} B, the rest indexes, Merkle nodes and chain heads); \
         raw one-core signing {:.2}x the 4,000/s target",
        best_low(&cpu),
        median(&cpu),
        1e6 / s1,
        median(&bytes),
        num(r, "envelope_bytes"),
        num(r, "stored_context_bytes"),
        s1 / TARGET_RATE,
    );
    let fastest = &runs[rate
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)];
    let stage = &fastest["cpu_us_per_receipt_by_stage"];
    println!(
        "  CPU per receipt by stage (fastest round, threads' own CPU time): signing {:.0} us \
         (signature, envelope, receipt hash), writer {:.0} us (SQLite, Merkle nodes, checkpoints), \
         drafts and chain builder {:.0} us; {} commits",
        num(stage, "signing"),
        num(stage, "writer"),
        num(stage, "submit"),
        fastest["batches"],
    );
    let v = best_high(&verify);
    let raw_verify = best_high(&col("baseline_verify_threads_per_s"));
    println!(
        "receipt verification (verify_store of those stores, {} threads, {} receipts): {v:.0} receipts/s \
         [{:.0}] = {:.2}x the 10,000/s target (target >= 1.00); {:.2}x raw ML-DSA-65 verification \
         on {} threads ({raw_verify:.0}/s)",
        r["verify_threads"],
        r["verified"],
        median(&verify),
        v / TARGET_VERIFY,
        v / raw_verify,
        r["verify_threads"],
    );
    Ok(())
}

fn pipeline_paced(root: &Path, work: &Path, args: &ReceiptArgs) -> anyhow::Result<()> {
    let r = example(
        root,
        &work.join("pipeline-paced"),
        &[
            "--rate",
            &args.receipt_rate.to_string(),
            "--seconds",
            &args.receipt_seconds.to_string(),
            "--baseline-seconds",
            "0",
        ],
    )?;
    let p99 = num(&r["latency_ms"], "p99");
    println!(
        "receipt pipeline, paced at {}/s for {} s: {:.0} receipts/s; draft to committed p50 {} ms, \
         p99 {} ms = {:.2}x the 250 ms target (target <= 1.00), max {} ms; CPU {:.0} us per receipt, \
         {} commits",
        args.receipt_rate,
        args.receipt_seconds,
        num(&r, "receipts_per_s"),
        r["latency_ms"]["p50"],
        r["latency_ms"]["p99"],
        p99 / TARGET_P99_MS,
        r["latency_ms"]["max"],
        num(&r, "cpu_us_per_receipt"),
        r["batches"],
    );
    Ok(())
}

/// Runs the pipeline example with a store in `dir`; its JSON line.
fn example(root: &Path, dir: &Path, args: &[&str]) -> anyhow::Result<Value> {
    let _ = std::fs::remove_dir_all(dir);
    let mut cmd = Command::new(root.join("target/release/examples/receipt_pipeline"));
    cmd.args(args).arg("--dir").arg(dir);
    let out = unpinned(&mut cmd)
        .stderr(Stdio::inherit())
        .output()
        .context("running the receipt_pipeline example")?;
    if !out.status.success() {
        bail!("receipt_pipeline {args:?} failed: {}", out.status);
    }
    let text = String::from_utf8(out.stdout)?;
    let line = text
        .lines()
        .last()
        .context("receipt_pipeline printed nothing")?;
    let _ = std::fs::remove_dir_all(dir);
    Ok(serde_json::from_str(line)?)
}

/// The real daemon with a registered agent producing receipts at about
/// `args.receipt_rate`; `window` overrides `file_open_window_ms`.
fn daemon_end_to_end(
    root: &Path,
    work: &Path,
    base_config: &str,
    args: &ReceiptArgs,
    window: Option<u64>,
) -> anyhow::Result<()> {
    let dir = work.join(format!(
        "daemon-e2e-{}",
        window.map_or("default".into(), |w| w.to_string())
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let agent = dir.join("bench-agent-sh");
    std::fs::copy("/bin/sh", &agent)?;
    let mut keys = state_in(&dir);
    if let Some(w) = window {
        keys.push(("file_open_window_ms", w.to_string()));
    }
    let mut config = with_receipts_keys(base_config, &keys);
    config.push_str(&format!(
        "\n[[agents]]\nid = {AGENT_ID:?}\nexecutables = [{:?}]\n",
        agent.display().to_string()
    ));
    let store = dir.join("observer.db");
    // Folded file opens are committed once their window closes (checked
    // every 200 ms): wait that long before counting.
    let settle = Duration::from_millis(window.unwrap_or(1000) + 800);

    let d = Daemon::start_with(root, &dir, &config, false)?;
    // A clean environment: cargo's LD_LIBRARY_PATH would send the dynamic
    // loader through a dozen directories, each miss a watched file open.
    let mut agent_proc = unpinned(
        Command::new(&agent)
            .args(["-c", "while read x; do /bin/true; done"])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .stdin(Stdio::piped())
            .stdout(Stdio::null()),
    )
    .spawn()
    .context("starting the agent")?;
    let mut feed = agent_proc.stdin.take().context("agent stdin")?;
    // The daemon marks the agent watched when it handles the agent's exec:
    // give it that long before the agent's children open files.
    std::thread::sleep(Duration::from_secs(1));

    // Calibration: receipts per loop iteration (exec, exit, file opens).
    let calibration = 100u64;
    let before = agent_receipts(&store, 0)?;
    pace(&mut feed, calibration as f64, 1.0)?;
    std::thread::sleep(settle);
    let after = agent_receipts(&store, 0)?;
    let per_iteration = (after.count - before.count) as f64 / calibration as f64;
    if per_iteration < 1.0 {
        bail!("the agent produced {per_iteration} receipts per iteration");
    }

    let cpu_before = d.cpu_secs()?;
    let phase_from = last_leaf(&store)?;
    pace(
        &mut feed,
        args.receipt_rate as f64 / per_iteration,
        args.receipt_seconds,
    )?;
    drop(feed);
    let status = agent_proc.wait()?;
    if !status.success() {
        bail!("the agent loop failed: {status}");
    }
    std::thread::sleep(settle);
    let cpu = d.cpu_secs()? - cpu_before;
    let phase = agent_receipts(&store, phase_from)?;
    let stats = d.stop()?;

    let achieved = phase.count as f64 / phase.span_secs();
    let stop = observer_stop_context(&store)?;
    let lat = &stop["commit_latency_ms"];
    let losses = count_action(&store, "observer.loss")?;
    println!(
        "receipts end to end, observerd ({}; agent: a copy of sh running /bin/true fed at {:.0}/s, \
         {per_iteration:.1} receipts each):",
        match window {
            Some(w) => format!("file_open_window_ms = {w}"),
            None => "default file_open_window_ms: file.open receipts wait for the fold window".into(),
        },
        args.receipt_rate as f64 / per_iteration,
    );
    println!(
        "  {:.0} agent receipts/s for {:.1} s ({} receipts, measured from the store); kernel event to \
         committed receipt p50 {} ms, p99 {} ms = {:.2}x the 250 ms target (target <= 1.00), max {} \
         ms; daemon CPU {:.0} us per receipt (enrichment included); observer.loss receipts {losses}, \
         kernel drops {}, user drops {} (target 0)",
        achieved,
        phase.span_secs(),
        phase.count,
        lat["p50"],
        lat["p99"],
        num(lat, "p99") / TARGET_P99_MS,
        lat["max"],
        cpu * 1e6 / phase.count.max(1) as f64,
        stats.kernel_drops(),
        stats.all_user_drops(),
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Writes `rate` lines per second to `feed` for `seconds`.
fn pace(feed: &mut impl Write, rate: f64, seconds: f64) -> anyhow::Result<()> {
    let total = (rate * seconds).round() as u64;
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < total {
        let due = ((start.elapsed().as_secs_f64() * rate) as u64 + 1).min(total);
        if due > sent {
            feed.write_all(&b"\n".repeat((due - sent) as usize))?;
            feed.flush()?;
            sent = due;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

struct Phase {
    count: u64,
    first_ns: i64,
    last_ns: i64,
}

impl Phase {
    fn span_secs(&self) -> f64 {
        ((self.last_ns - self.first_ns) as f64 / 1e9).max(1e-9)
    }
}

fn open(store: &PathBuf) -> anyhow::Result<rusqlite::Connection> {
    Ok(rusqlite::Connection::open_with_flags(
        store,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?)
}

/// The agent's receipts after log index `after_leaf`, and their time span.
fn agent_receipts(store: &PathBuf, after_leaf: i64) -> anyhow::Result<Phase> {
    let c = open(store)?;
    Ok(c.query_row(
        "SELECT COUNT(*), COALESCE(MIN(issued_ns), 0), COALESCE(MAX(issued_ns), 0) FROM receipts \
         WHERE agent_id = ?1 AND leaf_index > ?2",
        rusqlite::params![AGENT_ID, after_leaf],
        |r| {
            Ok(Phase {
                count: r.get::<_, i64>(0)? as u64,
                first_ns: r.get(1)?,
                last_ns: r.get(2)?,
            })
        },
    )?)
}

fn last_leaf(store: &PathBuf) -> anyhow::Result<i64> {
    Ok(open(store)?.query_row(
        "SELECT COALESCE(MAX(leaf_index), -1) FROM receipts",
        [],
        |r| r.get(0),
    )?)
}

fn count_action(store: &PathBuf, action: &str) -> anyhow::Result<u64> {
    Ok(open(store)?.query_row(
        "SELECT COUNT(*) FROM receipts WHERE action_type = ?1",
        [action],
        |r| r.get::<_, i64>(0),
    )? as u64)
}

fn observer_stop_context(store: &PathBuf) -> anyhow::Result<Value> {
    let text: String = open(store)?
        .query_row(
            "SELECT c.context FROM receipts r JOIN contexts c ON c.leaf_index = r.leaf_index \
             WHERE r.action_type = 'observer.stop' ORDER BY r.leaf_index DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .context("no observer.stop receipt in the store")?;
    Ok(serde_json::from_str(&text)?)
}

fn num(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(f64::NAN)
}

fn best_high(values: &[f64]) -> f64 {
    values.iter().copied().fold(0.0, f64::max)
}

fn best_low(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min)
}
