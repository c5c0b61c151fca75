//! `fleet verify`: every host's log in the fleet store checked as the
//! host's own `verify` checks its store (signatures, chain links, keys
//! through the host's pinned master, the Merkle log against every
//! checkpoint the host forwarded), plus what only a copy can lose: rows
//! missing, rows that conflict, checkpoints of two different logs. One
//! report per host, naming the first failure by chain, seq and receipt.
use serde::Serialize;
use serde_json::{json, Value};

use super::{
    clickhouse::{quote, ClickHouse},
    host_rows::{read_ahead, HostRows},
    keys::{KeyDir, Source},
    source::{Findings, HostLog},
};
use crate::CtlError;
use observer_receipts::{
    payload::{now_unix_ns, OBSERVER_AGENT},
    verify::{self, Failure, Outcome, Report, VerifyOptions},
};

/// What `fleet verify` checks and trusts.
pub struct Options {
    /// Only these hosts (log origins); every host of the store when empty.
    pub hosts: Vec<String>,
    /// Report only failures of receipts issued at or after this time (ns);
    /// every receipt is still checked.
    pub since_ns: Option<u64>,
    /// Pin a host's master key from the fleet store when none is pinned.
    pub trust_on_first_use: bool,
    /// Also check every signature with the second ML-DSA-65 implementation.
    pub independent: bool,
    pub threads: usize,
}

/// The verdict on one host.
#[derive(Debug, Serialize)]
pub struct HostReport {
    pub host: String,
    pub ok: bool,
    /// The pinned master key the host was verified under.
    pub master_kid: Option<String>,
    pub key_source: Option<Source>,
    pub receipts: u64,
    pub chains: usize,
    pub log_size: u64,
    pub checkpoints_verified: u64,
    pub newest_checkpoint_size: u64,
    /// Seconds since the newest checkpoint was signed.
    pub newest_checkpoint_age_s: Option<u64>,
    pub uncheckpointed: u64,
    pub pruned_below: u64,
    /// Rows the sink sent twice, counted once.
    pub duplicates_collapsed: u64,
    /// Contexts the host erased (right to erasure) that the fleet store
    /// still holds as first forwarded: `{receipt_hash, erased_by}`. The
    /// log verifies either way; the copy is the fleet operator's to erase.
    pub erasures_not_applied: Vec<Value>,
    pub missing: Value,
    pub failures: Vec<Failure>,
    pub first_failure: Option<Failure>,
    pub failures_out_of_scope: usize,
}

impl HostReport {
    fn unverified(host: &str, check: &'static str, reason: String) -> HostReport {
        let f = Failure {
            check,
            outcome: Outcome::Unverifiable,
            chain: String::new(),
            seq: 0,
            receipt_hash: String::new(),
            leaf_index: None,
            reason,
        };
        HostReport {
            host: host.to_string(),
            ok: false,
            master_kid: None,
            key_source: None,
            receipts: 0,
            chains: 0,
            log_size: 0,
            checkpoints_verified: 0,
            newest_checkpoint_size: 0,
            newest_checkpoint_age_s: None,
            uncheckpointed: 0,
            pruned_below: 0,
            duplicates_collapsed: 0,
            erasures_not_applied: Vec::new(),
            missing: json!({"leaf_index": [], "seq": []}),
            failures: vec![f.clone()],
            first_failure: Some(f),
            failures_out_of_scope: 0,
        }
    }
}

/// Every host's verdict, in host order.
pub fn run(ch: &ClickHouse, keys: &KeyDir, opts: &Options) -> Result<Vec<HostReport>, CtlError> {
    let hosts = if opts.hosts.is_empty() {
        fleet_hosts(ch, keys)?
    } else {
        opts.hosts.clone()
    };
    let mut reports = Vec::with_capacity(hosts.len());
    for (host, rows) in hosts.iter().zip(read_ahead(ch, &hosts)) {
        reports.push(verify_host(ch, keys, opts, host, rows)?);
    }
    Ok(reports)
}

/// The hosts the store holds rows of, and those with a pinned key (a
/// pinned host with no row at all is reported, not skipped).
pub fn fleet_hosts(ch: &ClickHouse, keys: &KeyDir) -> Result<Vec<String>, CtlError> {
    #[derive(serde::Deserialize)]
    struct Host {
        host: String,
    }
    let mut hosts: Vec<String> = ch
        .rows::<Host>(&format!(
            "SELECT DISTINCT host FROM {} UNION ALL SELECT DISTINCT host FROM {}",
            ch.table("receipts"),
            ch.table("checkpoints")
        ))?
        .into_iter()
        .map(|h| h.host)
        .collect();
    hosts.extend(keys.list()?.into_iter().map(|p| p.host));
    hosts.sort();
    hosts.dedup();
    Ok(hosts)
}

fn verify_host(
    ch: &ClickHouse,
    keys: &KeyDir,
    opts: &Options,
    host: &str,
    rows: HostRows,
) -> Result<HostReport, CtlError> {
    let pinned = match keys.get(host)? {
        Some(p) => p,
        None if opts.trust_on_first_use => match first_use_key(ch, host)? {
            Ok(jwk) => keys.add(host, &jwk, Source::TrustOnFirstUse, false)?,
            Err(why) => return Ok(HostReport::unverified(host, "pinned_key", why)),
        },
        None => {
            return Ok(HostReport::unverified(
                host,
                "pinned_key",
                format!(
                    "no master key pinned for {host}: `observerctl fleet keys add {host} \
                     JWK_FILE` with the host's `observerctl keys export --master`, or \
                     --trust-on-first-use"
                ),
            ))
        }
    };
    let master_public_key = pinned.public_key()?;
    let log = HostLog::open(ch, host, rows)?;
    let verified = verify::verify_log(
        &log,
        &VerifyOptions {
            master_public_key,
            now_unix_ns: now_unix_ns(),
            external_checkpoints: Vec::new(),
            independent: opts.independent,
            threads: opts.threads,
        },
        &|_| {},
    );
    let report = match verified {
        Ok(r) => r,
        Err(verify::VerifyError::Source(e)) => return Err(CtlError::Store(e)),
        Err(e) => return Ok(HostReport::unverified(host, "master_key", e.to_string())),
    };
    let findings = std::mem::take(&mut *log.findings());
    if findings.receipts == 0 && findings.newest_checkpoint_size == 0 {
        return Ok(HostReport::unverified(
            host,
            "fleet_missing",
            format!("the fleet store holds nothing of {host}"),
        ));
    }
    let mut host_report = assemble(host, &pinned, report, findings);
    if let Some(since) = opts.since_ns {
        narrow(&log, &mut host_report, since)?;
    }
    Ok(host_report)
}

/// Keeps the failures of receipts issued at or after `since` (and every
/// failure not about one receipt, or about a receipt the store lacks).
fn narrow(log: &HostLog, r: &mut HostReport, since: u64) -> Result<(), CtlError> {
    let leaves: Vec<u64> = r.failures.iter().filter_map(|f| f.leaf_index).collect();
    let issued = log.issued_ns(&leaves)?;
    let before = r.failures.len();
    r.failures.retain(|f| {
        f.leaf_index
            .and_then(|leaf| issued.get(&leaf))
            .is_none_or(|ns| *ns >= since)
    });
    r.failures_out_of_scope = before - r.failures.len();
    r.first_failure = r.failures.first().cloned();
    r.ok = r.failures.is_empty();
    Ok(())
}

/// The genesis master key the fleet store holds for `host`, for trust on
/// first use; why not when there is none or more than one.
fn first_use_key(ch: &ClickHouse, host: &str) -> Result<Result<Value, String>, CtlError> {
    #[derive(serde::Deserialize)]
    struct Jwk {
        jwk: String,
    }
    let rows: Vec<Jwk> = ch.rows(&format!(
        "SELECT DISTINCT jwk FROM {} WHERE host = {} AND agent = {} AND generation = 1 \
         AND isNull(rotates)",
        ch.table("keys"),
        quote(host),
        quote(OBSERVER_AGENT)
    ))?;
    Ok(match rows.as_slice() {
        [one] => observer_receipts::json::parse_strict(one.jwk.as_bytes())
            .map_err(|e| format!("the fleet store's master key of {host}: {e}")),
        [] => Err(format!(
            "no master key pinned for {host}, and the fleet store holds none to trust on first use"
        )),
        _ => Err(format!(
            "no master key pinned for {host}, and the fleet store holds {} different genesis \
             master keys for it: pin the right one with `fleet keys add`",
            rows.len()
        )),
    })
}

/// The host's report: the copy's own failures and the verifier's, in log
/// order, narrowed to `since_ns`.
fn assemble(
    host: &str,
    pinned: &super::keys::Pinned,
    report: Report,
    loaded: Findings,
) -> HostReport {
    let cut = report.pruned_below;
    let mut failures = loaded.failures;
    let mut missing_leaves = Vec::new();
    for &(from, to) in &loaded.missing_leaves {
        let from = from.max(cut);
        if from >= to {
            continue;
        }
        missing_leaves.push(json!([from, to]));
        failures.push(Failure {
            check: "fleet_missing",
            outcome: Outcome::Fail,
            chain: String::new(),
            seq: 0,
            receipt_hash: String::new(),
            leaf_index: Some(from),
            reason: format!(
                "log index {from}..{} ({} receipts) is missing from the fleet store; the host \
                 signed it (a later receipt or its checkpoint of size {} covers it)",
                to - 1,
                to - from,
                loaded.newest_checkpoint_size.max(to)
            ),
        });
    }
    let mut missing_seqs: Vec<Value> = loaded
        .missing_seqs
        .iter()
        .map(|(chain, from, to)| json!({"chain": chain, "from": from, "to": to}))
        .collect();
    if cut == 0 {
        // Without pruning, every chain starts at seq 1.
        for (chain, first, _) in &loaded.chain_starts {
            if *first > 1 {
                missing_seqs.push(json!({"chain": chain, "from": 1, "to": first - 1}));
            }
        }
    }
    failures.extend(report.failures);
    // Log order: a receipt's failures by log index, log-wide ones last.
    failures.sort_by_key(|f| (f.leaf_index.is_none(), f.leaf_index));
    let erasures_not_applied = loaded
        .erasures
        .iter()
        .filter(|(erased, _)| !loaded.erased_copies.contains(erased))
        .map(|(erased, by)| json!({"receipt_hash": erased, "erased_by": by}))
        .collect();
    let now = now_unix_ns();
    HostReport {
        host: host.to_string(),
        ok: failures.is_empty(),
        master_kid: Some(pinned.kid.clone()),
        key_source: Some(pinned.source),
        receipts: report.receipts,
        chains: report.chains,
        log_size: report.log_size,
        checkpoints_verified: report.checkpoints_verified,
        newest_checkpoint_size: loaded.newest_checkpoint_size,
        newest_checkpoint_age_s: (loaded.newest_checkpoint_ns > 0)
            .then(|| now.saturating_sub(loaded.newest_checkpoint_ns) / 1_000_000_000),
        uncheckpointed: report.uncheckpointed,
        pruned_below: cut,
        duplicates_collapsed: loaded.duplicates,
        erasures_not_applied,
        missing: json!({"leaf_index": missing_leaves, "seq": missing_seqs}),
        first_failure: failures.first().cloned(),
        failures_out_of_scope: 0,
        failures,
    }
}
