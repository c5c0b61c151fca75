//! `fleet hosts`, `fleet findings`, `fleet agents` and `fleet receipts`:
//! the fleet store's queries (fleet::query) written as tables, `--json`
//! or `--jsonl`.
use std::io::Write;

use serde_json::Value;

use super::common::{query_of, window, Ctx};
use crate::{
    cli::{
        fleet::{
            ClickHouseArgs, FleetAgentsArgs, FleetFindingsArgs, FleetHostsArgs, FleetReceiptsArgs,
            HostsArg,
        },
        Window,
    },
    fleet::{self, clickhouse::ClickHouse, query::Scope},
    output::{self, s, Output},
    CtlError,
};
use observer_receipts::payload::now_unix_ns;

pub fn hosts(ctx: &Ctx, args: FleetHostsArgs, out: &mut impl Write) -> Result<(), CtlError> {
    fleet::query::check_hosts(&args.hosts.hosts)?;
    let ch = fleet::connect(&args.clickhouse)?;
    let scope = Scope {
        hosts: args.hosts.hosts,
        ..Scope::default()
    };
    let rows = fleet::query::hosts(&ch, &scope, now_unix_ns())?;
    output::write_list(
        out,
        ctx.mode,
        "hosts",
        &rows,
        &[
            ("HOST", |r| s(r, &["host"])),
            ("RECEIPTS", |r| s(r, &["receipts"])),
            ("CHAINS", |r| s(r, &["chains"])),
            ("FIRST_ISSUED", |r| s(r, &["first_issued_at"])),
            ("LAST_ISSUED", |r| s(r, &["last_issued_at"])),
            ("CHECKPOINT", |r| s(r, &["checkpoint", "size"])),
            ("CHECKPOINT_AGE", |r| {
                match r["checkpoint"]["age_s"].as_u64() {
                    Some(age) => format!("{age}s"),
                    None => "-".into(),
                }
            }),
        ],
    )
}

/// The connection and the scope of `--hosts`, `--since` and `--until`,
/// each checked before anything is sent.
fn scoped(
    clickhouse: &ClickHouseArgs,
    hosts: HostsArg,
    w: &Window,
) -> Result<(ClickHouse, Scope), CtlError> {
    let (since_ns, until_ns) = window(&w.since, &w.until)?;
    fleet::query::check_hosts(&hosts.hosts)?;
    let ch = fleet::connect(clickhouse)?;
    let scope = Scope {
        hosts: hosts.hosts,
        since_ns,
        until_ns,
    };
    Ok((ch, scope))
}

pub fn findings(ctx: &Ctx, args: FleetFindingsArgs, out: &mut impl Write) -> Result<(), CtlError> {
    let (ch, scope) = scoped(&args.clickhouse, args.hosts, &args.window)?;
    let rows = fleet::query::findings(&ch, &scope, &args.rule)?;
    output::write_list(
        out,
        ctx.mode,
        "findings",
        &rows,
        &[
            ("HOST", |r| s(r, &["host"])),
            ("RULE", |r| s(r, &["rule_id"])),
            ("COUNT", |r| s(r, &["count"])),
            ("MAX_RISK", |r| s(r, &["max_risk"])),
            ("HIGH", |r| s(r, &["risk", "high"])),
            ("MEDIUM", |r| s(r, &["risk", "medium"])),
            ("LOW", |r| s(r, &["risk", "low"])),
            ("AGENTS", |r| s(r, &["agents"])),
            ("FIRST_SEEN", |r| s(r, &["first_seen"])),
            ("LAST_SEEN", |r| s(r, &["last_seen"])),
        ],
    )
}

pub fn agents(ctx: &Ctx, args: FleetAgentsArgs, out: &mut impl Write) -> Result<(), CtlError> {
    let (ch, scope) = scoped(&args.clickhouse, args.hosts, &args.window)?;
    let rows = fleet::query::agents(&ch, &scope, &args.agent)?;
    output::write_list(
        out,
        ctx.mode,
        "agents",
        &rows,
        &[
            ("HOST", |r| s(r, &["host"])),
            ("AGENT", |r| s(r, &["agent_id"])),
            ("RECEIPTS", |r| s(r, &["receipts"])),
            ("FIRST_SEEN", |r| s(r, &["first_seen"])),
            ("LAST_SEEN", |r| s(r, &["last_seen"])),
            ("ACTIONS", |r| actions(&r["actions"])),
        ],
    )
}

/// `process.exec=20 process.exit=20`: most first.
fn actions(v: &Value) -> String {
    let mut list: Vec<(&String, u64)> = v
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, n)| (k, n.as_u64().unwrap_or(0)))
        .collect();
    list.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    list.iter()
        .map(|(k, n)| format!("{k}={n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The rows as they are read: `--jsonl` one per line, `--json` the
/// document `{"receipts": [...]}` row by row; the table sized to its
/// widest cell, so kept until the end (its columns only).
pub fn receipts(ctx: &Ctx, args: FleetReceiptsArgs, out: &mut impl Write) -> Result<(), CtlError> {
    let q = query_of(args.filter.selection, args.filter.limit)?;
    fleet::query::check_hosts(&args.hosts.hosts)?;
    let ch = fleet::connect(&args.clickhouse)?;
    let listing = fleet::query::Listing {
        hosts: &args.hosts.hosts,
        query: &q,
        envelopes: ctx.mode.is_json(),
    };
    let json_err = |e: serde_json::Error| CtlError::Io(format!("writing JSON: {e}"));
    match ctx.mode {
        Output::Jsonl => fleet::query::receipts(&ch, &listing, |row| {
            serde_json::to_writer(&mut *out, &row).map_err(json_err)?;
            writeln!(out)?;
            Ok(())
        }),
        Output::Json => {
            write!(out, "{{\n  \"receipts\": [")?;
            let mut first = true;
            fleet::query::receipts(&ch, &listing, |row| {
                let text = serde_json::to_string_pretty(&row).map_err(json_err)?;
                out.write_all(if first { b"\n" } else { b",\n" })?;
                first = false;
                for (i, line) in text.lines().enumerate() {
                    if i > 0 {
                        out.write_all(b"\n")?;
                    }
                    write!(out, "    {line}")?;
                }
                Ok(())
            })?;
            writeln!(out, "{}]\n}}", if first { "" } else { "\n  " })?;
            Ok(())
        }
        Output::Table => {
            let mut rows = Vec::new();
            fleet::query::receipts(&ch, &listing, |row| {
                rows.push(row);
                Ok(())
            })?;
            output::write_list(
                out,
                ctx.mode,
                "receipts",
                &rows,
                &[
                    ("ISSUED_AT", |r| s(r, &["issued_at"])),
                    ("HOST", |r| s(r, &["host"])),
                    ("AGENT", |r| s(r, &["agent_id"])),
                    ("SEQ", |r| s(r, &["seq"])),
                    ("ACTION", |r| s(r, &["action_type"])),
                    ("RISK", |r| s(r, &["risk_class"])),
                    ("PID", |r| s(r, &["pid"])),
                    ("RECEIPT", |r| {
                        s(r, &["receipt_hash"]).chars().take(12).collect()
                    }),
                    ("SUMMARY", |r| s(r, &["summary"])),
                ],
            )
        }
    }
}
