//! `fleet verify` and `fleet keys add|list`: the fleet store's hosts
//! checked under their pinned master keys; the queries are in
//! `fleet_query`.
use std::io::Write;

use serde_json::{json, Value};

use super::{
    common::{verdict, window, Ctx},
    fleet_query,
};
use crate::{
    cli::fleet::{FleetCommand, FleetKeysCommand, FleetVerifyArgs},
    fleet::{self, keys::Source, verify::HostReport},
    output, CtlError,
};

pub fn run(ctx: &Ctx, command: FleetCommand, out: &mut impl Write) -> Result<u8, CtlError> {
    match command {
        FleetCommand::Verify(args) => verify(ctx, args, out),
        FleetCommand::Hosts(args) => fleet_query::hosts(ctx, args, out).map(|()| verdict(true)),
        FleetCommand::Findings(args) => {
            fleet_query::findings(ctx, args, out).map(|()| verdict(true))
        }
        FleetCommand::Agents(args) => fleet_query::agents(ctx, args, out).map(|()| verdict(true)),
        FleetCommand::Receipts(args) => {
            fleet_query::receipts(ctx, *args, out).map(|()| verdict(true))
        }
        FleetCommand::Keys(FleetKeysCommand::Add {
            host,
            jwk,
            replace,
            keys,
        }) => {
            let jwk = fleet::keys::read_jwk(&jwk)?;
            let pinned = fleet::key_dir(&keys.keys_dir).add(&host, &jwk, Source::Added, replace)?;
            if ctx.mode.is_json() {
                output::write_json(
                    out,
                    ctx.mode,
                    &serde_json::to_value(&pinned).unwrap_or_default(),
                )?;
            } else {
                writeln!(out, "pinned {} for {}", pinned.kid, pinned.host)?;
            }
            Ok(verdict(true))
        }
        FleetCommand::Keys(FleetKeysCommand::List { keys }) => {
            let pinned = fleet::key_dir(&keys.keys_dir).list()?;
            output::write_list(
                out,
                ctx.mode,
                "keys",
                &output::json_rows(&pinned)?,
                &[
                    ("HOST", |r| output::cell(r, "host", "")),
                    ("KID", |r| output::cell(r, "kid", "")),
                    ("SOURCE", |r| output::cell(r, "source", "")),
                    ("PINNED_AT", |r| output::cell(r, "pinned_at", "")),
                ],
            )?;
            Ok(verdict(true))
        }
    }
}

fn verify(ctx: &Ctx, args: FleetVerifyArgs, out: &mut impl Write) -> Result<u8, CtlError> {
    let (since_ns, _) = window(&args.since, &None)?;
    for host in &args.hosts {
        fleet::keys::validate_host(host)?;
    }
    let ch = fleet::connect(&args.clickhouse)?;
    let keys = fleet::key_dir(&args.keys.keys_dir);
    let reports = fleet::verify::run(
        &ch,
        &keys,
        &fleet::verify::Options {
            hosts: args.hosts,
            since_ns,
            trust_on_first_use: args.trust_on_first_use,
            independent: args.independent,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        },
    )?;
    let ok = !reports.is_empty() && reports.iter().all(|r| r.ok);
    let summary = json!({
        "ok": ok,
        "hosts": reports.len(),
        "hosts_failed": reports.iter().filter(|r| !r.ok).count(),
        "receipts": reports.iter().map(|r| r.receipts).sum::<u64>(),
    });
    if ctx.mode.is_json() {
        let mut v = summary;
        v["reports"] = serde_json::to_value(&reports)
            .map_err(|e| CtlError::Io(format!("encoding the report: {e}")))?;
        output::write_json(out, ctx.mode, &v)?;
    } else {
        print(out, &reports, &summary)?;
    }
    Ok(verdict(ok))
}

fn print(out: &mut impl Write, reports: &[HostReport], summary: &Value) -> Result<(), CtlError> {
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            let missing = r.missing["leaf_index"].as_array().map_or(0, |ranges| {
                ranges
                    .iter()
                    .map(|x| x[1].as_u64().unwrap_or(0) - x[0].as_u64().unwrap_or(0))
                    .sum::<u64>()
            });
            vec![
                r.host.clone(),
                if r.ok { "ok".into() } else { "FAILED".into() },
                r.receipts.to_string(),
                r.chains.to_string(),
                r.checkpoints_verified.to_string(),
                r.newest_checkpoint_age_s
                    .map_or("-".into(), |s| format!("{s}s ago")),
                missing.to_string(),
                match r.key_source {
                    Some(Source::TrustOnFirstUse) => "first use".into(),
                    Some(Source::Added) => "pinned".into(),
                    None => "-".into(),
                },
            ]
        })
        .collect();
    let header = [
        "HOST",
        "RESULT",
        "RECEIPTS",
        "CHAINS",
        "CHECKPOINTS",
        "NEWEST_CHECKPOINT",
        "MISSING",
        "KEY",
    ]
    .map(String::from);
    output::write_table(out, &header, &rows)?;
    for r in reports.iter().filter(|r| !r.ok) {
        if let Some(f) = &r.first_failure {
            let at = match f.leaf_index {
                Some(leaf) if !f.chain.is_empty() => format!(
                    " at log index {leaf}, chain {} seq {} receipt {}",
                    f.chain, f.seq, f.receipt_hash
                ),
                Some(leaf) => format!(" at log index {leaf}"),
                None => String::new(),
            };
            writeln!(
                out,
                "{}: first failure {}{at}: {} ({} failures)",
                r.host,
                f.check,
                f.reason,
                r.failures.len()
            )?;
        }
    }
    for r in reports
        .iter()
        .filter(|r| !r.erasures_not_applied.is_empty())
    {
        writeln!(
            out,
            "{}: {} contexts the host erased are still in the fleet store (erasures_not_applied)",
            r.host,
            r.erasures_not_applied.len()
        )?;
    }
    writeln!(
        out,
        "{} hosts, {} failed; {} receipts verified",
        summary["hosts"], summary["hosts_failed"], summary["receipts"]
    )?;
    Ok(())
}
