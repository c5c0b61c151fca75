//! PATH searches end to end: a registered agent (a copy of sh) runs a
//! program through `env` on a PATH where only the last directory has it,
//! and a command that is on no PATH directory. The program's failed
//! attempts fold into the one `process.exec` receipt of the exec that ran
//! (`exec.path_search`), the command that was not found keeps a receipt per
//! attempt whose summary says it failed and why, and every exec attempt of
//! the run's `--events-jsonl` output is in some receipt's context.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]

use std::{
    collections::HashSet,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use observer_testkit::*;
use serde_json::{json, Value};

const AGENT: &str = "path-search-agent";

/// The process.exec rows' summary column as an analyst sees it, by
/// receipt hash.
fn summaries(db: &Path) -> std::collections::HashMap<String, String> {
    receipt_summaries(db, &["--action", "process.exec"])
        .into_iter()
        .collect()
}

#[test]
fn a_path_search_folds_into_the_exec_that_ran_and_a_failed_command_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let agent = copy_executable("/bin/sh", dir.path(), &unique("agent"));
    let bin = dir.path().join("bin");
    let (a, b, c) = (bin.join("a"), bin.join("b"), bin.join("c"));
    for d in [&a, &b, &c] {
        std::fs::create_dir_all(d).unwrap();
    }
    let prog = unique("prog");
    let nope = unique("nope");
    // b holds a file of the name that is not executable: execve says
    // EACCES and the search goes on; c holds the program.
    write_file(&b.join(&prog), "not a program\n");
    copy_executable("/bin/true", &c, &prog);
    let path = format!("{}:{}:{}", a.display(), b.display(), c.display());

    let d = Daemon::start_in(
        StateDir::Shared(dir.path().to_owned()),
        &agent_config(AGENT, &agent, ""),
    );
    let status = Command::new(&agent)
        .arg("-c")
        .arg(format!(
            "/usr/bin/env {prog} arg1; /usr/bin/env {nope} arg2; exit 0"
        ))
        .env("PATH", &path)
        .status()
        .expect("run agent");
    assert!(status.success());

    // Every attempt of both searches is recorded before the stop.
    let attempts = |records: &[Value]| {
        records
            .iter()
            .filter(|r| is_event(r, "exec") && r["process"]["agent"] == AGENT)
            .filter(|r| {
                let f = r["exec"]["filename"].as_str().unwrap_or("");
                f.ends_with(&format!("/{prog}")) || f.ends_with(&format!("/{nope}"))
            })
            .count()
    };
    let start = Instant::now();
    while attempts(&d.records()) < 6 {
        assert!(
            start.elapsed() < WAIT,
            "not every exec attempt was recorded"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let db = d.store();
    let seed = d.master_seed();
    let records = d.stop();

    let execs: Vec<&Value> = records
        .iter()
        .filter(|r| is_event(r, "exec") && r["process"]["agent"] == AGENT)
        .collect();
    let event_of = |filename: &Path| {
        let f = filename.display().to_string();
        let found: Vec<&&Value> = execs
            .iter()
            .filter(|r| r["exec"]["filename"] == f.as_str())
            .collect();
        assert_eq!(found.len(), 1, "one exec attempt of {f}");
        *found[0]
    };
    let (prog_a, prog_b, prog_c) = (
        event_of(&a.join(&prog)),
        event_of(&b.join(&prog)),
        event_of(&c.join(&prog)),
    );
    assert_eq!(prog_a["exec"]["error"], "ENOENT");
    assert_eq!(prog_b["exec"]["error"], "EACCES");
    assert_eq!(prog_c["exec"]["result"], 0);
    let pid = &prog_c["process"]["pid"];
    assert!(prog_a["process"]["pid"] == *pid && prog_b["process"]["pid"] == *pid);

    let receipts = stored_receipts_of(&db, "process.exec");
    let ours: Vec<&StoredReceipt> = receipts
        .iter()
        .filter(|r| r.payload["agent_id"] == AGENT)
        .collect();
    let with_filename = |f: &Path| -> Vec<&StoredReceipt> {
        let f = f.display().to_string();
        ours.iter()
            .copied()
            .filter(|r| r.context.as_ref().unwrap()["exec"]["filename"] == f.as_str())
            .collect()
    };

    // The program: one receipt, of the exec that ran, naming the earlier
    // directories, their errors, and the kernel's time and sequence.
    let ran = with_filename(&c.join(&prog));
    assert_eq!(ran.len(), 1);
    let ctx = ran[0].context.as_ref().unwrap();
    assert_eq!(ctx["exec"]["argv"], json!([prog, "arg1"]));
    assert_eq!(ctx["seq"], prog_c["seq"]);
    let entry = |ev: &Value, result: i32, error: &str| {
        json!({"filename": ev["exec"]["filename"], "result": result, "error": error,
               "time": ev["time"], "cpu": ev["cpu"], "seq": ev["seq"]})
    };
    assert_eq!(
        ctx["exec"]["path_search"],
        json!([entry(prog_a, -2, "ENOENT"), entry(prog_b, -13, "EACCES")])
    );
    assert!(with_filename(&a.join(&prog)).is_empty());
    assert!(with_filename(&b.join(&prog)).is_empty());

    // The command on no PATH directory: a receipt per attempt, as before,
    // and the summary says it failed and why.
    let summaries = summaries(&db);
    assert_eq!(
        summaries[&ran[0].hash],
        format!("{prog} arg1 (found after 2 failed in path search)")
    );
    for d in [&a, &b, &c] {
        let tried = d.join(&nope);
        let failed = with_filename(&tried);
        assert_eq!(failed.len(), 1, "{}", tried.display());
        let ctx = failed[0].context.as_ref().unwrap();
        assert_eq!(ctx["exec"]["result"], -2);
        assert_eq!(ctx["exec"]["error"], "ENOENT");
        assert!(ctx["exec"].get("path_search").is_none());
        assert_eq!(
            summaries[&failed[0].hash],
            format!("exec failed ENOENT {}", tried.display())
        );
    }

    // No fact lost: every exec attempt of the agent's tree in the events
    // output is a receipt's event or an entry of a receipt's path search.
    let mut kept: HashSet<(u64, u64)> = HashSet::new();
    for r in &ours {
        let ctx = r.context.as_ref().unwrap();
        kept.insert((ctx["cpu"].as_u64().unwrap(), ctx["seq"].as_u64().unwrap()));
        for e in ctx["exec"]["path_search"].as_array().into_iter().flatten() {
            kept.insert((e["cpu"].as_u64().unwrap(), e["seq"].as_u64().unwrap()));
        }
    }
    for ev in &execs {
        let key = (ev["cpu"].as_u64().unwrap(), ev["seq"].as_u64().unwrap());
        assert!(kept.contains(&key), "exec attempt not in any receipt: {ev}");
    }
    eprintln!(
        "agent exec attempts in the events output: {}, process.exec receipts: {}",
        execs.len(),
        ours.len()
    );
    assert_eq!(ours.len(), execs.len() - 2, "the two attempts folded");

    let stop = &stored_receipts_of(&db, "observer.stop")[0];
    assert_eq!(
        stop.context.as_ref().unwrap()["path_search"],
        json!({"folded": 2, "unfolded_at_cap": 0})
    );
    // What decides the folding is on record from the start.
    let policy = &stored_receipts_of(&db, "observer.policy")[0];
    assert_eq!(
        policy.context.as_ref().unwrap()["path_search"],
        json!({"fold": true, "window_ms": 1000, "per_process_cap": 64, "global_cap": 1024})
    );
    let report = verify_store(&db, &seed, Vec::new());
    assert!(report.ok(), "{:#?}", report.failures);
}
