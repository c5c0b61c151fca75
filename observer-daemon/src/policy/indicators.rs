//! The indicator lists, compiled for matching.
use std::{collections::HashMap, net::IpAddr};

use super::{
    confirm::{AutonomousFlag, Confirm},
    error::PolicyError,
    load::{PolicyFiles, Source},
    matchers::{valid_domain_pattern, Cidr, DomainSet, GlobSet, PathSet, Regexes},
    model::{Confirmation, PathsFile, ProviderDef},
};

/// Where a provider's list came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    AiApi,
    AiGateway,
    ModelHub,
    /// A remote MCP server (mcp_servers.toml `[[remote]]`).
    McpServer,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::AiApi => "ai_api",
            ProviderKind::AiGateway => "ai_gateway",
            ProviderKind::ModelHub => "model_hub",
            ProviderKind::McpServer => "mcp_server",
        }
    }
}

#[derive(Debug)]
pub struct Provider {
    pub id: String,
    pub kind: ProviderKind,
}

#[derive(Debug)]
pub struct Server {
    pub id: String,
    pub names: GlobSet,
    /// Names that match only when `confirm` holds.
    pub generic_names: GlobSet,
    pub confirm: Confirm,
    pub argv: Regexes,
    pub ports: Vec<u16>,
}

#[derive(Debug)]
pub struct Cli {
    pub id: String,
    pub names: GlobSet,
    /// Names that match only when `confirm` holds.
    pub generic_names: GlobSet,
    pub confirm: Confirm,
    pub autonomous_flags: Vec<AutonomousFlag>,
}

#[derive(Debug)]
pub struct Launcher {
    pub id: String,
    pub argv: Regexes,
}

#[derive(Debug)]
pub struct Credential {
    pub id: String,
    pub suffixes: Vec<String>,
    pub owners: GlobSet,
}

/// The indicator lists whose paths [`Indicators::sensitive_path`] holds
/// sensitive (stated in the `observer.policy` receipt).
pub const SENSITIVE_LISTS: [&str; 3] = ["secret_files", "ai_credentials", "model_files"];

#[derive(Debug, Default)]
pub struct Indicators {
    pub providers: Vec<Provider>,
    pub domains: DomainSet<u16>,
    pub cidrs: Vec<(Cidr, u16)>,
    pub servers: Vec<Server>,
    pub clis: Vec<Cli>,
    pub launchers: Vec<Launcher>,
    pub model_files: PathSet,
    pub ai_sdks: PathSet,
    pub gpu_devices: PathSet,
    pub secret_files: PathSet,
    pub credentials: Vec<Credential>,
    /// Checks on MCP `tools/list` answers (mcp_tool_checks.toml).
    pub mcp_tools: super::mcp_tools::ToolChecks,
}

/// A destination that matched a provider list.
#[derive(Debug, Clone, Copy)]
pub struct ProviderHit<'a> {
    pub provider: &'a Provider,
    /// The matching name, or the address for a range match.
    pub via: &'a str,
    /// `dns`, `sni` or `address`.
    pub source: &'static str,
}

impl Indicators {
    pub fn provider_of_name(&self, name: &str) -> Option<&Provider> {
        self.domains
            .lookup(name)
            .map(|i| &self.providers[i as usize])
    }

    pub fn provider_of_addr(&self, addr: &str) -> Option<&Provider> {
        let ip: IpAddr = addr.parse().ok()?;
        self.cidrs
            .iter()
            .find(|(c, _)| c.contains(ip))
            .map(|(_, i)| &self.providers[*i as usize])
    }

    pub fn provider_by_id(&self, id: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.id == id)
    }

    /// Whether an opened path is on a list of [`SENSITIVE_LISTS`]: data an
    /// auditor looks for one access at a time (who read a key, loaded a
    /// model). Such opens keep a `file.open` receipt of their own instead
    /// of joining their process's list (docs/RECEIPTS.md "file.open"). AI
    /// SDK modules and GPU devices are code and devices a program loads by
    /// the dozen; a rule that fires on one still gets its own evidence.
    pub fn sensitive_path(&self, path: &str) -> bool {
        self.secret_files.matches(path)
            || self.model_files.matches(path)
            || self
                .credentials
                .iter()
                .any(|c| c.suffixes.iter().any(|s| path.ends_with(s.as_str())))
    }
}

fn at<'a, T>(src: &'a Source<T>, value: &str) -> impl Fn(String) -> PolicyError + 'a {
    let value = value.to_string();
    move |m| src.error_at_value(&value, m)
}

fn providers<T>(
    src: &Source<T>,
    list: &[ProviderDef],
    kind: ProviderKind,
    out: &mut Indicators,
) -> Result<(), PolicyError> {
    for p in list {
        if out.providers.iter().any(|q| q.id == p.id) {
            return Err(
                src.error_at_value(&p.id, format!("provider id `{}` is listed twice", p.id))
            );
        }
        let index = out.providers.len() as u16;
        out.providers.push(Provider {
            id: p.id.clone(),
            kind,
        });
        for d in &p.domains {
            if !valid_domain_pattern(d) {
                return Err(src.error_at_value(
                    d,
                    format!("`{d}` is not a lower-case domain name or `*.suffix` wildcard"),
                ));
            }
            if out
                .domains
                .lookup(d.strip_prefix("*.").unwrap_or(d))
                .is_some()
                && !d.starts_with("*.")
            {
                return Err(src.error_at_value(d, format!("domain `{d}` is listed twice")));
            }
            out.domains.insert(d, index);
        }
        for c in &p.cidrs {
            out.cidrs.push((Cidr::parse(c).map_err(at(src, c))?, index));
        }
    }
    Ok(())
}

/// Literal prefixes (absolute, < 255 bytes) and suffixes (<= 64 bytes),
/// the sizes of the kernel's path filter keys.
fn paths(src: &Source<PathsFile>, homes: &[String]) -> Result<PathSet, PolicyError> {
    let f = &src.value;
    for p in &f.prefixes {
        if !p.starts_with('/') || p.len() >= observer_common::PREFIX_KEY_LEN {
            return Err(src.error_at_value(
                p,
                format!("prefix {p:?} must be an absolute path of < 255 bytes"),
            ));
        }
    }
    for s in &f.suffixes {
        check_suffix(src, s)?;
    }
    for c in &f.contains {
        if c.is_empty() {
            return Err(src.error_at("contains", "an empty `contains` entry matches every path"));
        }
    }
    for r in &f.home_prefixes {
        if r.is_empty()
            || r.starts_with('/')
            || r.starts_with('~')
            || r.split('/').any(|c| c == "..")
            || r.len() >= observer_common::PREFIX_KEY_LEN / 2
        {
            return Err(src.error_at_value(
                r,
                format!("home prefix {r:?} must be a path relative to a home directory (`.ollama/models/`), without `..`, of < 128 bytes"),
            ));
        }
    }
    Ok(PathSet {
        prefixes: f.prefixes.clone(),
        suffixes: f.suffixes.clone(),
        contains: f.contains.clone(),
        home_relative: f.home_prefixes.clone(),
        homes: if f.home_prefixes.is_empty() {
            Vec::new()
        } else {
            homes.to_vec()
        },
    })
}

fn check_suffix<T>(src: &Source<T>, s: &str) -> Result<(), PolicyError> {
    if s.is_empty() || s.len() > observer_common::SUFFIX_KEY_LEN {
        return Err(src.error_at_value(s, format!("suffix {s:?} must be 1..=64 bytes")));
    }
    Ok(())
}

/// Generic names and their confirmation come together: a generic name
/// without one would never match, a confirmation without one would
/// confirm nothing. Both are refused rather than silently ignored.
fn generic<T>(
    src: &Source<T>,
    id: &str,
    names: &[String],
    requires_any: Option<&Confirmation>,
) -> Result<(GlobSet, Confirm), PolicyError> {
    let confirm = requires_any
        .map(Confirm::compile)
        .transpose()
        .map_err(at(src, id))?
        .unwrap_or_default();
    match (names.is_empty(), confirm.is_empty()) {
        (false, true) => Err(src.error_at_value(
            id,
            format!("`{id}`: `generic_names` need a non-empty `requires_any` (what confirms them)"),
        )),
        (true, false) => Err(src.error_at_value(
            id,
            format!("`{id}`: `requires_any` applies to `generic_names`, and there are none"),
        )),
        _ => Ok((GlobSet::new(names).map_err(at(src, id))?, confirm)),
    }
}

pub fn compile(files: &PolicyFiles) -> Result<Indicators, PolicyError> {
    compile_with_homes(files, &super::homes::local_homes())
}

/// `compile` with the home directories given (tests use fixed ones).
pub fn compile_with_homes(
    files: &PolicyFiles,
    homes: &[String],
) -> Result<Indicators, PolicyError> {
    let mut out = Indicators::default();
    let (e, g, h, m) = (
        &files.ai_endpoints,
        &files.ai_gateways,
        &files.model_hubs,
        &files.mcp_servers,
    );
    providers(e, &e.value.provider, ProviderKind::AiApi, &mut out)?;
    providers(g, &g.value.provider, ProviderKind::AiGateway, &mut out)?;
    providers(h, &h.value.provider, ProviderKind::ModelHub, &mut out)?;
    providers(m, &m.value.remote, ProviderKind::McpServer, &mut out)?;
    let src = &files.local_inference;
    for s in &src.value.server {
        let (generic_names, confirm) =
            generic(src, &s.id, &s.generic_names, s.requires_any.as_ref())?;
        out.servers.push(Server {
            id: s.id.clone(),
            names: GlobSet::new(&s.process_names).map_err(at(src, &s.id))?,
            generic_names,
            confirm,
            argv: Regexes::new(&s.argv).map_err(at(src, &s.id))?,
            ports: s.ports.clone(),
        });
    }
    let src = &files.agent_clis;
    for c in &src.value.cli {
        let (generic_names, confirm) =
            generic(src, &c.id, &c.generic_names, c.requires_any.as_ref())?;
        if c.process_names.is_empty() && c.generic_names.is_empty() {
            return Err(src.error_at_value(
                &c.id,
                format!("cli `{}` needs `process_names` or `generic_names`", c.id),
            ));
        }
        out.clis.push(Cli {
            id: c.id.clone(),
            names: GlobSet::new(&c.process_names).map_err(at(src, &c.id))?,
            generic_names,
            confirm,
            autonomous_flags: c
                .autonomous_flags
                .iter()
                .map(|f| AutonomousFlag::parse(f).map_err(|m| src.error_at_value(f, m)))
                .collect::<Result<_, _>>()?,
        });
    }
    let src = &files.mcp_servers;
    for l in &src.value.launcher {
        out.launchers.push(Launcher {
            id: l.id.clone(),
            argv: Regexes::new(&l.argv).map_err(at(src, &l.id))?,
        });
    }
    out.model_files = paths(&files.model_files, homes)?;
    out.ai_sdks = paths(&files.ai_sdks, homes)?;
    out.gpu_devices = paths(&files.gpu_devices, homes)?;
    out.secret_files = paths(&files.secret_files, homes)?;
    let src = &files.ai_credentials;
    let mut seen = HashMap::new();
    for c in &src.value.credential {
        if seen.insert(c.id.clone(), ()).is_some() {
            return Err(
                src.error_at_value(&c.id, format!("credential id `{}` is listed twice", c.id))
            );
        }
        for s in &c.suffixes {
            check_suffix(src, s)?;
        }
        out.credentials.push(Credential {
            id: c.id.clone(),
            suffixes: c.suffixes.clone(),
            owners: GlobSet::new(&c.owners).map_err(at(src, &c.id))?,
        });
    }
    out.mcp_tools = super::mcp_tools::ToolChecks::compile(&files.mcp_tool_checks)?;
    Ok(out)
}
