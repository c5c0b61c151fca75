//! `receipts` (alias `events`): filtered listing in time order, and `show`
//! of one receipt with its context and verification result.
use std::io::Write;

use serde_json::{json, Value};

use super::{
    output::{self, s, Output},
    proof, receipt_check,
    receipt_row::{ReceiptRow, COLUMNS},
    sql_err, CtlError,
};
use crate::receipt::{json as strict_json, payload, store::Store, verify::Outcome};

// The filter and the rows it selects live in `filter`; these paths are the
// ones callers have always used.
pub use super::filter::{for_each_row, push_filters, query, Query};

/// The newest log index, if any receipt is stored.
pub fn newest_leaf(store: &Store) -> Result<Option<u64>, CtlError> {
    store
        .connection()
        .query_row("SELECT MAX(leaf_index) FROM receipts", [], |r| {
            r.get::<_, Option<i64>>(0)
        })
        .map(|n| n.map(|n| n as u64))
        .map_err(sql_err(store))
}

/// `tail` without `-f` from the store: the latest `lines` matches in log
/// order, up to the log's end when it was read (`tail -f` follows through
/// the daemon: ctl::follow).
pub fn tail(store: &Store, q: &Query, lines: u64) -> Result<Vec<ReceiptRow>, CtlError> {
    let last: i64 = newest_leaf(store)?.map_or(-1, |l| l as i64);
    let leaf = |r: &ReceiptRow| r.fields["leaf_index"].as_i64().unwrap_or(-1);
    let mut initial = query(
        store,
        &Query {
            limit: Some(lines),
            ..q.clone()
        },
    )?;
    initial.retain(|r| leaf(r) <= last);
    Ok(initial)
}

/// A network event's remote address and port, then the names it is known
/// by (DNS answers, TLS SNI), each once: `104.18.32.7:443 (api.openai.com)`.
fn destination(n: &Value) -> String {
    let addr = format!("{}:{}", s(n, &["remote_addr"]), s(n, &["remote_port"]));
    let mut names: Vec<String> = Vec::new();
    for name in n["dst_names"].as_array().into_iter().flatten() {
        let name = s(name, &["name"]);
        if !name.is_empty() && !names.contains(&name) {
            names.push(name);
        }
    }
    if names.is_empty() {
        addr
    } else {
        format!("{addr} ({})", names.join(", "))
    }
}

/// What happened, in one line, from the context.
pub fn summary(ctx: &Value) -> String {
    if ctx.get("erased") == Some(&Value::Bool(true)) {
        return "(context erased)".into();
    }
    if let Some(rule) = ctx.get("rule_id").and_then(Value::as_str) {
        // A finding: which rule, and why it fired.
        return match ctx.get("reason").and_then(Value::as_str) {
            Some(reason) => format!("{rule}: {reason}"),
            None => rule.to_string(),
        };
    }
    if let Some(e) = ctx.get("exec") {
        return exec_summary(e);
    }
    if let Some(o) = ctx.get("file_open") {
        return format!("{} x{}", s(o, &["path"]), s(o, &["count"]));
    }
    for kind in ["connect", "accept", "listen", "bind"] {
        if let Some(n) = ctx.get(kind) {
            return format!("{kind} {}", destination(n));
        }
    }
    if let Some(x) = ctx.get("exit") {
        return format!("exit code {}", s(x, &["exit_code"]));
    }
    if let Some(ev) = ctx.get("event").and_then(Value::as_str) {
        return ev.to_string();
    }
    if let Some(kid) = ctx.get("kid").and_then(Value::as_str) {
        return format!("key {kid} for {}", s(ctx, &["issuer_id"]));
    }
    String::new()
}

/// An exec: its argv, and the directories its PATH search tried first;
/// a failed exec says so, why, and the path it tried.
fn exec_summary(e: &Value) -> String {
    if e["result"].as_i64().is_some_and(|r| r != 0) {
        let why = match e["error"].as_str() {
            Some(name) => name.to_string(),
            None => format!("result {}", s(e, &["result"])),
        };
        return format!("exec failed {why} {}", s(e, &["filename"]));
    }
    let argv: Vec<String> = e["argv"]
        .as_array()
        .map(|a| a.iter().map(|v| s(v, &[])).collect())
        .unwrap_or_default();
    let line = if argv.is_empty() {
        s(e, &["filename"])
    } else {
        argv.join(" ")
    };
    match e["path_search"].as_array().map(Vec::len) {
        Some(n) if n > 0 => format!("{line} (found after {n} failed in path search)"),
        _ => line,
    }
}

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
                Ok(())
            })?;
            writeln!(out, "{}]\n}}", if first { "" } else { "\n  " })?;
            Ok(())
        }
        Output::Table => {
            let mut rows = Vec::new();
            for_each_row(store, q, |row| {
                rows.push(row.fields);
                Ok(())
            })?;
            print_list(out, mode, &rows)
        }
    }
}

/// Table rows (the `fields` of [`ReceiptRow`]s).
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
    let sql = format!(
        "SELECT {COLUMNS} FROM receipts r LEFT JOIN contexts c ON c.leaf_index = r.leaf_index \
         WHERE r.receipt_hash = ?1"
    );
    let row = store
        .connection()
        .query_row(&sql, [receipt_hash], ReceiptRow::from_sql)
        .map_err(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => CtlError::Usage(format!(
                "receipt {} is not in the store",
                hex::encode(receipt_hash)
            )),
            e => sql_err(store)(e),
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
    let announcement = key_announcement(store, &kid)?;
    let key = match &master {
        Some(m) => match receipt_check::authorise_key_after_rotations(
            &super::audit_pack::store_masters(store, m)?,
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
        checks.push(proof::inclusion_check(store, m, stored.leaf_index)?);
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
        .and_then(|jwk| crate::receipt::keys::public_key_from_jwk(&jwk).ok()))
}

/// The `observer.key` receipt (envelope, context) that announced `kid`.
pub fn key_announcement(store: &Store, kid: &str) -> Result<Option<(String, String)>, CtlError> {
    let mut stmt = store
        .connection()
        .prepare(
            "SELECT r.envelope, c.context FROM receipts r JOIN contexts c ON c.leaf_index = r.leaf_index
             WHERE r.action_type = 'observer.key' AND r.agent_id = 'observer'
               AND json_extract(c.context, '$.kid') = ?1 ORDER BY r.leaf_index LIMIT 1",
        )
        .map_err(sql_err(store))?;
    let mut rows = stmt.query([kid]).map_err(sql_err(store))?;
    match rows.next().map_err(sql_err(store))? {
        Some(r) => Ok(Some((
            r.get(0).map_err(sql_err(store))?,
            r.get(1).map_err(sql_err(store))?,
        ))),
        None => Ok(None),
    }
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
    let previous: Option<String> = store
        .connection()
        .query_row(
            "SELECT envelope FROM receipts WHERE issuer_id = ?1 AND seq = ?2",
            rusqlite::params![issuer, seq as i64 - 1],
            |r| r.get(0),
        )
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(sql_err(store)(e)),
        })?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ctl::receipt_row, receipt::jcs};

    #[test]
    fn the_stored_payload_text_hashes_as_the_canonical_payload() {
        let envelope = json!({
            "payload": {"v": 1, "seq": 7, "agent_id": "a\"b", "issued_at": "2026-11-22T18:00:00.123456789Z",
                        "nested": {"signature": "not the envelope's"}},
            "signature": {"alg": "ML-DSA-65", "kid": "k", "sig": "c2ln"},
        });
        let text = String::from_utf8(jcs::canonicalize(&envelope).unwrap()).unwrap();
        let slice = receipt_row::stored_payload_text(&text).expect("a JCS envelope's payload");
        assert_eq!(
            payload::sha256_hex(slice.as_bytes()),
            receipt_check::payload_hash(&envelope["payload"])
        );
        // Not JCS (a space, members out of order): no slice, canonicalise.
        assert_eq!(
            receipt_row::stored_payload_text(&text.replacen(":7,", ": 7,", 1)),
            None
        );
        let reordered = text.replacen("{\"payload\":", "{\"signature\":{},\"payload\":", 1);
        assert_eq!(receipt_row::stored_payload_text(&reordered), None);
    }

    #[test]
    fn summaries_name_destinations_and_rules() {
        let connect = json!({"connect": {"remote_addr": "104.18.32.7", "remote_port": 443,
            "dst_names": [{"name": "api.openai.com", "source": "dns"},
                          {"name": "api.openai.com", "source": "sni"},
                          {"name": "openai.map.fastly.net", "source": "dns"}]}});
        assert_eq!(
            summary(&connect),
            "connect 104.18.32.7:443 (api.openai.com, openai.map.fastly.net)"
        );
        let unnamed =
            json!({"accept": {"remote_addr": "10.0.0.9", "remote_port": 5555, "dst_names": []}});
        assert_eq!(summary(&unnamed), "accept 10.0.0.9:5555");
        // A finding says its rule and reason, not the event that fired it.
        let finding = json!({"rule_id": "local-inference-listening", "event": "listen",
            "reason": "a local inference server is listening", "matched": {"server": "ollama"}});
        assert_eq!(
            summary(&finding),
            "local-inference-listening: a local inference server is listening"
        );
        assert_eq!(summary(&json!({"rule_id": "r"})), "r");
    }

    #[test]
    fn exec_summaries_say_a_failure_and_a_path_search() {
        let ok = json!({"exec": {"filename": "/usr/bin/ls", "argv": ["ls", "-l"], "result": 0,
                                 "error": null}});
        assert_eq!(summary(&ok), "ls -l");
        let failed = json!({"exec": {"filename": "/usr/local/bin/foo", "argv": ["foo"],
                                     "result": -2, "error": "ENOENT"}});
        assert_eq!(summary(&failed), "exec failed ENOENT /usr/local/bin/foo");
        let unnamed = json!({"exec": {"filename": "/x", "argv": [], "result": -4095,
                                      "error": null}});
        assert_eq!(summary(&unnamed), "exec failed result -4095 /x");
        let searched = json!({"exec": {"filename": "/c/prog", "argv": ["prog", "a"], "result": 0,
            "path_search": [{"filename": "/a/prog", "error": "ENOENT"},
                            {"filename": "/b/prog", "error": "EACCES"}]}});
        assert_eq!(
            summary(&searched),
            "prog a (found after 2 failed in path search)"
        );
    }
}
