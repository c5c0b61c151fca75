//! The filter's SQL run by SQLite itself over rows with real context
//! shapes (docs/events.md, docs/policies.md).
use rusqlite::Connection;
use serde_json::json;

use super::*;

/// (leaf, agent, action, risk, context) rows in tables shaped like the
/// store's, with its agent index.
fn db() -> Connection {
    let conn = Connection::open_in_memory().unwrap();
    conn.execute_batch(
        "CREATE TABLE receipts (leaf_index INTEGER PRIMARY KEY, issuer_id TEXT, agent_id TEXT,
                                action_type TEXT, issued_ns INTEGER, risk_class TEXT, envelope_text TEXT,
                                sig BLOB);
         CREATE INDEX receipts_by_agent ON receipts (agent_id, issued_ns);
         CREATE TABLE contexts (leaf_index INTEGER PRIMARY KEY, context TEXT NOT NULL);",
    )
    .unwrap();
    let rows = [
        (
            0,
            "claude",
            "process.exec",
            "low",
            json!({"process": {"user": "alice", "uid": 1000, "unit": "claude.service", "pid": 10}}),
        ),
        (
            1,
            "claude",
            "network.connect",
            "low",
            json!({"process": {"user": "alice", "uid": 1000},
            "connect": {"remote_addr": "104.18.32.7", "remote_port": 443,
                        "dst_names": [{"name": "api.openai.com", "source": "sni"}]}}),
        ),
        (
            2,
            "unregistered:aaaa",
            "network.accept",
            "medium",
            json!({"process": {"user": "bob", "uid": 0},
            "accept": {"remote_addr": "10.0.0.9", "remote_port": 5555, "dst_names": []}}),
        ),
        (
            3,
            "unregistered:bbbb",
            "file.open",
            "low",
            json!({"process": {"user": "bob", "unit": "cron.service"},
            "file_open": {"path": "/home/bob/.config/[x]/key", "count": 1}}),
        ),
        (
            6,
            "codex",
            "file.open",
            "low",
            json!({"process": {"user": "dave"},
            "file_open": {"path": "/etc/ld.so.cache", "count": 1, "paths": [
                {"path": "/etc/ld.so.cache", "count": 1},
                {"path": "/usr/lib/x86_64-linux-gnu/libc.so.6", "count": 1},
                {"path": "/etc/hostname", "count": 2, "pid": 21, "exe": "/usr/bin/cat"}]}}),
        ),
        (
            4,
            "unregistered:bbbb",
            "shadow_ai.finding",
            "high",
            json!({"rule_id": "llm-api-call",
            "reason": "r", "matched": {"destination": "api.anthropic.com"}, "process": {"user": "bob"}}),
        ),
        (
            5,
            "unregistered;",
            "shadow_ai.finding",
            "medium",
            json!({"rule_id": "ai-credential-read",
            "matched": {"path": "/home/bob/.config/openai/key"}, "process": {"user": "carol"}}),
        ),
    ];
    for (leaf, agent, action, risk, ctx) in rows {
        conn.execute(
            "INSERT INTO receipts VALUES (?1, 'chain', ?2, ?3, ?1, ?4, '{}', NULL)",
            rusqlite::params![leaf, agent, action, risk],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO contexts VALUES (?1, ?2)",
            rusqlite::params![leaf, ctx.to_string()],
        )
        .unwrap();
    }
    conn
}

fn sql_of(q: &Query) -> (String, Vec<SqlValue>) {
    let mut sql = String::from(
        "SELECT r.leaf_index FROM receipts r LEFT JOIN contexts c ON c.leaf_index = r.leaf_index WHERE 1",
    );
    let mut params = Vec::new();
    push_filters(q, &mut sql, &mut params);
    (sql, params)
}

/// The leaves `q` selects.
fn leaves(q: Query) -> Vec<i64> {
    let conn = db();
    let (mut sql, params) = sql_of(&q);
    sql.push_str(" ORDER BY r.leaf_index");
    let mut stmt = conn.prepare(&sql).unwrap();
    let rows = stmt
        .query_map(rusqlite::params_from_iter(params), |r| r.get(0))
        .unwrap();
    rows.map(Result::unwrap).collect()
}

fn v(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn globs_on_indexed_columns() {
    // `unregistered:*` is no longer the literal agent id it was.
    let q = |a: &[&str]| Query {
        agent: v(a),
        ..Query::default()
    };
    assert_eq!(leaves(q(&["unregistered:*"])), [2, 3, 4]);
    assert_eq!(leaves(q(&["unregistered?aaaa"])), [2]);
    assert_eq!(leaves(q(&["*aude"])), [0, 1]);
    assert_eq!(leaves(q(&["claude"])), [0, 1]);
    assert_eq!(leaves(q(&["claud"])), Vec::<i64>::new());
    let actions = Query {
        action: v(&["network.*"]),
        ..Query::default()
    };
    assert_eq!(leaves(actions), [1, 2]);
}

#[test]
fn repeated_flags_or_and_different_flags_and() {
    let q = Query {
        agent: v(&["claude", "unregistered:bbbb"]),
        ..Query::default()
    };
    assert_eq!(leaves(q.clone()), [0, 1, 3, 4]);
    let q = Query {
        action: v(&["file.open", "shadow_ai.*"]),
        ..q
    };
    assert_eq!(leaves(q.clone()), [3, 4]);
    let q = Query {
        risk: v(&["high", "medium"]),
        ..q
    };
    assert_eq!(leaves(q), [4]);
}

#[test]
fn context_fields() {
    let q = |f: fn(&mut Query)| {
        let mut q = Query::default();
        f(&mut q);
        leaves(q)
    };
    assert_eq!(q(|q| q.user = v(&["bob"])), [2, 3, 4]);
    assert_eq!(q(|q| q.user = v(&["0"])), [2]);
    assert_eq!(q(|q| q.user = v(&["a*", "carol"])), [0, 1, 5]);
    assert_eq!(q(|q| q.rule = v(&["llm-*"])), [4]);
    assert_eq!(q(|q| q.rule = v(&["*"])), [4, 5]);
    assert_eq!(q(|q| q.unit = v(&["*.service"])), [0, 3]);
    assert_eq!(q(|q| q.unit = v(&["cron.service"])), [3]);
    // '[' is literal, not a character class.
    assert_eq!(q(|q| q.path = v(&["/home/bob/.config/[x]/*"])), [3]);
    assert_eq!(q(|q| q.path = v(&["*/key"])), [3, 5]);
    // Any path a folded receipt lists, not only its first.
    assert_eq!(q(|q| q.path = v(&["/etc/hostname"])), [6]);
    assert_eq!(q(|q| q.path = v(&["*libc.so*"])), [6]);
    assert_eq!(q(|q| q.path = v(&["/etc/ld.so.cache"])), [6]);
    assert_eq!(q(|q| q.path = v(&["/etc/host"])), Vec::<i64>::new());
    assert_eq!(q(|q| q.dst = v(&["api.openai.com"])), [1]);
    assert_eq!(q(|q| q.dst = v(&["104.18.32.7"])), [1]);
    assert_eq!(q(|q| q.dst = v(&["10.0.0.9:5555"])), [2]);
    assert_eq!(q(|q| q.dst = v(&["api.*.com"])), [1, 4]);
    assert_eq!(q(|q| q.pid = vec![10, 11]), [0]);
    // The process of an entry of an agent's list of opens.
    assert_eq!(q(|q| q.pid = vec![21]), [6]);
    assert_eq!(q(|q| q.exe = v(&["*/cat"])), [6]);
}

#[test]
fn a_prefix_glob_searches_the_index() {
    let conn = db();
    let (sql, params) = sql_of(&Query {
        agent: v(&["unregistered:*"]),
        ..Query::default()
    });
    let plan: Vec<String> = conn
        .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
        .unwrap()
        .query_map(rusqlite::params_from_iter(params), |r| r.get(3))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(
        plan.iter()
            .any(|p| p.contains("receipts_by_agent (agent_id>? AND agent_id<?)")),
        "{plan:?}"
    );
}

#[test]
fn successor_bounds_every_string_with_the_prefix() {
    assert_eq!(successor("unregistered:").as_deref(), Some("unregistered;"));
    assert_eq!(successor("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
    assert_eq!(successor("b\u{10FFFF}").as_deref(), Some("c"));
    assert_eq!(successor("\u{10FFFF}"), None);
}

#[test]
fn the_filter_travels_as_json() {
    let q = Query {
        since_ns: Some(1),
        agent: v(&["unregistered:*"]),
        dst: v(&["api.openai.com", "10.*"]),
        risk: v(&["high"]),
        limit: Some(5),
        ..Query::default()
    };
    let text = serde_json::to_string(&q).unwrap();
    assert_eq!(serde_json::from_str::<Query>(&text).unwrap(), q);
    // Missing fields are empty; unknown ones are refused, not ignored.
    let partial: Query = serde_json::from_str(r#"{"user": ["alice"]}"#).unwrap();
    assert_eq!(partial.user, ["alice"]);
    assert!(serde_json::from_str::<Query>(r#"{"users": ["alice"]}"#).is_err());
}
