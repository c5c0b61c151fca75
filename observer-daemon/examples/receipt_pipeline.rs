//! Receipt pipeline benchmark, run by `cargo xtask bench receipts`.
//!
//! Drives the real library [`Pipeline`] (chain builder on this thread,
//! the default signing pool, the single SQLite writer) into a real store in
//! a temporary directory, with a real master seed, from synthetic drafts
//! shaped like the daemon's `process.exec` receipts (and, with
//! `--findings-every N`, a `shadow_ai.finding` in place of every Nth one,
//! naming one of a few of the shipped rules in turn). Either as fast as
//! `submit` accepts them (`--count N`) or paced (`--rate R --seconds S`).
//! Then verifies the store it produced with the offline verifier, and
//! measures in the same process the baseline the pipeline is compared to:
//! raw ML-DSA-65 signing of a payload of the same size, on one thread and
//! on `signing_threads` threads, and raw verification on `verify_threads`.
//!
//! Prints one JSON line:
//! `receipts`, `seconds`, `receipts_per_s` (submit of the first draft to the
//! clean finish: every receipt signed and committed, final checkpoint
//! signed), `cpu_us_per_receipt` (getrusage of this process, user + system,
//! over the same span), `latency_ms` `{p50, p99, max}` (draft creation to
//! commit), `bytes_per_receipt` (database + WAL after finish / receipts),
//! `verify_per_s`, and the baselines.
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, Context as _};
use clap::Parser;
use observer_daemon::{
    config::Config,
    receipt::{
        chain::{ChainBuilder, Draft, Identity},
        keys::{ChainKey, MasterSeed},
        mldsa::{LibcruxKeyPair, LibcruxVerifier, Signer as _, Verifier as _},
        payload::{self, Mappings, Mode, RiskClass},
        pipeline::{Pipeline, PipelineConfig},
        store::{RunKind, Store},
        verify::{verify_store, VerifyOptions},
    },
};
use serde_json::{json, Value};

#[derive(Parser)]
struct Args {
    /// Submit this many drafts as fast as the pipeline accepts them.
    #[arg(long, conflicts_with_all = ["rate", "seconds"])]
    count: Option<u64>,
    /// Submit this many drafts per second ...
    #[arg(long, requires = "seconds")]
    rate: Option<u64>,
    /// ... for this many seconds.
    #[arg(long, requires = "rate")]
    seconds: Option<f64>,
    /// Agent chains the drafts are spread over (round robin).
    #[arg(long, default_value_t = 4)]
    agents: usize,
    /// Signing threads (default: the daemon's default).
    #[arg(long)]
    signing_threads: Option<usize>,
    /// Seconds of raw signing or verifying for each baseline (0: skip the
    /// baselines).
    #[arg(long, default_value_t = 2.0)]
    baseline_seconds: f64,
    /// Verifier threads (0: do not verify, e.g. while profiling the run).
    #[arg(long, default_value_t = 2)]
    verify_threads: usize,
    /// Where the store goes (default: a new temporary directory, removed
    /// at the end).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The host name of the log's origin (`<deployer>/host/<hostname>`):
    /// stores of different host names are the logs of different hosts.
    #[arg(long, default_value = "bench-host")]
    hostname: String,
    /// The deployer id of the log's origin.
    #[arg(long, default_value = "did:web:bench.invalid")]
    deployer: String,
    /// Every Nth draft is a `shadow_ai.finding` (0: none, every draft an
    /// exec).
    #[arg(long, default_value_t = 0)]
    findings_every: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let tmp;
    let dir = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_owned()
        }
    };
    let defaults = Config::defaults().receipts;
    let signing_threads = args.signing_threads.unwrap_or(defaults.signing_threads);
    let pipeline_cfg = PipelineConfig {
        store: dir.join("observer.db"),
        signing_threads,
        queue_capacity: defaults.queue_capacity,
        checkpoint_interval: Duration::from_millis(defaults.checkpoint_interval_ms),
        batch_max: defaults.batch_max,
        waiting_for_room: None,
    };
    if pipeline_cfg.store.exists() {
        bail!(
            "{} exists: the benchmark wants a new store",
            pipeline_cfg.store.display()
        );
    }
    let seed_path = dir.join("master.seed");
    let executable_hash = file_sha256(&std::env::current_exe()?)?;
    let identity = || Identity {
        deployer_id: args.deployer.clone(),
        hostname: args.hostname.clone(),
        mode: Mode::Payload,
        observer_executable_hash: executable_hash.clone(),
    };
    let agents: Vec<String> = (0..args.agents.max(1))
        .map(|i| format!("bench-agent-{i}"))
        .collect();
    let mut drafts = DraftMaker::new(&agents, args.findings_every);

    // The payload a chain key signs for one of these drafts, to sign raw.
    let (message, context_len) = {
        let mut builder =
            ChainBuilder::new(identity(), MasterSeed::from_bytes([9; 32]), Vec::new(), 0)?;
        let mut out = Vec::new();
        builder.issue(drafts.next(now_unix_ns()), &mut out)?;
        let sealed = out.last().context("no sealed receipt")?;
        let context = sealed.context_jcs.as_ref().map_or(0, Vec::len);
        (sealed.payload_jcs.clone(), context)
    };
    let payload_len = message.len();
    let secs = args.baseline_seconds;
    let baseline = if secs > 0.0 {
        Some((
            raw_rate(1, secs, || sign_op(&message))?,
            raw_rate(signing_threads, secs, || sign_op(&message))?,
            raw_rate(args.verify_threads.max(1), secs, || verify_op(&message))?,
        ))
    } else {
        None
    };

    // The run.
    let (master, _) = MasterSeed::load_or_create(&seed_path)?;
    let master_public_key = ChainKey::master_key(&master).public_key().to_vec();
    let (mut pipeline, _) = Pipeline::start(
        &pipeline_cfg,
        identity(),
        master,
        RunKind::Daemon,
        &payload::issued_at(now_unix_ns()),
    )?;
    let metrics = pipeline.metrics().clone();
    let sampler = ThreadSampler::start();
    let main_before = thread_cpu_secs();
    let cpu_before = self_cpu_secs();
    let start = Instant::now();
    let mut submitted = 0u64;
    let mut submit_blocked = Duration::ZERO;
    match (args.count, args.rate, args.seconds) {
        (Some(n), None, None) => {
            for _ in 0..n {
                let t = Instant::now();
                pipeline.submit(drafts.next(now_unix_ns()))?;
                submit_blocked += t.elapsed();
                submitted += 1;
            }
        }
        (None, Some(rate), Some(seconds)) => {
            let total = (rate as f64 * seconds) as u64;
            while submitted < total {
                let due = ((start.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
                while submitted < due {
                    pipeline.submit(drafts.next(now_unix_ns()))?;
                    submitted += 1;
                }
                std::thread::sleep(Duration::from_micros(500));
            }
        }
        _ => bail!("give either --count or --rate and --seconds"),
    }
    let submitted_secs = start.elapsed().as_secs_f64();
    pipeline.finish(&payload::issued_at(now_unix_ns()))?;
    let seconds = start.elapsed().as_secs_f64();
    let cpu_secs = self_cpu_secs() - cpu_before;
    let main_cpu = thread_cpu_secs() - main_before;
    let threads = sampler.stop();
    let by_prefix = |prefix: &str| -> f64 {
        threads
            .values()
            .filter(|(comm, _)| comm.starts_with(prefix))
            .map(|(_, cpu)| cpu)
            .sum()
    };
    let (signing_cpu, writer_cpu) = (by_prefix("observer-sign"), by_prefix("observer-store"));
    // Every receipt committed, including the observer chain's key
    // announcements (one per chain).
    let receipts = metrics.committed.load(Ordering::Relaxed);
    let bytes = file_len(&pipeline_cfg.store) + file_len(&wal_path(&pipeline_cfg.store));
    let (envelope_bytes, stored_context_bytes) = stored_sizes(&pipeline_cfg.store)?;

    // Verification of everything the run stored.
    let verified = if args.verify_threads > 0 {
        Some(verify(
            &pipeline_cfg.store,
            master_public_key,
            args.verify_threads,
        )?)
    } else {
        None
    };

    let out = json!({
        "mode": if args.count.is_some() { "max" } else { "paced" },
        "target_rate": args.rate,
        "submitted": submitted,
        "submit_seconds": submitted_secs,
        "submit_blocked_seconds": args.count.map(|_| submit_blocked.as_secs_f64()),
        "receipts": receipts,
        "agents": agents.len(),
        "signing_threads": signing_threads,
        "seconds": seconds,
        "receipts_per_s": receipts as f64 / seconds,
        "cpu_seconds": cpu_secs,
        "cpu_us_per_receipt": cpu_secs * 1e6 / receipts as f64,
        // Per stage, from the threads' own CPU time: drafts and chain
        // builder (the submitting thread), signers (payload signature,
        // envelope, receipt hash), writer (SQLite, Merkle, checkpoints).
        "cpu_us_per_receipt_by_stage": {
            "submit": main_cpu * 1e6 / receipts as f64,
            "signing": signing_cpu * 1e6 / receipts as f64,
            "writer": writer_cpu * 1e6 / receipts as f64,
        },
        "latency_ms": {
            "p50": metrics.latency_ms_quantile(0.50),
            "p99": metrics.latency_ms_quantile(0.99),
            "max": metrics.latency_ms_quantile(1.0),
        },
        "batches": metrics.batches.load(Ordering::Relaxed),
        "checkpoints": metrics.checkpoints.load(Ordering::Relaxed),
        "bytes_per_receipt": bytes as f64 / receipts as f64,
        "envelope_bytes": envelope_bytes,
        "stored_context_bytes": stored_context_bytes,
        "payload_jcs_bytes": payload_len,
        "context_jcs_bytes": context_len,
        "verified": verified.map(|(n, _)| n),
        "verify_seconds": verified.map(|(_, secs)| secs),
        "verify_per_s": verified.map(|(n, secs)| n as f64 / secs),
        "verify_threads": args.verify_threads,
        "baseline_sign_1t_per_s": baseline.as_ref().map(|b| b.0),
        "baseline_sign_threads_per_s": baseline.as_ref().map(|b| b.1),
        "baseline_verify_threads_per_s": baseline.as_ref().map(|b| b.2),
    });
    println!("{out}");
    Ok(())
}

/// Verifies the store with `threads` threads (libcrux signatures only):
/// receipts verified and seconds taken.
fn verify(db: &Path, master_public_key: Vec<u8>, threads: usize) -> anyhow::Result<(u64, f64)> {
    let store = Store::open_read_only(db)?;
    let start = Instant::now();
    let report = verify_store(
        &store,
        &VerifyOptions {
            master_public_key,
            now_unix_ns: now_unix_ns(),
            external_checkpoints: Vec::new(),
            independent: false,
            threads,
        },
    )?;
    let secs = start.elapsed().as_secs_f64();
    if !report.ok() {
        bail!(
            "the benchmark's store does not verify: {:?}",
            report.first_failure()
        );
    }
    Ok((report.receipts, secs))
}

/// Synthetic drafts with the shape and size of the daemon's exec receipts:
/// a fresh pid, time and sequence number each, over a few agents; every
/// `findings_every`th a finding instead (none when 0).
struct DraftMaker {
    agents: Vec<String>,
    template: Value,
    findings_every: u64,
    findings: u64,
    n: u64,
}

/// Rules of the shipped policies (policies/rules.toml) the synthetic
/// findings name in turn, with their risk.
const FINDING_RULES: [(&str, RiskClass); 3] = [
    ("ai-api-egress-unregistered", RiskClass::Medium),
    ("llm-request-out-of-scope", RiskClass::High),
    ("model-hub-fetch-unregistered", RiskClass::Low),
];

impl DraftMaker {
    fn new(agents: &[String], findings_every: u64) -> DraftMaker {
        let template = json!({
            "event": "exec",
            "time": "",
            "boot_ns": 0,
            "cpu": 1,
            "seq": 0,
            "process": {
                "pid": 0, "tid": 0, "ppid": 4242, "uid": 1000, "user": "builder",
                "gid": 1000, "group": "builder", "loginuid": 1000, "comm": "python3",
                "exe": "/usr/bin/python3.11",
                "exe_sha256": EXE_HASH,
                "argv": ["python3", "-m", "pytest", "-q", "--maxfail=1",
                         "tests/test_receipts_pipeline.py::test_end_to_end_signing",
                         "--junitxml=/tmp/pytest-results/report.xml"],
                "env_names": ["ANTHROPIC_API_KEY", "CLAUDECODE", "PATH", "VIRTUAL_ENV"],
                "cgroup_id": 8123,
                "cgroup": "/user.slice/user-1000.slice/session-4.scope",
                "unit": "session-4.scope",
                "container_id": null,
                "origin": "exec",
                "watched": true,
                "agent": ""
            },
            "parents": [
                {"pid": 4242, "comm": "bash", "exe": "/usr/bin/bash"},
                {"pid": 4100, "comm": "claude", "exe": "/usr/local/bin/claude"},
                {"pid": 3999, "comm": "zsh", "exe": "/usr/bin/zsh"},
                {"pid": 3980, "comm": "sshd", "exe": "/usr/sbin/sshd"},
                {"pid": 1, "comm": "systemd", "exe": "/usr/lib/systemd/systemd"}
            ],
            "exec": {
                "filename": "/usr/bin/python3",
                "argv": ["python3", "-m", "pytest", "-q", "--maxfail=1",
                         "tests/test_receipts_pipeline.py::test_end_to_end_signing",
                         "--junitxml=/tmp/pytest-results/report.xml"],
                "argv_truncated": false,
                "argv_missing": false,
                "result": 0,
                "error": null,
                "execveat": false
            }
        });
        DraftMaker {
            agents: agents.to_vec(),
            template,
            findings_every,
            findings: 0,
            n: 0,
        }
    }

    fn next(&mut self, unix_ns: u64) -> Draft {
        let n = self.n;
        self.n += 1;
        let agent = &self.agents[(n % self.agents.len() as u64) as usize];
        let mut context = self.template.clone();
        let pid = 10_000 + n;
        context["time"] = json!(payload::issued_at(unix_ns));
        context["boot_ns"] = json!(unix_ns % 1_000_000_000_000);
        context["seq"] = json!(n);
        context["process"]["pid"] = json!(pid);
        context["process"]["tid"] = json!(pid);
        context["process"]["agent"] = json!(agent);
        if self.findings_every > 0 && (n + 1).is_multiple_of(self.findings_every) {
            return self.finding(agent.clone(), unix_ns, &context);
        }
        Draft {
            agent_id: agent.clone(),
            action_type: "process.exec",
            unix_ns,
            context,
            risk_class: RiskClass::Low,
            executable_hash: EXE_HASH.into(),
            mappings: Mappings::default(),
            detection_rules_digest: None,
            erases: None,
            prunes: None,
        }
    }
}

impl DraftMaker {
    /// A `shadow_ai.finding` shaped like the daemon's (policy/finding.rs)
    /// about the exec `event`, naming the next of [`FINDING_RULES`].
    fn finding(&mut self, agent: String, unix_ns: u64, event: &Value) -> Draft {
        let (rule_id, risk) = FINDING_RULES[(self.findings % 3) as usize];
        self.findings += 1;
        let p = &event["process"];
        let context = json!({
            "rule_id": rule_id,
            "reason": "synthetic finding of the receipt pipeline benchmark",
            "risk_class": risk.as_str(),
            "policy_digest": POLICY_DIGEST,
            "event": "exec",
            "time": event["time"],
            "matched": {"exe": p["exe"], "destination": "api.openai.com"},
            "registered": true,
            "process": {
                "pid": p["pid"], "ppid": p["ppid"], "uid": p["uid"], "user": p["user"],
                "comm": p["comm"], "exe": p["exe"], "exe_sha256": p["exe_sha256"],
                "argv": p["argv"], "agent": p["agent"], "unit": p["unit"],
                "cgroup": p["cgroup"],
            },
            "parents": event["parents"],
            "evidence": [],
        });
        Draft {
            agent_id: agent,
            action_type: "shadow_ai.finding",
            unix_ns,
            context,
            risk_class: risk,
            executable_hash: EXE_HASH.into(),
            mappings: Mappings::default(),
            detection_rules_digest: Some(POLICY_DIGEST.into()),
            erases: None,
            prunes: None,
        }
    }
}

const POLICY_DIGEST: &str =
    "sha256:5d1c0c5b2d4a8f8e3f0a9b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e";

const EXE_HASH: &str = "sha256:c79bf44242829108e323378531f4ac839513ca1fba45efd6583643526e1e9fd2";

/// Operations per second on `threads` threads for about `seconds`; each
/// thread runs its own operation from `make` (keys are made before the
/// clock starts).
fn raw_rate<F, Op>(threads: usize, seconds: f64, make: F) -> anyhow::Result<f64>
where
    F: Fn() -> Op + Sync,
    Op: FnMut() -> anyhow::Result<()> + Send,
{
    let ops: Vec<Op> = (0..threads.max(1)).map(|_| make()).collect();
    let start = Instant::now();
    let counts = std::thread::scope(|s| {
        let handles: Vec<_> = ops
            .into_iter()
            .map(|mut op| {
                s.spawn(move || -> anyhow::Result<u64> {
                    let mut n = 0u64;
                    while start.elapsed().as_secs_f64() < seconds {
                        op()?;
                        n += 1;
                    }
                    Ok(n)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("baseline thread panicked"))?
            })
            .collect::<anyhow::Result<Vec<u64>>>()
    })?;
    Ok(counts.iter().sum::<u64>() as f64 / start.elapsed().as_secs_f64())
}

/// One raw ML-DSA-65 signature of `message` per call.
fn sign_op(message: &[u8]) -> impl FnMut() -> anyhow::Result<()> + Send + '_ {
    let key = LibcruxKeyPair::from_seed(&[1; 32]);
    move || {
        key.sign(message)?;
        Ok(())
    }
}

/// One raw ML-DSA-65 verification (libcrux) of a signature of `message`
/// per call.
fn verify_op(message: &[u8]) -> impl FnMut() -> anyhow::Result<()> + Send + '_ {
    let key = LibcruxKeyPair::from_seed(&[1; 32]);
    let signature = key.sign(message);
    let public_key = key.public_key().to_vec();
    move || {
        let signature = signature.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
        LibcruxVerifier
            .verify(&public_key, message, signature)
            .map_err(|e| anyhow::anyhow!("{e}"))
    }
}

/// Average stored envelope and context lengths.
fn stored_sizes(db: &Path) -> anyhow::Result<(f64, f64)> {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    // As stored: the envelope text and the signature's bytes apart.
    let envelope: f64 = c.query_row(
        "SELECT AVG(LENGTH(envelope_text) + COALESCE(LENGTH(sig), 0)) FROM receipts",
        [],
        |r| r.get(0),
    )?;
    let context: f64 = c.query_row("SELECT AVG(LENGTH(context)) FROM contexts", [], |r| {
        r.get(0)
    })?;
    Ok((envelope, context))
}

fn wal_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push("-wal");
    PathBuf::from(p)
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn file_sha256(path: &Path) -> anyhow::Result<String> {
    Ok(observer_daemon::enrich::ExeHashCache::new(1, u64::MAX).hash_path(path)?)
}

fn now_unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// CPU seconds of every thread of this process by thread id, with its
/// name, sampled from /proc until stopped: the pipeline's threads exit in
/// `finish`, so the last sample of each (at most one period old) stands.
struct ThreadSampler {
    stop: Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<HashMap<u32, (String, f64)>>,
}

impl ThreadSampler {
    const PERIOD: Duration = Duration::from_millis(10);

    fn start() -> ThreadSampler {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop_flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut seen = HashMap::new();
            loop {
                sample_threads(&mut seen);
                if stop_flag.load(Ordering::Relaxed) {
                    return seen;
                }
                std::thread::sleep(Self::PERIOD);
            }
        });
        ThreadSampler { stop, handle }
    }

    fn stop(self) -> HashMap<u32, (String, f64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}

fn sample_threads(seen: &mut HashMap<u32, (String, f64)>) {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return;
    };
    for task in tasks.flatten() {
        let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<u32>().ok())
        else {
            continue;
        };
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(task.path().join("comm")),
            std::fs::read_to_string(task.path().join("stat")),
        ) else {
            continue;
        };
        let Some((_, after_comm)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = after_comm.split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let cpu = (ticks(11) + ticks(12)) / hz;
        seen.insert(tid, (comm.trim().to_string(), cpu));
    }
}

/// User + system CPU seconds of the calling thread.
fn thread_cpu_secs() -> f64 {
    // SAFETY: getrusage writes into a valid rusage struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// User + system CPU seconds of this process, all threads.
fn self_cpu_secs() -> f64 {
    // SAFETY: getrusage writes into a valid rusage struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}
