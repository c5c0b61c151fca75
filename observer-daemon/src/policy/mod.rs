//! Agent and shadow-AI policies (`policies/`, docs/policies.md): strict
//! loading with file:line:col errors, the agent registry, indicator lists,
//! rules, the policy digest, and what the kernel is told to report.
pub mod agents;
pub mod builtin;
pub mod capture;
pub mod confirm;
pub mod content;
pub mod error;
pub mod finding;
pub mod homes;
pub mod indicator_match;
pub mod indicators;
pub mod llm_scope;
pub mod load;
pub mod matchers;
pub mod mcp_definitions;
pub mod mcp_tools;
pub mod mcp_tools_file;
pub mod mcp_verdict;
pub mod model;
pub mod reload;
pub mod rules;

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

pub use error::PolicyError;

use crate::{config::AgentEntry, record::EnrichedEvent};

/// The outcome of a reload attempt, for the processor to apply and record.
#[derive(Debug)]
pub enum PolicyUpdate {
    Loaded {
        policy: std::sync::Arc<Policy>,
        /// `sighup` or `file_change`.
        trigger: &'static str,
    },
    Refused {
        /// `path:line:col: message`.
        error: String,
        trigger: &'static str,
    },
}

/// A compiled, validated policy set.
#[derive(Debug)]
pub struct Policy {
    /// The policy directory it was read from; None for the built-in set and
    /// for observer.toml's `[[agents]]` alone.
    pub dir: Option<PathBuf>,
    /// Where the set came from: said in the log, `observerctl status` and
    /// the `observer.policy` receipt.
    pub source: PolicySource,
    /// `sha256:<hex>` over the canonical form of every file's content (the
    /// parsed values, not the text): `detection_rules_digest`.
    pub digest: String,
    pub registry: agents::Registry,
    pub indicators: indicators::Indicators,
    pub rules: rules::Rules,
    pub kernel: KernelInterest,
}

/// Where a policy set came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicySource {
    /// A policy directory (`policies_dir`).
    Directory,
    /// The repository's `policies/` embedded in the binary at build time.
    BuiltIn,
    /// observer.toml's `[[agents]]` only: no indicators, no rules.
    ConfigOnly,
}

impl PolicySource {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicySource::Directory => "directory",
            PolicySource::BuiltIn => "built-in",
            PolicySource::ConfigOnly => "config",
        }
    }
}

/// What the kernel must report for the rules to see it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KernelInterest {
    pub prefixes: Vec<String>,
    pub suffixes: Vec<String>,
    /// Exact executable and script paths of agents: watched from exec on.
    pub watched_executables: Vec<String>,
}

impl KernelInterest {
    /// This interest plus observer.toml's `[files]` and `[watch]` lists,
    /// sorted and without duplicates.
    pub fn merged(
        &self,
        prefixes: &[String],
        suffixes: &[String],
        watched: &[String],
    ) -> KernelInterest {
        let merge = |a: &[String], b: &[String]| {
            let mut v: Vec<String> = a.iter().chain(b).cloned().collect();
            v.sort();
            v.dedup();
            v
        };
        KernelInterest {
            prefixes: merge(&self.prefixes, prefixes),
            suffixes: merge(&self.suffixes, suffixes),
            watched_executables: merge(&self.watched_executables, watched),
        }
    }
}

impl Policy {
    /// Only the interim registry from observer.toml; no rules.
    pub fn from_config(config_agents: &[AgentEntry]) -> Policy {
        let registry = agents::Registry::from_config(config_agents);
        let digest_input = json!({"config_agents": config_agents.iter().map(|a| json!({"id": a.id, "executables": a.executables, "capture_content": a.capture_content})).collect::<Vec<_>>()});
        Policy {
            dir: None,
            source: PolicySource::ConfigOnly,
            digest: digest_of(&digest_input),
            kernel: KernelInterest {
                watched_executables: registry
                    .agents()
                    .iter()
                    .flat_map(|a| a.exact_paths.iter().cloned())
                    .collect(),
                ..Default::default()
            },
            registry,
            indicators: indicators::Indicators::default(),
            rules: rules::Rules::default(),
        }
    }

    /// Reads, validates and compiles a policy directory.
    pub fn load(dir: &Path, config_agents: &[AgentEntry]) -> Result<Policy, PolicyError> {
        let mut policy = Policy::compile(&load::read_dir(dir)?, config_agents)?;
        policy.dir = Some(dir.to_owned());
        Ok(policy)
    }

    /// The built-in set (the repository's `policies/` at build time) with
    /// observer.toml's `[[agents]]` merged in, as a directory would be.
    pub fn builtin(config_agents: &[AgentEntry]) -> Result<Policy, PolicyError> {
        let mut policy = Policy::compile(&builtin::files()?, config_agents)?;
        policy.source = PolicySource::BuiltIn;
        Ok(policy)
    }

    /// Validates and compiles parsed policy files.
    fn compile(
        files: &load::PolicyFiles,
        config_agents: &[AgentEntry],
    ) -> Result<Policy, PolicyError> {
        let indicators = indicators::compile(files)?;
        let registry = agents::Registry::compile(&files.agents, config_agents, &indicators)?;
        let rules = rules::Rules::compile(&files.rules)?;
        let canonical = json!({
            "config_agents": config_agents.iter().map(|a| json!({"id": a.id, "executables": a.executables, "capture_content": a.capture_content})).collect::<Vec<_>>(),
            "agents": files.agents.value,
            "rules": files.rules.value,
            "indicators": {
                "ai_endpoints": files.ai_endpoints.value,
                "ai_gateways": files.ai_gateways.value,
                "model_hubs": files.model_hubs.value,
                "local_inference": files.local_inference.value,
                "agent_clis": files.agent_clis.value,
                "mcp_servers": files.mcp_servers.value,
                "model_files": files.model_files.value,
                "ai_sdks": files.ai_sdks.value,
                "ai_credentials": files.ai_credentials.value,
                "gpu_devices": files.gpu_devices.value,
                "secret_files": files.secret_files.value,
                "mcp_tool_checks": files.mcp_tool_checks.value,
            },
        });
        let mut kernel = KernelInterest::default();
        for set in [
            &indicators.model_files,
            &indicators.ai_sdks,
            &indicators.gpu_devices,
            &indicators.secret_files,
        ] {
            kernel.prefixes.extend(set.kernel_prefixes());
            kernel.suffixes.extend(set.suffixes.iter().cloned());
        }
        for c in &indicators.credentials {
            kernel.suffixes.extend(c.suffixes.iter().cloned());
        }
        kernel.watched_executables = registry
            .agents()
            .iter()
            .flat_map(|a| a.exact_paths.iter().cloned())
            .collect();
        let kernel = kernel.merged(&[], &[], &[]);
        Ok(Policy {
            dir: None,
            source: PolicySource::Directory,
            digest: digest_of(&canonical),
            registry,
            indicators,
            rules,
            kernel,
        })
    }

    /// Appends the rules `ev` matches.
    pub fn evaluate(&self, ev: &EnrichedEvent, argv_buf: &mut String, out: &mut Vec<rules::Hit>) {
        self.rules
            .evaluate(ev, &self.indicators, &self.registry, argv_buf, out);
    }

    /// What an `observer.policy` receipt records about this set.
    pub fn summary(&self) -> Value {
        json!({
            "policies_dir": self.dir.as_ref().map(|d| d.display().to_string()),
            "policy_source": self.source.as_str(),
            "policy_digest": self.digest,
            "agents": self.registry.agents().iter().map(|a| a.id.to_string()).collect::<Vec<_>>(),
            "rules": self.rules.rules.iter().map(|r| json!({"id": r.id, "risk_class": r.risk.as_str()})).collect::<Vec<_>>(),
            "providers": self.indicators.providers.len(),
            "kernel": {
                "prefixes": self.kernel.prefixes.len(),
                "suffixes": self.kernel.suffixes.len(),
                "watched_executables": self.kernel.watched_executables.len(),
            },
        })
    }
}

fn digest_of(v: &Value) -> String {
    let bytes = crate::receipt::jcs::canonicalize(v).unwrap_or_default();
    format!("sha256:{}", crate::receipt::payload::sha256_hex(&bytes))
}

/// The agent id of shadow activity: `unregistered:` and the first 16 hex
/// digits (64 bits) of the executable's sha256 — enough to keep distinct
/// executables on distinct chains, short enough to read.
pub fn unregistered_agent_id(exe_sha256: Option<&str>) -> String {
    let hex = exe_sha256
        .and_then(|h| h.strip_prefix("sha256:"))
        .filter(|h| h.len() >= 16)
        .map_or("0000000000000000", |h| &h[..16]);
    format!("unregistered:{hex}")
}

/// Rule evaluation cost per event: `n` evaluations of `ev`, average
/// duration. The scratch buffers are reused as in the processor, so a
/// no-match event measures the allocation-free path.
pub fn bench_evaluate(policy: &Policy, ev: &EnrichedEvent, n: u32) -> std::time::Duration {
    let mut argv = String::new();
    let mut out = Vec::new();
    let start = std::time::Instant::now();
    for _ in 0..n.max(1) {
        out.clear();
        policy.evaluate(std::hint::black_box(ev), &mut argv, &mut out);
    }
    start.elapsed() / n.max(1)
}

#[cfg(test)]
mod indicator_file_tests;
#[cfg(test)]
mod indicator_tests;
#[cfg(test)]
mod tests;
