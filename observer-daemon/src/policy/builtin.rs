//! The built-in policy set: the repository's `policies/` embedded at build
//! time (build.rs). It is in force when observer.toml names no policy
//! directory, or names one that does not exist, so shadow-AI detection works
//! the moment the daemon is installed. Its files are parsed and validated
//! exactly as a directory's are; error locations read `<built-in>/FILE`.
use std::path::{Path, PathBuf};

use super::{
    error::PolicyError,
    load::{parse_text, PolicyFiles, Source},
};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/builtin_policies.rs"));
}

/// The label error messages and `observer.policy` receipts use for it.
pub const LABEL: &str = "<built-in>";

/// The embedded text of `rel` (e.g. `indicators/ai_endpoints.toml`).
pub fn text(rel: &str) -> Option<&'static str> {
    embedded::FILES
        .iter()
        .find(|(name, _)| *name == rel)
        .map(|(_, text)| *text)
}

/// Every embedded file's relative path.
pub fn names() -> impl Iterator<Item = &'static str> {
    embedded::FILES.iter().map(|(name, _)| *name)
}

fn parse<T: serde::de::DeserializeOwned>(rel: &str) -> Result<Source<T>, PolicyError> {
    let path = Path::new(LABEL).join(rel);
    let text = text(rel).ok_or_else(|| {
        PolicyError::file(&path, "missing from the built-in policy set (build.rs)")
    })?;
    parse_text(&path, text.to_owned())
}

/// The built-in set's files, parsed.
pub fn files() -> Result<PolicyFiles, PolicyError> {
    let i = |name: &str| format!("indicators/{name}");
    Ok(PolicyFiles {
        dir: PathBuf::from(LABEL),
        agents: parse("agents.toml")?,
        rules: parse("rules.toml")?,
        ai_endpoints: parse(&i("ai_endpoints.toml"))?,
        ai_gateways: parse(&i("ai_gateways.toml"))?,
        model_hubs: parse(&i("model_hubs.toml"))?,
        local_inference: parse(&i("local_inference.toml"))?,
        agent_clis: parse(&i("agent_clis.toml"))?,
        mcp_servers: parse(&i("mcp_servers.toml"))?,
        model_files: parse(&i("model_files.toml"))?,
        ai_sdks: parse(&i("ai_sdks.toml"))?,
        ai_credentials: parse(&i("ai_credentials.toml"))?,
        gpu_devices: parse(&i("gpu_devices.toml"))?,
        secret_files: parse(&i("secret_files.toml"))?,
        mcp_tool_checks: parse(&i("mcp_tool_checks.toml"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::load::INDICATOR_FILES;

    #[test]
    fn every_indicator_file_is_embedded_and_nothing_else() {
        let mut expected: Vec<String> = ["agents.toml", "rules.toml"]
            .iter()
            .map(|s| s.to_string())
            .chain(INDICATOR_FILES.iter().map(|f| format!("indicators/{f}")))
            .collect();
        expected.sort();
        let embedded: Vec<String> = names().map(str::to_owned).collect();
        assert_eq!(embedded, expected);
    }

    #[test]
    fn embedded_text_is_the_repository_file() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
        for name in names() {
            let on_disk = std::fs::read_to_string(repo.join(name)).unwrap();
            assert_eq!(text(name).unwrap(), on_disk, "{name}");
        }
    }
}
