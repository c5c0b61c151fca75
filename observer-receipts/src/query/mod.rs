//! Which receipts: one plain filter ([`Query`]) that observerctl's
//! `receipts`, `tail`, `export` and `stats` share (and that the daemon
//! receives as JSON over its control socket), its SQL, and the one function
//! that streams the rows it selects ([`QueryRow`], with a one-line
//! [`summary`] of each).
//!
//! Every list field holds globs (`*` any run of characters, `?` one
//! character, everything else literal, case-sensitive). Globs of one field
//! OR together; different fields AND. All of it is evaluated by SQLite, so
//! `export` and `count` apply exactly the same filters as the listing and a
//! limit counts only matching rows. On an indexed column (agent, action,
//! risk) an exact value is an equality and a glob with a literal prefix
//! (`unregistered:*`, `network.*`) is also a range on the index; context
//! fields (user, rule, destination, path, unit, pid, executable) are read
//! from the context JSON of the rows the other filters leave.
use rusqlite::{types::Value as SqlValue, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::{payload, store::Store};

mod chains;
mod findings;
mod mcp;
mod row;
pub mod stats;
mod summary;
mod usage;

pub use chains::{chain_summaries, ChainSummary};
pub use findings::{for_each_finding, FindingRow};
pub use mcp::{mcp_tools, McpToolRow};
pub use row::{stored_payload_text, QueryRow, COLUMNS};
pub use summary::{llm_summary, mcp_summary, more_paths, summary, text_at};
pub use usage::{llm_usage, UsageRow};

/// Why a query failed: the store could not be read.
#[derive(Debug, thiserror::Error)]
#[error("receipt store {path}: {source}")]
pub struct QueryError {
    /// The store's database file, as displayed.
    pub path: String,
    /// SQLite's error.
    #[source]
    pub source: rusqlite::Error,
}

/// The error of a failed statement on `store`.
pub fn sql_err(store: &Store) -> impl Fn(rusqlite::Error) -> QueryError + '_ {
    move |source| QueryError {
        path: store.path().display().to_string(),
        source,
    }
}

/// A validated filter: times already resolved to ns since the epoch.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Query {
    /// Issued at or after (ns since the epoch).
    pub since_ns: Option<u64>,
    /// Issued at or before (ns since the epoch).
    pub until_ns: Option<u64>,
    /// Agent ids (`agent_id`, e.g. `unregistered:*`).
    pub agent: Vec<String>,
    /// Action types (e.g. `network.*`).
    pub action: Vec<String>,
    /// Users: the context's `process.user`, or its uid when all digits.
    pub user: Vec<String>,
    /// Finding rule ids (`rule_id` of `shadow_ai.finding` contexts).
    pub rule: Vec<String>,
    /// Destinations: a network receipt's remote address (or
    /// `address:port`) or any of its `dst_names`, a finding's matched
    /// destination.
    pub dst: Vec<String>,
    /// File paths: a `file.open` path (the first, or any it lists), a
    /// finding's matched path.
    pub path: Vec<String>,
    /// systemd units (`process.unit`).
    pub unit: Vec<String>,
    /// Risk classes (`low`, `medium`, `high`, `unknown`).
    pub risk: Vec<String>,
    /// Process ids in the context.
    pub pid: Vec<u32>,
    /// Executables: a glob of the context's path, or a sha256
    /// (`sha256:<hex>` or 64 hex) of the payload's `executable_hash`.
    pub exe: Vec<String>,
    /// Chains (`issuer_id`).
    pub chain: Vec<String>,
    /// At most this many: the most recent matches, listed oldest first.
    pub limit: Option<u64>,
    /// Only receipts with a log index in (after, upto], in log order
    /// (`tail -f`; -1 is before the first).
    pub after_leaf: Option<(i64, i64)>,
}

impl Query {
    /// Whether anything but the time window narrows the receipts (an export
    /// then leaves out the checkpoints, which cover whole log prefixes).
    pub fn is_content_filtered(&self) -> bool {
        [
            &self.agent,
            &self.action,
            &self.user,
            &self.rule,
            &self.dst,
            &self.path,
            &self.unit,
            &self.risk,
            &self.exe,
            &self.chain,
        ]
        .iter()
        .any(|l| !l.is_empty())
            || !self.pid.is_empty()
    }
}

/// Calls `f` with each row of `q` in output order (time, ties in log
/// order): streamed from SQLite in constant memory without a limit; with
/// one, the newest `limit` rows are read first (newest first is how the
/// index finds them) and then passed on oldest first; with `after_leaf`, in
/// log order.
pub fn for_each_row<E: From<QueryError>>(
    store: &Store,
    q: &Query,
    mut f: impl FnMut(QueryRow) -> Result<(), E>,
) -> Result<(), E> {
    let mut sql = format!(
        "SELECT {COLUMNS} FROM receipts r LEFT JOIN contexts c ON c.leaf_index = r.leaf_index WHERE 1"
    );
    let mut params = Vec::new();
    push_filters(q, &mut sql, &mut params);
    let mut w = Where {
        sql: &mut sql,
        params: &mut params,
    };
    let mut newest_first = false;
    if let Some((after, upto)) = q.after_leaf {
        let (a, u) = (
            w.param(SqlValue::Integer(after)),
            w.param(SqlValue::Integer(upto)),
        );
        w.sql.push_str(&format!(
            " AND r.leaf_index > {a} AND r.leaf_index <= {u} ORDER BY r.leaf_index"
        ));
    } else if let Some(n) = q.limit {
        newest_first = true;
        let n = w.param(SqlValue::Integer(n.min(i64::MAX as u64) as i64));
        w.sql.push_str(&format!(
            " ORDER BY r.issued_ns DESC, r.leaf_index DESC LIMIT {n}"
        ));
    } else {
        w.sql.push_str(" ORDER BY r.issued_ns, r.leaf_index");
    }
    let conn = store.connection();
    let mut stmt = conn.prepare(&sql).map_err(sql_err(store))?;
    let mut rows = stmt
        .query(rusqlite::params_from_iter(params))
        .map_err(sql_err(store))?;
    if !newest_first {
        while let Some(r) = rows.next().map_err(sql_err(store))? {
            f(QueryRow::from_sql(r).map_err(sql_err(store))?)?;
        }
        return Ok(());
    }
    let mut newest = Vec::new();
    while let Some(r) = rows.next().map_err(sql_err(store))? {
        newest.push(QueryRow::from_sql(r).map_err(sql_err(store))?);
    }
    newest.into_iter().rev().try_for_each(f)
}

/// The rows of `q` (see [`for_each_row`]) in a vector.
pub fn query(store: &Store, q: &Query) -> Result<Vec<QueryRow>, QueryError> {
    let mut out = Vec::new();
    for_each_row(store, q, |r| {
        out.push(r);
        Ok::<(), QueryError>(())
    })?;
    Ok(out)
}

/// The row of the receipt `receipt_hash`, if it is stored.
pub fn row_by_hash(store: &Store, receipt_hash: &[u8]) -> Result<Option<QueryRow>, QueryError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM receipts r LEFT JOIN contexts c ON c.leaf_index = r.leaf_index \
         WHERE r.receipt_hash = ?1"
    );
    store
        .connection()
        .query_row(&sql, [receipt_hash], QueryRow::from_sql)
        .optional()
        .map_err(sql_err(store))
}

/// The newest log index, if any receipt is stored.
pub fn newest_leaf(store: &Store) -> Result<Option<u64>, QueryError> {
    store
        .connection()
        .query_row("SELECT MAX(leaf_index) FROM receipts", [], |r| {
            r.get::<_, Option<i64>>(0)
        })
        .map(|n| n.map(|n| n as u64))
        .map_err(sql_err(store))
}

/// `tail` without `-f` from the store: the latest `lines` matches in log
/// order, up to the log's end when it was read (`tail -f` follows the
/// daemon's live feed from there).
pub fn tail(store: &Store, q: &Query, lines: u64) -> Result<Vec<QueryRow>, QueryError> {
    let last: i64 = newest_leaf(store)?.map_or(-1, |l| l as i64);
    let leaf = |r: &QueryRow| r.fields["leaf_index"].as_i64().unwrap_or(-1);
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

/// Appends the filters of `q` (all but the limit and the log range) to a
/// WHERE clause over `receipts r LEFT JOIN contexts c`.
pub fn push_filters(q: &Query, sql: &mut String, params: &mut Vec<SqlValue>) {
    let mut w = Where { sql, params };
    if let Some(t) = q.since_ns {
        let p = w.param(SqlValue::Integer(t.min(i64::MAX as u64) as i64));
        w.sql.push_str(&format!(" AND r.issued_ns >= {p}"));
    }
    if let Some(t) = q.until_ns {
        let p = w.param(SqlValue::Integer(t.min(i64::MAX as u64) as i64));
        w.sql.push_str(&format!(" AND r.issued_ns <= {p}"));
    }
    w.any(&q.agent, |w, g| w.indexed("r.agent_id", g));
    w.any(&q.action, |w, g| w.indexed("r.action_type", g));
    w.any(&q.risk, |w, g| w.indexed("r.risk_class", g));
    w.any(&q.chain, |w, g| w.indexed("r.issuer_id", g));
    w.any(&q.user, |w, g| {
        let p = w.glob(g);
        let name = format!("json_extract(c.context, '$.process.user') GLOB {p}");
        match g.parse::<u32>() {
            Ok(uid) => {
                let u = w.param(SqlValue::Integer(uid.into()));
                format!("({name} OR json_extract(c.context, '$.process.uid') = {u})")
            }
            Err(_) => name,
        }
    });
    w.any(&q.rule, |w, g| {
        let p = w.glob(g);
        format!("json_extract(c.context, '$.rule_id') GLOB {p}")
    });
    w.any(&q.unit, |w, g| {
        let p = w.glob(g);
        format!("json_extract(c.context, '$.process.unit') GLOB {p}")
    });
    w.any(&q.path, |w, g| {
        let p = w.glob(g);
        // A folded `file.open` lists its other opens under
        // `file_open.paths` (docs/RECEIPTS.md "Context shapes").
        format!(
            "(json_extract(c.context, '$.file_open.path') GLOB {p} \
             OR EXISTS (SELECT 1 FROM json_each(c.context, '$.file_open.paths') e \
                WHERE json_extract(e.value, '$.path') GLOB {p}) \
             OR json_extract(c.context, '$.matched.path') GLOB {p})"
        )
    });
    w.any(&q.dst, |w, g| {
        let p = w.glob(g);
        // The network event sits under its kind's key (connect, accept,
        // listen, bind); its names under dst_names.
        format!(
            "(EXISTS (SELECT 1 FROM json_each(c.context) n \
               WHERE n.key IN ('connect', 'accept', 'listen', 'bind') \
               AND (json_extract(n.value, '$.remote_addr') GLOB {p} \
                 OR json_extract(n.value, '$.remote_addr') || ':' || \
                    json_extract(n.value, '$.remote_port') GLOB {p} \
                 OR EXISTS (SELECT 1 FROM json_each(n.value, '$.dst_names') d \
                    WHERE json_extract(d.value, '$.name') GLOB {p}))) \
             OR json_extract(c.context, '$.matched.destination') GLOB {p})"
        )
    });
    if !q.pid.is_empty() {
        let list: Vec<String> = q
            .pid
            .iter()
            .map(|pid| w.param(SqlValue::Integer((*pid).into())))
            .collect();
        // An agent's `file.open` list names the process of each entry.
        let list = list.join(", ");
        w.sql.push_str(&format!(
            " AND (json_extract(c.context, '$.process.pid') IN ({list}) \
             OR EXISTS (SELECT 1 FROM json_each(c.context, '$.file_open.paths') e \
                WHERE json_extract(e.value, '$.pid') IN ({list})))"
        ));
    }
    w.any(&q.exe, |w, g| {
        let p = w.glob(g);
        let h = w.param(SqlValue::Text(exe_hash(g)));
        format!(
            "(json_extract(c.context, '$.process.exe') GLOB {p} \
             OR json_extract(r.envelope_text, '$.payload.executable_hash') = {h} \
             OR EXISTS (SELECT 1 FROM json_each(c.context, '$.file_open.paths') e \
                WHERE json_extract(e.value, '$.exe') GLOB {p}))"
        )
    });
}

/// A WHERE clause being built with numbered parameters.
struct Where<'a> {
    sql: &'a mut String,
    params: &'a mut Vec<SqlValue>,
}

impl Where<'_> {
    /// Binds `v`; its placeholder.
    fn param(&mut self, v: SqlValue) -> String {
        self.params.push(v);
        format!("?{}", self.params.len())
    }

    /// Binds the SQLite GLOB pattern of `glob`; its placeholder.
    fn glob(&mut self, glob: &str) -> String {
        self.param(SqlValue::Text(sqlite_glob(glob)))
    }

    /// ` AND (c1 OR c2 ...)` with one condition per glob; nothing for none.
    fn any(&mut self, globs: &[String], mut one: impl FnMut(&mut Self, &str) -> String) {
        if globs.is_empty() {
            return;
        }
        let conds: Vec<String> = globs.iter().map(|g| one(self, g)).collect();
        self.sql.push_str(&format!(" AND ({})", conds.join(" OR ")));
    }

    /// `glob` on an indexed column: an equality when it has no wildcard,
    /// else the glob, narrowed to the range of its literal prefix so that
    /// the index is searched instead of scanned.
    fn indexed(&mut self, column: &str, glob: &str) -> String {
        let prefix: String = glob
            .chars()
            .take_while(|c| !matches!(c, '*' | '?'))
            .collect();
        if prefix.len() == glob.len() {
            let p = self.param(SqlValue::Text(glob.to_string()));
            return format!("{column} = {p}");
        }
        let p = self.glob(glob);
        let mut cond = format!("{column} GLOB {p}");
        if !prefix.is_empty() {
            let lo = self.param(SqlValue::Text(prefix.clone()));
            cond = format!("{column} >= {lo} AND {cond}");
            if let Some(hi) = successor(&prefix) {
                let hi = self.param(SqlValue::Text(hi));
                cond = format!("{column} < {hi} AND {cond}");
            }
        }
        format!("({cond})")
    }
}

/// `glob` for SQLite's GLOB: `*` and `?` stay wildcards; `[`, SQLite's
/// only other special character, is made literal as the class `[[]`.
pub fn sqlite_glob(glob: &str) -> String {
    glob.replace('[', "[[]")
}

/// The least string greater than every string that starts with `prefix`
/// (UTF-8 byte order is code point order), if there is one.
fn successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last as u32 + 1 {
            0xD800 => Some('\u{E000}'),
            n => char::from_u32(n),
        };
        if let Some(c) = next {
            chars.push(c);
            return Some(chars.into_iter().collect());
        }
    }
    None
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

#[cfg(test)]
mod tests;
