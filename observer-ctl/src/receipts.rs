//! `receipts` (alias `events`): filtered listing in time order, and `show`
//! of one receipt with its context and verification result.
use std::io::Write;

use serde_json::{json, Value};

use super::{
    output::{self, s, Output},
    CtlError,
};
use observer_receipts::{
    json as strict_json, payload,
    query::row_by_hash,
    store::Store,
    verify::{proof::inclusion_check, receipt as receipt_check, store_masters, Outcome},
};

// The filter, its SQL and the rows it selects live in the evidence crate
// (the daemon runs the same queries for its socket's clients).
pub use observer_receipts::query::{for_each_row, newest_leaf, push_filters, query, tail, Query};

/// `receipts`: the rows of `q` written as they are read, so a query over
/// millions of receipts runs in constant memory. `--jsonl` writes each row
/// with its envelope and context as stored; `--json` writes the same
/// document `{"receipts": [...]}` as a pretty printer would, row by row;
/// the table (sized to its widest cell) keeps only the columns it shows.
pub fn print_query(
    out: &mut impl Write,
    mode: Output,
    store: &Store,
    q: &Query,
) -> Result<(), CtlError> {
    let json_err = |e: serde_json::Error| CtlError::Io(format!("writing JSON: {e}"));
    match mode {
        Output::Jsonl => for_each_row(store, q, |row| {
            serde_json::to_writer(&mut *out, &row).map_err(json_err)?;
            writeln!(out)?;
            Ok(())
        }),
        Output::Json => {
            write!(out, "{{\n  \"receipts\": [")?;
            let mut first = true;
            for_each_row(store, q, |row| {
                let text = serde_json::to_string_pretty(&row.to_value()).map_err(json_err)?;
                out.write_all(if first { b"\n" } else { b",\n" })?;
                first = false;
                // JSON strings hold no raw newline, so every line of the
                // row is indented to its place inside the array.
                for (i, line) in text.lines().enumerate() {
                    if i > 0 {
                        out.write_all(b"\n")?;
                    }
                    write!(out, "    {line}")?;
                }
                Ok::<(), CtlError>(())
            })?;
            writeln!(out, "{}]\n}}", if first { "" } else { "\n  " })?;
            Ok(())
        }
        Output::Table => {
            let mut rows = Vec::new();
            for_each_row(store, q, |row| {
                rows.push(row.fields);
                Ok::<(), CtlError>(())
            })?;
            print_list(out, mode, &rows)
        }
    }
}

/// Table rows (the `fields` of [`QueryRow`](observer_receipts::query::QueryRow)s).
pub fn print_list(out: &mut impl Write, mode: Output, rows: &[Value]) -> Result<(), CtlError> {
    output::write_list(
        out,
        mode,
        "receipts",
        rows,
        &[
            ("ISSUED_AT", |r| s(r, &["issued_at"])),
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

/// One receipt by hash with its verification: the receipt's own checks,
/// its chain key's authorisation, its link to the previous receipt of its
/// chain and its inclusion under the latest checkpoint.
pub fn show(
    store: &Store,
    receipt_hash: &[u8],
    pinned_master: Option<Vec<u8>>,
) -> Result<Value, CtlError> {
    let row = row_by_hash(store, receipt_hash)?
        .ok_or_else(|| {
            CtlError::Usage(format!(
                "receipt {} is not in the store",
                hex::encode(receipt_hash)
            ))
        })?
        .to_value();
    let stored = store
        .receipt_by_hash(receipt_hash)?
        .ok_or_else(|| CtlError::Store("the receipt vanished while reading".into()))?;
    let mut checks = Vec::new();
    // The master key: pinned, or (weaker, and said so) the store's own.
    let (master, pinned) = match pinned_master {
        Some(pk) => (Some(pk), true),
        None => (store_master_key(store)?, false),
    };
    let kid = s(&row, &["envelope", "signature", "kid"]);
    let issuer = stored.issuer_id.clone();
    let announcement = store.key_announcement(&kid)?;
    let key = match &master {
        Some(m) => match receipt_check::authorise_key_after_rotations(
            &store_masters(store, m)?,
            &issuer,
            &kid,
            stored.leaf_index,
            announcement.as_ref().map(|(e, c)| (e.as_str(), c.as_str())),
        ) {
            Ok(pk) => {
                checks.push(receipt_check::Check {
                    check: "key_authorised",
                    outcome: if pinned {
                        Outcome::Pass
                    } else {
                        Outcome::Unverifiable
                    },
                    detail: if pinned {
                        String::new()
                    } else {
                        "authorised by the store's master key; pass --pubkey to check against the pinned key".into()
                    },
                });
                Some(pk)
            }
            Err(e) => {
                checks.push(receipt_check::Check {
                    check: "key_authorised",
                    outcome: Outcome::Fail,
                    detail: e,
                });
                None
            }
        },
        None => None,
    };
    checks.extend(receipt_check::check_receipt(
        &stored.envelope,
        stored.context.as_deref(),
        key.as_deref(),
    ));
    checks.push(link_check(store, &row)?);
    if let Some(m) = &master {
        checks.push(inclusion_check(store, m, stored.leaf_index)?);
    }
    let ok = receipt_check::all_pass(&checks);
    Ok(json!({ "receipt": row, "verification": { "ok": ok, "checks": checks } }))
}

/// The master public key the store lists for the observer chain.
fn store_master_key(store: &Store) -> Result<Option<Vec<u8>>, CtlError> {
    Ok(store
        .keys()?
        .into_iter()
        .find(|k| k.agent_id == payload::OBSERVER_AGENT)
        .and_then(|k| strict_json::parse_strict(k.jwk.as_bytes()).ok())
        .and_then(|jwk| observer_receipts::keys::public_key_from_jwk(&jwk).ok()))
}

/// previousReceiptHash against the payload of seq - 1 in the same chain.
fn link_check(store: &Store, row: &Value) -> Result<receipt_check::Check, CtlError> {
    let seq = row["seq"].as_u64().unwrap_or(0);
    let issuer = s(row, &["issuer_id"]);
    let claimed = s(row, &["envelope", "payload", "previousReceiptHash"]);
    let check = |outcome, detail: String| receipt_check::Check {
        check: "chain_link",
        outcome,
        detail,
    };
    if seq == 1 {
        return Ok(if claimed == payload::GENESIS_HASH {
            check(Outcome::Pass, "first receipt of its chain".into())
        } else {
            check(
                Outcome::Fail,
                "the first receipt of a chain must link to the genesis hash".into(),
            )
        });
    }
    // seq 0 is not a receipt's; wrapping asks for seq -1, which no chain has.
    let previous = store.envelope_of(&issuer, seq.wrapping_sub(1))?;
    Ok(match previous {
        None => check(
            Outcome::Unverifiable,
            format!("seq {} is not in the store (pruned)", seq - 1),
        ),
        Some(text) => {
            let prev = strict_json::parse_strict(text.as_bytes()).unwrap_or(Value::Null);
            let h = receipt_check::payload_hash(&prev["payload"]);
            if h == claimed {
                check(Outcome::Pass, format!("links to seq {}", seq - 1))
            } else {
                check(
                    Outcome::Fail,
                    format!(
                        "previousReceiptHash is not the payload hash of seq {} ({h})",
                        seq - 1
                    ),
                )
            }
        }
    })
}

pub fn print_show(out: &mut impl Write, mode: Output, v: &Value) -> Result<(), CtlError> {
    if mode.is_json() {
        return output::write_json(out, mode, v);
    }
    let r = &v["receipt"];
    for (label, path) in [
        ("receipt", &["receipt_hash"][..]),
        ("chain", &["issuer_id"]),
        ("seq", &["seq"]),
        ("log index", &["leaf_index"]),
        ("agent", &["agent_id"]),
        ("action", &["action_type"]),
        ("issued at", &["issued_at"]),
        ("risk", &["risk_class"]),
        ("mode", &["mode"]),
        ("executable", &["executable_hash"]),
        ("payload hash", &["payload_hash"]),
        ("summary", &["summary"]),
    ] {
        writeln!(out, "{label:<13} {}", s(r, path))?;
    }
    writeln!(out, "context:")?;
    let ctx = serde_json::to_string_pretty(&r["context"]).unwrap_or_default();
    for line in ctx.lines() {
        writeln!(out, "  {line}")?;
    }
    writeln!(out, "verification:")?;
    for c in v["verification"]["checks"].as_array().into_iter().flatten() {
        writeln!(
            out,
            "  {:<16} {:<13} {}",
            s(c, &["check"]),
            s(c, &["outcome"]),
            s(c, &["detail"])
        )?;
    }
    writeln!(
        out,
        "result: {}",
        if v["verification"]["ok"] == true {
            "verified"
        } else {
            "NOT VERIFIED"
        }
    )?;
    Ok(())
}
