//! Path search folding: `env prog`, `execvp` and shells look a program up
//! by calling execve in each PATH directory until one succeeds, so one
//! program that ran costs a failed `process.exec` receipt per directory
//! tried before it (15 for one `#!/usr/bin/env bash` script on a pyenv
//! PATH). The failed attempts of a process are held briefly; when the same
//! process then execs the same command successfully, they become the
//! `exec.path_search` list of that exec's receipt (each directory tried,
//! its error, time and kernel sequence number), and no receipt of their
//! own. A failed attempt that no such exec follows (within the window, by
//! the process's exit, at a clock step or at stop) is emitted as the
//! receipt it always was, unchanged.
//!
//! Nothing is dropped: when a cap is reached the oldest held attempt is
//! emitted unfolded (and counted), so memory stays bounded at the cost of
//! folding only.
use std::collections::{HashMap, VecDeque};

use serde_json::{json, Map, Value};

use super::chain::Draft;

/// How long a failed exec waits for the exec that ends its search. A
/// search takes microseconds; the margin covers ring-buffer batching and a
/// writer that lags behind the reader.
pub const WINDOW_NS: u64 = 1_000_000_000;
/// Held attempts per process: more PATH directories than any real PATH.
pub const PER_PROCESS_CAP: usize = 64;
/// Held attempts over all processes (each holds one context, a few KB).
pub const GLOBAL_CAP: usize = 1024;

/// What folding did over a run (reported in `observer.stop`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    /// Failed attempts that became `path_search` entries.
    pub folded: u64,
    /// Failed attempts emitted on their own because a cap was reached.
    pub unfolded_at_cap: u64,
}

struct Held {
    id: u64,
    draft: Draft,
}

pub struct PathSearch {
    window_ns: u64,
    per_process_cap: usize,
    global_cap: usize,
    held: HashMap<u32, VecDeque<Held>>,
    /// (time, pid, id) of every held attempt, oldest first; entries of
    /// attempts already folded or emitted are skipped when reached.
    order: VecDeque<(u64, u32, u64)>,
    total: usize,
    next_id: u64,
    counters: Counters,
}

impl Default for PathSearch {
    fn default() -> Self {
        PathSearch::new(WINDOW_NS, PER_PROCESS_CAP, GLOBAL_CAP)
    }
}

impl PathSearch {
    pub fn new(window_ns: u64, per_process_cap: usize, global_cap: usize) -> PathSearch {
        PathSearch {
            window_ns,
            per_process_cap: per_process_cap.max(1),
            global_cap: global_cap.max(1),
            held: HashMap::new(),
            order: VecDeque::new(),
            total: 0,
            next_id: 0,
            counters: Counters::default(),
        }
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Holds the receipt draft of a failed exec by `pid`; a cap reached
    /// emits the oldest held attempt (of the process, else of all) to `out`.
    pub fn hold(&mut self, pid: u32, unix_ns: u64, draft: Draft, out: &mut Vec<Draft>) {
        let id = self.next_id;
        self.next_id += 1;
        let queue = self.held.entry(pid).or_default();
        queue.push_back(Held { id, draft });
        self.order.push_back((unix_ns, pid, id));
        self.total += 1;
        if queue.len() > self.per_process_cap {
            let oldest = queue.pop_front().expect("over the cap");
            self.total -= 1;
            self.counters.unfolded_at_cap += 1;
            out.push(oldest.draft);
        }
        while self.total > self.global_cap {
            let Some((_, pid, id)) = self.order.pop_front() else {
                break;
            };
            if let Some(h) = self.take(pid, id) {
                self.counters.unfolded_at_cap += 1;
                out.push(h.draft);
            }
        }
    }

    /// A successful exec by `pid` (its draft): the held attempts of the
    /// same command become its `exec.path_search`; any other held attempt
    /// of the process is emitted first, as it happened first.
    pub fn on_success(&mut self, pid: u32, success: &mut Draft, out: &mut Vec<Draft>) {
        let Some(queue) = self.held.remove(&pid) else {
            return;
        };
        self.total -= queue.len();
        let mut entries = Vec::new();
        for h in queue {
            let entry = (h.draft.agent_id == success.agent_id)
                .then(|| search_entry(&h.draft.context["exec"], &success.context["exec"]))
                .flatten();
            match entry {
                Some(mut e) => {
                    for member in ["time", "cpu", "seq"] {
                        e.insert(member.into(), h.draft.context[member].clone());
                    }
                    entries.push(Value::Object(e));
                }
                None => out.push(h.draft),
            }
        }
        if !entries.is_empty() {
            self.counters.folded += entries.len() as u64;
            if let Some(exec) = success
                .context
                .get_mut("exec")
                .and_then(Value::as_object_mut)
            {
                exec.insert("path_search".into(), Value::Array(entries));
            }
        }
    }

    /// The process exited (or ended otherwise): no exec can follow.
    pub fn on_exit(&mut self, pid: u32, out: &mut Vec<Draft>) {
        if let Some(queue) = self.held.remove(&pid) {
            self.total -= queue.len();
            out.extend(queue.into_iter().map(|h| h.draft));
        }
    }

    /// Emits held attempts older than the window at `now_unix_ns`.
    pub fn flush_due(&mut self, now_unix_ns: u64, out: &mut Vec<Draft>) {
        while let Some(&(start, pid, id)) = self.order.front() {
            if now_unix_ns < start.saturating_add(self.window_ns) {
                break;
            }
            self.order.pop_front();
            if let Some(h) = self.take(pid, id) {
                out.push(h.draft);
            }
        }
    }

    /// Emits everything held (at a clock step and at stop).
    pub fn flush_all(&mut self, out: &mut Vec<Draft>) {
        self.flush_due(u64::MAX, out);
        debug_assert_eq!(self.total, 0);
    }

    /// Removes the held attempt `id` of `pid`, if it is still held.
    fn take(&mut self, pid: u32, id: u64) -> Option<Held> {
        let queue = self.held.get_mut(&pid)?;
        let at = queue.iter().position(|h| h.id == id)?;
        let h = queue.remove(at).expect("position found");
        if queue.is_empty() {
            self.held.remove(&pid);
        }
        self.total -= 1;
        Some(h)
    }
}

/// The `path_search` entry for the failed exec `failed` (an `exec` context
/// member) when the exec that succeeded, `success`, ran the same command:
/// the same program name (the last component of the path tried), the same
/// arguments after argv[0], both with argv captured and by the same
/// syscall. argv[0] may differ (a caller that passes each path it tries
/// as argv[0]); the entry then keeps it as `argv0`, so no fact is lost.
pub fn search_entry(failed: &Value, success: &Value) -> Option<Map<String, Value>> {
    let result = failed["result"].as_i64().filter(|r| *r != 0)?;
    if success["result"].as_i64() != Some(0) {
        return None;
    }
    for member in ["argv_missing", "argv_truncated", "execveat"] {
        if failed[member] != success[member] {
            return None;
        }
    }
    if failed["argv_missing"] == Value::Bool(true) {
        // Without argv the command cannot be told apart from another
        // program of the same name.
        return None;
    }
    let (f_name, s_name) = (failed["filename"].as_str()?, success["filename"].as_str()?);
    if program_name(f_name) != program_name(s_name) || program_name(f_name).is_empty() {
        return None;
    }
    let (f_argv, s_argv) = (failed["argv"].as_array()?, success["argv"].as_array()?);
    if f_argv.get(1..) != s_argv.get(1..) {
        return None;
    }
    let mut e = Map::new();
    e.insert("filename".into(), json!(f_name));
    e.insert("result".into(), json!(result));
    e.insert("error".into(), failed["error"].clone());
    if f_argv.first() != s_argv.first() {
        e.insert(
            "argv0".into(),
            f_argv.first().cloned().unwrap_or(Value::Null),
        );
    }
    Some(e)
}

/// The name a path search looks up: the path's last component.
fn program_name(filename: &str) -> &str {
    filename.rsplit('/').next().unwrap_or(filename)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receipt::payload::{Mappings, RiskClass};

    fn exec(filename: &str, argv: &[&str], result: i32, seq: u64) -> Draft {
        exec_on("agent", filename, argv, result, seq)
    }

    fn exec_on(agent: &str, filename: &str, argv: &[&str], result: i32, seq: u64) -> Draft {
        let error = match result {
            0 => Value::Null,
            -2 => json!("ENOENT"),
            -13 => json!("EACCES"),
            _ => json!("EOTHER"),
        };
        Draft {
            agent_id: agent.into(),
            action_type: "process.exec",
            unix_ns: seq * 1000,
            context: json!({
                "event": "exec", "time": format!("t{seq}"), "cpu": 1, "seq": seq,
                "process": {"pid": 7},
                "exec": {"filename": filename, "argv": argv, "argv_truncated": false,
                         "argv_missing": false, "result": result, "error": error,
                         "execveat": false},
            }),
            risk_class: RiskClass::Low,
            executable_hash: String::new(),
            mappings: Mappings::default(),
            detection_rules_digest: None,
            erases: None,
            prunes: None,
        }
    }

    fn seqs(drafts: &[Draft]) -> Vec<u64> {
        drafts
            .iter()
            .map(|d| d.context["seq"].as_u64().unwrap())
            .collect()
    }

    #[test]
    fn an_env_search_folds_into_the_exec_that_ran() {
        let mut p = PathSearch::default();
        let mut out = Vec::new();
        let argv = ["prog", "-x", "arg"];
        p.hold(7, 1000, exec("/a/prog", &argv, -2, 1), &mut out);
        p.hold(7, 2000, exec("/b/prog", &argv, -13, 2), &mut out);
        let mut ok = exec("/c/prog", &argv, 0, 3);
        p.on_success(7, &mut ok, &mut out);
        assert!(out.is_empty());
        assert_eq!(
            ok.context["exec"]["path_search"],
            json!([
                {"filename": "/a/prog", "result": -2, "error": "ENOENT", "time": "t1", "cpu": 1, "seq": 1},
                {"filename": "/b/prog", "result": -13, "error": "EACCES", "time": "t2", "cpu": 1, "seq": 2},
            ])
        );
        assert_eq!(
            p.counters(),
            Counters {
                folded: 2,
                unfolded_at_cap: 0
            }
        );
        p.flush_all(&mut out);
        assert!(out.is_empty(), "nothing stays held");
    }

    #[test]
    fn a_different_command_is_not_folded_and_goes_first() {
        let mut p = PathSearch::default();
        let mut out = Vec::new();
        p.hold(7, 1000, exec("/a/other", &["other"], -2, 1), &mut out);
        p.hold(7, 1500, exec("/a/prog", &["prog", "x"], -2, 2), &mut out);
        p.hold(7, 1600, exec("/a/prog", &["prog", "y"], -2, 3), &mut out);
        let mut ok = exec("/c/prog", &["prog", "x"], 0, 4);
        p.on_success(7, &mut ok, &mut out);
        assert_eq!(seqs(&out), vec![1, 3]);
        let search = ok.context["exec"]["path_search"].as_array().unwrap();
        assert_eq!(search.len(), 1);
        assert_eq!(search[0]["seq"], 2);
    }

    #[test]
    fn another_process_or_chain_does_not_fold() {
        let mut p = PathSearch::default();
        let mut out = Vec::new();
        p.hold(8, 1000, exec("/a/prog", &["prog"], -2, 1), &mut out);
        let mut ok = exec("/c/prog", &["prog"], 0, 2);
        p.on_success(7, &mut ok, &mut out);
        assert!(ok.context["exec"].get("path_search").is_none());
        p.hold(
            7,
            1000,
            exec_on("a1", "/a/prog", &["prog"], -2, 3),
            &mut out,
        );
        let mut other_chain = exec_on("a2", "/c/prog", &["prog"], 0, 4);
        p.on_success(7, &mut other_chain, &mut out);
        assert!(other_chain.context["exec"].get("path_search").is_none());
        assert_eq!(seqs(&out), vec![3]);
        p.flush_all(&mut out);
        assert_eq!(seqs(&out), vec![3, 1]);
    }

    #[test]
    fn argv0_may_differ_and_is_kept() {
        let mut p = PathSearch::default();
        let mut out = Vec::new();
        p.hold(7, 1000, exec("/a/prog", &["/a/prog", "z"], -2, 1), &mut out);
        let mut ok = exec("/c/prog", &["/c/prog", "z"], 0, 2);
        p.on_success(7, &mut ok, &mut out);
        assert_eq!(ok.context["exec"]["path_search"][0]["argv0"], "/a/prog");
        // The same argv[0] is not repeated.
        p.hold(7, 1000, exec("/a/prog", &["prog", "z"], -2, 3), &mut out);
        let mut ok = exec("/c/prog", &["prog", "z"], 0, 4);
        p.on_success(7, &mut ok, &mut out);
        assert!(ok.context["exec"]["path_search"][0].get("argv0").is_none());
    }

    #[test]
    fn a_search_that_finds_nothing_is_emitted_at_exit_unchanged() {
        let mut p = PathSearch::default();
        let mut out = Vec::new();
        let first = exec("/a/nope", &["nope"], -2, 1);
        let before = first.context.clone();
        p.hold(7, 1000, first, &mut out);
        p.hold(7, 1100, exec("/b/nope", &["nope"], -2, 2), &mut out);
        p.flush_due(1000 + WINDOW_NS - 1, &mut out);
        assert!(out.is_empty(), "still inside the window");
        p.on_exit(7, &mut out);
        assert_eq!(seqs(&out), vec![1, 2]);
        assert_eq!(out[0].context, before);
        // The order queue's stale entries are skipped, not emitted twice.
        p.flush_all(&mut out);
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn the_window_emits_attempts_no_exec_followed() {
        let mut p = PathSearch::new(100, 64, 1024);
        let mut out = Vec::new();
        p.hold(7, 1000, exec("/a/prog", &["prog"], -2, 1), &mut out);
        p.hold(9, 1050, exec("/a/prog", &["prog"], -2, 2), &mut out);
        p.flush_due(1099, &mut out);
        assert!(out.is_empty());
        p.flush_due(1100, &mut out);
        assert_eq!(seqs(&out), vec![1]);
        // Too late to fold: the exec of process 7 keeps no search.
        let mut ok = exec("/c/prog", &["prog"], 0, 3);
        p.on_success(7, &mut ok, &mut out);
        assert!(ok.context["exec"].get("path_search").is_none());
        p.flush_due(1150, &mut out);
        assert_eq!(seqs(&out), vec![1, 2]);
    }

    #[test]
    fn caps_emit_the_oldest_unfolded_and_count_it() {
        let mut p = PathSearch::new(WINDOW_NS, 2, 3);
        let mut out = Vec::new();
        for seq in 1..=3 {
            p.hold(7, seq * 10, exec("/a/prog", &["prog"], -2, seq), &mut out);
        }
        assert_eq!(seqs(&out), vec![1], "per-process cap");
        p.hold(8, 40, exec("/a/q", &["q"], -2, 4), &mut out);
        p.hold(9, 50, exec("/a/r", &["r"], -2, 5), &mut out);
        assert_eq!(seqs(&out), vec![1, 2], "global cap");
        assert_eq!(p.counters().unfolded_at_cap, 2);
        let mut ok = exec("/c/prog", &["prog"], 0, 6);
        p.on_success(7, &mut ok, &mut out);
        assert_eq!(ok.context["exec"]["path_search"][0]["seq"], 3);
        p.flush_all(&mut out);
        assert_eq!(seqs(&out), vec![1, 2, 4, 5]);
    }

    #[test]
    fn what_the_match_requires() {
        let f = |filename: &str, argv: Value, extra: (&str, Value)| {
            let mut e = json!({"filename": filename, "argv": argv, "argv_truncated": false,
                               "argv_missing": false, "result": -2, "error": "ENOENT",
                               "execveat": false});
            e[extra.0] = extra.1;
            e
        };
        let ok = json!({"filename": "/c/prog", "argv": ["prog", "a"], "argv_truncated": false,
                        "argv_missing": false, "result": 0, "error": null, "execveat": false});
        let none = ("unused", Value::Null);
        assert!(search_entry(&f("/a/prog", json!(["prog", "a"]), none.clone()), &ok).is_some());
        assert!(search_entry(&f("prog", json!(["prog", "a"]), none.clone()), &ok).is_some());
        assert!(search_entry(&f("/a/prog2", json!(["prog", "a"]), none.clone()), &ok).is_none());
        assert!(search_entry(&f("/a/prog", json!(["prog", "b"]), none.clone()), &ok).is_none());
        assert!(search_entry(&f("/a/prog", json!(["prog"]), none.clone()), &ok).is_none());
        assert!(search_entry(&f("/a/", json!(["prog", "a"]), none.clone()), &ok).is_none());
        for changed in [
            ("argv_missing", json!(true)),
            ("argv_truncated", json!(true)),
            ("execveat", json!(true)),
            ("result", json!(0)),
        ] {
            assert!(
                search_entry(&f("/a/prog", json!(["prog", "a"]), changed.clone()), &ok).is_none(),
                "{changed:?}"
            );
        }
        let mut missing = ok.clone();
        missing["argv_missing"] = json!(true);
        let failed = f(
            "/a/prog",
            json!(["prog", "a"]),
            ("argv_missing", json!(true)),
        );
        assert!(search_entry(&failed, &missing).is_none());
        let mut failed_success = ok.clone();
        failed_success["result"] = json!(-2);
        assert!(search_entry(&f("/a/prog", json!(["prog", "a"]), none), &failed_success).is_none());
    }
}
