//! The agent registry: which process is which registered agent. Matched at
//! exec and at the startup scan; descendants inherit the identity in the
//! process table unless they match another agent themselves.
use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use super::{
    error::PolicyError,
    indicators::Indicators,
    load::Source,
    matchers::{base_name, valid_domain_pattern, DomainSet, GlobSet, Regexes},
    model::AgentsFile,
};
use crate::config::AgentEntry;

/// What is known about a process image when it is attributed.
#[derive(Debug, Default, Clone, Copy)]
pub struct ImageFacts<'a> {
    pub exe: Option<&'a str>,
    /// The path passed to execve (a script's path when run by shebang).
    pub filename: Option<&'a str>,
    pub argv: &'a [String],
    /// `sha256:<hex>`.
    pub sha256: Option<&'a str>,
    pub uid: u32,
    pub user: Option<&'a str>,
    pub cgroup: Option<&'a str>,
    pub unit: Option<&'a str>,
}

#[derive(Debug)]
pub struct Agent {
    pub id: Arc<str>,
    executables: GlobSet,
    sha256: HashSet<String>,
    interpreters: GlobSet,
    scripts: GlobSet,
    argv: Regexes,
    uids: HashSet<u32>,
    users: HashSet<String>,
    units: GlobSet,
    cgroups: GlobSet,
    /// Declared scope; both empty: unrestricted.
    pub allowed_destinations: DomainSet<()>,
    pub allowed_providers: HashSet<String>,
    /// Models its LLM API requests may name; empty: unrestricted.
    pub allowed_models: GlobSet,
    /// Exact executable and script paths, for the kernel's watch list.
    pub exact_paths: Vec<String>,
    /// What of its LLM and MCP content is kept (`policy::content`).
    pub capture_content: super::capture::CaptureContent,
}

impl Agent {
    fn matches(&self, f: &ImageFacts, argv_joined: &mut Option<String>) -> bool {
        let names = f
            .exe
            .into_iter()
            .chain(f.filename)
            .chain(f.argv.iter().take(2).map(String::as_str));
        if !self.executables.is_empty() && names.clone().any(|n| self.executables.matches(n)) {
            return true;
        }
        if f.sha256.is_some_and(|h| self.sha256.contains(h)) {
            return true;
        }
        if !self.scripts.is_empty() {
            let interpreter_ok = self.interpreters.is_empty()
                || f.exe
                    .is_some_and(|e| self.interpreters.matches(base_name(e)));
            let script = f
                .argv
                .iter()
                .skip(1)
                .take(3)
                .filter(|a| !a.starts_with('-'))
                .any(|a| self.scripts.matches(a));
            if interpreter_ok && script {
                return true;
            }
        }
        if !self.argv.is_empty() {
            let joined = argv_joined.get_or_insert_with(|| f.argv.join(" "));
            if self.argv.matches(joined) {
                return true;
            }
        }
        if self.uids.contains(&f.uid) || f.user.is_some_and(|u| self.users.contains(u)) {
            return true;
        }
        if !self.units.is_empty() && f.unit.is_some_and(|u| self.units.matches(u)) {
            return true;
        }
        !self.cgroups.is_empty() && f.cgroup.is_some_and(|c| self.cgroups.matches(c))
    }

    /// True if the agent declared where it may connect.
    pub fn has_scope(&self) -> bool {
        !self.allowed_destinations.is_empty() || !self.allowed_providers.is_empty()
    }
}

#[derive(Debug, Default)]
pub struct Registry {
    agents: Vec<Agent>,
    by_id: HashMap<Arc<str>, usize>,
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id != crate::receipt::payload::OBSERVER_AGENT
        && !id.starts_with("unregistered:")
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

impl Registry {
    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }

    pub fn len(&self) -> usize {
        self.agents.len()
    }

    pub fn agents(&self) -> &[Agent] {
        &self.agents
    }

    pub fn get(&self, id: &str) -> Option<&Agent> {
        self.by_id.get(id).map(|i| &self.agents[*i])
    }

    /// The first agent (in file order) the image matches.
    pub fn match_image(&self, f: &ImageFacts) -> Option<Arc<str>> {
        let mut joined = None;
        self.agents
            .iter()
            .find(|a| a.matches(f, &mut joined))
            .map(|a| a.id.clone())
    }

    /// The interim `[[agents]]` entries of observer.toml (exact paths).
    pub fn from_config(entries: &[AgentEntry]) -> Registry {
        let mut r = Registry::default();
        for e in entries {
            r.push(Agent {
                id: e.id.as_str().into(),
                executables: GlobSet::new(&e.executables).unwrap_or_default(),
                exact_paths: e.executables.clone(),
                capture_content: e.capture_content,
                ..Agent::empty()
            });
        }
        r
    }

    fn push(&mut self, a: Agent) {
        self.by_id.insert(a.id.clone(), self.agents.len());
        self.agents.push(a);
    }

    /// `agents.toml` plus the interim config entries (which must not reuse
    /// an id).
    pub fn compile(
        src: &Source<AgentsFile>,
        config: &[AgentEntry],
        indicators: &Indicators,
    ) -> Result<Registry, PolicyError> {
        let mut r = Registry::from_config(config);
        for a in &src.value.agent {
            let here = |m: String| src.error_at_value(&a.id, m);
            if !valid_id(&a.id) {
                return Err(here(format!(
                    "agent id {:?}: use letters, digits, '-', '_' or '.'; \"observer\" and \"unregistered:*\" are reserved",
                    a.id
                )));
            }
            if r.by_id.contains_key(a.id.as_str()) {
                return Err(here(format!("agent id `{}` is registered twice", a.id)));
            }
            let matchers = a.executables.len()
                + a.sha256.len()
                + a.scripts.len()
                + a.argv.len()
                + a.uids.len()
                + a.users.len()
                + a.units.len()
                + a.cgroups.len();
            if matchers == 0 {
                return Err(here(format!(
                    "agent `{}` has no matcher (executables, sha256, scripts, argv, uids, users, units or cgroups)",
                    a.id
                )));
            }
            for x in a.executables.iter().chain(&a.scripts) {
                if !x.starts_with('/') || x.len() >= observer_common::PREFIX_KEY_LEN - 1 {
                    return Err(src.error_at_value(
                        x,
                        format!("{x:?} must be an absolute path or glob of < 255 bytes"),
                    ));
                }
            }
            if !a.interpreters.is_empty() && a.scripts.is_empty() {
                return Err(here(format!(
                    "agent `{}`: `interpreters` needs `scripts` (match the script, not the interpreter)",
                    a.id
                )));
            }
            let mut sha256 = HashSet::new();
            for h in &a.sha256 {
                let hex = h.strip_prefix("sha256:").unwrap_or(h);
                if !crate::receipt::payload::is_lower_hex64(hex) {
                    return Err(src.error_at_value(h, format!("{h:?} is not a lower-case sha256")));
                }
                sha256.insert(format!("sha256:{hex}"));
            }
            let mut destinations = DomainSet::default();
            for d in &a.allowed_destinations {
                if !valid_domain_pattern(d) {
                    return Err(src.error_at_value(
                        d,
                        format!("`{d}` is not a lower-case domain name or `*.suffix` wildcard"),
                    ));
                }
                destinations.insert(d, ());
            }
            for p in &a.allowed_providers {
                if indicators.provider_by_id(p).is_none() {
                    let hint = super::error::closest(
                        p,
                        indicators.providers.iter().map(|q| q.id.as_str()),
                    )
                    .map(|c| format!("; did you mean `{c}`?"))
                    .unwrap_or_default();
                    return Err(src.error_at_value(
                        p,
                        format!(
                            "unknown provider `{p}` (not in ai_endpoints, ai_gateways or model_hubs){hint}"
                        ),
                    ));
                }
            }
            if let Some(m) = a.allowed_models.iter().find(|m| m.trim().is_empty()) {
                return Err(src.error_at_value(m, "an empty model name"));
            }
            let glob = |list: &[String]| GlobSet::new(list).map_err(&here);
            r.push(Agent {
                id: a.id.as_str().into(),
                executables: glob(&a.executables)?,
                sha256,
                interpreters: glob(&a.interpreters)?,
                scripts: glob(&a.scripts)?,
                argv: Regexes::new(&a.argv).map_err(here)?,
                uids: a.uids.iter().copied().collect(),
                users: a.users.iter().cloned().collect(),
                units: glob(&a.units)?,
                cgroups: glob(&a.cgroups)?,
                allowed_destinations: destinations,
                allowed_providers: a.allowed_providers.iter().cloned().collect(),
                allowed_models: glob(&a.allowed_models)?,
                exact_paths: a
                    .executables
                    .iter()
                    .chain(&a.scripts)
                    .filter(|x| !is_glob(x))
                    .cloned()
                    .collect(),
                capture_content: a.capture_content,
            });
        }
        Ok(r)
    }
}

impl Agent {
    fn empty() -> Agent {
        Agent {
            id: "".into(),
            executables: GlobSet::default(),
            sha256: HashSet::new(),
            interpreters: GlobSet::default(),
            scripts: GlobSet::default(),
            argv: Regexes::default(),
            uids: HashSet::new(),
            users: HashSet::new(),
            units: GlobSet::default(),
            cgroups: GlobSet::default(),
            allowed_destinations: DomainSet::default(),
            allowed_providers: HashSet::new(),
            allowed_models: GlobSet::default(),
            exact_paths: Vec::new(),
            capture_content: Default::default(),
        }
    }
}
