//! `receipts` (alias `events`): filtered listing in time order, and `show`
//! of one receipt with its context and verification result.
use std::io::Write;

use rusqlite::types::Value as SqlValue;
use serde_json::{json, Value};

use super::{
    output::{self, s, Output},
    proof, receipt_check,
    receipt_row::{ReceiptRow, COLUMNS},
    sql_err, CtlError,
};
use crate::receipt::{json as strict_json, payload, store::Store, verify::Outcome};

/// A validated filter: times already in ns since the epoch.
#[derive(Debug, Default, Clone)]
pub struct Query {
    pub agent: Option<String>,
    pub action: Option<String>,
    pub risk: Option<String>,
    pub pid: Option<u32>,
    pub exe: Option<String>,
    pub chain: Option<String>,
    pub since_ns: Option<u64>,
    pub until_ns: Option<u64>,
    pub limit: Option<u64>,
    /// Only receipts with a log index in (after, upto], in log order
    /// (tail -f; -1 is before the first).
    pub after_leaf: Option<(i64, i64)>,
}

/// The receipts matching `q` in time order (ties in log order). With a
/// limit, the most recent `limit` matches. Agent, action, risk and time
/// use the store's indexes; pid and exe are read from the context and
/// payload of the rows the indexed filters leave.
pub fn query(store: &Store, q: &Query) -> Result<Vec<ReceiptRow>, CtlError> {
    let (mut sql, mut params) = filtered_sql(q);
    let mut push = |sql: &mut String, clause: &str, v: SqlValue| {
        params.push(v);
        sql.push_str(&clause.replace('?', &format!("?{}", params.len())));
    };
    if let Some((after, upto)) = q.after_leaf {
        push(&mut sql, " AND r.leaf_index > ?", SqlValue::Integer(after));
        push(&mut sql, " AND r.leaf_index <= ?", SqlValue::Integer(upto));
        sql.push_str(" ORDER BY r.leaf_index");
        return run_query(store, &sql, params, false);
    }
    match q.limit {
        Some(n) => {
            sql.push_str(" ORDER BY r.issued_ns DESC, r.leaf_index DESC");
            push(
                &mut sql,
                " LIMIT ?",
                SqlValue::Integer(n.min(i64::MAX as u64) as i64),
            );
            run_query(store, &sql, params, true)
        }
        None => {
            sql.push_str(OLDEST_FIRST);
            run_query(store, &sql, params, false)
        }
    }
}

/// Time order, ties in log order.
const OLDEST_FIRST: &str = " ORDER BY r.issued_ns, r.leaf_index";

/// The rows matching the filters of `q`, in no order yet.
fn filtered_sql(q: &Query) -> (String, Vec<SqlValue>) {
    let mut sql = format!(
        "SELECT {COLUMNS} FROM receipts r LEFT JOIN contexts c ON c.leaf_index = r.leaf_index WHERE 1"
    );
    let mut params: Vec<SqlValue> = Vec::new();
    push_filters(q, &mut sql, &mut params);
    (sql, params)
}

/// Appends the filters of `q` (all but the limit and the log range) to a
/// WHERE clause over `receipts r LEFT JOIN contexts c`; `export` uses the
/// same filters.
pub(crate) fn push_filters(q: &Query, sql: &mut String, params: &mut Vec<SqlValue>) {
    let mut push = |sql: &mut String, clause: &str, v: SqlValue| {
        params.push(v);
        sql.push_str(&clause.replace('?', &format!("?{}", params.len())));
    };
    if let Some(a) = &q.agent {
        push(sql, " AND r.agent_id = ?", SqlValue::Text(a.clone()));
    }
    if let Some(a) = &q.action {
        push(sql, " AND r.action_type = ?", SqlValue::Text(a.clone()));
    }
    if let Some(r) = &q.risk {
        push(sql, " AND r.risk_class = ?", SqlValue::Text(r.clone()));
    }
    if let Some(c) = &q.chain {
        push(sql, " AND r.issuer_id = ?", SqlValue::Text(c.clone()));
    }
    if let Some(t) = q.since_ns {
        push(sql, " AND r.issued_ns >= ?", SqlValue::Integer(t as i64));
    }
    if let Some(t) = q.until_ns {
        push(sql, " AND r.issued_ns <= ?", SqlValue::Integer(t as i64));
    }
    if let Some(pid) = q.pid {
        push(
            sql,
            " AND json_extract(c.context, '$.process.pid') = ?",
            SqlValue::Integer(pid as i64),
        );
    }
    if let Some(exe) = &q.exe {
        let hash = exe_hash(exe);
        push(
            sql,
            " AND (json_extract(c.context, '$.process.exe') = ?",
            SqlValue::Text(exe.clone()),
        );
        push(
            sql,
            " OR json_extract(r.envelope, '$.payload.executable_hash') = ?)",
            SqlValue::Text(hash),
        );
    }
}

fn run_query(
    store: &Store,
    sql: &str,
    params: Vec<SqlValue>,
    newest_first: bool,
) -> Result<Vec<ReceiptRow>, CtlError> {
    let conn = store.connection();
    let mut stmt = conn.prepare(sql).map_err(sql_err(store))?;
    let mut rows = stmt
        .query(rusqlite::params_from_iter(params))
        .map_err(sql_err(store))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(sql_err(store))? {
        out.push(ReceiptRow::from_sql(r).map_err(sql_err(store))?);
    }
    if newest_first {
        out.reverse();
    }
    Ok(out)
}

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

/// `sha256:<hex>` for a hash given with or without the prefix; anything
/// else is compared as is (and matches no hash).
fn exe_hash(exe: &str) -> String {
    let hex = exe.strip_prefix("sha256:").unwrap_or(exe);
    if payload::is_lower_hex64(&hex.to_ascii_lowercase()) {
        format!("sha256:{}", hex.to_ascii_lowercase())
    } else {
        exe.to_string()
    }
}

/// What happened, in one line, from the context.
pub fn summary(ctx: &Value) -> String {
    if ctx.get("erased") == Some(&Value::Bool(true)) {
        return "(context erased)".into();
    }
    let addr = |n: &Value| format!("{}:{}", s(n, &["remote_addr"]), s(n, &["remote_port"]));
    if let Some(e) = ctx.get("exec") {
        let argv: Vec<String> = e["argv"]
            .as_array()
            .map(|a| a.iter().map(|v| s(v, &[])).collect())
            .unwrap_or_default();
        return if argv.is_empty() {
            s(e, &["filename"])
        } else {
            argv.join(" ")
        };
    }
    if let Some(o) = ctx.get("file_open") {
        return format!("{} x{}", s(o, &["path"]), s(o, &["count"]));
    }
    for kind in ["connect", "accept", "listen", "bind"] {
        if let Some(n) = ctx.get(kind) {
            return format!("{kind} {}", addr(n));
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

/// Calls `f` with each row of `q` in output order: streamed from SQLite
/// without a limit; with one, the newest `limit` rows are read first (newest
/// first is how the index finds them) and then passed on oldest first.
fn for_each_row(
    store: &Store,
    q: &Query,
    mut f: impl FnMut(ReceiptRow) -> Result<(), CtlError>,
) -> Result<(), CtlError> {
    if q.limit.is_some() || q.after_leaf.is_some() {
        return query(store, q)?.into_iter().try_for_each(f);
    }
    let (mut sql, params) = filtered_sql(q);
    sql.push_str(OLDEST_FIRST);
    let conn = store.connection();
    let mut stmt = conn.prepare(&sql).map_err(sql_err(store))?;
    let mut rows = stmt
        .query(rusqlite::params_from_iter(params))
        .map_err(sql_err(store))?;
    while let Some(r) = rows.next().map_err(sql_err(store))? {
        f(ReceiptRow::from_sql(r).map_err(sql_err(store))?)?;
    }
    Ok(())
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
}
