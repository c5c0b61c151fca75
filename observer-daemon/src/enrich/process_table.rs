//! Processes known to the daemon, built from a /proc scan at startup and
//! then from fork, exec and exit events. Events can arrive out of order
//! (per-CPU producers share one ring buffer), so every update compares
//! kernel boot timestamps instead of trusting arrival order. Memory is
//! bounded: exited processes are kept for late events and evicted first.
use std::collections::{HashMap, VecDeque};

/// How a process entered the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Already running when the daemon started.
    ProcScan,
    Fork,
    Exec,
    /// Seen first through some other event; details are best effort.
    Inferred,
}

/// The program a process runs: set by exec, copied to the child by fork.
#[derive(Debug, Clone, Default)]
pub struct Image {
    pub comm: String,
    pub exe: Option<String>,
    pub exe_sha256: Option<String>,
    /// Already redacted.
    pub argv: Vec<String>,
    pub env_names: Vec<String>,
    pub uid: u32,
    pub gid: u32,
    pub loginuid: Option<u32>,
    pub cgroup_id: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct Process {
    pub pid: u32,
    pub ppid: u32,
    pub image: Image,
    /// Boot-time ns of the fork (or of the first sighting).
    pub start_boot_ns: u64,
    /// Boot-time ns of the latest exec.
    pub exec_boot_ns: Option<u64>,
    pub exit_code: Option<u32>,
    pub exit_boot_ns: Option<u64>,
    pub origin: Origin,
    /// All opens of this process are reported (inherited by descendants).
    pub watched: bool,
    /// The registered agent this process belongs to: set when it execs an
    /// agent's executable, inherited by every descendant at fork, kept
    /// across exec unless the new image is another agent.
    pub agent: Option<std::sync::Arc<str>>,
    /// The executable was looked up in /proc once (for a process first seen
    /// by another event than its exec): a process that is gone is not
    /// looked up again on its every event.
    pub exe_looked_up: bool,
}

impl Process {
    pub fn new(pid: u32, ppid: u32, start_boot_ns: u64, origin: Origin) -> Process {
        Process {
            pid,
            ppid,
            image: Image::default(),
            start_boot_ns,
            exec_boot_ns: None,
            exit_code: None,
            exit_boot_ns: None,
            origin,
            watched: false,
            agent: None,
            exe_looked_up: false,
        }
    }

    pub fn has_exited(&self) -> bool {
        self.exit_boot_ns.is_some()
    }
}

pub struct ProcessTable {
    procs: HashMap<u32, Process>,
    /// Exited pids in exit order, for eviction.
    exited: VecDeque<u32>,
    capacity: usize,
    evicted: u64,
}

impl ProcessTable {
    pub fn new(capacity: usize) -> ProcessTable {
        ProcessTable {
            procs: HashMap::new(),
            exited: VecDeque::new(),
            capacity,
            evicted: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.procs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }

    /// Entries dropped to stay within capacity.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    pub fn get(&self, pid: u32) -> Option<&Process> {
        self.procs.get(&pid)
    }

    pub fn get_mut(&mut self, pid: u32) -> Option<&mut Process> {
        self.procs.get_mut(&pid)
    }

    pub fn pids(&self) -> impl Iterator<Item = u32> + '_ {
        self.procs.keys().copied()
    }

    /// Adds a process found by the startup scan unless events already told
    /// us about it.
    pub fn insert_scanned(&mut self, p: Process) {
        if !self.procs.contains_key(&p.pid) {
            self.insert(p);
        }
    }

    /// A fork: the child starts as a copy of the parent's image.
    pub fn on_fork(&mut self, parent: u32, child: u32, boot_ns: u64) {
        if let Some(existing) = self.procs.get_mut(&child) {
            // Our exec or exit of the child overtook the fork: keep what
            // they set, only fill in the lineage.
            if existing.start_boot_ns >= boot_ns || !existing.has_exited() {
                existing.ppid = parent;
                existing.start_boot_ns = existing.start_boot_ns.min(boot_ns);
                return;
            }
        }
        let mut p = match self.procs.get(&parent) {
            Some(parent_proc) => Process {
                pid: child,
                ppid: parent,
                ..parent_proc.clone()
            },
            None => Process::new(child, parent, boot_ns, Origin::Fork),
        };
        p.origin = Origin::Fork;
        p.start_boot_ns = boot_ns;
        p.exec_boot_ns = None;
        p.exit_code = None;
        p.exit_boot_ns = None;
        self.insert(p);
    }

    /// A successful exec replaces the image; lineage and start time stay.
    pub fn on_exec(&mut self, pid: u32, ppid: u32, boot_ns: u64, image: Image) -> &Process {
        let reused = self
            .procs
            .get(&pid)
            .is_some_and(|p| p.exit_boot_ns.is_some_and(|exit| exit < boot_ns));
        if reused || !self.procs.contains_key(&pid) {
            self.insert(Process::new(pid, ppid, boot_ns, Origin::Exec));
        }
        let p = self.procs.get_mut(&pid).expect("inserted above");
        if p.exec_boot_ns.is_none_or(|t| t <= boot_ns) {
            p.exec_boot_ns = Some(boot_ns);
            if ppid != 0 {
                p.ppid = ppid;
            }
            p.image = image;
        }
        p
    }

    /// The process's last thread exited. Unknown pids get a tombstone so a
    /// late exec or fork for them is recognised as belonging to the past.
    pub fn on_exit(&mut self, pid: u32, ppid: u32, exit_code: u32, boot_ns: u64) {
        let p = self
            .procs
            .entry(pid)
            .or_insert_with(|| Process::new(pid, ppid, boot_ns, Origin::Inferred));
        p.exit_code = Some(exit_code);
        p.exit_boot_ns = Some(boot_ns);
        self.exited.push_back(pid);
        self.enforce_capacity();
    }

    /// Ensures an entry exists for a process first seen through another
    /// event (a connect by a process that predates us and was missed).
    pub fn ensure(&mut self, pid: u32, boot_ns: u64) -> &mut Process {
        if !self.procs.contains_key(&pid) {
            self.insert(Process::new(pid, 0, boot_ns, Origin::Inferred));
        }
        self.procs.get_mut(&pid).expect("inserted above")
    }

    /// Parent chain, nearest first, at most `max` entries, cycle-safe.
    pub fn ancestors(&self, pid: u32, max: usize) -> Vec<&Process> {
        let mut out: Vec<&Process> = Vec::new();
        let mut next = self.procs.get(&pid).map(|p| p.ppid);
        while let Some(ppid) = next {
            if ppid == 0 || out.len() >= max || out.iter().any(|p| p.pid == ppid) {
                break;
            }
            match self.procs.get(&ppid) {
                Some(parent) => {
                    next = Some(parent.ppid);
                    out.push(parent);
                }
                None => break,
            }
        }
        out
    }

    fn insert(&mut self, p: Process) {
        self.procs.insert(p.pid, p);
        self.enforce_capacity();
    }

    fn enforce_capacity(&mut self) {
        while self.procs.len() > self.capacity {
            match self.exited.pop_front() {
                Some(pid) => {
                    if self.procs.get(&pid).is_some_and(Process::has_exited) {
                        self.procs.remove(&pid);
                        self.evicted += 1;
                    }
                }
                None => {
                    // Only live processes left: drop the oldest one.
                    let oldest = self
                        .procs
                        .values()
                        .min_by_key(|p| p.start_boot_ns)
                        .map(|p| p.pid);
                    if let Some(pid) = oldest {
                        self.procs.remove(&pid);
                        self.evicted += 1;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(exe: &str) -> Image {
        Image {
            comm: "x".into(),
            exe: Some(exe.into()),
            ..Default::default()
        }
    }

    #[test]
    fn fork_copies_parent_image_then_exec_replaces_it() {
        let mut t = ProcessTable::new(100);
        t.on_exec(10, 1, 100, image("/bin/bash"));
        t.on_fork(10, 11, 200);
        assert_eq!(t.get(11).unwrap().image.exe.as_deref(), Some("/bin/bash"));
        assert_eq!(t.get(11).unwrap().ppid, 10);
        t.on_exec(11, 10, 300, image("/usr/bin/curl"));
        let child = t.get(11).unwrap();
        assert_eq!(child.image.exe.as_deref(), Some("/usr/bin/curl"));
        assert_eq!(child.start_boot_ns, 200);
        assert_eq!(
            t.ancestors(11, 8).iter().map(|p| p.pid).collect::<Vec<_>>(),
            vec![10]
        );
    }

    #[test]
    fn exec_before_fork_keeps_exec_image() {
        let mut t = ProcessTable::new(100);
        t.on_exec(10, 1, 100, image("/bin/sh"));
        t.on_exec(11, 10, 300, image("/usr/bin/true"));
        t.on_fork(10, 11, 200); // arrives late
        let child = t.get(11).unwrap();
        assert_eq!(child.image.exe.as_deref(), Some("/usr/bin/true"));
        assert_eq!((child.ppid, child.start_boot_ns), (10, 200));
    }

    #[test]
    fn exit_before_exec_keeps_both() {
        let mut t = ProcessTable::new(100);
        t.on_exit(12, 1, 0x100, 500);
        t.on_exec(12, 1, 400, image("/usr/bin/false")); // older than the exit
        let p = t.get(12).unwrap();
        assert_eq!(p.image.exe.as_deref(), Some("/usr/bin/false"));
        assert_eq!(p.exit_code, Some(0x100));
    }

    #[test]
    fn exec_after_exit_is_pid_reuse() {
        let mut t = ProcessTable::new(100);
        t.on_exec(13, 1, 100, image("/old"));
        t.on_exit(13, 1, 0, 200);
        t.on_exec(13, 1, 300, image("/new"));
        let p = t.get(13).unwrap();
        assert_eq!(p.image.exe.as_deref(), Some("/new"));
        assert!(!p.has_exited());
    }

    #[test]
    fn capacity_evicts_exited_first() {
        let mut t = ProcessTable::new(3);
        t.on_exec(1, 0, 10, image("/a"));
        t.on_exec(2, 0, 20, image("/b"));
        t.on_exit(2, 0, 0, 25);
        t.on_exec(3, 0, 30, image("/c"));
        t.on_exec(4, 0, 40, image("/d"));
        assert_eq!(t.len(), 3);
        assert!(t.get(2).is_none(), "exited process evicted first");
        assert!(t.get(1).is_some());
        assert_eq!(t.evicted(), 1);
    }

    #[test]
    fn ancestors_stop_at_cycles_and_limit() {
        let mut t = ProcessTable::new(100);
        t.on_exec(1, 2, 1, image("/init"));
        t.on_exec(2, 1, 2, image("/x"));
        t.on_exec(3, 2, 3, image("/y"));
        assert_eq!(
            t.ancestors(3, 8).iter().map(|p| p.pid).collect::<Vec<_>>(),
            vec![2, 1]
        );
        assert_eq!(t.ancestors(3, 1).len(), 1);
    }
}
