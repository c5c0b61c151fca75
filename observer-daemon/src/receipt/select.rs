//! Which events become receipts, and with what context: every event of a
//! registered agent's process tree. File opens are folded into one
//! `file.open` receipt per (process, path, window) with a count, so a build
//! that opens 100k files does not produce 100k receipts. Failed execs of a
//! PATH search fold into the exec that ends it ([`path_search`]).
use std::collections::{HashMap, VecDeque};

use serde_json::{json, Value};

use super::{
    chain::Draft,
    path_search::{self, PathSearch},
    payload::{Mappings, RiskClass},
};
use crate::record::{Detail, EnrichedEvent};

/// `executable_hash` when the executable could not be hashed (it was
/// deleted, or is larger than `hash_max_bytes`): all zeros, with the reason
/// in the context (`executable_hash_unavailable`).
pub const UNKNOWN_EXECUTABLE_HASH: &str =
    "sha256:0000000000000000000000000000000000000000000000000000000000000000";

struct Fold {
    draft: Draft,
    count: u64,
    last_unix_ns: u64,
}

pub struct Selector {
    window_ns: u64,
    folds: HashMap<(u32, String), Fold>,
    /// Open folds by window start, oldest first: checking for due windows
    /// on every event costs one look at the front.
    order: VecDeque<(u64, (u32, String))>,
    path_search: PathSearch,
}

impl Selector {
    pub fn new(file_open_window_ns: u64) -> Selector {
        Selector {
            window_ns: file_open_window_ns,
            folds: HashMap::new(),
            order: VecDeque::new(),
            path_search: PathSearch::default(),
        }
    }

    /// Drafts for `ev` (at `unix_ns`), plus folded opens whose window ended.
    pub fn on_event(&mut self, ev: &EnrichedEvent, unix_ns: u64, out: &mut Vec<Draft>) {
        self.flush_due(unix_ns, out);
        let Some(agent) = ev.process.agent.as_deref() else {
            return;
        };
        let Some(mut draft) = draft_for(ev, unix_ns, agent.to_string()) else {
            return;
        };
        match &ev.detail {
            Detail::FileOpen(o) if self.window_ns > 0 => {
                let key = (ev.process.pid, o.path.clone());
                match self.folds.get_mut(&key) {
                    Some(f) => {
                        f.count += 1;
                        f.last_unix_ns = unix_ns;
                    }
                    None => {
                        self.order.push_back((unix_ns, key.clone()));
                        self.folds.insert(
                            key,
                            Fold {
                                draft,
                                count: 1,
                                last_unix_ns: unix_ns,
                            },
                        );
                    }
                }
            }
            Detail::Exec(e) if e.result != 0 => {
                self.path_search.hold(ev.process.pid, unix_ns, draft, out)
            }
            Detail::Exec(_) => {
                self.path_search.on_success(ev.process.pid, &mut draft, out);
                out.push(draft);
            }
            Detail::Exit(_) => {
                self.path_search.on_exit(ev.process.pid, out);
                out.push(draft);
            }
            _ => out.push(draft),
        }
    }

    /// What [`Selector::on_event`] does for held searches, for an agent
    /// event whose receipt is made elsewhere (the evidence of a finding):
    /// a successful exec takes its process's search, an exit ends it. Held
    /// attempts not taken go to `out` first, as they happened first.
    pub fn fold_search(&mut self, ev: &EnrichedEvent, draft: &mut Draft, out: &mut Vec<Draft>) {
        if ev.process.agent.is_none() {
            return;
        }
        match &ev.detail {
            Detail::Exec(e) if e.result == 0 => {
                self.path_search.on_success(ev.process.pid, draft, out)
            }
            Detail::Exit(_) => self.path_search.on_exit(ev.process.pid, out),
            _ => {}
        }
    }

    /// What path search folding did this run.
    pub fn path_search_counters(&self) -> path_search::Counters {
        self.path_search.counters()
    }

    /// Emits folded opens whose window closed before `now_unix_ns`, and
    /// failed execs no exec followed within theirs.
    pub fn flush_due(&mut self, now_unix_ns: u64, out: &mut Vec<Draft>) {
        while let Some((start, _)) = self.order.front() {
            if now_unix_ns < start.saturating_add(self.window_ns) {
                break;
            }
            let (_, key) = self.order.pop_front().expect("front exists");
            if let Some(fold) = self.folds.remove(&key) {
                out.push(finish_fold(fold));
            }
        }
        self.path_search.flush_due(now_unix_ns, out);
    }

    /// Emits every folded open and held failed exec (at a clock step, at
    /// stop).
    pub fn flush_all(&mut self, out: &mut Vec<Draft>) {
        self.flush_due(u64::MAX, out);
        self.path_search.flush_all(out);
    }
}

/// The receipt of one event on `agent_id`'s chain (never folded): what
/// an agent's events become, and the evidence a finding rests on. None for
/// events that never become receipts (fork, non-datagram bind).
pub fn draft_for(ev: &EnrichedEvent, unix_ns: u64, agent_id: String) -> Option<Draft> {
    let action_type = match &ev.detail {
        Detail::Exec(_) => "process.exec",
        Detail::Exit(_) => "process.exit",
        Detail::Connect(_) => "network.connect",
        Detail::Listen(_) => "network.listen",
        // A bound datagram socket receives without listen(2).
        Detail::Bind(n) if n.socket_type == "dgram" => "network.listen",
        Detail::Accept(_) => "network.accept",
        Detail::FileOpen(_) => "file.open",
        Detail::DnsAnswer(_) => "dns.resolve",
        Detail::Fork(_) | Detail::Bind(_) => return None,
    };
    let mut context = match serde_json::to_value(ev) {
        Ok(v) => v,
        Err(e) => {
            log::error!("cannot serialise an event for its receipt: {e}");
            return None;
        }
    };
    let executable_hash = executable_hash(ev);
    if executable_hash == UNKNOWN_EXECUTABLE_HASH {
        context["executable_hash_unavailable"] = Value::Bool(true);
    }
    Some(Draft {
        agent_id,
        action_type,
        unix_ns,
        context,
        risk_class: RiskClass::Low,
        executable_hash,
        mappings: Mappings::default(),
        detection_rules_digest: None,
        erases: None,
        prunes: None,
    })
}

/// `sha256:<hex>` of the event's executable, or [`UNKNOWN_EXECUTABLE_HASH`].
pub fn executable_hash(ev: &EnrichedEvent) -> String {
    match &ev.process.exe_sha256 {
        Some(h) if super::payload::is_executable_hash(h) => h.clone(),
        _ => UNKNOWN_EXECUTABLE_HASH.to_string(),
    }
}

fn finish_fold(f: Fold) -> Draft {
    let mut draft = f.draft;
    draft.context["file_open"]["count"] = json!(f.count);
    draft.context["file_open"]["last_time"] = json!(super::payload::issued_at(f.last_unix_ns));
    draft
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        process_table::Origin,
        record::{ExecDetail, ExitDetail, ProcessView},
    };

    fn event(pid: u32, seq: u64, agent: Option<&str>, detail: Detail) -> EnrichedEvent {
        EnrichedEvent {
            event: "exec",
            time: format!("t{seq}"),
            boot_ns: seq,
            cpu: 0,
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
                comm: "env".into(),
                exe: Some("/usr/bin/env".into()),
                exe_sha256: None,
                argv: vec![],
                env_names: vec![],
                cgroup_id: 1,
                cgroup: None,
                unit: None,
                container_id: None,
                origin: Origin::Exec,
                watched: true,
                agent: agent.map(String::from),
            },
            parents: vec![],
            detail,
        }
    }

    fn exec(filename: &str, result: i32) -> Detail {
        Detail::Exec(ExecDetail {
            filename: filename.into(),
            argv: vec!["prog".into(), "a".into()],
            argv_truncated: false,
            argv_missing: false,
            result,
            error: (result != 0).then(|| "ENOENT".into()),
            execveat: false,
        })
    }

    fn exit() -> Detail {
        Detail::Exit(ExitDetail {
            exit_code: Some(127),
            signal: None,
            core_dumped: false,
            status: 127 << 8,
        })
    }

    fn seqs(drafts: &[Draft]) -> Vec<u64> {
        drafts
            .iter()
            .map(|d| d.context["seq"].as_u64().unwrap())
            .collect()
    }

    #[test]
    fn failed_execs_wait_for_the_exec_or_the_exit_of_their_process() {
        let mut s = Selector::new(1_000_000_000);
        let mut out = Vec::new();
        let agent = Some("a");
        s.on_event(&event(7, 1, agent, exec("/x/prog", -2)), 10, &mut out);
        s.on_event(&event(8, 2, agent, exec("/x/prog", -2)), 11, &mut out);
        assert!(out.is_empty(), "held");
        s.on_event(&event(7, 3, agent, exec("/y/prog", 0)), 12, &mut out);
        assert_eq!(seqs(&out), vec![3]);
        assert_eq!(out[0].context["exec"]["path_search"][0]["seq"], 1);
        s.on_event(&event(8, 4, agent, exit()), 13, &mut out);
        assert_eq!(seqs(&out), vec![3, 2, 4], "the attempt before the exit");
        assert_eq!(out[1].context["exec"]["filename"], "/x/prog");
        // Not an agent's process: no receipt, nothing held.
        s.on_event(&event(9, 5, None, exec("/x/prog", -2)), 14, &mut out);
        s.flush_all(&mut out);
        assert_eq!(seqs(&out), vec![3, 2, 4]);
        assert_eq!(s.path_search_counters().folded, 1);
    }

    #[test]
    fn a_finding_s_evidence_takes_the_search_too() {
        let mut s = Selector::new(0);
        let mut out = Vec::new();
        s.on_event(&event(7, 1, Some("a"), exec("/x/prog", -2)), 10, &mut out);
        let ran = event(7, 2, Some("a"), exec("/y/prog", 0));
        let mut evidence = draft_for(&ran, 11, "a".into()).unwrap();
        s.fold_search(&ran, &mut evidence, &mut out);
        assert!(out.is_empty());
        assert_eq!(evidence.context["exec"]["path_search"][0]["seq"], 1);
    }
}
