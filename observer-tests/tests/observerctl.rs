//! `observerctl` end to end: a real daemon records a registered agent's
//! real execs, opens and connects; the real `observerctl` binary then
//! queries, shows, verifies, proves, packs, exports keys and erases, and
//! every answer is checked against the store itself.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]

use std::{
    net::TcpListener,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use base64::{engine::general_purpose::STANDARD, Engine as _};
use observer_daemon::receipt::{
    chain::{Draft, Identity},
    jcs,
    keys::{ChainKey, MasterSeed},
    payload::{self, Mappings, Mode, RiskClass},
    pipeline::{Pipeline, PipelineConfig},
    store::RunKind,
};
use observer_testkit::*;
use serde_json::{json, Value};
use sha2::Digest as _;

/// A store filled by a real daemon run, shared by the tests (read-only;
/// tests that change a store work on a copy).
struct Fixture {
    dir: tempfile::TempDir,
    agent_exe: PathBuf,
    file: PathBuf,
    agent_pid: u64,
}

impl Fixture {
    fn db(&self) -> PathBuf {
        self.dir.path().join("observer.db")
    }
    fn seed(&self) -> PathBuf {
        self.dir.path().join("master.seed")
    }
    /// The pinned master public key as a JWK file, derived from the seed.
    fn pubkey(&self) -> PathBuf {
        let path = self.dir.path().join("master.jwk");
        if !path.exists() {
            let seed = MasterSeed::load_existing(&self.seed()).unwrap();
            let jwk = ChainKey::master_key(&seed).jwk();
            std::fs::write(&path, jwk.to_string()).unwrap();
        }
        path
    }
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let agent_exe = copy_executable("/bin/sh", dir.path(), &unique("ctlagent"));
        let d = Daemon::start_in(
            StateDir::Shared(dir.path().to_owned()),
            &agent_config("ctl-agent", &agent_exe, ""),
        );
        let file = dir.path().join(format!("{}.txt", unique("f")));
        write_file(&file, "hello");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accept = std::thread::spawn(move || {
            let _ = listener.accept();
        });
        let script = format!(
            "/bin/true; for i in 1 2 3; do cat {f} >/dev/null; done; \
             /usr/bin/curl -s --max-time 2 http://127.0.0.1:{port}/ >/dev/null; exit 3",
            f = file.display()
        );
        let status = Command::new(&agent_exe)
            .args(["-c", &script])
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(3));
        accept.join().unwrap();
        let mut d = d;
        let path = agent_exe.display().to_string();
        let exec = d.wait_for(|r| is_event(r, "exec") && r["exec"]["filename"] == path.as_str());
        let agent_pid = exec["process"]["pid"].as_u64().unwrap();
        d.wait_for(|r| is_event(r, "exit") && r["process"]["pid"] == agent_pid);
        d.stop();
        Fixture {
            dir,
            agent_exe,
            file,
            agent_pid,
        }
    })
}

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

fn issued_ns(r: &StoredReceipt) -> u64 {
    humantime::parse_rfc3339(r.payload["issued_at"].as_str().unwrap())
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
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

fn copy_store(f: &Fixture) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in ["observer.db", "master.seed"] {
        std::fs::copy(f.dir.path().join(name), dir.path().join(name)).unwrap();
    }
    dir
}

#[test]
fn verify_passes_then_names_the_tampered_receipt() {
    let f = fixture();
    let ok = ctl(
        CtlTarget::Db(&f.db()),
        &["verify", "--master-seed", f.seed().to_str().unwrap()],
    );
    assert_eq!(ok.code, 0, "{}{}", ok.stdout, ok.stderr);
    assert!(ok.stdout.contains("verification passed"));
    let pk = f.pubkey();
    let j = ctl(
        CtlTarget::Db(&f.db()),
        &[
            "verify",
            "--json",
            "--independent",
            "--pubkey",
            pk.to_str().unwrap(),
        ],
    );
    assert_eq!(j.code, 0);
    let v = j.json();
    assert_eq!(v["ok"], true);
    assert_eq!(v["receipts"], stored_receipts(&f.db()).len());
    assert_eq!(v["verifiers"].as_array().unwrap().len(), 2);

    // One byte of one agent receipt's signature.
    let copy = copy_store(f);
    let db = copy.path().join("observer.db");
    let target = stored_receipts(&db)
        .into_iter()
        .filter(|r| r.payload["agent_id"] == "ctl-agent")
        .nth(3)
        .unwrap();
    let pos = target.envelope.find("\"sig\":\"").unwrap() + 100;
    let mut bytes = target.envelope.clone().into_bytes();
    bytes[pos] = if bytes[pos] == b'A' { b'B' } else { b'A' };
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute(
        "UPDATE receipts SET envelope_text = ?1, sig = NULL WHERE leaf_index = ?2",
        rusqlite::params![String::from_utf8(bytes).unwrap(), target.leaf as i64],
    )
    .unwrap();
    drop(c);
    let bad = ctl(
        CtlTarget::Db(&db),
        &["verify", "--json", "--pubkey", pk.to_str().unwrap()],
    );
    assert_eq!(bad.code, 1, "{}", bad.stdout);
    let v = bad.json();
    assert_eq!(v["ok"], false);
    let first = &v["first_failure"];
    assert_eq!(first["chain"], target.chain.as_str());
    assert_eq!(first["seq"], target.seq);
    assert_eq!(first["leaf_index"], target.leaf);
    // The stored receipt hash no longer matches, nor does the signature.
    assert_eq!(first["check"], "receipt_hash");
    let checks_at_target: Vec<&str> = v["failures"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["leaf_index"] == target.leaf)
        .map(|x| x["check"].as_str().unwrap())
        .collect();
    assert!(
        checks_at_target.contains(&"signature"),
        "{checks_at_target:?}"
    );
    let text = ctl(
        CtlTarget::Db(&db),
        &["verify", "--pubkey", pk.to_str().unwrap()],
    );
    assert_eq!(text.code, 1);
    assert!(
        text.stdout.contains(&format!(
            "first failure: chain {} seq {} receipt",
            target.chain, target.seq
        )),
        "{}",
        text.stdout
    );
    // Scoped to another chain, the receipt failure is out of scope but the
    // log-wide root mismatch it causes is not.
    let observer_chain = stored_receipts(&db)
        .into_iter()
        .find(|r| r.payload["agent_id"] == "observer")
        .unwrap()
        .chain;
    let scoped = ctl(
        CtlTarget::Db(&db),
        &[
            "verify",
            "--json",
            "--chain",
            &observer_chain,
            "--pubkey",
            pk.to_str().unwrap(),
        ],
    );
    assert_eq!(scoped.code, 1);
    assert_eq!(scoped.json()["first_failure"]["check"], "log_root");
}

fn flip(text: &[u8], pos: usize) -> Vec<u8> {
    let mut b = text.to_vec();
    b[pos] = match b[pos] {
        b'A' => b'B',
        b'0' => b'1',
        b'1' => b'2',
        c if c.is_ascii_lowercase() => {
            if c == b'z' {
                b'y'
            } else {
                c + 1
            }
        }
        c if c.is_ascii_uppercase() => {
            if c == b'Z' {
                b'Y'
            } else {
                c + 1
            }
        }
        c if c.is_ascii_digit() => {
            if c == b'9' {
                b'8'
            } else {
                c + 1
            }
        }
        _ => b'x',
    };
    b
}

#[test]
fn proof_verifies_offline_with_only_the_public_key() {
    let f = fixture();
    let pk = f.pubkey();
    let pk = pk.to_str().unwrap();
    let out = tempfile::tempdir().unwrap();
    let rs = stored_receipts(&f.db());
    let agent_receipt = rs
        .iter()
        .find(|r| r.payload["agent_id"] == "ctl-agent")
        .unwrap();
    let observer_receipt = rs
        .iter()
        .find(|r| r.payload["agent_id"] == "observer")
        .unwrap();
    let nowhere = Path::new("/nonexistent/observer.db");
    for r in [agent_receipt, observer_receipt] {
        let file = out.path().join(format!("{}.proof", r.hash));
        let p = ctl(
            CtlTarget::Db(&f.db()),
            &["proof", &r.hash, "--out", file.to_str().unwrap()],
        );
        assert_eq!(p.code, 0, "{}", p.stderr);
        let text = std::fs::read(&file).unwrap();
        assert!(text.starts_with(b"c2sp.org/tlog-proof@v1\nextra "));
        assert!(String::from_utf8_lossy(&text).contains(&format!("\nindex {}\n", r.leaf)));
        // Offline: no store at all.
        let v = ctl(
            CtlTarget::Db(nowhere),
            &[
                "verify-proof",
                file.to_str().unwrap(),
                "--pubkey",
                pk,
                "--json",
            ],
        );
        assert_eq!(v.code, 0, "{}", v.stdout);
        let j = v.json();
        assert_eq!(j["receipt"]["receipt_hash"], r.hash.as_str());
        assert_eq!(j["receipt"]["seq"], r.seq);
        let t = ctl(
            CtlTarget::Db(nowhere),
            &["verify-proof", file.to_str().unwrap(), "--pubkey", pk],
        );
        assert_eq!(t.code, 0);
        assert!(t.stdout.contains("proof verified"));
        // One byte changed anywhere that matters: header, extra (the
        // receipt), index, a proof hash, the checkpoint and its signature.
        let s = String::from_utf8(text.clone()).unwrap();
        let extra_at = s.find("extra ").unwrap() + 6;
        let blank = s.find("\n\n").unwrap();
        let sig_at = s.rfind('\u{2014}').unwrap() + 40;
        let root_at = blank + 2 + s[blank + 2..].find('\n').unwrap() + 1;
        let root_at = root_at + s[root_at..].find('\n').unwrap() + 5;
        let index_at = s.find("\nindex ").unwrap() + 7;
        let hash_line = s[index_at..].find('\n').unwrap() + index_at + 3;
        for (what, pos) in [
            ("header", 3),
            ("extra start", extra_at + 10),
            (
                "extra middle",
                extra_at + (s[extra_at..].find('\n').unwrap() / 2),
            ),
            ("index", index_at),
            ("proof hash", hash_line),
            ("checkpoint root", root_at),
            ("checkpoint signature", sig_at),
        ] {
            let bad = out.path().join("bad.proof");
            std::fs::write(&bad, flip(&text, pos)).unwrap();
            let v = ctl(
                CtlTarget::Db(nowhere),
                &[
                    "verify-proof",
                    bad.to_str().unwrap(),
                    "--pubkey",
                    pk,
                    "--json",
                ],
            );
            assert_eq!(v.code, 1, "{what} changed at {pos}: {}", v.stdout);
            assert_eq!(v.json()["ok"], false);
        }
    }
    // Another master key refuses it.
    let other = out.path().join("other.jwk");
    let jwk = ChainKey::master_key(&MasterSeed::from_bytes([9; 32])).jwk();
    std::fs::write(&other, jwk.to_string()).unwrap();
    let file = out.path().join(format!("{}.proof", agent_receipt.hash));
    let v = ctl(
        CtlTarget::Db(nowhere),
        &[
            "verify-proof",
            file.to_str().unwrap(),
            "--pubkey",
            other.to_str().unwrap(),
        ],
    );
    assert_eq!(v.code, 1);
}

#[test]
fn audit_pack_exports_and_verifies_offline() {
    let f = fixture();
    let pk = f.pubkey();
    let pk = pk.to_str().unwrap();
    let db = f.db();
    let rs = stored_receipts(&db);
    let mut by_time = rs.clone();
    by_time.sort_by_key(|r| (issued_ns(r), r.leaf));
    // The window: from the agent's first receipt to the end.
    let first_agent = by_time
        .iter()
        .find(|r| r.payload["agent_id"] == "ctl-agent")
        .unwrap();
    let start = first_agent.payload["issued_at"]
        .as_str()
        .unwrap()
        .to_string();
    let out = tempfile::tempdir().unwrap();
    let bundle = out.path().join("bundle.json");
    let e = ctl(
        CtlTarget::Db(&db),
        &[
            "audit-pack",
            "export",
            "--start",
            &start,
            "--end",
            "0s",
            "--out",
            bundle.to_str().unwrap(),
            "--master-seed",
            f.seed().to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(e.code, 0, "{}{}", e.stdout, e.stderr);
    let start_ns = issued_ns(first_agent);
    let in_window: Vec<&StoredReceipt> = rs.iter().filter(|r| issued_ns(r) >= start_ns).collect();
    let pack: Value = serde_json::from_slice(&std::fs::read(&bundle).unwrap()).unwrap();
    let packed: Vec<String> = pack["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["receipt_hash"].as_str().unwrap().to_string())
        .collect();
    for r in &in_window {
        assert!(packed.contains(&r.hash), "{} missing", r.hash);
    }
    assert_eq!(e.json()["receipts"], packed.len());
    assert_eq!(pack["manifest"]["capture_topology"], "passive_telemetry");
    assert!(pack["manifest"]["bundle_digest"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    // Every agent-chain receipt is in it, so the agent chain's heads are
    // genesis and the stored head.
    let agent_receipts: Vec<&StoredReceipt> = rs
        .iter()
        .filter(|r| r.payload["agent_id"] == "ctl-agent")
        .collect();
    let chain = &agent_receipts[0].chain;
    let start_head = pack["chain_heads"]["start"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["issuer_id"] == chain.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        start_head,
        json!({"issuer_id": chain, "seq": 0, "payload_hash": payload::GENESIS_HASH})
    );
    let end_head = pack["chain_heads"]["end"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["issuer_id"] == chain.as_str())
        .unwrap()
        .clone();
    assert_eq!(end_head["seq"], agent_receipts.len());
    // Offline, with only the public key.
    let nowhere = Path::new("/nonexistent/observer.db");
    let v = ctl(
        CtlTarget::Db(nowhere),
        &[
            "audit-pack",
            "verify",
            bundle.to_str().unwrap(),
            "--pubkey",
            pk,
            "--json",
        ],
    );
    assert_eq!(v.code, 0, "{}", v.stdout);
    assert_eq!(v.json()["receipts"], packed.len());
    let t = ctl(
        CtlTarget::Db(nowhere),
        &[
            "audit-pack",
            "verify",
            bundle.to_str().unwrap(),
            "--pubkey",
            pk,
        ],
    );
    assert_eq!(t.code, 0);
    assert!(t.stdout.contains("audit pack verified"));
    // One byte changed: in a receipt's context, its seq, its signature, a
    // proof, a checkpoint, the manifest.
    let bytes = std::fs::read(&bundle).unwrap();
    let s = String::from_utf8(bytes.clone()).unwrap();
    let path = f.file.display().to_string();
    let at =
        |needle: &str, skip: usize| s.find(needle).unwrap_or_else(|| panic!("{needle}")) + skip;
    for (what, pos) in [
        ("context", at(&path, 5)),
        ("seq", at("\"seq\":", 6)),
        ("signature", at("\"sig\":\"", 200)),
        ("inclusion proof", at("\"inclusion_proof\":[\"", 25)),
        ("checkpoint", at("\"checkpoints\":[\"", 30)),
        ("manifest", at("\"receipt_count\":", 16)),
        ("start", at("\"start\":\"", 12)),
    ] {
        let bad = out.path().join("bad.json");
        std::fs::write(&bad, flip(&bytes, pos)).unwrap();
        let v = ctl(
            CtlTarget::Db(nowhere),
            &[
                "audit-pack",
                "verify",
                bad.to_str().unwrap(),
                "--pubkey",
                pk,
                "--json",
            ],
        );
        assert_eq!(v.code, 1, "{what} changed at {pos}: {}", v.stdout);
        assert_eq!(v.json()["ok"], false, "{what}");
    }
    // Re-signed by the real master key, a pack still fails when a receipt
    // is missing from its chain or a context does not match its digest:
    // the signature vouches for the pack, not for the receipts.
    let seed = MasterSeed::load_existing(&f.seed()).unwrap();
    let master = ChainKey::master_key(&seed);
    let resign = |mut pack: Value| -> PathBuf {
        let m = pack["manifest"].as_object_mut().unwrap();
        m.remove("bundle_digest");
        m.remove("bundle_signature");
        let p = jcs::canonicalize(&pack).unwrap();
        let sig = observer_daemon::receipt::mldsa::Signer::sign(&master, &p).unwrap();
        pack["manifest"]["bundle_digest"] =
            json!(format!("sha256:{}", hex::encode(sha2::Sha256::digest(&p))));
        pack["manifest"]["bundle_signature"] = json!(STANDARD.encode(sig));
        let file = out.path().join(format!("{}.json", unique("resigned")));
        std::fs::write(&file, jcs::canonicalize(&pack).unwrap()).unwrap();
        file
    };
    let as_is = resign(pack.clone());
    let v = ctl(
        CtlTarget::Db(nowhere),
        &[
            "audit-pack",
            "verify",
            as_is.to_str().unwrap(),
            "--pubkey",
            pk,
        ],
    );
    assert_eq!(v.code, 0, "re-signing alone changes nothing: {}", v.stdout);
    let agent_at = |pack: &Value, seq: u64| {
        pack["receipts"]
            .as_array()
            .unwrap()
            .iter()
            .position(|r| {
                r["envelope"]["payload"]["agent_id"] == "ctl-agent"
                    && r["envelope"]["payload"]["seq"] == seq
            })
            .unwrap()
    };
    let mut gap = pack.clone();
    let i = agent_at(&gap, 3);
    gap["receipts"].as_array_mut().unwrap().remove(i);
    let v = ctl(
        CtlTarget::Db(nowhere),
        &[
            "audit-pack",
            "verify",
            resign(gap).to_str().unwrap(),
            "--pubkey",
            pk,
            "--json",
        ],
    );
    assert_eq!(v.code, 1);
    let first = v.json()["first_failure"].clone();
    assert_eq!(first["check"], "chain_link", "{first}");
    assert_eq!(first["chain"], chain.as_str());
    assert_eq!(first["seq"], 4);
    let mut ctx = pack.clone();
    let i = agent_at(&ctx, 2);
    ctx["receipts"][i]["context"]["process"]["pid"] = json!(1);
    let target_hash = ctx["receipts"][i]["receipt_hash"].clone();
    let v = ctl(
        CtlTarget::Db(nowhere),
        &[
            "audit-pack",
            "verify",
            resign(ctx).to_str().unwrap(),
            "--pubkey",
            pk,
            "--json",
        ],
    );
    assert_eq!(v.code, 1);
    let first = v.json()["first_failure"].clone();
    assert_eq!(first["check"], "payload_digest", "{first}");
    assert_eq!(first["receipt_hash"], target_hash);
    assert_eq!(first["seq"], 2);

    // Another master key refuses it.
    let other = out.path().join("other.jwk");
    let jwk = ChainKey::master_key(&MasterSeed::from_bytes([3; 32])).jwk();
    std::fs::write(&other, jwk.to_string()).unwrap();
    let v = ctl(
        CtlTarget::Db(nowhere),
        &[
            "audit-pack",
            "verify",
            bundle.to_str().unwrap(),
            "--pubkey",
            other.to_str().unwrap(),
        ],
    );
    assert_eq!(v.code, 1);
}

#[test]
fn keys_and_agents_match_the_store() {
    let f = fixture();
    let db = f.db();
    let c = rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    let stored: Vec<Value> = c
        .prepare("SELECT jwk FROM keys ORDER BY rowid")
        .unwrap()
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|j| serde_json::from_str(&j.unwrap()).unwrap())
        .collect();
    assert_eq!(stored.len(), 2, "the observer chain and the agent chain");
    let jwks = ctl(CtlTarget::Db(&db), &["keys", "export"]);
    assert_eq!(jwks.code, 0);
    assert_eq!(jwks.json(), json!({ "keys": stored }));
    let master = ctl(CtlTarget::Db(&db), &["keys", "export", "--master"]);
    let seed = MasterSeed::load_existing(&f.seed()).unwrap();
    assert_eq!(master.json(), ChainKey::master_key(&seed).jwk());
    let show = ctl(CtlTarget::Db(&db), &["keys", "show", "--json"]).json();
    assert_eq!(show["keys"].as_array().unwrap().len(), 2);

    let agents = ctl(CtlTarget::Db(&db), &["agents", "--json"]).json();
    let rs = stored_receipts(&db);
    let list = agents["agents"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    for a in list {
        let of: Vec<&StoredReceipt> = rs
            .iter()
            .filter(|r| r.chain == a["issuer_id"].as_str().unwrap())
            .collect();
        assert_eq!(a["receipts"], of.len());
        let last = of.iter().max_by_key(|r| r.seq).unwrap();
        assert_eq!(a["head"]["seq"], last.seq);
        assert_eq!(a["head"]["receipt_hash"], last.hash.as_str());
        assert_eq!(a["kid"], last.payload["key_thumbprint"]);
        let first_ns = of.iter().map(|r| issued_ns(r)).min().unwrap();
        assert_eq!(a["first_seen"], payload::issued_at(first_ns));
    }
    let table = ctl(CtlTarget::Db(&db), &["agents"]);
    assert!(table.stdout.lines().next().unwrap().starts_with("AGENT"));
    assert!(table.stdout.contains("ctl-agent"));
}

#[test]
fn erase_is_recorded_and_keeps_verify_green() {
    let f = fixture();
    let copy = copy_store(f);
    let db = copy.path().join("observer.db");
    let seed = copy.path().join("master.seed");
    let target = stored_receipts(&db)
        .into_iter()
        .find(|r| r.payload["action_type"] == "file.open")
        .unwrap();
    // While the daemon runs on this store it holds the writer lock.
    let exe = copy_executable("/bin/sh", copy.path(), &unique("erase-agent"));
    let d = Daemon::start_in(
        StateDir::Shared(copy.path().to_owned()),
        &agent_config("ctl-agent", &exe, ""),
    );
    let refused = ctl(
        CtlTarget::Db(&db),
        &[
            "erase",
            &target.hash,
            "--master-seed",
            seed.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(refused.code, 3, "{}", refused.stdout);
    let err = refused.json();
    assert_eq!(err["error"]["kind"], "daemon");
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("daemon holds the receipt store"));
    d.stop();

    let r = ctl(
        CtlTarget::Db(&db),
        &[
            "erase",
            &target.hash,
            "--master-seed",
            seed.to_str().unwrap(),
            "--reason",
            "subject request",
            "--json",
        ],
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let v = r.json();
    assert_eq!(v["erased"], target.hash.as_str());
    let after = stored_receipts(&db);
    let erasure = after
        .iter()
        .find(|x| x.hash == v["erasure_receipt"].as_str().unwrap())
        .unwrap();
    assert_eq!(erasure.payload["action_type"], "observer.policy");
    assert_eq!(
        erasure.context.as_ref().unwrap()["erase"],
        target.hash.as_str()
    );
    assert_eq!(
        erasure.context.as_ref().unwrap()["reason"],
        "subject request"
    );
    let erased = after.iter().find(|x| x.hash == target.hash).unwrap();
    assert_eq!(
        erased.context,
        Some(json!({"erased": true, "by": erasure.hash}))
    );
    let ok = ctl(
        CtlTarget::Db(&db),
        &["verify", "--json", "--master-seed", seed.to_str().unwrap()],
    );
    assert_eq!(ok.code, 0, "{}", ok.stdout);
    assert_eq!(ok.json()["erased_contexts"], 1);
    let show = ctl(
        CtlTarget::Db(&db),
        &["receipts", "show", &target.hash, "--json"],
    )
    .json();
    assert_eq!(show["receipt"]["summary"], "(context erased)");
    // Twice is refused: nothing left to erase.
    let again = ctl(
        CtlTarget::Db(&db),
        &[
            "erase",
            &target.hash,
            "--master-seed",
            seed.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(again.code, 2);
}

#[test]
fn errors_are_json_objects_with_exit_codes() {
    let f = fixture();
    let missing = ctl(
        CtlTarget::Db(Path::new("/nonexistent/dir/observer.db")),
        &["receipts", "--json"],
    );
    assert_eq!(missing.code, 4);
    let e = missing.json();
    assert_eq!(e["error"]["kind"], "store_unreadable");
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("/nonexistent/dir/observer.db"));
    assert_eq!(e.as_object().unwrap().len(), 1);

    let bad_since = ctl(
        CtlTarget::Db(&f.db()),
        &["receipts", "--json", "--since", "the day before"],
    );
    assert_eq!(bad_since.code, 2);
    let e = bad_since.json();
    assert_eq!(e["error"]["kind"], "usage");
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("--since \"the day before\""));

    let bad_flag = ctl(CtlTarget::Db(&f.db()), &["receipts", "--json", "--colour"]);
    assert_eq!(bad_flag.code, 2);
    assert_eq!(bad_flag.json()["error"]["kind"], "usage");
    let human = ctl(
        CtlTarget::Db(&f.db()),
        &["receipts", "--since", "the day before"],
    );
    assert_eq!(human.code, 2);
    assert!(
        human.stderr.starts_with("observerctl: --since"),
        "{}",
        human.stderr
    );
    assert!(human.stdout.is_empty());

    let not_there = ctl(
        CtlTarget::Db(&f.db()),
        &["receipts", "show", &"ab".repeat(32), "--json"],
    );
    assert_eq!(not_there.code, 2);
    assert!(not_there.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not in the store"));

    let not_a_store = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(not_a_store.path(), b"not sqlite at all, just text").unwrap();
    let r = ctl(CtlTarget::Db(not_a_store.path()), &["agents", "--json"]);
    assert_eq!(r.code, 4);
    assert_eq!(r.json()["error"]["kind"], "store_unreadable");
}

#[test]
fn an_unprivileged_user_cannot_read_the_store() {
    let f = fixture();
    // A world-traversable directory: only the store's own 0600 mode stops
    // the reader.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let db = dir.path().join("observer.db");
    std::fs::copy(f.db(), &db).unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o600)).unwrap();
    let bin = copy_executable(observerctl(), dir.path(), "observerctl");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(&bin)
        .arg("--db")
        .arg(&db)
        .args(["receipts", "--json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "store_unreadable");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("Permission denied") && msg.contains("run as root"),
        "{msg}"
    );
    // And root can.
    assert_eq!(ctl(CtlTarget::Db(&db), &["agents", "--json"]).code, 0);
}

fn identity() -> Identity {
    Identity {
        deployer_id: "did:web:example.invalid".into(),
        hostname: "ctl-test-host".into(),
        mode: Mode::Payload,
        observer_executable_hash: sha256_file(Path::new(observerd())),
    }
}

#[test]
fn shadow_groups_findings() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("observer.db");
    let (seed, _) = MasterSeed::load_or_create(&dir.path().join("master.seed")).unwrap();
    let cfg = PipelineConfig {
        store: db.clone(),
        signing_threads: 1,
        queue_capacity: 16,
        checkpoint_interval: std::time::Duration::from_secs(1),
        batch_max: 16,
        waiting_for_room: None,
    };
    let base = 1_795_370_400_000_000_000u64;
    let (mut p, _) = Pipeline::start(
        &cfg,
        identity(),
        seed,
        RunKind::Maintenance,
        &payload::issued_at(base),
    )
    .unwrap();
    let hash_a = format!("sha256:{}", "a".repeat(64));
    let hash_b = format!("sha256:{}", "b".repeat(64));
    let finding = |i: u64, exe: &str, hash: &str, user: &str, rule: &str, risk: RiskClass| Draft {
        agent_id: format!("unregistered:{}", &hash[7..19]),
        action_type: "shadow_ai.finding",
        unix_ns: base + i * 1_000_000_000,
        context: json!({"exe": exe, "user": user, "indicator": "api.openai.com", "rule": rule}),
        risk_class: risk,
        executable_hash: hash.to_string(),
        mappings: Mappings::default(),
        detection_rules_digest: Some(format!("sha256:{}", "c".repeat(64))),
        erases: None,
        prunes: None,
    };
    for d in [
        finding(
            0,
            "/usr/bin/python3",
            &hash_a,
            "alice",
            "llm-api-call",
            RiskClass::Medium,
        ),
        finding(
            1,
            "/usr/bin/python3",
            &hash_a,
            "alice",
            "llm-api-call",
            RiskClass::High,
        ),
        finding(
            2,
            "/usr/bin/node",
            &hash_b,
            "bob",
            "llm-api-call",
            RiskClass::Low,
        ),
        finding(
            3,
            "/usr/bin/python3",
            &hash_a,
            "alice",
            "llm-api-call",
            RiskClass::Low,
        ),
        // An ordinary observation is no finding.
        Draft {
            action_type: "process.exec",
            ..finding(4, "/usr/bin/python3", &hash_a, "alice", "x", RiskClass::Low)
        },
    ] {
        p.submit(d).unwrap();
    }
    p.finish(&payload::issued_at(base + 10_000_000_000))
        .unwrap();
    let v = ctl(CtlTarget::Db(&db), &["shadow", "--json"]);
    assert_eq!(v.code, 0, "{}", v.stderr);
    let groups = v.json()["findings"].as_array().unwrap().clone();
    assert_eq!(groups.len(), 2, "{groups:#?}");
    assert_eq!(
        groups[0],
        json!({
            "agent_id": format!("unregistered:{}", "a".repeat(12)),
            "executable_hash": hash_a,
            "executable": "/usr/bin/python3",
            "user": "alice",
            "indicator": "api.openai.com",
            "rule": "llm-api-call",
            "count": 3,
            "first_seen": payload::issued_at(base),
            "last_seen": payload::issued_at(base + 3_000_000_000),
            "max_risk": "high",
        })
    );
    assert_eq!(groups[1]["count"], 1);
    assert_eq!(groups[1]["user"], "bob");
    assert_eq!(groups[1]["max_risk"], "low");
    // The window applies.
    let since = payload::issued_at(base + 1_500_000_000);
    let w = ctl(CtlTarget::Db(&db), &["shadow", "--json", "--since", &since]).json();
    let w = w["findings"].as_array().unwrap();
    assert_eq!(w.len(), 2);
    assert_eq!(w[0]["count"], 1);
    assert_eq!(w[1]["count"], 1);
    let table = ctl(CtlTarget::Db(&db), &["shadow"]);
    assert!(table.stdout.starts_with("COUNT"));
    assert!(table.stdout.contains("llm-api-call"));
}

#[test]
fn tail_follow_shows_new_receipts_as_they_are_committed() {
    let dir = tempfile::tempdir().unwrap();
    let agent_exe = copy_executable("/bin/sh", dir.path(), &unique("tailagent"));
    let mut d = Daemon::start_in(
        StateDir::Shared(dir.path().to_owned()),
        &agent_config("tail-agent", &agent_exe, ""),
    );
    let db = dir.path().join("observer.db");
    let mut child = ChildGuard(
        Command::new(observerctl())
            .arg("--db")
            .arg(&db)
            .arg("--socket")
            .arg(d.socket())
            .args([
                "tail",
                "-f",
                "--jsonl",
                "--agent",
                "tail-agent",
                "--action",
                "process.exec",
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(serde_json::from_str(&line).unwrap()).is_err() {
                return;
            }
        }
    });
    // Nothing of this agent yet: tail prints nothing until it acts.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(rx.try_recv().is_err());
    let marker = unique("marker");
    let status = Command::new(&agent_exe)
        .args(["-c", &format!("/bin/echo {marker} >/dev/null")])
        .status()
        .unwrap();
    assert!(status.success());
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + WAIT;
    let echo = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let row = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no exec of /bin/echo from tail -f; saw {seen:#?}"));
        if row["context"]["exec"]["filename"] == "/bin/echo" {
            break row;
        }
        seen.push(row);
    };
    assert_eq!(echo["agent_id"], "tail-agent");
    assert_eq!(echo["action_type"], "process.exec");
    assert_eq!(
        echo["context"]["exec"]["argv"],
        json!(["/bin/echo", marker])
    );
    // The agent's own exec came first, in commit order.
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!(
        seen[0]["context"]["exec"]["filename"],
        agent_exe.display().to_string().as_str()
    );
    let pid = echo["pid"].as_u64().unwrap();
    d.wait_for(|r| is_event(r, "exit") && r["process"]["pid"] == pid);
    // What tail printed is what the store holds.
    let stored = stored_receipts(&db);
    let s = stored
        .iter()
        .find(|r| r.hash == echo["receipt_hash"].as_str().unwrap())
        .unwrap();
    assert_eq!(echo["envelope"]["payload"], s.payload);
    drop(child);
    d.stop();
}
