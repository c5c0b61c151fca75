//! File-open folding: an agent's process opens dozens of files per
//! command (locale files, shared libraries, scripts), and a receipt per
//! open was most of a store. The opens of one agent (its chain) within
//! `file_open_window_ms` become one `file.open` receipt: the context of
//! its first open, plus `file_open.paths`, each distinct open (process,
//! path, flags, mode, directory fd, outcome) once with its count, first
//! and last time and the kernel sequence of its first occurrence. The list
//! is bounded: when it is full the receipt is issued and the next opens
//! start another, so no open is dropped. `file_open_fold = "process"`
//! keeps a list per process instead (ended by its exec or exit), and
//! `"path"` a receipt per (process, path, window).
//!
//! Opens of a path the policy's indicator lists name as sensitive (model
//! weights, secret files, AI credentials) keep a receipt of their own per
//! (process, path, window), the shape they always had (`count`,
//! `last_time`): an auditor looking for who touched a key finds that
//! receipt alone. An open that fires a rule never comes here: it is the
//! evidence receipt of its finding, issued at once.
//!
//! A list is issued when its window ends, at a clock step and at stop (a
//! process's list also when it execs, its later opens belonging to
//! another program, and when it exits); and, oldest first, when the folds
//! held over all lists reach a bound, so memory stays bounded at the cost
//! of folding only.
use std::collections::{HashMap, VecDeque};

use serde_json::{json, Map, Value};

use super::chain::Draft;
use crate::{
    config::FileOpenFold,
    record::{EnrichedEvent, OpenDetail},
};

/// Distinct opens listed in one receipt (a few hundred bytes each).
pub const PATHS_CAP: usize = 256;
/// The JSON text of one list's entries: with its ~6 KB envelope and the
/// first open's context, a receipt stays well under the 64 KiB that one
/// syslog UDP datagram carries and a file sink's smallest useful
/// `max_bytes`. An agent's list reaches it at about 75 entries.
pub const LIST_BYTES_CAP: usize = 24 * 1024;
/// Listed opens and sensitive folds held over all processes: each list
/// holds its first open's context (a few KB), so this bounds memory to a
/// few tens of MB when every process opens one file and waits.
pub const HELD_CAP: usize = 8192;

/// What folding did over a run (reported in `observer.stop`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    /// Opens that went into a receipt of this module (each counted once).
    pub opens: u64,
    /// `file.open` receipts with a `paths` list.
    pub listed_receipts: u64,
    /// `file.open` receipts of a sensitive path, on their own.
    pub sensitive_receipts: u64,
    /// Lists issued because they reached [`PATHS_CAP`] entries or
    /// [`LIST_BYTES_CAP`] bytes.
    pub closed_at_paths_cap: u64,
    /// Receipts issued early because [`HELD_CAP`] was reached.
    pub closed_at_held_cap: u64,
    /// `file.open` receipts of one path that is not sensitive, when
    /// folding per path.
    pub path_receipts: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    /// The list of one agent (chain), when listing per agent.
    Agent(String),
    /// The list of one process, when listing per process.
    Process(u32),
    /// One path of one process: a sensitive one, or any when folding per
    /// path.
    Path(u32, String),
}

/// What makes two opens the same entry: everything the event says about
/// the open but the descriptor number a success returned.
#[derive(Debug, PartialEq, Eq, Hash)]
struct EntryKey {
    /// The opening process, when one list holds several.
    pid: Option<u32>,
    path: String,
    flags: u32,
    mode: u32,
    dfd: i32,
    openat2: bool,
    /// The negative errno of a failed open; None for a success.
    failed: Option<i32>,
    reasons: Vec<&'static str>,
}

impl EntryKey {
    fn of(pid: Option<u32>, o: &OpenDetail) -> EntryKey {
        EntryKey {
            pid,
            path: o.path.clone(),
            flags: o.flags,
            mode: o.mode,
            dfd: o.dfd,
            openat2: o.openat2,
            failed: (o.result < 0).then_some(o.result),
            reasons: o.reasons.clone(),
        }
    }
}

struct Entry {
    /// The `file_open` member of its first open, with `time`, `cpu` and
    /// `seq` of that open.
    first: Map<String, Value>,
    /// `first`'s JSON text length, plus room for `count` and `last_time`.
    bytes: usize,
    count: u64,
    last_time: String,
}

enum Kind {
    List {
        entries: Vec<Entry>,
        index: HashMap<EntryKey, usize>,
        /// The sum of the entries' `bytes`, against [`LIST_BYTES_CAP`].
        bytes: usize,
    },
    Path {
        count: u64,
        last_unix_ns: u64,
        sensitive: bool,
    },
}

struct Fold {
    id: u64,
    draft: Draft,
    kind: Kind,
}

pub struct OpenFolds {
    window_ns: u64,
    paths_cap: usize,
    held_cap: usize,
    folds: HashMap<Key, Fold>,
    /// (window start, key, id) of every fold, oldest first; entries of
    /// folds already issued are skipped when reached.
    order: VecDeque<(u64, Key, u64)>,
    /// Listed entries plus sensitive folds held.
    held: usize,
    next_id: u64,
    counters: Counters,
    /// What a list covers, or a receipt per path (`file_open_fold`).
    pub fold: FileOpenFold,
}

impl OpenFolds {
    pub fn new(window_ns: u64, paths_cap: usize, held_cap: usize) -> OpenFolds {
        OpenFolds {
            window_ns,
            paths_cap: paths_cap.max(1),
            held_cap: held_cap.max(1),
            folds: HashMap::new(),
            order: VecDeque::new(),
            held: 0,
            next_id: 0,
            counters: Counters::default(),
            fold: FileOpenFold::Process,
        }
    }

    /// Folding is on (a window of 0 makes every open its own receipt).
    pub fn enabled(&self) -> bool {
        self.window_ns > 0
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// An agent's open `o` (event `ev`, at `unix_ns`); `draft` makes this
    /// open's receipt draft when it starts a fold (None: no receipt).
    /// Receipts a cap closes go to `out`.
    pub fn on_open(
        &mut self,
        ev: &EnrichedEvent,
        o: &OpenDetail,
        unix_ns: u64,
        sensitive: bool,
        draft: impl FnOnce() -> Option<Draft>,
        out: &mut Vec<Draft>,
    ) {
        let pid = ev.process.pid;
        if sensitive || self.fold == FileOpenFold::Path {
            let key = Key::Path(pid, o.path.clone());
            if let Some(Fold {
                kind:
                    Kind::Path {
                        count,
                        last_unix_ns,
                        ..
                    },
                ..
            }) = self.folds.get_mut(&key)
            {
                *count += 1;
                *last_unix_ns = unix_ns;
                self.counters.opens += 1;
                return;
            }
            let kind = Kind::Path {
                count: 1,
                last_unix_ns: unix_ns,
                sensitive,
            };
            self.start(key, unix_ns, draft, kind, out);
            return;
        }
        let agent = ev.process.agent.as_deref().unwrap_or_default();
        let per_agent = self.fold == FileOpenFold::Agent;
        let key = if per_agent {
            Key::Agent(agent.to_string())
        } else {
            Key::Process(pid)
        };
        if self
            .folds
            .get(&key)
            .is_some_and(|f| f.draft.agent_id != agent)
        {
            // A reload gave the process to another agent: its list so far
            // belongs to the old chain.
            self.close(&key, false, out);
        }
        let entry_key = EntryKey::of(per_agent.then_some(pid), o);
        let mut full = None;
        if let Some(Fold {
            kind:
                Kind::List {
                    entries,
                    index,
                    bytes,
                },
            ..
        }) = self.folds.get_mut(&key)
        {
            if let Some(&i) = index.get(&entry_key) {
                entries[i].count += 1;
                entries[i].last_time.clone_from(&ev.time);
                self.counters.opens += 1;
                return;
            }
            let new = entry(ev, o, per_agent);
            if entries.len() < self.paths_cap && *bytes + new.bytes <= LIST_BYTES_CAP {
                *bytes += new.bytes;
                index.insert(entry_key, entries.len());
                entries.push(new);
                self.counters.opens += 1;
                self.held += 1;
                self.enforce_held_cap(out);
                return;
            }
            self.counters.closed_at_paths_cap += 1;
            self.close(&key, true, out);
            // The entry that did not fit starts the next list.
            full = Some(new);
        }
        let first = full.unwrap_or_else(|| entry(ev, o, per_agent));
        let kind = Kind::List {
            index: HashMap::from([(entry_key, 0)]),
            bytes: first.bytes,
            entries: vec![first],
        };
        self.start(key, unix_ns, draft, kind, out);
    }

    /// The process `pid` execs or ends: its list so far is issued.
    pub fn close_process(&mut self, pid: u32, out: &mut Vec<Draft>) {
        self.close(&Key::Process(pid), false, out);
    }

    /// Issues folds whose window ended before `now_unix_ns`.
    pub fn flush_due(&mut self, now_unix_ns: u64, out: &mut Vec<Draft>) {
        while let Some((start, _, _)) = self.order.front() {
            if now_unix_ns < start.saturating_add(self.window_ns) {
                break;
            }
            let (_, key, id) = self.order.pop_front().expect("front exists");
            if self.folds.get(&key).is_some_and(|f| f.id == id) {
                self.close(&key, false, out);
            }
        }
    }

    /// Issues every fold (at a clock step, at stop).
    pub fn flush_all(&mut self, out: &mut Vec<Draft>) {
        self.flush_due(u64::MAX, out);
        debug_assert_eq!(self.held, 0);
    }

    fn start(
        &mut self,
        key: Key,
        unix_ns: u64,
        draft: impl FnOnce() -> Option<Draft>,
        kind: Kind,
        out: &mut Vec<Draft>,
    ) {
        let Some(draft) = draft() else {
            return;
        };
        let id = self.next_id;
        self.next_id += 1;
        self.order.push_back((unix_ns, key.clone(), id));
        self.folds.insert(key, Fold { id, draft, kind });
        self.counters.opens += 1;
        self.held += 1;
        self.enforce_held_cap(out);
    }

    fn enforce_held_cap(&mut self, out: &mut Vec<Draft>) {
        while self.held > self.held_cap {
            let Some((_, key, id)) = self.order.pop_front() else {
                break;
            };
            if self.folds.get(&key).is_some_and(|f| f.id == id) {
                self.counters.closed_at_held_cap += 1;
                self.close(&key, false, out);
            }
        }
    }

    /// Issues the fold at `key`, if any; `full`: its list reached the cap.
    fn close(&mut self, key: &Key, full: bool, out: &mut Vec<Draft>) {
        let Some(fold) = self.folds.remove(key) else {
            return;
        };
        let mut draft = fold.draft;
        let o = &mut draft.context["file_open"];
        match fold.kind {
            Kind::Path {
                count,
                last_unix_ns,
                sensitive,
            } => {
                self.held -= 1;
                if sensitive {
                    self.counters.sensitive_receipts += 1;
                } else {
                    self.counters.path_receipts += 1;
                }
                o["count"] = json!(count);
                o["last_time"] = json!(super::payload::issued_at(last_unix_ns));
            }
            Kind::List { entries, .. } => {
                self.held -= entries.len();
                self.counters.listed_receipts += 1;
                // The top-level members describe the first path, as a
                // receipt of one path did.
                o["count"] = json!(entries[0].count);
                o["last_time"] = json!(entries[0].last_time);
                o["paths"] = Value::Array(entries.into_iter().map(entry_value).collect());
                if full {
                    o["paths_full"] = Value::Bool(true);
                }
            }
        }
        out.push(draft);
    }
}

/// A list entry for the open `o` of `ev`; `with_process`: the list holds
/// several processes' opens, so the entry names its process (`pid`, and
/// `exe`, the program that made the open; its full process view is in
/// that program's `process.exec` receipt).
fn entry(ev: &EnrichedEvent, o: &OpenDetail, with_process: bool) -> Entry {
    let mut first = match serde_json::to_value(o) {
        Ok(Value::Object(m)) => m,
        _ => Map::from_iter([("path".to_string(), json!(o.path))]),
    };
    first.insert("time".into(), json!(ev.time));
    first.insert("cpu".into(), json!(ev.cpu));
    first.insert("seq".into(), json!(ev.seq));
    if with_process {
        first.insert("pid".into(), json!(ev.process.pid));
        first.insert("exe".into(), json!(ev.process.exe));
    }
    // `count` and `last_time` (a time as long as the first's) come when
    // the list is issued.
    let bytes = serde_json::to_string(&first).map_or(0, |t| t.len()) + ev.time.len() + 40;
    Entry {
        first,
        bytes,
        count: 1,
        last_time: ev.time.clone(),
    }
}

fn entry_value(e: Entry) -> Value {
    let mut m = e.first;
    m.insert("count".into(), json!(e.count));
    m.insert("last_time".into(), json!(e.last_time));
    Value::Object(m)
}

#[cfg(test)]
#[path = "open_fold_tests.rs"]
mod tests;
