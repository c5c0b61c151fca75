use super::*;
use crate::config::FileOpenFold;
use crate::{
    enrich::process_table::Origin,
    receipt::select::draft_for,
    record::{Detail, ProcessView},
};

const SEC: u64 = 1_000_000_000;

fn open(path: &str, flags: u32, result: i32) -> OpenDetail {
    OpenDetail {
        path: path.into(),
        result,
        error: (result < 0).then(|| "ENOENT".into()),
        flags,
        flags_text: if flags == 0 { "O_RDONLY" } else { "O_WRONLY" }.into(),
        mode: 0,
        reasons: vec!["watched"],
        openat2: false,
        dfd: -100,
    }
}

fn event(pid: u32, agent: &str, seq: u64, o: OpenDetail) -> EnrichedEvent {
    EnrichedEvent {
        event: "file_open",
        time: format!("t{seq}"),
        boot_ns: seq,
        cpu: 1,
        seq,
        process: ProcessView {
            pid,
            tid: pid,
            ppid: 1,
            uid: 0,
            user: None,
            gid: 0,
            group: None,
            loginuid: None,
            comm: "cat".into(),
            exe: Some("/usr/bin/cat".into()),
            exe_sha256: None,
            argv: vec!["cat".into()],
            env_names: vec![],
            cgroup_id: 1,
            cgroup: None,
            unit: None,
            container_id: None,
            origin: Origin::Exec,
            watched: true,
            agent: Some(agent.into()),
        },
        parents: vec![],
        detail: Detail::FileOpen(o),
    }
}

/// Feeds one open of `pid` (agent `a`) at `seq` seconds.
fn feed(f: &mut OpenFolds, out: &mut Vec<Draft>, pid: u32, seq: u64, o: OpenDetail, sens: bool) {
    feed_on(f, out, pid, "a", seq, o, sens);
}

fn feed_on(
    f: &mut OpenFolds,
    out: &mut Vec<Draft>,
    pid: u32,
    agent: &str,
    seq: u64,
    o: OpenDetail,
    sens: bool,
) {
    let ev = event(pid, agent, seq, o);
    let Detail::FileOpen(o) = &ev.detail else {
        unreachable!()
    };
    f.on_open(
        &ev,
        o,
        seq * SEC,
        sens,
        || draft_for(&ev, seq * SEC, agent.into()),
        out,
    );
}

fn paths(d: &Draft) -> Vec<(String, u64)> {
    d.context["file_open"]["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["path"].as_str().unwrap().into(),
                e["count"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_process_s_opens_in_a_window_are_one_receipt_listing_each_path() {
    let mut f = OpenFolds::new(10 * SEC, PATHS_CAP, HELD_CAP);
    let mut out = Vec::new();
    feed(&mut f, &mut out, 7, 1, open("/etc/a", 0, 3), false);
    feed(&mut f, &mut out, 7, 2, open("/etc/b", 0, 4), false);
    // Another descriptor number is the same open; a failure is not.
    feed(&mut f, &mut out, 7, 3, open("/etc/a", 0, 5), false);
    feed(&mut f, &mut out, 7, 4, open("/etc/a", 0, -2), false);
    feed(&mut f, &mut out, 7, 5, open("/etc/a", 1, 3), false);
    feed(&mut f, &mut out, 8, 6, open("/etc/a", 0, 3), false);
    assert!(out.is_empty(), "held until the window ends");
    f.flush_due(11 * SEC - 1, &mut out);
    assert!(out.is_empty());
    f.flush_due(11 * SEC, &mut out);
    assert_eq!(out.len(), 1, "process 7's window ended, 8's did not");
    let d = &out[0];
    assert_eq!(d.action_type, "file.open");
    assert_eq!(d.context["seq"], 1, "the first open's context");
    assert_eq!(d.context["process"]["pid"], 7);
    let o = &d.context["file_open"];
    assert_eq!(o["path"], "/etc/a");
    assert_eq!(o["result"], 3);
    assert_eq!((&o["count"], &o["last_time"]), (&json!(2), &json!("t3")));
    assert_eq!(
        o["paths"],
        json!([
            {"path": "/etc/a", "result": 3, "error": null, "flags": 0, "flags_text": "O_RDONLY",
             "mode": 0, "reasons": ["watched"], "openat2": false, "dfd": -100,
             "time": "t1", "cpu": 1, "seq": 1, "count": 2, "last_time": "t3"},
            {"path": "/etc/b", "result": 4, "error": null, "flags": 0, "flags_text": "O_RDONLY",
             "mode": 0, "reasons": ["watched"], "openat2": false, "dfd": -100,
             "time": "t2", "cpu": 1, "seq": 2, "count": 1, "last_time": "t2"},
            {"path": "/etc/a", "result": -2, "error": "ENOENT", "flags": 0,
             "flags_text": "O_RDONLY", "mode": 0, "reasons": ["watched"], "openat2": false,
             "dfd": -100, "time": "t4", "cpu": 1, "seq": 4, "count": 1, "last_time": "t4"},
            {"path": "/etc/a", "result": 3, "error": null, "flags": 1, "flags_text": "O_WRONLY",
             "mode": 0, "reasons": ["watched"], "openat2": false, "dfd": -100,
             "time": "t5", "cpu": 1, "seq": 5, "count": 1, "last_time": "t5"},
        ])
    );
    assert!(o.get("paths_full").is_none());
    f.flush_all(&mut out);
    assert_eq!(out.len(), 2);
    assert_eq!(paths(&out[1]), vec![("/etc/a".into(), 1)]);
    assert_eq!(
        f.counters(),
        Counters {
            opens: 6,
            listed_receipts: 2,
            ..Counters::default()
        }
    );
}

#[test]
fn a_sensitive_path_keeps_its_own_receipt_of_today_s_shape() {
    let mut f = OpenFolds::new(10 * SEC, PATHS_CAP, HELD_CAP);
    let mut out = Vec::new();
    feed(&mut f, &mut out, 7, 1, open("/etc/a", 0, 3), false);
    feed(&mut f, &mut out, 7, 2, open("/k/id_rsa", 0, 4), true);
    feed(&mut f, &mut out, 7, 3, open("/k/id_rsa", 0, 5), true);
    feed(&mut f, &mut out, 7, 4, open("/k/x.gguf", 0, 6), true);
    // An exec ends the list, not the sensitive folds (as before).
    f.close_process(7, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(paths(&out[0]), vec![("/etc/a".into(), 1)]);
    f.flush_all(&mut out);
    assert_eq!(out.len(), 3);
    let key = &out[1].context["file_open"];
    assert_eq!(key["path"], "/k/id_rsa");
    assert_eq!(key["count"], 2);
    assert_eq!(key["last_time"], super::super::payload::issued_at(3 * SEC));
    assert!(
        key.get("paths").is_none(),
        "no list: the receipt is the path's"
    );
    assert_eq!(out[1].context["seq"], 2);
    assert_eq!(out[2].context["file_open"]["path"], "/k/x.gguf");
    let c = f.counters();
    assert_eq!(
        (c.opens, c.listed_receipts, c.sensitive_receipts),
        (4, 1, 2)
    );
}

#[test]
fn an_exec_or_exit_ends_the_list_and_the_next_open_starts_one() {
    let mut f = OpenFolds::new(10 * SEC, PATHS_CAP, HELD_CAP);
    let mut out = Vec::new();
    feed(&mut f, &mut out, 7, 1, open("/bin/sh-script", 0, 3), false);
    f.close_process(7, &mut out);
    feed(
        &mut f,
        &mut out,
        7,
        2,
        open("/etc/ld.so.cache", 0, 3),
        false,
    );
    f.close_process(7, &mut out);
    f.close_process(7, &mut out);
    assert_eq!(out.len(), 2, "closing nothing issues nothing");
    assert_eq!(paths(&out[0]), vec![("/bin/sh-script".into(), 1)]);
    assert_eq!(paths(&out[1]), vec![("/etc/ld.so.cache".into(), 1)]);
    // The window queue's stale entries are skipped, not issued twice.
    f.flush_all(&mut out);
    assert_eq!(out.len(), 2);
}

#[test]
fn a_full_list_is_issued_and_the_next_path_starts_another() {
    let mut f = OpenFolds::new(10 * SEC, 2, HELD_CAP);
    let mut out = Vec::new();
    for (seq, p) in [(1, "/a"), (2, "/b"), (3, "/a"), (4, "/c"), (5, "/b")] {
        feed(&mut f, &mut out, 7, seq, open(p, 0, 3), false);
    }
    assert_eq!(out.len(), 1);
    assert_eq!(
        paths(&out[0]),
        vec![("/a".into(), 2), ("/b".into(), 1)],
        "a path already listed is counted, not a new entry"
    );
    assert_eq!(out[0].context["file_open"]["paths_full"], true);
    f.flush_all(&mut out);
    assert_eq!(out[1].context["seq"], 4);
    assert_eq!(paths(&out[1]), vec![("/c".into(), 1), ("/b".into(), 1)]);
    assert!(out[1].context["file_open"].get("paths_full").is_none());
    let c = f.counters();
    assert_eq!(
        (c.opens, c.listed_receipts, c.closed_at_paths_cap),
        (5, 2, 1)
    );
}

#[test]
fn the_held_cap_issues_the_oldest_fold_and_nothing_is_lost() {
    let mut f = OpenFolds::new(10 * SEC, PATHS_CAP, 3);
    let mut out = Vec::new();
    feed(&mut f, &mut out, 7, 1, open("/a", 0, 3), false);
    feed(&mut f, &mut out, 8, 2, open("/b", 0, 3), false);
    feed(&mut f, &mut out, 8, 3, open("/c", 0, 3), false);
    assert!(out.is_empty());
    feed(&mut f, &mut out, 9, 4, open("/k", 0, 3), true);
    assert_eq!(out.len(), 1, "over the cap: the oldest fold goes");
    assert_eq!(paths(&out[0]), vec![("/a".into(), 1)]);
    feed(&mut f, &mut out, 8, 5, open("/d", 0, 3), false);
    assert_eq!(out.len(), 2);
    assert_eq!(paths(&out[1]).len(), 3, "process 8's list, whole");
    f.flush_all(&mut out);
    let listed: u64 = out
        .iter()
        .map(|d| match d.context["file_open"]["paths"].as_array() {
            Some(p) => p.iter().map(|e| e["count"].as_u64().unwrap()).sum(),
            None => d.context["file_open"]["count"].as_u64().unwrap(),
        })
        .sum();
    assert_eq!(listed, 5);
    let c = f.counters();
    assert_eq!((c.opens, c.closed_at_held_cap), (5, 2));
}

#[test]
fn another_chain_is_another_receipt() {
    let mut f = OpenFolds::new(10 * SEC, PATHS_CAP, HELD_CAP);
    let mut out = Vec::new();
    feed_on(&mut f, &mut out, 7, "a1", 1, open("/a", 0, 3), false);
    feed_on(&mut f, &mut out, 7, "a2", 2, open("/b", 0, 3), false);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].agent_id, "a1");
    f.flush_all(&mut out);
    assert_eq!(out[1].agent_id, "a2");
    assert_eq!(paths(&out[1]), vec![("/b".into(), 1)]);
}

#[test]
fn an_agent_s_list_is_issued_before_its_entries_pass_the_byte_cap() {
    let mut f = OpenFolds::new(10 * SEC, PATHS_CAP, HELD_CAP);
    f.fold = FileOpenFold::Agent;
    let mut out = Vec::new();
    // 200 distinct opens of long paths by two processes: far past the
    // byte cap, under the entry cap.
    for i in 0..200u64 {
        let path = format!("/opt/{}/{i}", "d".repeat(200));
        feed(
            &mut f,
            &mut out,
            7 + (i % 2) as u32,
            i + 1,
            open(&path, 0, 3),
            false,
        );
    }
    f.flush_all(&mut out);
    assert!(out.len() >= 3, "{} lists", out.len());
    let mut listed = 0;
    for (n, d) in out.iter().enumerate() {
        let entries = d.context["file_open"]["paths"].as_array().unwrap();
        let text = serde_json::to_string(entries).unwrap();
        assert!(
            text.len() <= LIST_BYTES_CAP,
            "list {n}: {} bytes",
            text.len()
        );
        let full = d.context["file_open"].get("paths_full").is_some();
        assert_eq!(full, n + 1 < out.len(), "every list but the last was full");
        listed += entries.len();
    }
    assert_eq!(listed, 200, "no open dropped");
    assert_eq!(f.counters().closed_at_paths_cap, out.len() as u64 - 1);
}
