//! Rules compiled into matchers, and their evaluation over one enriched
//! event. Rules are indexed by event kind; the path to "no finding"
//! allocates nothing (argv is joined into a reused buffer, only for rules
//! that look at it).
use serde_json::{json, Value};

use super::{
    agents::Registry,
    error::PolicyError,
    indicators::Indicators,
    load::Source,
    matchers::{base_name, is_loopback, GlobSet, Regexes},
    model::{Conditions, EventKind, IndicatorRef, RulesFile},
};
use crate::{
    receipt::payload::{Mappings, RiskClass},
    record::{Detail, EnrichedEvent, NameSource, NetDetail},
};

#[derive(Debug)]
struct Compiled {
    events: Option<Vec<EventKind>>,
    registered: Option<bool>,
    indicator: Option<IndicatorRef>,
    process_names: Option<GlobSet>,
    not_process_names: Option<GlobSet>,
    exe_paths: Option<GlobSet>,
    argv: Option<Regexes>,
    ancestor_names: Option<GlobSet>,
    paths: Option<GlobSet>,
    ports: Option<Vec<u16>>,
    loopback: Option<bool>,
    uids: Option<Vec<u32>>,
    credential_owner: Option<bool>,
    outside_agent_scope: Option<bool>,
    tool_verdict: Option<Vec<String>>,
}

#[derive(Debug)]
pub struct Rule {
    pub id: String,
    pub risk: RiskClass,
    pub reason: String,
    pub mappings: Mappings,
    when: Compiled,
    escalate: Vec<(RiskClass, String, Compiled)>,
}

/// A rule that matched an event.
#[derive(Debug, Clone)]
pub struct Hit {
    pub rule: usize,
    pub risk: RiskClass,
    /// The rule's reason, and the escalation's if one applied.
    pub reason: String,
    /// What the indicator matched (provider, path list, server ...).
    pub matched: Value,
}

#[derive(Debug, Default)]
pub struct Rules {
    pub rules: Vec<Rule>,
    /// Rule indexes by event kind (exec, connect, listen, file_open,
    /// llm_request, mcp_tool_definition).
    by_kind: [Vec<usize>; 6],
}

fn kind_index(k: EventKind) -> usize {
    match k {
        EventKind::Exec => 0,
        EventKind::Connect => 1,
        EventKind::Listen => 2,
        EventKind::FileOpen => 3,
        EventKind::LlmRequest => 4,
        EventKind::McpToolDefinition => 5,
    }
}

const ALL_KINDS: [EventKind; 6] = [
    EventKind::Exec,
    EventKind::Connect,
    EventKind::Listen,
    EventKind::FileOpen,
    EventKind::LlmRequest,
    EventKind::McpToolDefinition,
];

/// Which event kinds an indicator can ever match.
fn indicator_kinds(i: IndicatorRef) -> &'static [EventKind] {
    use IndicatorRef::*;
    match i {
        AiApi | AiGateway | ModelHub => &[EventKind::Connect],
        LocalInference => &[EventKind::Exec, EventKind::Listen, EventKind::Connect],
        AgentCli | AutonomousMode => &[EventKind::Exec],
        McpServer => &[EventKind::Exec, EventKind::Connect],
        ModelFile | AiSdk | AiCredential | GpuDevice | SecretFile => &[EventKind::FileOpen],
    }
}

fn compile_conditions(
    src: &Source<RulesFile>,
    rule_id: &str,
    c: &Conditions,
) -> Result<Compiled, PolicyError> {
    let here = |m: String| src.error_at_value(rule_id, format!("rule `{rule_id}`: {m}"));
    let glob = |l: &Option<Vec<String>>| {
        l.as_ref()
            .map(|l| GlobSet::new(l).map_err(&here))
            .transpose()
    };
    if c.credential_owner.is_some() && c.indicator != Some(IndicatorRef::AiCredential) {
        return Err(here(
            "`credential_owner` needs `indicator = \"ai_credential\"`".into(),
        ));
    }
    for v in c.tool_verdict.iter().flatten() {
        if !["clean", "warning", "dangerous"].contains(&v.as_str()) {
            return Err(here(format!(
                "`tool_verdict` {v:?} is not `clean`, `warning` or `dangerous`"
            )));
        }
    }
    if let (Some(events), Some(i)) = (&c.event, c.indicator) {
        let possible = indicator_kinds(i);
        if !events.iter().any(|e| possible.contains(e)) {
            return Err(here(format!(
                "indicator `{}` never matches events {events:?}",
                serde_json::to_value(i).map_or(String::new(), |v| v.as_str().unwrap_or("").into())
            )));
        }
    }
    Ok(Compiled {
        events: c.event.clone(),
        registered: c.registered,
        indicator: c.indicator,
        process_names: glob(&c.process_names)?,
        not_process_names: glob(&c.not_process_names)?,
        exe_paths: glob(&c.exe_paths)?,
        argv: c
            .argv
            .as_ref()
            .map(|l| Regexes::new(l).map_err(&here))
            .transpose()?,
        ancestor_names: glob(&c.ancestor_names)?,
        paths: glob(&c.paths)?,
        ports: c.ports.clone(),
        loopback: c.loopback,
        uids: c.uids.clone(),
        credential_owner: c.credential_owner,
        outside_agent_scope: c.outside_agent_scope,
        tool_verdict: c.tool_verdict.clone(),
    })
}

impl Rules {
    pub fn compile(src: &Source<RulesFile>) -> Result<Rules, PolicyError> {
        let mut out = Rules::default();
        for r in &src.value.rule {
            if !r
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                || r.id.is_empty()
            {
                return Err(src.error_at_value(
                    &r.id,
                    format!("rule id {:?}: use letters, digits, '-', '_' or '.'", r.id),
                ));
            }
            if out.rules.iter().any(|q| q.id == r.id) {
                return Err(src.error_at_value(&r.id, format!("rule id `{}` is used twice", r.id)));
            }
            for id in r
                .mitre_atlas
                .iter()
                .chain(&r.mitre_attack)
                .chain(&r.owasp_llm)
            {
                if id.is_empty() || id.len() > 128 {
                    return Err(src.error_at_value(
                        &r.id,
                        format!("rule `{}`: framework ids must be 1..=128 characters", r.id),
                    ));
                }
            }
            let when = compile_conditions(src, &r.id, &r.when)?;
            if when.events.is_none() && when.indicator.is_none() {
                return Err(src.error_at_value(
                    &r.id,
                    format!("rule `{}` needs `when.event` or `when.indicator` (it would match every event)", r.id),
                ));
            }
            let escalate = r
                .escalate
                .iter()
                .map(|e| {
                    Ok((
                        e.risk,
                        e.reason.clone(),
                        compile_conditions(src, &r.id, &e.when)?,
                    ))
                })
                .collect::<Result<Vec<_>, PolicyError>>()?;
            if !r.enabled {
                continue;
            }
            let kinds: Vec<EventKind> = match (&when.events, when.indicator) {
                (Some(e), Some(i)) => e
                    .iter()
                    .copied()
                    .filter(|k| indicator_kinds(i).contains(k))
                    .collect(),
                (Some(e), None) => e.clone(),
                (None, Some(i)) => indicator_kinds(i).to_vec(),
                (None, None) => ALL_KINDS.to_vec(),
            };
            let index = out.rules.len();
            for k in kinds {
                out.by_kind[kind_index(k)].push(index);
            }
            out.rules.push(Rule {
                id: r.id.clone(),
                risk: r.risk,
                reason: r.reason.clone(),
                mappings: Mappings {
                    mitre_techniques: r.mitre_attack.clone(),
                    mitre_atlas: r.mitre_atlas.clone(),
                    owasp_llm_top10: r.owasp_llm.clone(),
                },
                when,
                escalate,
            });
        }
        Ok(out)
    }

    /// Appends every rule `ev` matches to `out`. `argv_buf` is scratch.
    pub fn evaluate(
        &self,
        ev: &EnrichedEvent,
        indicators: &Indicators,
        registry: &Registry,
        argv_buf: &mut String,
        out: &mut Vec<Hit>,
    ) {
        let Some(kind) = event_kind(ev) else {
            return;
        };
        let candidates = &self.by_kind[kind_index(kind)];
        if candidates.is_empty() {
            return;
        }
        let mut cx = Cx {
            ev,
            kind,
            indicators,
            registry,
            argv: argv_buf,
            argv_ready: false,
        };
        for &i in candidates {
            let rule = &self.rules[i];
            let Some(matched) = cx.check(&rule.when) else {
                continue;
            };
            let mut risk = rule.risk;
            let mut reason = rule.reason.clone();
            if let Detail::LlmRequest(call) = &ev.detail {
                // The finding names whom the request went to and for what.
                let model = call
                    .model_answered
                    .as_deref()
                    .or(call.model_requested.as_deref());
                reason = format!("{reason} ({} {})", call.provider, model.unwrap_or("?"));
                if rule.when.outside_agent_scope == Some(true) {
                    // And what in it the agent did not declare.
                    let outside = cx.llm_outside_scope(call).unwrap_or_default();
                    reason = format!("{reason}: {}", outside.join("; "));
                }
            }
            for (r, why, when) in &rule.escalate {
                if cx.check(when).is_some() {
                    risk = *r;
                    reason = format!("{reason}; {why}");
                    break;
                }
            }
            out.push(Hit {
                rule: i,
                risk,
                reason,
                matched,
            });
        }
    }
}

/// The kind of event rules look at; failed syscalls are not activity.
pub fn event_kind(ev: &EnrichedEvent) -> Option<EventKind> {
    match &ev.detail {
        Detail::Exec(e) if e.result == 0 => Some(EventKind::Exec),
        Detail::Connect(n) if n.result == 0 || n.error.as_deref() == Some("EINPROGRESS") => {
            Some(EventKind::Connect)
        }
        Detail::Listen(n) if n.result == 0 => Some(EventKind::Listen),
        Detail::FileOpen(o) if o.result >= 0 => Some(EventKind::FileOpen),
        Detail::LlmRequest(_) => Some(EventKind::LlmRequest),
        Detail::McpToolDefinition(_) => Some(EventKind::McpToolDefinition),
        _ => None,
    }
}

const INTERPRETERS: &[&str] = &[
    "node", "nodejs", "bun", "deno", "python", "python3", "ruby", "perl", "sh", "bash", "dash",
    "zsh", "env",
];

pub(super) struct Cx<'a, 'b> {
    pub(super) ev: &'a EnrichedEvent,
    pub(super) kind: EventKind,
    pub(super) indicators: &'a Indicators,
    pub(super) registry: &'a Registry,
    argv: &'b mut String,
    argv_ready: bool,
}

impl Cx<'_, '_> {
    /// What of an agent's LLM request is outside its declared scope
    /// (policy/llm_scope.rs).
    fn llm_outside_scope(
        &self,
        call: &crate::stream::llm::call::LlmRequestDetail,
    ) -> Option<Vec<String>> {
        super::llm_scope::outside_scope(
            self.registry,
            self.indicators,
            self.ev.process.agent.as_deref(),
            call,
        )
    }

    /// comm, the executable's file name, argv[0]'s file name, and the
    /// script's file name when argv[0] is an interpreter.
    pub(super) fn names(&self) -> impl Iterator<Item = &str> + Clone {
        let p = &self.ev.process;
        let argv0 = p.argv.first().map(|a| base_name(a));
        let interp = argv0.is_some_and(|a| {
            INTERPRETERS.contains(&a)
                || (a.starts_with("python")
                    && a[6..].bytes().all(|b| b.is_ascii_digit() || b == b'.'))
        });
        let script = if interp {
            p.argv
                .iter()
                .skip(1)
                .find(|a| !a.starts_with('-'))
                .map(|a| base_name(a))
        } else {
            None
        };
        std::iter::once(p.comm.as_str())
            .chain(p.exe.as_deref().map(base_name))
            .chain(argv0)
            .chain(script)
    }

    pub(super) fn joined_argv(&mut self) -> &str {
        if !self.argv_ready {
            self.argv.clear();
            let argv = match &self.ev.detail {
                Detail::Exec(e) => &e.argv,
                _ => &self.ev.process.argv,
            };
            for (i, a) in argv.iter().enumerate() {
                if i > 0 {
                    self.argv.push(' ');
                }
                self.argv.push_str(a);
            }
            self.argv_ready = true;
        }
        self.argv
    }

    pub(super) fn net(&self) -> Option<&NetDetail> {
        match &self.ev.detail {
            Detail::Connect(n) | Detail::Listen(n) => Some(n),
            _ => None,
        }
    }

    pub(super) fn path(&self) -> Option<&str> {
        match &self.ev.detail {
            Detail::FileOpen(o) => Some(&o.path),
            _ => None,
        }
    }

    /// `Some(what the indicator matched)` when every condition holds.
    fn check(&mut self, c: &Compiled) -> Option<Value> {
        if c.events.as_ref().is_some_and(|e| !e.contains(&self.kind)) {
            return None;
        }
        let p = &self.ev.process;
        if c.registered.is_some_and(|r| r != p.agent.is_some()) {
            return None;
        }
        if c.uids.as_ref().is_some_and(|u| !u.contains(&p.uid)) {
            return None;
        }
        if let Some(ports) = &c.ports {
            let port = self.net().map(|n| match self.kind {
                EventKind::Listen => n.local_port,
                _ => n.remote_port,
            })?;
            if !ports.contains(&port) {
                return None;
            }
        }
        if let Some(lo) = c.loopback {
            let n = self.net()?;
            let addr = match self.kind {
                EventKind::Listen => &n.local_addr,
                _ => &n.remote_addr,
            };
            if is_loopback(addr) != lo {
                return None;
            }
        }
        if let Some(g) = &c.process_names {
            if !self.names().any(|n| g.matches(n)) {
                return None;
            }
        }
        if let Some(g) = &c.not_process_names {
            if self.names().any(|n| g.matches(n)) {
                return None;
            }
        }
        if let Some(g) = &c.exe_paths {
            if !p.exe.as_deref().is_some_and(|e| g.matches(e)) {
                return None;
            }
        }
        if let Some(g) = &c.ancestor_names {
            if !self.ev.parents.iter().any(|a| g.matches(&a.comm)) {
                return None;
            }
        }
        if let Some(g) = &c.paths {
            if !self.path().is_some_and(|path| g.matches(path)) {
                return None;
            }
        }
        if let Some(r) = &c.argv {
            if !r.matches(self.joined_argv()) {
                return None;
            }
        }
        if let Some(want) = c.outside_agent_scope {
            if self.outside_scope() != Some(want) {
                return None;
            }
        }
        if let Some(verdicts) = &c.tool_verdict {
            let Detail::McpToolDefinition(d) = &self.ev.detail else {
                return None;
            };
            let verdict = serde_json::to_value(d.verdict).ok()?;
            if !verdicts.iter().any(|v| verdict == v.as_str()) {
                return None;
            }
        }
        match c.indicator {
            // What an out-of-scope request asked of whom.
            None if c.outside_agent_scope == Some(true)
                && matches!(self.ev.detail, Detail::LlmRequest(_)) =>
            {
                let Detail::LlmRequest(call) = &self.ev.detail else {
                    return None;
                };
                Some(super::llm_scope::matched(call))
            }
            // What an out-of-scope connection went to.
            None if c.outside_agent_scope == Some(true) => {
                let n = self.egress()?;
                Some(json!({
                    "outside_agent_scope": true,
                    "remote_addr": n.remote_addr,
                    "remote_port": n.remote_port,
                    "dst_names": n.dst_names,
                }))
            }
            // What was asked of whom: the provider, API and models.
            None => Some(match &self.ev.detail {
                Detail::LlmRequest(call) => json!({
                    "provider": call.provider,
                    "api": call.api,
                    "host": call.host,
                    "model_requested": call.model_requested,
                    "model_answered": call.model_answered,
                }),
                // Which server offered what, and every reason.
                Detail::McpToolDefinition(d) => json!({
                    "server": d.server.name,
                    "server_command": d.server.command,
                    "verdict": d.verdict,
                    "findings": d.findings,
                }),
                _ => Value::Null,
            }),
            Some(i) => self.indicator(i, c.credential_owner),
        }
    }

    /// A connect to somewhere other than a DNS server: a lookup's connect
    /// to its resolver is not egress to the names that resolver's address
    /// happens to carry.
    pub(super) fn egress(&self) -> Option<&NetDetail> {
        match &self.ev.detail {
            Detail::Connect(n) if n.remote_port != DNS_PORT => Some(n),
            _ => None,
        }
    }

    /// For a connect by a registered agent that declared its scope: true
    /// if the destination is outside it, false if inside; None when there
    /// is nothing to judge (not an agent, no scope, no name known). For an
    /// LLM request: its provider and model against the agent's
    /// `allowed_providers` and `allowed_models` (policy/llm_scope.rs).
    fn outside_scope(&self) -> Option<bool> {
        if let Detail::LlmRequest(call) = &self.ev.detail {
            return self.llm_outside_scope(call).map(|o| !o.is_empty());
        }
        let n = self.egress()?;
        let agent = self.registry.get(self.ev.process.agent.as_deref()?)?;
        if !agent.has_scope() {
            return None;
        }
        let ind = self.indicators;
        let allowed_provider = |p: Option<&super::indicators::Provider>| {
            p.is_some_and(|p| agent.allowed_providers.contains(&p.id))
        };
        let by_addr = ind.provider_of_addr(&n.remote_addr);
        if n.dst_names.is_empty() && by_addr.is_none() {
            return None;
        }
        if agent.allowed_destinations.is_empty() {
            // Only providers declared: other AI providers are out of scope,
            // non-AI destinations are not constrained.
            let ai: Vec<_> = n
                .dst_names
                .iter()
                .filter_map(|d| ind.provider_of_name(&d.name))
                .chain(by_addr)
                .collect();
            if ai.is_empty() {
                return Some(false);
            }
            return Some(!ai.iter().any(|p| allowed_provider(Some(p))));
        }
        let inside = n.dst_names.iter().any(|d| {
            agent.allowed_destinations.lookup(&d.name).is_some()
                || allowed_provider(ind.provider_of_name(&d.name))
        }) || allowed_provider(by_addr);
        Some(!inside)
    }
}

pub(super) const DNS_PORT: u16 = 53;

pub(super) fn source_name(s: NameSource) -> &'static str {
    match s {
        NameSource::Dns => "dns",
        NameSource::Sni => "sni",
    }
}
