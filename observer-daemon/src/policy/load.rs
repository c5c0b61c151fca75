//! Reads a policy directory: `agents.toml`, `rules.toml` and one file per
//! indicator list under `indicators/`. Every file must be present (a
//! missing list would silently weaken the rules that name it) and nothing
//! else may be there (a misspelt file name is refused with a suggestion).
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::{error::PolicyError, model::*};
use crate::trust::{TrustError, TrustedDir};

/// The indicator files, in digest order.
pub const INDICATOR_FILES: &[&str] = &[
    "ai_endpoints.toml",
    "ai_gateways.toml",
    "model_hubs.toml",
    "local_inference.toml",
    "agent_clis.toml",
    "mcp_servers.toml",
    "model_files.toml",
    "ai_sdks.toml",
    "ai_credentials.toml",
    "gpu_devices.toml",
    "secret_files.toml",
    "mcp_tool_checks.toml",
];

/// A parsed file with its text (for locating validation errors).
#[derive(Debug, Clone)]
pub struct Source<T> {
    pub path: PathBuf,
    pub text: String,
    pub value: T,
}

impl<T> Source<T> {
    /// An error at the first occurrence of `needle` (a quoted value or a
    /// key) in this file, or at the file when it cannot be found.
    pub fn error_at(&self, needle: &str, message: impl Into<String>) -> PolicyError {
        match self.text.find(needle) {
            Some(at) => PolicyError::at(&self.path, &self.text, at, message),
            None => PolicyError::file(&self.path, message),
        }
    }

    /// An error at a string value (searched for as a TOML basic or
    /// literal string).
    pub fn error_at_value(&self, value: &str, message: impl Into<String>) -> PolicyError {
        let message = message.into();
        for needle in [format!("{value:?}"), format!("'{value}'")] {
            if let Some(at) = self.text.find(&needle) {
                return PolicyError::at(&self.path, &self.text, at, message);
            }
        }
        PolicyError::file(&self.path, message)
    }
}

/// Every file of a policy directory, parsed but not yet validated.
#[derive(Debug, Clone)]
pub struct PolicyFiles {
    pub dir: PathBuf,
    pub agents: Source<AgentsFile>,
    pub rules: Source<RulesFile>,
    pub ai_endpoints: Source<ProvidersFile>,
    pub ai_gateways: Source<ProvidersFile>,
    pub model_hubs: Source<ProvidersFile>,
    pub local_inference: Source<ServersFile>,
    pub agent_clis: Source<ClisFile>,
    pub mcp_servers: Source<LaunchersFile>,
    pub model_files: Source<PathsFile>,
    pub ai_sdks: Source<PathsFile>,
    pub ai_credentials: Source<CredentialsFile>,
    pub gpu_devices: Source<PathsFile>,
    pub secret_files: Source<PathsFile>,
    pub mcp_tool_checks: Source<super::mcp_tools_file::ToolChecksFile>,
}

pub fn parse_file<T: DeserializeOwned>(path: &Path) -> Result<Source<T>, PolicyError> {
    let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_text(path, text)
}

pub fn parse_text<T: DeserializeOwned>(
    path: &Path,
    text: String,
) -> Result<Source<T>, PolicyError> {
    let value = toml::from_str(&text).map_err(|e| PolicyError::from_toml(path, &text, &e))?;
    Ok(Source {
        path: path.to_owned(),
        text,
        value,
    })
}

/// Reads every file of the policy directory `dir`. The directory, every
/// directory above it, `indicators/` and each file must be owned by root
/// (or this process's user) and not writable by group or others, and each
/// is opened without following links: whoever could change them could
/// change the policy in force (register an agent, drop a rule).
pub fn read_dir(dir: &Path) -> Result<PolicyFiles, PolicyError> {
    let untrusted = |error: TrustError| PolicyError::file(&error.path, error.problem.to_string());
    let trusted = TrustedDir::open(dir).map_err(untrusted)?;
    check_names(
        dir,
        &["agents.toml", "rules.toml", "indicators", "README.md"],
    )?;
    let ind = dir.join("indicators");
    let indicators = trusted.subdir("indicators").map_err(untrusted)?;
    check_names(&ind, INDICATOR_FILES)?;
    Ok(PolicyFiles {
        dir: dir.to_owned(),
        agents: read_trusted(&trusted, "agents.toml")?,
        rules: read_trusted(&trusted, "rules.toml")?,
        ai_endpoints: read_trusted(&indicators, "ai_endpoints.toml")?,
        ai_gateways: read_trusted(&indicators, "ai_gateways.toml")?,
        model_hubs: read_trusted(&indicators, "model_hubs.toml")?,
        local_inference: read_trusted(&indicators, "local_inference.toml")?,
        agent_clis: read_trusted(&indicators, "agent_clis.toml")?,
        mcp_servers: read_trusted(&indicators, "mcp_servers.toml")?,
        model_files: read_trusted(&indicators, "model_files.toml")?,
        ai_sdks: read_trusted(&indicators, "ai_sdks.toml")?,
        ai_credentials: read_trusted(&indicators, "ai_credentials.toml")?,
        gpu_devices: read_trusted(&indicators, "gpu_devices.toml")?,
        secret_files: read_trusted(&indicators, "secret_files.toml")?,
        mcp_tool_checks: read_trusted(&indicators, "mcp_tool_checks.toml")?,
    })
}

/// Reads and parses `name` in a checked directory (crate::trust).
fn read_trusted<T: DeserializeOwned>(
    dir: &TrustedDir,
    name: &str,
) -> Result<Source<T>, PolicyError> {
    let text = dir
        .read_to_string(name)
        .map_err(|error| PolicyError::file(&error.path, error.problem.to_string()))?;
    parse_text(&dir.path().join(name), text)
}

/// Refuses `.toml` files (and directories) in `dir` that are not among
/// `known`, suggesting the closest name; other files (editor backups) are
/// ignored.
fn check_names(dir: &Path, known: &[&str]) -> Result<(), PolicyError> {
    let entries = std::fs::read_dir(dir).map_err(|source| PolicyError::Read {
        path: dir.to_owned(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| PolicyError::Read {
            path: dir.to_owned(),
            source,
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let relevant = name.ends_with(".toml") || entry.path().is_dir();
        if relevant && !known.contains(&name.as_str()) {
            let hint = super::error::closest(&name, known.iter().copied())
                .map(|c| format!("; did you mean `{c}`?"))
                .unwrap_or_default();
            return Err(PolicyError::file(
                &entry.path(),
                format!("unknown policy file `{name}`{hint}"),
            ));
        }
    }
    Ok(())
}

/// The files of a policy directory with their modification times, for
/// change detection.
pub fn fingerprint(dir: &Path) -> Vec<(PathBuf, Option<std::time::SystemTime>, u64)> {
    let mut paths = vec![dir.join("agents.toml"), dir.join("rules.toml")];
    paths.extend(
        INDICATOR_FILES
            .iter()
            .map(|f| dir.join("indicators").join(f)),
    );
    // New or removed files count as a change too.
    for d in [dir.to_path_buf(), dir.join("indicators")] {
        if let Ok(entries) = std::fs::read_dir(&d) {
            for e in entries.flatten() {
                if !paths.contains(&e.path()) {
                    paths.push(e.path());
                }
            }
        }
    }
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let meta = std::fs::metadata(&p).ok();
            let mtime = meta.as_ref().and_then(|m| m.modified().ok());
            let len = meta.map_or(u64::MAX, |m| m.len());
            (p, mtime, len)
        })
        .collect()
}

#[cfg(test)]
mod trust_tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// A copy of the shipped policies in a private temp dir.
    fn copy_of_shipped() -> tempfile::TempDir {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("indicators")).unwrap();
        let files = ["agents.toml".to_string(), "rules.toml".to_string()]
            .into_iter()
            .chain(INDICATOR_FILES.iter().map(|f| format!("indicators/{f}")));
        for rel in files {
            std::fs::copy(shipped.join(&rel), dir.path().join(&rel)).unwrap();
            std::fs::set_permissions(
                dir.path().join(&rel),
                std::fs::Permissions::from_mode(0o644),
            )
            .unwrap();
        }
        dir
    }

    fn nobody() -> u32 {
        nix::unistd::User::from_name("nobody")
            .unwrap()
            .unwrap()
            .uid
            .as_raw()
    }

    #[test]
    fn a_policy_directory_others_control_is_refused_naming_what_is_wrong() {
        let dir = copy_of_shipped();
        read_dir(dir.path()).unwrap();

        // Owned by nobody: that user could register an agent.
        std::os::unix::fs::chown(dir.path(), Some(nobody()), None).unwrap();
        let error = read_dir(dir.path()).unwrap_err().to_string();
        assert!(
            error.contains(&format!(
                "{}: is owned by uid {}",
                dir.path().display(),
                nobody()
            )),
            "{error}"
        );
        std::os::unix::fs::chown(dir.path(), Some(0), None).unwrap();

        // A group-writable indicator file.
        let list = dir.path().join("indicators/agent_clis.toml");
        std::fs::set_permissions(&list, std::fs::Permissions::from_mode(0o664)).unwrap();
        let error = read_dir(dir.path()).unwrap_err().to_string();
        assert!(
            error.contains(&format!("{}: has mode 0664", list.display())),
            "{error}"
        );
        std::fs::set_permissions(&list, std::fs::Permissions::from_mode(0o644)).unwrap();

        // agents.toml replaced by a link to a file elsewhere.
        let agents = dir.path().join("agents.toml");
        let elsewhere = dir.path().join("agents.elsewhere");
        std::fs::rename(&agents, &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &agents).unwrap();
        let error = read_dir(dir.path()).unwrap_err().to_string();
        assert!(
            error.contains(&format!("{}: is a symbolic link", agents.display())),
            "{error}"
        );
    }
}
