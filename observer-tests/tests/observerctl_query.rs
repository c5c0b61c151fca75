//! `observerctl receipts` and `receipts show` end to end: a real daemon
//! records a registered agent's real execs, opens and connects; every filter
//! returns exactly the rows the store says match, and `show` prints the
//! context and the verification.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]
mod observerctl_kit;

use std::path::Path;

use observer_daemon::receipt::keys::{ChainKey, MasterSeed};
use observer_testkit::*;
use observerctl_kit::*;
use serde_json::Value;

/// `receipts --json` with extra filters: the rows.
fn rows(db: &Path, filters: &[&str]) -> Vec<Value> {
    let mut args = vec!["receipts", "--json"];
    args.extend_from_slice(filters);
    let r = ctl(CtlTarget::Db(db), &args);
    assert_eq!(r.code, 0, "{filters:?}: {}", r.stderr);
    r.json()["receipts"].as_array().unwrap().clone()
}

fn hashes(rows: &[Value]) -> Vec<String> {
    rows.iter()
        .map(|r| r["receipt_hash"].as_str().unwrap().to_string())
        .collect()
}

/// The stored receipts in the order observerctl lists them (time, then
/// log order), as hashes, filtered by `pred`.
fn expected(db: &Path, pred: impl Fn(&StoredReceipt) -> bool) -> Vec<String> {
    let mut all: Vec<StoredReceipt> = stored_receipts(db)
        .into_iter()
        .filter(|r| pred(r))
        .collect();
    all.sort_by_key(|r| (issued_ns(r), r.leaf));
    all.into_iter().map(|r| r.hash).collect()
}

fn ctx_pid(r: &StoredReceipt) -> Option<u64> {
    r.context
        .as_ref()
        .and_then(|c| c["process"]["pid"].as_u64())
}

/// The entries of a receipt's `file.open` list (an agent's opens, each
/// naming its process).
fn listed_opens(r: &StoredReceipt) -> Vec<Value> {
    r.context
        .as_ref()
        .and_then(|c| c["file_open"]["paths"].as_array().cloned())
        .unwrap_or_default()
}

#[test]
fn receipt_filters_return_exactly_the_matching_rows() {
    let f = fixture();
    let db = f.db();
    let all = stored_receipts(&db);
    assert_eq!(hashes(&rows(&db, &[])), expected(&db, |_| true));
    // Fields of each row are the stored receipt's.
    for row in rows(&db, &[]) {
        let s = all
            .iter()
            .find(|s| s.hash == row["receipt_hash"].as_str().unwrap())
            .unwrap();
        assert_eq!(row["seq"], s.seq);
        assert_eq!(row["issuer_id"], s.chain.as_str());
        assert_eq!(row["leaf_index"], s.leaf);
        assert_eq!(row["action_type"], s.payload["action_type"]);
        assert_eq!(row["issued_at"], s.payload["issued_at"]);
        assert_eq!(row["envelope"]["payload"], s.payload);
        assert_eq!(row["context"], s.context.clone().unwrap_or(Value::Null));
    }

    let agent = expected(&db, |r| r.payload["agent_id"] == "ctl-agent");
    assert!(agent.len() >= 10, "{}", agent.len());
    assert_eq!(hashes(&rows(&db, &["--agent", "ctl-agent"])), agent);
    assert_eq!(
        hashes(&rows(&db, &["--agent", "nobody-agent"])),
        Vec::<String>::new()
    );

    // The agent's execs: sh itself, /bin/true, three cats and curl.
    let execs = rows(&db, &["--agent", "ctl-agent", "--action", "process.exec"]);
    assert_eq!(
        hashes(&execs),
        expected(&db, |r| r.payload["agent_id"] == "ctl-agent"
            && r.payload["action_type"] == "process.exec")
    );
    let mut names: Vec<String> = execs
        .iter()
        .map(|r| {
            r["context"]["exec"]["filename"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    names.sort();
    let cats: Vec<&String> = names.iter().filter(|n| n.ends_with("cat")).collect();
    assert_eq!(cats.len(), 3, "{names:?}");
    assert_eq!(names.len(), 6, "{names:?}");
    for w in [
        f.agent_exe.display().to_string(),
        "/bin/true".into(),
        "/usr/bin/curl".into(),
    ] {
        assert!(names.contains(&w), "{w} not in {names:?}");
    }

    // The opens of the test file: the agent's lists of opens name each
    // cat's, and `--path` finds a listed path.
    let path = f.file.display().to_string();
    let of_file = rows(
        &db,
        &[
            "--action",
            "file.open",
            "--agent",
            "ctl-agent",
            "--path",
            &path,
        ],
    );
    let mut cat_pids = std::collections::HashSet::new();
    for r in &of_file {
        let o = &r["context"]["file_open"];
        let listed = o["paths"].as_array().unwrap();
        for e in listed.iter().filter(|e| e["path"] == path.as_str()) {
            assert!(cat_pids.insert(e["pid"].as_u64().unwrap()), "{e}");
        }
        let summary = r["summary"].as_str().unwrap();
        assert!(
            summary.starts_with(&format!("{} x", o["path"].as_str().unwrap()))
                && summary.ends_with(" more paths)"),
            "{summary}"
        );
    }
    assert_eq!(cat_pids.len(), 3, "one cat process per open");
    // `--pid` finds the list that names a cat's open.
    for pid in &cat_pids {
        let of_pid = rows(&db, &["--action", "file.open", "--pid", &pid.to_string()]);
        assert!(
            of_file.iter().any(|r| of_pid.contains(r)),
            "--pid {pid}: {of_pid:#?}"
        );
    }

    let connects = rows(&db, &["--action", "network.connect"]);
    assert_eq!(
        hashes(&connects),
        expected(&db, |r| r.payload["action_type"] == "network.connect")
    );
    assert!(!connects.is_empty());
    assert!(connects
        .iter()
        .all(|r| r["context"]["connect"]["remote_addr"] == "127.0.0.1"));

    // pid and executable come from the context, the payload, and the
    // entries of an agent's list of opens.
    let by_pid = rows(&db, &["--pid", &f.agent_pid.to_string()]);
    assert_eq!(
        hashes(&by_pid),
        expected(&db, |r| ctx_pid(r) == Some(f.agent_pid)
            || listed_opens(r)
                .iter()
                .any(|e| e["pid"].as_u64() == Some(f.agent_pid)))
    );
    assert!(by_pid.len() >= 2, "the agent's exec and exit at least");
    let exe = f.agent_exe.display().to_string();
    assert_eq!(
        hashes(&rows(&db, &["--exe", &exe])),
        expected(&db, |r| r
            .context
            .as_ref()
            .is_some_and(|c| c["process"]["exe"] == exe.as_str())
            || listed_opens(r).iter().any(|e| e["exe"] == exe.as_str()))
    );
    let exe_hash = sha256_file(&f.agent_exe);
    let by_hash = rows(&db, &["--exe", &exe_hash]);
    assert_eq!(
        hashes(&by_hash),
        expected(&db, |r| r.payload["executable_hash"] == exe_hash.as_str())
    );
    assert!(!by_hash.is_empty());
    assert_eq!(
        hashes(&rows(
            &db,
            &["--exe", exe_hash.trim_start_matches("sha256:")]
        )),
        hashes(&by_hash)
    );

    assert_eq!(
        hashes(&rows(&db, &["--risk", "low"])),
        expected(&db, |r| r.payload["risk_class"] == "low")
    );
    assert!(rows(&db, &["--risk", "high"]).is_empty());
    let chain = all
        .iter()
        .find(|r| r.payload["agent_id"] == "ctl-agent")
        .unwrap()
        .chain
        .clone();
    assert_eq!(hashes(&rows(&db, &["--chain", &chain])), agent);

    // --limit keeps the most recent, in order.
    let everything = expected(&db, |_| true);
    assert_eq!(
        hashes(&rows(&db, &["--limit", "3"])),
        everything[everything.len() - 3..].to_vec()
    );

    // Times: relative and RFC 3339, both bounds inclusive.
    assert_eq!(hashes(&rows(&db, &["--since", "1h"])), everything);
    assert!(rows(&db, &["--until", "1h"]).is_empty());
    let mut sorted = all.clone();
    sorted.sort_by_key(|r| (issued_ns(r), r.leaf));
    let mid = &sorted[sorted.len() / 2];
    let mid_at = mid.payload["issued_at"].as_str().unwrap();
    let mid_ns = issued_ns(mid);
    assert_eq!(
        hashes(&rows(&db, &["--since", mid_at])),
        expected(&db, |r| issued_ns(r) >= mid_ns)
    );
    assert_eq!(
        hashes(&rows(&db, &["--until", mid_at])),
        expected(&db, |r| issued_ns(r) <= mid_ns)
    );

    // The alias, JSON lines and the table.
    let jsonl = ctl(
        CtlTarget::Db(&db),
        &["events", "--jsonl", "--agent", "ctl-agent"],
    );
    assert_eq!(jsonl.code, 0);
    let lines: Vec<Value> = jsonl
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(hashes(&lines), agent);
    let table = ctl(
        CtlTarget::Db(&db),
        &[
            "receipts",
            "--agent",
            "ctl-agent",
            "--action",
            "process.exec",
        ],
    );
    assert_eq!(table.code, 0);
    let mut lines = table.stdout.lines();
    assert!(lines.next().unwrap().starts_with("ISSUED_AT"));
    assert_eq!(lines.count(), 6);
    assert!(!table.stdout.contains('\x1b'), "no colour when not a TTY");
}

#[test]
fn show_prints_context_and_verification() {
    let f = fixture();
    let db = f.db();
    let exec = stored_receipts(&db)
        .into_iter()
        .find(|r| {
            r.payload["action_type"] == "process.exec"
                && r.context.as_ref().unwrap()["exec"]["filename"] == "/bin/true"
        })
        .unwrap();
    let pk = f.pubkey();
    let pk = pk.to_str().unwrap();
    let r = ctl(
        CtlTarget::Db(&db),
        &["receipts", "show", &exec.hash, "--pubkey", pk, "--json"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = r.json();
    assert_eq!(v["receipt"]["receipt_hash"], exec.hash.as_str());
    assert_eq!(v["receipt"]["context"], exec.context.clone().unwrap());
    assert_eq!(v["verification"]["ok"], true, "{v:#}");
    let outcome = |name: &str| {
        v["verification"]["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == name)
            .unwrap_or_else(|| panic!("no {name} check"))["outcome"]
            .clone()
    };
    for check in [
        "key_authorised",
        "signature",
        "key_thumbprint",
        "action_ref",
        "payload_digest",
        "chain_link",
        "log_inclusion",
        "structure",
    ] {
        assert_eq!(outcome(check), "pass", "{check}");
    }
    // By chain position, as a table.
    let reference = format!("ctl-agent:{}", exec.seq);
    let t = ctl(
        CtlTarget::Db(&db),
        &["receipts", "show", &reference, "--pubkey", pk],
    );
    assert_eq!(t.code, 0, "{}", t.stderr);
    assert!(t.stdout.contains(&format!("receipt       {}", exec.hash)));
    assert!(t.stdout.contains("context:") && t.stdout.contains("\"filename\": \"/bin/true\""));
    assert!(t.stdout.contains("signature        pass"), "{}", t.stdout);
    assert!(t.stdout.contains("chain_link       pass"), "{}", t.stdout);
    assert!(t.stdout.contains("result: verified"));
    // Without a pinned key the authorisation is only as good as the store.
    let u = ctl(
        CtlTarget::Db(&db),
        &["receipts", "show", &reference, "--json"],
    )
    .json();
    assert_eq!(u["verification"]["ok"], false);
    let k = u["verification"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "key_authorised")
        .unwrap()
        .clone();
    assert_eq!(k["outcome"], "unverifiable");
    // A key from another master seed does not authorise this chain.
    let other = tempfile::tempdir().unwrap();
    let other_pk = other.path().join("other.jwk");
    let jwk = ChainKey::master_key(&MasterSeed::from_bytes([7; 32])).jwk();
    std::fs::write(&other_pk, jwk.to_string()).unwrap();
    let w = ctl(
        CtlTarget::Db(&db),
        &[
            "receipts",
            "show",
            &reference,
            "--json",
            "--pubkey",
            other_pk.to_str().unwrap(),
        ],
    )
    .json();
    assert_eq!(w["verification"]["ok"], false);
}
