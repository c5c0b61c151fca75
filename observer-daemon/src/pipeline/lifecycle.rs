//! The observer's own receipts: the contexts of `observer.start`,
//! `observer.policy`, `observer.loss` and `observer.stop` as typed structs,
//! so the shape each one signs is written down once, here (docs/RECEIPTS.md
//! "Context shapes"). Serialized through `serde_json::Value`, whose maps
//! keep keys sorted: the stored JSON is the same as when these were built
//! with `json!`.
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::{
    receipt::{
        open_fold, path_search,
        payload::{self, UnsignedGap},
        pipeline::Resumed,
        store::{CheckpointRow, RunRow},
    },
    record::{LossRecord, StartRecord, StatsRecord},
};

/// `observer.start`: this run, and what the store says of the one before.
#[derive(Serialize)]
pub struct Start<'a> {
    pub pid: u32,
    pub version: &'static str,
    pub run_id: i64,
    pub probes: &'a [String],
    pub processes_scanned: usize,
    pub config: Option<&'a str>,
    /// Receipts in the log when this run began.
    pub log_size: u64,
    pub master_seed_created: bool,
    pub previous_run: Option<PreviousRun<'a>>,
    pub previous_stop_unclean: bool,
    pub last_checkpoint: Option<LastCheckpoint<'a>>,
    /// From the previous run's stop (or its last receipt) to now: the
    /// time nothing was observed.
    pub unobserved: Option<Span>,
}

#[derive(Serialize)]
pub struct PreviousRun<'a> {
    pub run_id: i64,
    pub pid: u32,
    pub version: &'a str,
    pub started_at: &'a str,
    pub stopped_at: Option<&'a str>,
    pub clean_stop: bool,
}

#[derive(Serialize)]
pub struct LastCheckpoint<'a> {
    pub size: u64,
    /// The Merkle root, lowercase hex.
    pub root: String,
    pub created_at: &'a str,
}

/// A stretch of time, RFC 3339 at both ends.
#[derive(Serialize)]
pub struct Span {
    pub from: String,
    pub to: String,
}

impl<'a> Start<'a> {
    pub fn new(
        start: &'a StartRecord,
        resumed: &'a Resumed,
        master_seed_created: bool,
        now_ns: u64,
    ) -> Start<'a> {
        let previous = resumed.previous_run.as_ref();
        // The daemon was down from its last receipt (or its clean stop) to
        // now: whatever happened meanwhile was not observed.
        let down_from = previous
            .and_then(|run| run.stopped_at.clone())
            .or_else(|| resumed.last_issued_ns.map(payload::issued_at));
        Start {
            pid: start.pid,
            version: env!("CARGO_PKG_VERSION"),
            run_id: resumed.run_id,
            probes: &start.probes,
            processes_scanned: start.processes_scanned,
            config: start.config.as_deref(),
            log_size: resumed.log_size,
            master_seed_created,
            previous_run: previous.map(PreviousRun::of),
            previous_stop_unclean: previous.is_some_and(|run| !run.clean_stop),
            last_checkpoint: resumed.last_checkpoint.as_ref().map(LastCheckpoint::of),
            unobserved: down_from.map(|from| Span {
                from,
                to: payload::issued_at(now_ns),
            }),
        }
    }
}

impl<'a> PreviousRun<'a> {
    fn of(run: &'a RunRow) -> PreviousRun<'a> {
        PreviousRun {
            run_id: run.id,
            pid: run.pid,
            version: &run.version,
            started_at: &run.started_at,
            stopped_at: run.stopped_at.as_deref(),
            clean_stop: run.clean_stop,
        }
    }
}

impl<'a> LastCheckpoint<'a> {
    fn of(c: &'a CheckpointRow) -> LastCheckpoint<'a> {
        LastCheckpoint {
            size: c.size,
            root: hex::encode(&c.root),
            created_at: &c.created_at,
        }
    }
}

/// `observer.policy` at start (`"event": "policy_loaded"`): the agents and
/// settings that decide what becomes a receipt.
#[derive(Serialize, Clone)]
pub struct PolicyAtStart {
    pub event: &'static str,
    pub config: Option<String>,
    pub mode: &'static str,
    pub agents: Vec<AgentListed>,
    pub file_open_window_ms: u64,
    pub path_search: PathSearchSettings,
    pub file_open: FileOpenSettings,
    pub retention: Option<String>,
    /// [`crate::policy::Policy::summary`].
    pub policy: Value,
    pub policy_digest: String,
}

/// An agent of observer.toml's `[[agents]]`.
#[derive(Serialize, Clone)]
pub struct AgentListed {
    pub id: String,
    pub executables: Vec<String>,
}

/// How failed execs fold into the exec that ends their PATH search.
#[derive(Serialize, Clone)]
pub struct PathSearchSettings {
    pub fold: bool,
    pub window_ms: u64,
    pub per_process_cap: usize,
    pub global_cap: usize,
}

/// How file opens fold; opens of the `own_receipt` indicator lists' paths
/// keep their own receipts.
#[derive(Serialize, Clone)]
pub struct FileOpenSettings {
    pub fold: &'static str,
    pub window_ms: u64,
    pub paths_cap: usize,
    pub list_bytes_cap: usize,
    pub held_cap: usize,
    pub own_receipt: [&'static str; 3],
}

/// `observer.policy` after an accepted reload: the new policy's summary
/// with what triggered it and what it replaced.
#[derive(Serialize)]
pub struct PolicyReloaded {
    #[serde(flatten)]
    pub in_force: Value,
    pub event: &'static str,
    pub trigger: &'static str,
    pub previous_digest: String,
    pub attributed_running: AttributedRunning,
}

/// Running processes a reload attributed to an agent: the count and the
/// first [`AttributedRunning::LISTED`].
#[derive(Serialize)]
pub struct AttributedRunning {
    pub count: usize,
    pub processes: Vec<Attributed>,
}

#[derive(Serialize)]
pub struct Attributed {
    pub pid: u32,
    pub agent: String,
}

impl AttributedRunning {
    pub const LISTED: usize = 100;

    pub fn of(list: &[(u32, Arc<str>)]) -> AttributedRunning {
        AttributedRunning {
            count: list.len(),
            processes: list
                .iter()
                .take(Self::LISTED)
                .map(|(pid, agent)| Attributed {
                    pid: *pid,
                    agent: agent.to_string(),
                })
                .collect(),
        }
    }
}

/// `observer.policy` for a policy directory that failed to load: the
/// policy in force stays.
#[derive(Serialize)]
pub struct PolicyRefused {
    pub event: &'static str,
    pub trigger: &'static str,
    /// `path:line:col: message`.
    pub error: String,
    pub policy_digest: String,
    pub policies_dir: Option<String>,
}

/// `observer.policy` for a policy that loaded but whose kernel filters
/// could not be applied: it is refused, the one in force stays.
#[derive(Serialize)]
pub struct KernelFiltersRefused {
    pub event: &'static str,
    pub trigger: &'static str,
    pub error: String,
    pub refused_digest: String,
    pub policy_digest: String,
    pub in_force: Value,
}

/// `observer.loss`: the loss record and the window it covers.
#[derive(Serialize)]
pub struct Loss<'a> {
    #[serde(flatten)]
    pub loss: &'a LossRecord,
    pub from: &'a str,
    pub to: &'a str,
}

impl<'a> Loss<'a> {
    pub fn new(loss: &'a LossRecord, gap: &'a UnsignedGap) -> Loss<'a> {
        Loss {
            loss,
            from: &gap.from,
            to: &gap.to,
        }
    }
}

/// `observer.stop`: the final counters, what folding did (none of it drops
/// a fact) and the receipts' commit latency over the run.
#[derive(Serialize)]
pub struct Stop<'a> {
    #[serde(flatten)]
    pub stats: &'a StatsRecord,
    pub receipts_committed_this_run: u64,
    pub path_search: path_search::Counters,
    pub file_open: open_fold::Counters,
    pub log_size_before_stop: u64,
    /// Kernel event to committed receipt.
    pub commit_latency_ms: Latency,
}

#[derive(Serialize)]
pub struct Latency {
    pub p50: Option<u64>,
    pub p99: Option<u64>,
    pub max: Option<u64>,
}

/// The context a draft signs. These structs hold only strings, numbers,
/// options, lists and maps with string keys, which always serialize.
pub fn context(c: &impl Serialize) -> Value {
    serde_json::to_value(c).unwrap_or_else(|e| {
        log::error!("an observer receipt context did not serialize: {e}");
        Value::Null
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_start_after_an_unclean_run_records_the_unobserved_span() {
        let start = StartRecord {
            time: "t".into(),
            pid: 7,
            probes: vec!["execve".into()],
            processes_scanned: 3,
            config: None,
        };
        let resumed = Resumed {
            previous_run: Some(RunRow {
                id: 4,
                pid: 6,
                version: "0.1.0".into(),
                started_at: "2026-01-01T00:00:00Z".into(),
                stopped_at: None,
                clean_stop: false,
            }),
            last_checkpoint: Some(CheckpointRow {
                size: 9,
                root: vec![0xab; 2],
                note: String::new(),
                created_at: "2026-01-01T00:00:01Z".into(),
            }),
            last_issued_ns: Some(1_000_000_000),
            log_size: 12,
            run_id: 5,
        };
        let got = context(&Start::new(&start, &resumed, false, 2_000_000_000));
        assert_eq!(
            got,
            json!({
                "pid": 7, "version": env!("CARGO_PKG_VERSION"), "run_id": 5,
                "probes": ["execve"], "processes_scanned": 3, "config": null,
                "log_size": 12, "master_seed_created": false,
                "previous_run": {"run_id": 4, "pid": 6, "version": "0.1.0",
                    "started_at": "2026-01-01T00:00:00Z", "stopped_at": null, "clean_stop": false},
                "previous_stop_unclean": true,
                "last_checkpoint": {"size": 9, "root": "abab", "created_at": "2026-01-01T00:00:01Z"},
                "unobserved": {"from": payload::issued_at(1_000_000_000), "to": payload::issued_at(2_000_000_000)},
            })
        );
    }

    #[test]
    fn a_reload_lists_the_summary_beside_its_own_members() {
        let running: Vec<(u32, Arc<str>)> = (0..150).map(|pid| (pid, Arc::from("a"))).collect();
        let got = context(&PolicyReloaded {
            in_force: json!({"policy_digest": "sha256:1", "agents": ["a"]}),
            event: "policy_reloaded",
            trigger: "sighup",
            previous_digest: "sha256:0".into(),
            attributed_running: AttributedRunning::of(&running),
        });
        assert_eq!(got["policy_digest"], "sha256:1");
        assert_eq!(got["event"], "policy_reloaded");
        assert_eq!(got["attributed_running"]["count"], 150);
        assert_eq!(
            got["attributed_running"]["processes"]
                .as_array()
                .map(Vec::len),
            Some(AttributedRunning::LISTED)
        );
        assert_eq!(
            got["attributed_running"]["processes"][1],
            json!({"pid": 1, "agent": "a"})
        );
    }
}
