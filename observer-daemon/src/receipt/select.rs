//! Which events become receipts, and with what context: every event of a
//! registered agent's process tree. The file opens of an agent within a
//! window fold into one `file.open` receipt listing them, so a build that
//! opens 100k files does not produce 100k receipts; sensitive paths keep a
//! receipt of their own ([`open_fold`]). Failed execs of a PATH search
//! fold into the exec that ends it ([`path_search`]).
use serde_json::Value;

use super::{
    chain::Draft,
    open_fold::{self, OpenFolds},
    path_search::{self, PathSearch},
    payload::{Mappings, RiskClass},
};
use crate::{
    config::FileOpenFold,
    record::{Detail, EnrichedEvent},
};

/// `executable_hash` when the executable could not be hashed (it was
/// deleted, or is larger than `hash_max_bytes`): all zeros, with the reason
/// in the context (`executable_hash_unavailable`).
pub const UNKNOWN_EXECUTABLE_HASH: &str =
    "sha256:0000000000000000000000000000000000000000000000000000000000000000";

pub struct Selector {
    opens: OpenFolds,
    path_search: PathSearch,
    /// Failed execs wait for the exec that ends their search (else each
    /// is issued at once).
    fold_path_search: bool,
}

/// How the selector folds (`[receipts]` settings).
#[derive(Debug, Clone, Copy)]
pub struct Folding {
    /// `file_open_window_ms` in ns; 0: a receipt per open.
    pub file_open_window_ns: u64,
    pub file_open: FileOpenFold,
    pub path_search: bool,
}

impl Folding {
    /// Opens listed per process within a window of `file_open_window_ns`,
    /// PATH searches folded.
    pub fn listed(file_open_window_ns: u64) -> Folding {
        Folding {
            file_open_window_ns,
            file_open: FileOpenFold::Process,
            path_search: true,
        }
    }
}

impl Selector {
    pub fn new(folding: Folding) -> Selector {
        let mut opens = OpenFolds::new(
            folding.file_open_window_ns,
            open_fold::PATHS_CAP,
            open_fold::HELD_CAP,
        );
        opens.fold = folding.file_open;
        Selector {
            opens,
            path_search: PathSearch::default(),
            fold_path_search: folding.path_search,
        }
    }

    /// Drafts for `ev` (at `unix_ns`), plus folds whose window ended.
    /// `sensitive_open`: `ev` opens a path the indicator lists name
    /// sensitive, which keeps a receipt of its own.
    pub fn on_event(
        &mut self,
        ev: &EnrichedEvent,
        unix_ns: u64,
        sensitive_open: bool,
        out: &mut Vec<Draft>,
    ) {
        self.flush_due(unix_ns, out);
        let Some(agent) = ev.process.agent.as_deref() else {
            return;
        };
        if let Detail::FileOpen(o) = &ev.detail {
            if self.opens.enabled() {
                // The event is serialised only when it starts a fold.
                let draft = || draft_for(ev, unix_ns, agent.to_string());
                self.opens
                    .on_open(ev, o, unix_ns, sensitive_open, draft, out);
                return;
            }
        }
        let Some(mut draft) = draft_for(ev, unix_ns, agent.to_string()) else {
            return;
        };
        let pid = ev.process.pid;
        match &ev.detail {
            Detail::Exec(e) if e.result != 0 && self.fold_path_search => {
                self.path_search.hold(pid, unix_ns, draft, out);
            }
            Detail::Exec(_) => {
                // Opens before the exec were the old program's.
                self.opens.close_process(pid, out);
                self.path_search.on_success(pid, &mut draft, out);
                out.push(draft);
            }
            Detail::Exit(_) => {
                self.opens.close_process(pid, out);
                self.path_search.on_exit(pid, out);
                out.push(draft);
            }
            _ => out.push(draft),
        }
    }

    /// What [`Selector::on_event`] does for held folds, for an agent event
    /// whose receipt is made elsewhere (the evidence of a finding): a
    /// successful exec ends its process's list of opens and takes its
    /// search, an exit ends both. What is issued goes to `out`, before the
    /// evidence, as it happened first.
    pub fn fold_search(&mut self, ev: &EnrichedEvent, draft: &mut Draft, out: &mut Vec<Draft>) {
        if ev.process.agent.is_none() {
            return;
        }
        let pid = ev.process.pid;
        match &ev.detail {
            Detail::Exec(e) if e.result == 0 => {
                self.opens.close_process(pid, out);
                self.path_search.on_success(pid, draft, out);
            }
            Detail::Exit(_) => {
                self.opens.close_process(pid, out);
                self.path_search.on_exit(pid, out);
            }
            _ => {}
        }
    }

    /// What path search folding did this run.
    pub fn path_search_counters(&self) -> path_search::Counters {
        self.path_search.counters()
    }

    /// What file-open folding did this run.
    pub fn open_fold_counters(&self) -> open_fold::Counters {
        self.opens.counters()
    }

    /// Emits folded opens whose window closed before `now_unix_ns`, and
    /// failed execs no exec followed within theirs.
    pub fn flush_due(&mut self, now_unix_ns: u64, out: &mut Vec<Draft>) {
        self.opens.flush_due(now_unix_ns, out);
        self.path_search.flush_due(now_unix_ns, out);
    }

    /// Emits every folded open and held failed exec (at a clock step, at
    /// stop).
    pub fn flush_all(&mut self, out: &mut Vec<Draft>) {
        self.opens.flush_all(out);
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
        Detail::LlmRequest(_) => "llm.request",
        Detail::McpSession(_) => "mcp.session",
        Detail::McpToolCall(_) => "mcp.tool_call",
        Detail::McpRequest(_) => "mcp.request",
        Detail::McpToolDefinition(_) => "mcp.tool_definition",
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        enrich::process_table::Origin,
        record::{ExecDetail, ExitDetail, OpenDetail, ProcessView},
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
        let mut s = Selector::new(Folding::listed(1_000_000_000));
        let mut out = Vec::new();
        let agent = Some("a");
        s.on_event(
            &event(7, 1, agent, exec("/x/prog", -2)),
            10,
            false,
            &mut out,
        );
        s.on_event(
            &event(8, 2, agent, exec("/x/prog", -2)),
            11,
            false,
            &mut out,
        );
        assert!(out.is_empty(), "held");
        s.on_event(&event(7, 3, agent, exec("/y/prog", 0)), 12, false, &mut out);
        assert_eq!(seqs(&out), vec![3]);
        assert_eq!(out[0].context["exec"]["path_search"][0]["seq"], 1);
        s.on_event(&event(8, 4, agent, exit()), 13, false, &mut out);
        assert_eq!(seqs(&out), vec![3, 2, 4], "the attempt before the exit");
        assert_eq!(out[1].context["exec"]["filename"], "/x/prog");
        // Not an agent's process: no receipt, nothing held.
        s.on_event(&event(9, 5, None, exec("/x/prog", -2)), 14, false, &mut out);
        s.flush_all(&mut out);
        assert_eq!(seqs(&out), vec![3, 2, 4]);
        assert_eq!(s.path_search_counters().folded, 1);
    }

    #[test]
    fn a_finding_s_evidence_takes_the_search_too() {
        let mut s = Selector::new(Folding::listed(0));
        let mut out = Vec::new();
        s.on_event(
            &event(7, 1, Some("a"), exec("/x/prog", -2)),
            10,
            false,
            &mut out,
        );
        let ran = event(7, 2, Some("a"), exec("/y/prog", 0));
        let mut evidence = draft_for(&ran, 11, "a".into()).unwrap();
        s.fold_search(&ran, &mut evidence, &mut out);
        assert!(out.is_empty());
        assert_eq!(evidence.context["exec"]["path_search"][0]["seq"], 1);
    }

    fn open(path: &str) -> Detail {
        Detail::FileOpen(OpenDetail {
            path: path.into(),
            result: 3,
            error: None,
            flags: 0,
            flags_text: "O_RDONLY".into(),
            mode: 0,
            reasons: vec!["watched"],
            openat2: false,
            dfd: -100,
        })
    }

    fn listed(d: &Draft) -> Vec<&str> {
        d.context["file_open"]["paths"]
            .as_array()
            .map(|p| p.iter().map(|e| e["path"].as_str().unwrap()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn a_process_s_opens_are_issued_before_its_exec_and_its_exit() {
        let mut s = Selector::new(Folding::listed(1_000_000_000));
        let mut out = Vec::new();
        let a = Some("a");
        s.on_event(&event(7, 1, a, open("/dev/null")), 10, false, &mut out);
        s.on_event(&event(7, 2, a, open("/k/id_rsa")), 11, true, &mut out);
        s.on_event(&event(7, 3, a, exec("/bin/cat", 0)), 12, false, &mut out);
        assert_eq!(seqs(&out), vec![1, 3], "the list, then the exec");
        assert_eq!(listed(&out[0]), ["/dev/null"]);
        s.on_event(
            &event(7, 4, a, open("/etc/ld.so.cache")),
            13,
            false,
            &mut out,
        );
        s.on_event(&event(7, 5, a, open("/etc/hostname")), 14, false, &mut out);
        s.on_event(&event(7, 6, a, exit()), 15, false, &mut out);
        assert_eq!(seqs(&out), vec![1, 3, 4, 6]);
        assert_eq!(listed(&out[2]), ["/etc/ld.so.cache", "/etc/hostname"]);
        // The sensitive path waits for its window, as it always did.
        s.flush_all(&mut out);
        assert_eq!(seqs(&out), vec![1, 3, 4, 6, 2]);
        assert_eq!(out[4].context["file_open"]["count"], 1);
        assert!(listed(&out[4]).is_empty());
        let c = s.open_fold_counters();
        assert_eq!(
            (c.opens, c.listed_receipts, c.sensitive_receipts),
            (4, 2, 1)
        );
    }

    #[test]
    fn without_a_window_every_open_is_its_own_receipt() {
        let mut s = Selector::new(Folding::listed(0));
        let mut out = Vec::new();
        for seq in 1..=2 {
            s.on_event(
                &event(7, seq, Some("a"), open("/etc/a")),
                seq,
                false,
                &mut out,
            );
        }
        assert_eq!(seqs(&out), vec![1, 2]);
        assert!(out[0].context["file_open"].get("count").is_none());
        assert_eq!(s.open_fold_counters(), open_fold::Counters::default());
    }

    #[test]
    fn per_path_folding_gives_each_path_its_own_counted_receipt() {
        let mut s = Selector::new(Folding {
            file_open: FileOpenFold::Path,
            ..Folding::listed(1_000_000_000)
        });
        let mut out = Vec::new();
        let a = Some("a");
        for (seq, path) in [(1, "/etc/a"), (2, "/etc/b"), (3, "/etc/a")] {
            s.on_event(&event(7, seq, a, open(path)), 10 + seq, false, &mut out);
        }
        s.on_event(&event(7, 4, a, open("/k/id_rsa")), 14, true, &mut out);
        assert!(out.is_empty(), "each path waits for its window");
        s.flush_due(14 + 1_000_000_000, &mut out);
        assert_eq!(seqs(&out), vec![1, 2, 4]);
        assert_eq!(out[0].context["file_open"]["count"], 2);
        assert_eq!(out[0].context["file_open"]["last_time"], issued(13));
        assert!(listed(&out[0]).is_empty());
        let c = s.open_fold_counters();
        assert_eq!(
            (
                c.opens,
                c.listed_receipts,
                c.path_receipts,
                c.sensitive_receipts
            ),
            (4, 0, 2, 1)
        );
    }

    fn issued(unix_ns: u64) -> String {
        crate::receipt::payload::issued_at(unix_ns)
    }

    #[test]
    fn per_agent_lists_hold_every_process_s_opens_across_execs() {
        let mut s = Selector::new(Folding {
            file_open: FileOpenFold::Agent,
            ..Folding::listed(1_000_000_000)
        });
        let mut out = Vec::new();
        let a = Some("a");
        s.on_event(&event(7, 1, a, open("/etc/a")), 10, false, &mut out);
        s.on_event(&event(8, 2, a, open("/etc/a")), 11, false, &mut out);
        s.on_event(&event(7, 3, a, exec("/bin/cat", 0)), 12, false, &mut out);
        s.on_event(&event(7, 4, a, open("/etc/a")), 13, false, &mut out);
        s.on_event(&event(8, 5, a, exit()), 14, false, &mut out);
        // Another agent's opens are another list.
        s.on_event(&event(9, 6, Some("b"), open("/etc/a")), 15, false, &mut out);
        assert_eq!(seqs(&out), vec![3, 5], "the list waits for its window");
        s.flush_due(10 + 1_000_000_000, &mut out);
        assert_eq!(seqs(&out), vec![3, 5, 1]);
        let entries = out[2].context["file_open"]["paths"].as_array().unwrap();
        let by_pid: Vec<(u64, u64)> = entries
            .iter()
            .map(|e| (e["pid"].as_u64().unwrap(), e["count"].as_u64().unwrap()))
            .collect();
        assert_eq!(by_pid, [(7, 2), (8, 1)], "one entry per process and path");
        assert_eq!(entries[0]["exe"], "/usr/bin/env");
        assert_eq!(entries[1]["seq"], 2);
        s.flush_all(&mut out);
        assert_eq!(seqs(&out), vec![3, 5, 1, 6]);
        assert_eq!(out[3].agent_id, "b");
        let c = s.open_fold_counters();
        assert_eq!((c.opens, c.listed_receipts), (4, 2));
    }

    #[test]
    fn without_path_search_folding_a_failed_exec_is_issued_at_once() {
        let mut s = Selector::new(Folding {
            path_search: false,
            ..Folding::listed(1_000_000_000)
        });
        let mut out = Vec::new();
        let a = Some("a");
        s.on_event(&event(7, 1, a, exec("/x/prog", -2)), 10, false, &mut out);
        assert_eq!(seqs(&out), vec![1]);
        s.on_event(&event(7, 2, a, exec("/y/prog", 0)), 11, false, &mut out);
        assert_eq!(seqs(&out), vec![1, 2]);
        assert!(out[1].context["exec"].get("path_search").is_none());
        assert_eq!(s.path_search_counters().folded, 0);
    }

    #[test]
    fn a_finding_s_evidence_exec_ends_the_list_of_opens() {
        let mut s = Selector::new(Folding::listed(1_000_000_000));
        let mut out = Vec::new();
        s.on_event(&event(7, 1, Some("a"), open("/etc/a")), 10, false, &mut out);
        let ran = event(7, 2, Some("a"), exec("/y/prog", 0));
        let mut evidence = draft_for(&ran, 11, "a".into()).unwrap();
        s.fold_search(&ran, &mut evidence, &mut out);
        assert_eq!(seqs(&out), vec![1]);
        assert_eq!(listed(&out[0]), ["/etc/a"]);
    }
}
