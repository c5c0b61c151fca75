//! What an indicator condition matched in one event: the provider of a
//! destination, the server, CLI or launcher a process is, the path list
//! an opened file is on. `None` when the indicator does not hold.
use serde_json::{json, Value};

use super::{
    indicators::{ProviderHit, ProviderKind},
    matchers::PathSet,
    model::IndicatorRef,
    rules::{source_name, Cx},
};
use crate::record::Detail;

impl Cx<'_, '_> {
    fn provider_hit(&self, kind: ProviderKind) -> Option<ProviderHit<'_>> {
        let n = self.egress()?;
        let ind = self.indicators;
        for d in &n.dst_names {
            if let Some(p) = ind.provider_of_name(&d.name).filter(|p| p.kind == kind) {
                return Some(ProviderHit {
                    provider: p,
                    via: &d.name,
                    source: source_name(d.source),
                });
            }
        }
        ind.provider_of_addr(&n.remote_addr)
            .filter(|p| p.kind == kind)
            .map(|p| ProviderHit {
                provider: p,
                via: &n.remote_addr,
                source: "address",
            })
    }

    /// `{indicator, provider|remote, destination, sources}` of a connect
    /// to a listed destination.
    fn destination(&self, kind: ProviderKind, id_key: &str) -> Option<Value> {
        let hit = self.provider_hit(kind)?;
        let n = self.egress()?;
        // Every source that named the matched destination.
        let sources: Vec<&str> = n
            .dst_names
            .iter()
            .filter(|d| d.name == hit.via)
            .map(|d| source_name(d.source))
            .collect();
        let mut v = json!({
            "indicator": kind.as_str(),
            "destination": hit.via,
            "sources": if sources.is_empty() { vec![hit.source] } else { sources },
        });
        v[id_key] = json!(hit.provider.id);
        Some(v)
    }

    /// Whether a name list matches the process: `Some(None)` by a plain
    /// name, `Some(Some(by))` by a generic name that `by` confirmed.
    fn named(
        &mut self,
        names: &super::matchers::GlobSet,
        generic: &super::matchers::GlobSet,
        confirm: &super::confirm::Confirm,
    ) -> Option<Option<&'static str>> {
        if self.names().any(|n| names.matches(n)) {
            return Some(None);
        }
        if generic.is_empty() || !self.names().any(|n| generic.matches(n)) {
            return None;
        }
        let ev = self.ev;
        confirm.confirmed_by(ev, || self.joined_argv()).map(Some)
    }

    pub(super) fn indicator(
        &mut self,
        i: IndicatorRef,
        credential_owner: Option<bool>,
    ) -> Option<Value> {
        let ind = self.indicators;
        match i {
            IndicatorRef::AiApi => self.destination(ProviderKind::AiApi, "provider"),
            IndicatorRef::AiGateway => self.destination(ProviderKind::AiGateway, "provider"),
            IndicatorRef::ModelHub => self.destination(ProviderKind::ModelHub, "provider"),
            IndicatorRef::LocalInference => {
                let mut found = None;
                for s in &ind.servers {
                    if let Some(by) = self.named(&s.names, &s.generic_names, &s.confirm) {
                        found = Some((s, by));
                        break;
                    }
                }
                let (server, by) = match found {
                    Some(f) => f,
                    None if ind.servers.iter().all(|s| s.argv.is_empty()) => return None,
                    None => {
                        let argv = self.joined_argv();
                        (ind.servers.iter().find(|s| s.argv.matches(argv))?, None)
                    }
                };
                let port = self.net().map(|n| n.local_port);
                let mut v = json!({
                    "indicator": "local_inference",
                    "server": server.id,
                    "default_port": port.map(|p| server.ports.contains(&p)),
                });
                if let Some(by) = by {
                    v["confirmed_by"] = json!(by);
                }
                Some(v)
            }
            IndicatorRef::AgentCli | IndicatorRef::AutonomousMode => {
                let mut found = None;
                for c in &ind.clis {
                    if let Some(by) = self.named(&c.names, &c.generic_names, &c.confirm) {
                        found = Some((c, by));
                        break;
                    }
                }
                let (cli, by) = found?;
                let mut v = if i == IndicatorRef::AgentCli {
                    json!({"indicator": "agent_cli", "cli": cli.id})
                } else {
                    let Detail::Exec(e) = &self.ev.detail else {
                        return None;
                    };
                    let flag = cli.autonomous_flags.iter().find(|f| f.in_argv(&e.argv))?;
                    json!({"indicator": "autonomous_mode", "cli": cli.id, "flag": flag.text})
                };
                if let Some(by) = by {
                    v["confirmed_by"] = json!(by);
                }
                Some(v)
            }
            IndicatorRef::McpServer if self.egress().is_some() => {
                self.destination(ProviderKind::McpServer, "remote")
            }
            IndicatorRef::McpServer => {
                if ind.launchers.is_empty() || !matches!(self.ev.detail, Detail::Exec(_)) {
                    return None;
                }
                let argv = self.joined_argv();
                let l = ind.launchers.iter().find(|l| l.argv.matches(argv))?;
                Some(json!({"indicator": "mcp_server", "launcher": l.id}))
            }
            IndicatorRef::ModelFile => self.path_list("model_file", &ind.model_files),
            IndicatorRef::AiSdk => self.path_list("ai_sdk", &ind.ai_sdks),
            IndicatorRef::GpuDevice => self.path_list("gpu_device", &ind.gpu_devices),
            IndicatorRef::SecretFile => self.path_list("secret_file", &ind.secret_files),
            IndicatorRef::AiCredential => {
                let path = self.path()?;
                let cred = ind
                    .credentials
                    .iter()
                    .find(|c| c.suffixes.iter().any(|s| path.ends_with(s.as_str())))?;
                let owner = !cred.owners.is_empty() && self.names().any(|n| cred.owners.matches(n));
                if credential_owner.is_some_and(|want| want != owner) {
                    return None;
                }
                Some(
                    json!({"indicator": "ai_credential", "credential": cred.id, "path": path, "owner": owner}),
                )
            }
        }
    }

    fn path_list(&self, name: &str, set: &PathSet) -> Option<Value> {
        let path = self.path()?;
        set.matches(path)
            .then(|| json!({"indicator": name, "path": path}))
    }
}
