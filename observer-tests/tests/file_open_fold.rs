//! File-open folding end to end: a registered agent (a copy of sh) runs a
//! `cat` of 20 files, then reads an SSH private key and a model file, under
//! the built-in policies. The agent's opens, the cat's among them, are one
//! `file.open` receipt listing every open with the event's exact fields and
//! the process that made it; the key's open is its
//! own receipt, and the finding it fires names exactly that receipt; the
//! model file's open is its own receipt too; every open of the run's
//! `--events-jsonl` output is counted in exactly one receipt's context.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]

use std::{
    collections::{BTreeMap, HashMap},
    process::Command,
    time::{Duration, Instant},
};

use observer_testkit::*;
use serde_json::{json, Value};

const AGENT: &str = "open-fold-agent";

#[test]
fn an_agent_s_opens_are_one_receipt_and_a_secret_keeps_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let agent = copy_executable("/bin/sh", dir.path(), &unique("agent"));
    let work = dir.path().join("work");
    std::fs::create_dir_all(work.join(".ssh")).unwrap();
    let files: Vec<String> = (1..=20)
        .map(|i| {
            let f = work.join(format!("f{i:02}.txt"));
            write_file(&f, "x");
            f.display().to_string()
        })
        .collect();
    // Matched by the built-in secret_files (`/.ssh/id_ed25519`) and
    // model_files (`.safetensors`) lists.
    let key = work.join(".ssh/id_ed25519");
    let model = work.join("tiny.safetensors");
    write_file(&key, "key");
    write_file(&model, "weights");
    let (key, model) = (key.display().to_string(), model.display().to_string());

    let config = format!(
        "builtin_policies = true\n{}",
        agent_config(AGENT, &agent, "")
    );
    let d = Daemon::start_in(StateDir::Shared(dir.path().to_owned()), &config);
    // A clean environment: cargo's LD_LIBRARY_PATH sends the dynamic
    // loader through dozens of directories, each miss an open of the
    // agent's list, which would fill it (256 entries) before the cat.
    let status = Command::new(&agent)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .arg("-c")
        .arg(format!(
            "cat {} > /dev/null; cat {key} > /dev/null; cat {model} > /dev/null",
            files.join(" ")
        ))
        .status()
        .expect("run agent");
    assert!(status.success());
    let opened = |records: &[Value], path: &str| {
        records.iter().any(|r| {
            is_event(r, "file_open")
                && r["process"]["agent"] == AGENT
                && r["file_open"]["path"] == path
        })
    };
    let start = Instant::now();
    while !opened(&d.records(), &model) {
        assert!(start.elapsed() < WAIT, "the model file's open was not seen");
        std::thread::sleep(Duration::from_millis(50));
    }
    let db = d.store();
    let seed = d.master_seed();
    let records = d.stop();

    let opens: Vec<&Value> = records
        .iter()
        .filter(|r| is_event(r, "file_open") && r["process"]["agent"] == AGENT)
        .collect();
    let receipts: Vec<StoredReceipt> = stored_receipts_of(&db, "file.open")
        .into_iter()
        .filter(|r| r.payload["agent_id"] == AGENT)
        .collect();
    let ctx = |r: &StoredReceipt| r.context.clone().expect("context kept");
    let listing = |path: &str| -> Vec<StoredReceipt> {
        receipts
            .iter()
            .filter(|r| {
                ctx(r)["file_open"]["paths"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|e| e["path"] == path)
            })
            .cloned()
            .collect()
    };

    // The cat of the 20 files: one receipt lists them all, each with the
    // fields of its event in the events output.
    let cat = listing(&files[0]);
    assert_eq!(cat.len(), 1, "one receipt lists the cat's opens");
    let cat_ctx = ctx(&cat[0]);
    let cat_pid = &opens
        .iter()
        .find(|r| r["file_open"]["path"] == files[0].as_str())
        .expect("the cat's open is an event")["process"]["pid"];
    let entries = cat_ctx["file_open"]["paths"].as_array().unwrap().clone();
    for f in &files {
        assert_eq!(listing(f).len(), 1, "{f} is listed once");
        let ev = opens
            .iter()
            .find(|r| r["file_open"]["path"] == f.as_str() && r["process"]["pid"] == *cat_pid)
            .unwrap_or_else(|| panic!("no event of the open of {f}"));
        let mut want = ev["file_open"].clone();
        for member in ["time", "cpu", "seq"] {
            want[member] = ev[member].clone();
        }
        // An agent's list names each entry's process.
        want["pid"] = ev["process"]["pid"].clone();
        want["exe"] = ev["process"]["exe"].clone();
        assert!(want["exe"].as_str().unwrap().ends_with("/cat"), "{want}");
        want["count"] = json!(1);
        want["last_time"] = ev["time"].clone();
        let entry = entries.iter().find(|e| e["path"] == f.as_str()).unwrap();
        assert_eq!(*entry, want);
        assert!(entry["result"].as_i64().unwrap() >= 0);
        assert!(
            entry["flags_text"]
                .as_str()
                .unwrap()
                .starts_with("O_RDONLY"),
            "{entry}"
        );
    }
    // The top level is the first open's, as a receipt of one path was.
    let first = &entries[0];
    assert_eq!(cat_ctx["file_open"]["path"], first["path"]);
    assert_eq!(cat_ctx["file_open"]["count"], first["count"]);
    assert_eq!(cat_ctx["seq"], first["seq"]);
    assert!(cat_ctx["file_open"].get("paths_full").is_none());

    // Sensitive paths are listed nowhere: each has a receipt of its own.
    assert!(listing(&key).is_empty() && listing(&model).is_empty());
    let alone = |path: &str| -> Vec<StoredReceipt> {
        receipts
            .iter()
            .filter(|r| ctx(r)["file_open"]["path"] == path)
            .cloned()
            .collect()
    };
    let (key_receipts, model_receipts) = (alone(&key), alone(&model));
    assert_eq!(key_receipts.len(), 1);
    assert_eq!(model_receipts.len(), 1);
    for r in [&key_receipts[0], &model_receipts[0]] {
        assert!(
            ctx(r)["file_open"].get("paths").is_none(),
            "{:?}",
            r.context
        );
    }
    // A registered agent's model file fires no rule; it waited for its
    // window as a folded path always did.
    assert_eq!(ctx(&model_receipts[0])["file_open"]["count"], 1);
    // The key fired agent-reads-other-secrets: its evidence is exactly the
    // key's receipt (issued at once, so never folded).
    let findings: Vec<Value> = stored_receipts_of(&db, "shadow_ai.finding")
        .into_iter()
        .filter(|r| r.payload["agent_id"] == AGENT)
        .map(|r| r.context.unwrap())
        .collect();
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_eq!(findings[0]["rule_id"], "agent-reads-other-secrets");
    let evidence = &findings[0]["evidence"];
    assert_eq!(evidence.as_array().unwrap().len(), 1);
    assert_eq!(evidence[0]["leaf_index"], key_receipts[0].leaf);
    assert_eq!(evidence[0]["seq"], key_receipts[0].seq);
    assert_eq!(evidence[0]["action_type"], "file.open");

    // No fact lost: every open of the agent's processes in the events
    // output is counted in exactly one receipt, and each listed entry's
    // first open is one of them.
    let mut in_events: BTreeMap<OpenKey, u64> = BTreeMap::new();
    let mut by_seq: HashMap<(u64, u64), &Value> = HashMap::new();
    for ev in &opens {
        *in_events
            .entry(open_key(&ev["process"]["pid"], &ev["file_open"]))
            .or_default() += 1;
        by_seq.insert(
            (ev["cpu"].as_u64().unwrap(), ev["seq"].as_u64().unwrap()),
            ev,
        );
    }
    let mut in_receipts: BTreeMap<OpenKey, u64> = BTreeMap::new();
    for r in &receipts {
        let c = ctx(r);
        let pid = &c["process"]["pid"];
        match c["file_open"]["paths"].as_array() {
            Some(list) => {
                for e in list {
                    assert!(e["pid"].is_u64(), "an agent's list names the process: {e}");
                    *in_receipts.entry(open_key(&e["pid"], e)).or_default() +=
                        e["count"].as_u64().unwrap();
                    let at = (e["cpu"].as_u64().unwrap(), e["seq"].as_u64().unwrap());
                    let ev = by_seq.get(&at).expect("a listed open is an event");
                    assert_eq!(ev["file_open"]["path"], e["path"]);
                }
            }
            // A receipt of one path: the evidence of a finding (no count)
            // or a sensitive path's own (its count of opens).
            None => {
                *in_receipts
                    .entry(open_key(pid, &c["file_open"]))
                    .or_default() += c["file_open"]["count"].as_u64().unwrap_or(1);
            }
        }
    }
    assert_eq!(in_receipts, in_events);
    eprintln!(
        "agent opens in the events output: {}, file.open receipts: {}",
        opens.len(),
        receipts.len()
    );

    // observerctl: --path finds a path a receipt lists, not only its
    // first, and the summary says how many more paths it lists.
    let found = receipt_summaries(&db, &["--path", &files[6]]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, cat[0].hash);
    let more = entries
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .filter(|p| *p != first["path"])
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    assert_eq!(
        found[0].1,
        format!(
            "{} x{} (+{more} more paths)",
            first["path"].as_str().unwrap(),
            first["count"]
        )
    );

    // What folding did and how it was configured are on record.
    let stop = ctx(&stored_receipts_of(&db, "observer.stop")[0]);
    let listed_receipts = receipts
        .iter()
        .filter(|r| ctx(r)["file_open"].get("paths").is_some())
        .count();
    assert_eq!(
        stop["file_open"],
        json!({"opens": opens.len() - 1, "listed_receipts": listed_receipts,
               "sensitive_receipts": 1, "path_receipts": 0, "closed_at_paths_cap": 0,
               "closed_at_held_cap": 0})
    );
    let policy = ctx(&stored_receipts_of(&db, "observer.policy")[0]);
    assert_eq!(
        policy["file_open"],
        json!({"fold": "agent", "window_ms": 1000, "paths_cap": 256, "list_bytes_cap": 24576,
               "held_cap": 8192,
               "own_receipt": ["secret_files", "ai_credentials", "model_files"]})
    );
    let report = verify_store(&db, &seed, Vec::new());
    assert!(report.ok(), "{:#?}", report.failures);
}
