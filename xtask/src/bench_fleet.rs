//! `cargo xtask bench fleet` (only when named): a fleet of hosts in
//! ClickHouse (issue #22). Each host is a store of the real receipt
//! pipeline (`receipt_pipeline` example; default 10 hosts x 100,000
//! receipts, each of its own origin `did:web:bench.invalid/host/fleet-host-NN`,
//! every 100th receipt a `shadow_ai.finding`), kept between runs in
//! `target/bench-fleet` and reused while its parameters match. A private
//! clickhouse-server (18.16 or later) holds the shipped schema.
//!
//! - ClickHouse sink: each store forwarded from cursor zero through the
//!   real clickhouse sink (`forward_rate` example) until its durable
//!   cursor is at the end, receipts/s against the 20,000/s target and
//!   against the file sink forwarding the same store in the same run (each
//!   host's file run just before its ClickHouse run). The sink's settings
//!   are the defaults but `insert_interval_ms = 0`: a backlog's batches
//!   are full and go at once anyway, and only the last, partial batch
//!   would wait out the interval.
//! - `observerctl fleet verify` over every host (after `OPTIMIZE ... FINAL`:
//!   parts merged, ClickHouse idle) under the keys pinned with `fleet keys
//!   add`: receipts/s of the whole command against `observerctl verify`
//!   of each host's own store (sum of receipts / sum of times) in the same
//!   run, target >= 0.8x; exit 0 and every receipt counted once.
//! - One rule's findings across all hosts ([`crate::bench_fleet_query`]):
//!   p50 and p90 of `observerctl fleet findings` against the 100 ms
//!   target, and of its SQL in three forms alongside.
//!
//! ClickHouse, the sinks and observerctl run on the first `--fleet-cpus`
//! CPUs (default 2: the rates are on 2 cores); the stores are
//! built on every CPU, untimed.
use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use crate::{
    bench_clickhouse::ClickHouse,
    bench_fleet_query::{FindingsBy, Fleet},
    bench_kit::{on_cpus, unpinned},
};

#[derive(clap::Args)]
pub struct FleetArgs {
    /// Hosts (stores of distinct origins) of the fleet section.
    #[arg(long, default_value_t = 10)]
    fleet_hosts: usize,
    /// Receipts per host store.
    #[arg(long, default_value_t = 100_000)]
    fleet_receipts: u64,
    /// Every Nth receipt of a host store is a shadow_ai.finding (0: none).
    #[arg(long, default_value_t = 100)]
    fleet_findings_every: u64,
    /// Runs of the findings query (p50 and p90 reported).
    #[arg(long, default_value_t = 21)]
    fleet_queries: usize,
    /// What the findings query is timed through: `command` (observerctl
    /// fleet findings) or `sql` (its SQL alone).
    #[arg(long, value_enum, default_value_t = FindingsBy::Command)]
    fleet_findings_by: FindingsBy,
    /// CPUs (the first N) ClickHouse, the sinks and observerctl run on.
    #[arg(long, default_value_t = 2)]
    fleet_cpus: usize,
    /// Where the host stores are kept between runs (default:
    /// target/bench-fleet).
    #[arg(long, value_name = "DIR")]
    fleet_stores: Option<PathBuf>,
    /// Build the host stores again even where kept ones match.
    #[arg(long)]
    fleet_rebuild: bool,
    /// The clickhouse sink's `batch_max` (default: the sink's own).
    #[arg(long, value_name = "RECEIPTS")]
    fleet_batch_max: Option<usize>,
}

const TARGET_SINK: f64 = 20_000.0;
const TARGET_VERIFY_RATIO: f64 = 0.8;
const AGENTS: usize = 8;
const DEPLOYER: &str = "did:web:bench.invalid";
/// The rule whose findings the query counts (one of the three the
/// pipeline's findings name in turn).
const RULE: &str = "llm-request-out-of-scope";

/// One host: its store and what it holds.
struct Host {
    origin: String,
    dir: PathBuf,
    receipts: u64,
    /// Findings of [`RULE`].
    rule_findings: u64,
}

impl Host {
    fn db(&self) -> PathBuf {
        self.dir.join("observer.db")
    }
}

/// The examples the section runs (observerd and observerctl are built for
/// every section).
pub fn build() -> anyhow::Result<()> {
    crate::bench_forward::build()
}

pub fn run(root: &Path, work: &Path, args: &FleetArgs) -> anyhow::Result<()> {
    let work = work.join("fleet");
    std::fs::create_dir_all(&work)?;
    let cpus = args.fleet_cpus.max(1);
    // SAFETY: sysconf has no preconditions.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize;
    println!(
        "fleet: {} hosts x {} receipts; ClickHouse, the sinks and observerctl on {} CPUs",
        args.fleet_hosts,
        args.fleet_receipts,
        cpus.min(online)
    );
    let hosts = stores(root, args)?;
    let total: u64 = hosts.iter().map(|h| h.receipts).sum();

    // Every host's master key pinned as an operator would: the JWK `keys
    // export --master` prints on the host, then `fleet keys add`.
    let ctl = root.join("target/release/observerctl");
    let keys_dir = work.join("fleet-keys");
    let mut jwks = Vec::new();
    for (i, h) in hosts.iter().enumerate() {
        let out = Command::new(&ctl)
            .arg("--db")
            .arg(h.db())
            .args(["keys", "export", "--master"])
            .output()
            .context("running observerctl keys export")?;
        if !out.status.success() {
            bail!(
                "keys export --master of {}: {}",
                h.origin,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let jwk = work.join(format!("master-{i}.jwk"));
        std::fs::write(&jwk, &out.stdout)?;
        let out = Command::new(&ctl)
            .args(["fleet", "keys", "add", &h.origin])
            .arg(&jwk)
            .arg("--keys-dir")
            .arg(&keys_dir)
            .output()
            .context("running observerctl fleet keys add")?;
        if !out.status.success() {
            bail!(
                "fleet keys add {}: {}",
                h.origin,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        jwks.push(jwk);
    }

    let mut ch = ClickHouse::start(root, &work.join("clickhouse"), cpus)?;
    sinks(root, &work, &ch, &hosts, cpus, args.fleet_batch_max)?;
    // Parts merged before anything reads them: ClickHouse is idle while
    // the verifiers run, and the queries read what a fleet store settles to.
    for table in ["receipts", "checkpoints", "keys"] {
        ch.query(&format!("OPTIMIZE TABLE observer.{table} FINAL"))?;
    }
    println!(
        "  the fleet store holds {total} receipts in {:.0} MB (ClickHouse's data directory)",
        ch.data_bytes() as f64 / 1e6
    );
    verify(&ctl, &ch, &hosts, &jwks, &keys_dir, cpus)?;
    let fleet = Fleet {
        ch: &ch,
        ctl: &ctl,
        cpus,
        rule: RULE,
        receipts: total,
        expected: hosts.iter().map(|h| h.rule_findings).sum(),
        hosts_with: hosts.iter().filter(|h| h.rule_findings > 0).count(),
    };
    crate::bench_fleet_query::run(&fleet, args.fleet_queries, args.fleet_findings_by)?;
    ch.stop();
    Ok(())
}

/// The host stores: kept ones whose parameters match, the others built.
fn stores(root: &Path, args: &FleetArgs) -> anyhow::Result<Vec<Host>> {
    let cache = args
        .fleet_stores
        .clone()
        .unwrap_or_else(|| root.join("target/bench-fleet"));
    let mut hosts = Vec::new();
    let (mut built, mut build_secs) = (0, 0.0);
    for i in 0..args.fleet_hosts {
        let hostname = format!("fleet-host-{i:02}");
        let dir = cache.join(format!(
            "{hostname}-r{}-f{}",
            args.fleet_receipts, args.fleet_findings_every
        ));
        let params = json!({
            "hostname": hostname,
            "deployer": DEPLOYER,
            "receipts": args.fleet_receipts,
            "agents": AGENTS,
            "findings_every": args.fleet_findings_every,
        })
        .to_string();
        let marker = dir.join("bench-params.json");
        let kept = !args.fleet_rebuild
            && dir.join("observer.db").exists()
            && std::fs::read_to_string(&marker).is_ok_and(|m| m == params);
        if !kept {
            let t = Instant::now();
            let _ = std::fs::remove_dir_all(&dir);
            let mut cmd = Command::new(root.join("target/release/examples/receipt_pipeline"));
            cmd.args(["--count", &args.fleet_receipts.to_string()])
                .args(["--agents", &AGENTS.to_string()])
                .args(["--baseline-seconds", "0", "--verify-threads", "0"])
                .args(["--hostname", &hostname, "--deployer", DEPLOYER])
                .args(["--findings-every", &args.fleet_findings_every.to_string()])
                .arg("--dir")
                .arg(&dir);
            let status = unpinned(&mut cmd)
                .stdout(Stdio::null())
                .status()
                .context("running the receipt_pipeline example")?;
            if !status.success() {
                bail!("receipt_pipeline failed: {status}");
            }
            std::fs::write(&marker, &params)?;
            built += 1;
            build_secs += t.elapsed().as_secs_f64();
        }
        let conn = rusqlite::Connection::open_with_flags(
            dir.join("observer.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )?;
        let receipts: i64 = conn.query_row("SELECT COUNT(*) FROM receipts", [], |r| r.get(0))?;
        let rule_findings: i64 = conn.query_row(
            "SELECT COUNT(*) FROM receipts r JOIN contexts c ON c.leaf_index = r.leaf_index \
             WHERE r.action_type = 'shadow_ai.finding' AND json_extract(c.context, '$.rule_id') = ?1",
            [RULE],
            |r| r.get(0),
        )?;
        hosts.push(Host {
            origin: format!("{DEPLOYER}/host/{hostname}"),
            dir,
            receipts: receipts as u64,
            rule_findings: rule_findings as u64,
        });
    }
    println!(
        "  host stores in {}: {built} built ({build_secs:.0} s), {} kept from an earlier run",
        cache.display(),
        hosts.len() - built
    );
    Ok(hosts)
}

/// One store forwarded from cursor zero by one sink.
struct Forwarded {
    receipts: u64,
    records: u64,
    seconds: f64,
    json: Value,
}

/// Every store through the file sink, then through the clickhouse sink;
/// the rates of both, and ClickHouse holding every receipt once.
fn sinks(
    root: &Path,
    work: &Path,
    ch: &ClickHouse,
    hosts: &[Host],
    cpus: usize,
    batch_max: Option<usize>,
) -> anyhow::Result<()> {
    let batch = batch_max.map_or_else(String::new, |n| format!("batch_max = {n}\n"));
    let (mut receipts, mut file_secs, mut ch_secs) = (0u64, 0.0, 0.0);
    let (mut retries, mut errors) = (0u64, 0u64);
    for h in hosts {
        let out = work.join("file-sink");
        std::fs::create_dir_all(&out)?;
        let file = forward(
            root,
            &h.db(),
            work,
            &format!(
                "[[sinks]]\nname = \"bench\"\ntype = \"file\"\n[sinks.file]\npath = \"{}\"\n",
                out.join("receipts.jsonl").display()
            ),
            cpus,
        )?;
        let lines = count_lines(&out)?;
        if lines != file.records {
            bail!(
                "file sink: {lines} lines written, {} has {} records",
                h.origin,
                file.records
            );
        }
        std::fs::remove_dir_all(&out)?;
        let sent = forward(
            root,
            &h.db(),
            work,
            &format!(
                "[[sinks]]\nname = \"bench\"\ntype = \"clickhouse\"\n{batch}[sinks.clickhouse]\n\
                 url = \"{}\"\ninsert_interval_ms = 0\n",
                ch.url()
            ),
            cpus,
        )?;
        if sent.receipts != h.receipts || file.receipts != h.receipts {
            bail!(
                "{}: {} receipts in the store, the sinks forwarded {} (file) and {} (clickhouse)",
                h.origin,
                h.receipts,
                file.receipts,
                sent.receipts
            );
        }
        receipts += h.receipts;
        file_secs += file.seconds;
        ch_secs += sent.seconds;
        let counter = |k: &str| sent.json["sinks"]["bench"][k].as_u64().unwrap_or(0);
        retries += counter("retries");
        errors += counter("errors");
    }
    for h in hosts {
        let rows = ch.count(&format!(
            "SELECT count() FROM observer.receipts FINAL WHERE host = '{}'",
            h.origin
        ))?;
        if rows != h.receipts {
            bail!(
                "ClickHouse holds {rows} receipts of {}, its store {}",
                h.origin,
                h.receipts
            );
        }
    }
    let rate = receipts as f64 / ch_secs;
    let file = receipts as f64 / file_secs;
    println!(
        "  clickhouse sink: {rate:.0} receipts/s (file sink {file:.0}/s, ratio {:.2}) \
         (target >= {TARGET_SINK:.0}/s: {}); {} hosts one after another, {receipts} receipts, \
         ClickHouse holds each once; retries {retries}, errors {errors}; batch_max {}",
        rate / file,
        met(rate >= TARGET_SINK),
        hosts.len(),
        batch_max.map_or_else(|| "the sink's default".to_string(), |n| n.to_string()),
    );
    Ok(())
}

/// Runs the forward_rate example on `store` with the sink of `sink` (a
/// `[[sinks]]` TOML fragment named `bench`), from cursor zero.
fn forward(
    root: &Path,
    store: &Path,
    work: &Path,
    sink: &str,
    cpus: usize,
) -> anyhow::Result<Forwarded> {
    let conf = crate::bench_forward::forward_config(work, sink)?;
    let mut cmd = Command::new(root.join("target/release/examples/forward_rate"));
    cmd.arg("--store").arg(store).arg("--config").arg(&conf);
    let mut child = on_cpus(&mut cmd, cpus)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("running the forward_rate example")?;
    let lines: Vec<String> = BufReader::new(child.stdout.take().context("stdout")?)
        .lines()
        .collect::<Result<_, _>>()?;
    let status = child.wait()?;
    if !status.success() {
        bail!("forward_rate failed: {status}");
    }
    if lines.first().map(String::as_str) != Some("started") {
        bail!("forward_rate: expected \"started\" first, got {lines:?}");
    }
    let json: Value = serde_json::from_str(lines.last().context("no result")?)?;
    Ok(Forwarded {
        receipts: json["receipts"].as_u64().context("receipts")?,
        records: json["records"].as_u64().context("records")?,
        seconds: json["seconds"].as_f64().context("seconds")?,
        json,
    })
}

/// `observerctl verify` of each host's store, then `observerctl fleet
/// verify` of them all from ClickHouse.
fn verify(
    ctl: &Path,
    ch: &ClickHouse,
    hosts: &[Host],
    jwks: &[PathBuf],
    keys_dir: &Path,
    cpus: usize,
) -> anyhow::Result<()> {
    let mut local_secs = 0.0;
    for (h, jwk) in hosts.iter().zip(jwks) {
        let mut cmd = Command::new(ctl);
        cmd.arg("--db")
            .arg(h.db())
            .args(["verify", "--json", "--pubkey"])
            .arg(jwk);
        let (code, doc, secs) = timed_json(&mut cmd, cpus)?;
        if code != 0 || doc["receipts"].as_u64().is_some_and(|n| n != h.receipts) {
            bail!("observerctl verify of {} (exit {code}): {doc}", h.origin);
        }
        local_secs += secs;
    }
    let total: u64 = hosts.iter().map(|h| h.receipts).sum();
    let mut cmd = Command::new(ctl);
    cmd.args(["fleet", "verify", "--json", "--clickhouse", &ch.url()])
        .arg("--keys-dir")
        .arg(keys_dir);
    let (code, doc, fleet_secs) = timed_json(&mut cmd, cpus)?;
    let failed: Vec<&Value> = doc["reports"]
        .as_array()
        .map(|r| r.iter().filter(|r| r["ok"] != true).collect())
        .unwrap_or_default();
    if code != 0 || !failed.is_empty() {
        bail!("observerctl fleet verify exited {code}; failed: {failed:?}");
    }
    if doc["receipts"].as_u64() != Some(total) || doc["hosts"].as_u64() != Some(hosts.len() as u64)
    {
        bail!(
            "observerctl fleet verify counted {} receipts of {} hosts, the stores hold {total} of {}",
            doc["receipts"],
            doc["hosts"],
            hosts.len()
        );
    }
    let fleet = total as f64 / fleet_secs;
    let local = total as f64 / local_secs;
    println!(
        "  fleet verify: {fleet:.0} receipts/s ({total} receipts of {} hosts from ClickHouse in \
         {fleet_secs:.1} s, exit 0, every receipt counted once) against local verify {local:.0}/s \
         (each host's own store, {local_secs:.1} s in all), ratio {:.2} (target >= \
         {TARGET_VERIFY_RATIO:.2}x: {})",
        hosts.len(),
        fleet / local,
        met(fleet / local >= TARGET_VERIFY_RATIO)
    );
    Ok(())
}

/// Runs `cmd` on `cpus` to its end: (exit code, its JSON on stdout,
/// seconds).
fn timed_json(cmd: &mut Command, cpus: usize) -> anyhow::Result<(i32, Value, f64)> {
    let t = Instant::now();
    let out = on_cpus(cmd, cpus)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    let secs = t.elapsed().as_secs_f64();
    let doc = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "{cmd:?}: not JSON on stdout: {}",
            String::from_utf8_lossy(&out.stdout[..out.stdout.len().min(500)])
        )
    })?;
    Ok((out.status.code().unwrap_or(-1), doc, secs))
}

fn met(yes: bool) -> &'static str {
    if yes {
        "met"
    } else {
        "NOT met"
    }
}

/// Lines of every file in `dir`.
fn count_lines(dir: &Path) -> anyhow::Result<u64> {
    let mut n = 0u64;
    for e in std::fs::read_dir(dir)? {
        let bytes = std::fs::read(e?.path())?;
        n += bytes.iter().filter(|b| **b == b'\n').count() as u64;
    }
    Ok(n)
}
