//! Turns decoded kernel events into enriched records: process identity
//! from the process table, executable hash, redacted argv, environment
//! variable names, user and group names, cgroup path, systemd unit and
//! container id, and the parent chain.
use std::{collections::HashSet, sync::Arc};

use crate::{
    enrich::process_table::{Image, Origin, Process, ProcessTable},
    enrich::redact::{redact_argv, redact_captured_argv},
    enrich::{
        cgroup::{self, CgroupResolver},
        environ::{self, EnvPattern},
        exe_hash, ExeHashCache, UserNames,
    },
    event::{Body, Event, Exec, FileOpen, Header, Net},
    format::{self, BootClock},
    policy::{agents::ImageFacts, Policy},
    record::*,
};

/// Parent-chain length included in every record.
const MAX_PARENTS: usize = 8;

/// Where the enricher asks the kernel to report all opens of a process.
pub trait WatchControl: Send {
    /// `tgid` is watched from now on; `agent` is its registered agent.
    fn watch(&mut self, tgid: u32, agent: Option<&Arc<str>>);
    /// A watched process has a new image (it forked or exec'd): what it
    /// maps may have changed. Default: nothing to do.
    fn image(&mut self, _tgid: u32, _agent: Option<&Arc<str>>) {}
    /// A watched process exited. Default: nothing to do.
    fn exited(&mut self, _tgid: u32) {}
}

pub struct EnricherOptions {
    pub process_table_capacity: usize,
    pub hash_max_bytes: u64,
    pub env_patterns: Vec<EnvPattern>,
    pub watch_executables: Vec<String>,
    /// The policy whose agent registry attributes processes to registered
    /// agents (their trees are attributed to them and watched).
    pub policy: Arc<Policy>,
}

pub struct Enricher {
    table: ProcessTable,
    hashes: ExeHashCache,
    cgroups: Option<CgroupResolver>,
    users: UserNames,
    env_patterns: Vec<EnvPattern>,
    watch_executables: HashSet<String>,
    policy: Arc<Policy>,
    watch: Box<dyn WatchControl>,
    clock: BootClock,
}

impl Enricher {
    pub fn new(opts: EnricherOptions, watch: Box<dyn WatchControl>) -> Enricher {
        Enricher {
            table: ProcessTable::new(opts.process_table_capacity),
            hashes: ExeHashCache::new(4096, opts.hash_max_bytes),
            cgroups: cgroup::find_cgroup2_mount().map(|m| CgroupResolver::new(m, 4096)),
            users: UserNames::new(1024),
            env_patterns: opts.env_patterns,
            watch_executables: opts.watch_executables.into_iter().collect(),
            policy: opts.policy,
            watch,
            clock: BootClock::now(),
        }
    }

    pub fn table(&self) -> &ProcessTable {
        &self.table
    }

    pub fn clock(&self) -> &BootClock {
        &self.clock
    }

    /// Follows the wall clock: times from now on use this offset.
    pub fn set_clock(&mut self, clock: BootClock) {
        self.clock = clock;
    }

    /// A reloaded policy: new execs are attributed by its registry, and so
    /// are the running processes no agent owns yet (an agent registered
    /// while it runs is attributed, with its descendants, from the reload
    /// on); processes already attributed keep their agent. Returns the
    /// processes attributed now, as (pid, agent), in pid order.
    pub fn set_policy(&mut self, policy: Arc<Policy>) -> Vec<(u32, Arc<str>)> {
        self.policy = policy;
        if self.policy.registry.is_empty() {
            return Vec::new();
        }
        let mut unowned: Vec<u32> = self
            .table
            .pids()
            .filter(|pid| {
                self.table
                    .get(*pid)
                    .is_some_and(|p| p.agent.is_none() && !p.has_exited())
            })
            .collect();
        unowned.sort_unstable();
        for &pid in &unowned {
            let Some(mut p) = self.table.get(pid).cloned() else {
                continue;
            };
            let Some(agent) = self.agent_of_image(&p, None, None) else {
                continue;
            };
            p.agent = Some(agent);
            self.apply_watch(&mut p, None);
            if let Some(entry) = self.table.get_mut(pid) {
                entry.agent = p.agent;
                entry.watched = p.watched;
            }
        }
        // Descendants of the processes matched now follow their ancestor.
        self.inherit_scanned_agents();
        unowned
            .into_iter()
            .filter_map(|pid| Some((pid, self.table.get(pid)?.agent.clone()?)))
            .collect()
    }

    /// Adds the processes that already run; returns how many were found.
    pub fn scan_proc(&mut self) -> usize {
        let scanned = crate::enrich::proc_scan::scan();
        let n = scanned.len();
        for mut p in scanned {
            p.image.argv = redact_argv(&p.image.argv);
            // Hashed now, while the process certainly runs; the cache is
            // keyed by inode, so shared executables are read once.
            if let Ok((_, hash)) = self.hashes.hash_proc_exe(p.pid) {
                p.image.exe_sha256 = Some(hash);
            }
            p.agent = self.agent_of_image(&p, None, None);
            self.apply_watch(&mut p, None);
            self.table.insert_scanned(p);
        }
        self.inherit_scanned_agents();
        n
    }

    /// Processes whose ancestor is an agent belong to it (the scan sees
    /// children before it can know their parents' identity; a reload
    /// attributes running parents after their children exist).
    fn inherit_scanned_agents(&mut self) {
        let orphans: Vec<u32> = self
            .table
            .pids()
            .filter(|pid| self.table.get(*pid).is_some_and(|p| p.agent.is_none()))
            .collect();
        for pid in orphans {
            let agent = self
                .table
                .ancestors(pid, usize::MAX)
                .into_iter()
                .find_map(|a| a.agent.clone());
            if let Some(agent) = agent {
                let mut p = self.table.get(pid).cloned().expect("listed above");
                p.agent = Some(agent);
                self.apply_watch(&mut p, None);
                if let Some(entry) = self.table.get_mut(pid) {
                    entry.agent = p.agent;
                    entry.watched = p.watched;
                }
            }
        }
    }

    /// The enriched record of `ev`; `None` for packet payloads, which
    /// become records (or names) only through the names stage.
    pub fn enrich(&mut self, ev: &Event) -> Option<EnrichedEvent> {
        let h = &ev.header;
        match &ev.body {
            Body::Fork {
                parent_tgid,
                child_tgid,
            } => {
                self.table.on_fork(*parent_tgid, *child_tgid, h.boot_ns);
                self.tell_image(*child_tgid);
            }
            Body::Exec(e) if e.retval == 0 => {
                self.apply_exec(h, e);
                self.tell_image(h.tgid);
            }
            _ => {}
        }
        let detail = match &ev.body {
            Body::Exec(e) => Detail::Exec(exec_detail(e)),
            Body::Fork {
                parent_tgid,
                child_tgid,
            } => Detail::Fork(ForkDetail {
                parent_pid: *parent_tgid,
                child_pid: *child_tgid,
            }),
            Body::Exit { exit_code, ppid } => {
                // The view is taken before the exit is applied, as before.
                let enriched =
                    self.enrich_with(h, h.kind.name(), Detail::Exit(exit_detail(*exit_code)));
                if enriched.process.watched {
                    self.watch.exited(h.tgid);
                }
                self.table.on_exit(h.tgid, *ppid, *exit_code, h.boot_ns);
                return Some(enriched);
            }
            Body::Net(n) => net_detail(h, n),
            Body::FileOpen(o) => Detail::FileOpen(open_detail(o)),
            Body::Packet(_) => return None,
        };
        Some(self.enrich_with(h, h.kind.name(), detail))
    }

    fn tell_image(&mut self, tgid: u32) {
        if let Some(agent) = self
            .table
            .get(tgid)
            .filter(|p| p.watched)
            .map(|p| p.agent.clone())
        {
            self.watch.image(tgid, agent.as_ref());
        }
    }

    /// A record of `detail` by the process in `h`, named `event`.
    pub fn enrich_with(
        &mut self,
        h: &Header,
        event: &'static str,
        detail: Detail,
    ) -> EnrichedEvent {
        let process = self.process_view(h);
        let parents = self.parents(h.tgid);
        EnrichedEvent {
            event,
            time: self.clock.rfc3339(h.boot_ns),
            boot_ns: h.boot_ns,
            cpu: h.cpu,
            seq: h.seq,
            process,
            parents,
            detail,
        }
    }

    fn apply_exec(&mut self, h: &Header, e: &Exec) {
        // One attempt: a process that is gone keeps the path it exec'd and
        // no hash, rather than being looked up again on its next event.
        let candidates = [
            e.filename.as_str(),
            e.argv.first().map_or("", String::as_str),
        ];
        let (exe, exe_sha256) = match self.hashes.hash_exec(h.tgid, e.exe, &candidates) {
            Ok((path, hash)) => (Some(path.display().to_string()), Some(hash)),
            Err(_) if exe_hash::names_a_file(&e.filename) => (Some(e.filename.clone()), None),
            Err(_) => (None, None),
        };
        // The environment is the one thing the exec event does not carry;
        // a process that is gone has none to read (not an error).
        let env_names = environ::read_proc_environ(h.tgid)
            .map(|blob| environ::env_names_of_interest(&blob, &self.env_patterns))
            .unwrap_or_default();
        let image = Image {
            comm: h.comm.clone(),
            exe,
            exe_sha256,
            argv: redact_captured_argv(&e.argv, e.args_truncated),
            env_names,
            uid: h.uid,
            gid: h.gid,
            loginuid: e.loginuid,
            cgroup_id: Some(h.cgroup_id),
        };
        self.table.on_exec(h.tgid, e.ppid, h.boot_ns, image);
        let mut p = self
            .table
            .get(h.tgid)
            .cloned()
            .expect("on_exec inserted it");
        if let Some(agent) = self.agent_of_image(&p, Some(&e.filename), Some(h.cgroup_id)) {
            p.agent = Some(agent);
        }
        self.apply_watch(&mut p, Some(&e.filename));
        if let Some(entry) = self.table.get_mut(h.tgid) {
            entry.watched = p.watched;
            entry.agent = p.agent;
        }
    }

    /// The registered agent this image matches, if any.
    fn agent_of_image(
        &mut self,
        p: &Process,
        filename: Option<&str>,
        cgroup_id: Option<u64>,
    ) -> Option<Arc<str>> {
        if self.policy.registry.is_empty() {
            return None;
        }
        let user = self.users.user_name(p.image.uid);
        let cgroup = match (cgroup_id.or(p.image.cgroup_id), self.cgroups.as_mut()) {
            (Some(id), Some(r)) => r.path_for_id(id),
            _ => None,
        };
        let unit = cgroup.as_deref().and_then(cgroup::systemd_unit);
        self.policy.registry.match_image(&ImageFacts {
            exe: p.image.exe.as_deref(),
            filename,
            argv: &p.image.argv,
            sha256: p.image.exe_sha256.as_deref(),
            uid: p.image.uid,
            user: user.as_deref(),
            cgroup: cgroup.as_deref(),
            unit: unit.as_deref(),
        })
    }

    /// Marks `p` watched (and tells the kernel) if its executable, or the
    /// script it exec'd, is configured as watched. Returns true if newly set.
    fn apply_watch(&mut self, p: &mut Process, filename: Option<&str>) -> bool {
        if p.watched {
            return false;
        }
        let hit = p.agent.is_some()
            || image_names(p, filename).any(|name| self.watch_executables.contains(name));
        if hit {
            p.watched = true;
            self.watch.watch(p.pid, p.agent.as_ref());
        }
        hit
    }

    fn process_view(&mut self, h: &Header) -> ProcessView {
        let p = self.table.ensure(h.tgid, h.boot_ns);
        if p.origin == Origin::Inferred && p.image.comm.is_empty() {
            p.image.comm.clone_from(&h.comm);
            p.image.uid = h.uid;
            p.image.gid = h.gid;
        }
        // A process first seen through another event than its exec (its
        // fork or exec was missed) is looked up in /proc once, on first use.
        if p.image.exe_sha256.is_none()
            && !p.exe_looked_up
            && p.exec_boot_ns.is_none()
            && !p.has_exited()
        {
            p.exe_looked_up = true;
            if let Ok((path, hash)) = self.hashes.hash_proc_exe(h.tgid) {
                let p = self.table.get_mut(h.tgid).expect("ensured above");
                p.image.exe = Some(path.display().to_string());
                p.image.exe_sha256 = Some(hash);
            }
        }
        let p = self.table.get(h.tgid).expect("ensured above").clone();
        let cgroup = self
            .cgroups
            .as_mut()
            .and_then(|r| r.path_for_id(h.cgroup_id));
        ProcessView {
            pid: h.tgid,
            tid: h.tid,
            ppid: p.ppid,
            uid: h.uid,
            user: self.users.user_name(h.uid),
            gid: h.gid,
            group: self.users.group_name(h.gid),
            loginuid: p.image.loginuid,
            comm: h.comm.clone(),
            exe: p.image.exe,
            exe_sha256: p.image.exe_sha256,
            argv: p.image.argv,
            env_names: p.image.env_names,
            cgroup_id: h.cgroup_id,
            unit: cgroup.as_deref().and_then(cgroup::systemd_unit),
            container_id: cgroup.as_deref().and_then(cgroup::container_id),
            cgroup,
            origin: p.origin,
            watched: p.watched,
            agent: p.agent.as_deref().map(str::to_string),
        }
    }

    fn parents(&self, pid: u32) -> Vec<Ancestor> {
        self.table
            .ancestors(pid, MAX_PARENTS)
            .into_iter()
            .map(|p| Ancestor {
                pid: p.pid,
                comm: p.image.comm.clone(),
                exe: p.image.exe.clone(),
            })
            .collect()
    }
}

/// The names an image answers to: its executable, the path it exec'd, and
/// its first two argv entries (an interpreter's script).
fn image_names<'a>(p: &'a Process, filename: Option<&'a str>) -> impl Iterator<Item = &'a str> {
    p.image
        .exe
        .as_deref()
        .into_iter()
        .chain(filename)
        .chain(p.image.argv.iter().take(2).map(String::as_str))
}

fn exit_detail(exit_code: u32) -> ExitDetail {
    let (code, signal, core_dumped) = format::wait_status(exit_code);
    ExitDetail {
        exit_code: code,
        signal,
        core_dumped,
        status: exit_code,
    }
}

fn exec_detail(e: &Exec) -> ExecDetail {
    ExecDetail {
        filename: e.filename.clone(),
        argv: redact_captured_argv(&e.argv, e.args_truncated),
        argv_truncated: e.args_truncated,
        argv_missing: e.no_args,
        result: e.retval,
        error: format::errno_name(e.retval),
        execveat: e.execveat,
    }
}

fn net_detail(h: &Header, n: &Net) -> Detail {
    let d = NetDetail {
        fd: n.fd,
        result: n.ret,
        error: format::errno_name(n.ret),
        family: format::family(n.family),
        socket_type: format::socket_type(n.sock_type),
        local_addr: n.local_addr.to_string(),
        local_port: n.local_port,
        remote_addr: n.remote_addr.to_string(),
        remote_port: n.remote_port,
        dst_names: Vec::new(),
    };
    match h.kind {
        observer_common::EventKind::Accept => Detail::Accept(d),
        observer_common::EventKind::Bind => Detail::Bind(d),
        observer_common::EventKind::Listen => Detail::Listen(d),
        _ => Detail::Connect(d),
    }
}

fn open_detail(o: &FileOpen) -> OpenDetail {
    let mut reasons = Vec::new();
    for (bit, name) in [
        (observer_common::OPEN_REASON_WATCHED_TGID, "watched"),
        (observer_common::OPEN_REASON_PREFIX, "prefix"),
        (observer_common::OPEN_REASON_SUFFIX, "suffix"),
    ] {
        if o.reason & bit != 0 {
            reasons.push(name);
        }
    }
    OpenDetail {
        path: o.path.clone(),
        result: o.ret,
        error: format::errno_name(o.ret),
        flags: o.flags,
        flags_text: format::open_flags(o.flags),
        mode: o.mode,
        reasons,
        openat2: o.openat2,
        dfd: o.dfd,
    }
}
