//! Names of interesting environment variables of a process.
//!
//! Only names leave this module: values are credentials (API keys, tokens)
//! and must never reach events or logs.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An environ larger than this is truncated; the kernel already caps it at a
/// fraction of the stack limit, and real ones are a few KiB.
const MAX_ENVIRON_BYTES: u64 = 4 * 1024 * 1024;

/// Patterns always watched: AI provider keys and endpoints, cloud
/// credentials usable for model access, and agent configuration.
const DEFAULT_PATTERNS: &[&str] = &[
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "AZURE_OPENAI_*",
    "MISTRAL_API_KEY",
    "COHERE_API_KEY",
    "GROQ_API_KEY",
    "TOGETHER_API_KEY",
    "FIREWORKS_API_KEY",
    "PERPLEXITY_API_KEY",
    "DEEPSEEK_API_KEY",
    "XAI_API_KEY",
    "OPENROUTER_API_KEY",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "REPLICATE_API_TOKEN",
    "AWS_BEARER_TOKEN_BEDROCK",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "GITHUB_TOKEN",
    // GitHub CLI and Copilot CLI tokens, and the github-mcp-server's.
    "GH_TOKEN",
    "COPILOT_GITHUB_TOKEN",
    "GITHUB_PERSONAL_ACCESS_TOKEN",
    // Claude Code's bearer token for gateways and proxies.
    "ANTHROPIC_AUTH_TOKEN",
    "KAGGLE_KEY",
    // Where model weights come from (hf-mirror.com and other mirrors).
    "HF_ENDPOINT",
    "OLLAMA_HOST",
    "CLAUDE_CODE_*",
    "CODEX_*",
    "GOOSE_*",
    "LLM_USER_PATH",
    "MCP_*",
    "*_API_KEY",
    // Tokens by their usual suffixes (REPLICATE_API_TOKEN, CLOUDFLARE_API_TOKEN,
    // ANTHROPIC_AUTH_TOKEN, a gateway's *_AUTH_TOKEN).
    "*_API_TOKEN",
    "*_AUTH_TOKEN",
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvPatternError {
    #[error("empty environment variable pattern")]
    Empty,
    #[error("environment variable pattern {0:?}: '*' is only allowed at one end, next to a name")]
    BadWildcard(String),
    #[error("environment variable pattern {0:?}: names cannot contain '=' or NUL")]
    BadChar(String),
}

/// `NAME` (exact), `PREFIX*` or `*SUFFIX`. Matching is case-sensitive, as
/// environment variable names are.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum EnvPattern {
    Exact(String),
    Prefix(String),
    Suffix(String),
}

impl EnvPattern {
    pub fn parse(s: &str) -> Result<Self, EnvPatternError> {
        if s.is_empty() {
            return Err(EnvPatternError::Empty);
        }
        if s.contains(['=', '\0']) {
            return Err(EnvPatternError::BadChar(s.to_string()));
        }
        let pattern = match (s.strip_suffix('*'), s.strip_prefix('*')) {
            (Some(prefix), None) => EnvPattern::Prefix(prefix.to_string()),
            (None, Some(suffix)) => EnvPattern::Suffix(suffix.to_string()),
            (None, None) => EnvPattern::Exact(s.to_string()),
            (Some(_), Some(_)) => return Err(EnvPatternError::BadWildcard(s.to_string())),
        };
        // A bare "*" would report every name; "A*B" is not supported.
        match &pattern {
            EnvPattern::Exact(t) | EnvPattern::Prefix(t) | EnvPattern::Suffix(t)
                if t.is_empty() || t.contains('*') =>
            {
                Err(EnvPatternError::BadWildcard(s.to_string()))
            }
            _ => Ok(pattern),
        }
    }

    pub fn matches(&self, name: &str) -> bool {
        match self {
            EnvPattern::Exact(n) => name == n,
            EnvPattern::Prefix(p) => name.starts_with(p.as_str()),
            EnvPattern::Suffix(s) => name.ends_with(s.as_str()),
        }
    }
}

impl FromStr for EnvPattern {
    type Err = EnvPatternError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EnvPattern::parse(s)
    }
}

impl TryFrom<String> for EnvPattern {
    type Error = EnvPatternError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        EnvPattern::parse(&s)
    }
}

impl fmt::Display for EnvPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvPattern::Exact(n) => write!(f, "{n}"),
            EnvPattern::Prefix(p) => write!(f, "{p}*"),
            EnvPattern::Suffix(s) => write!(f, "*{s}"),
        }
    }
}

impl From<EnvPattern> for String {
    fn from(p: EnvPattern) -> Self {
        p.to_string()
    }
}

pub fn default_env_patterns() -> Vec<EnvPattern> {
    DEFAULT_PATTERNS
        .iter()
        .filter_map(|s| EnvPattern::parse(s).ok())
        .collect()
}

/// Sorted, deduplicated names of the variables in a NUL-separated environ
/// blob that match any pattern. Entries without '=' and names that are not
/// UTF-8 are skipped: neither is a variable a program could look up by an
/// ASCII name.
pub fn env_names_of_interest(environ: &[u8], interesting: &[EnvPattern]) -> Vec<String> {
    let mut names: Vec<String> = environ
        .split(|&b| b == 0)
        .filter_map(|entry| {
            let eq = entry.iter().position(|&b| b == b'=')?;
            std::str::from_utf8(&entry[..eq]).ok()
        })
        .filter(|name| !name.is_empty() && interesting.iter().any(|p| p.matches(name)))
        .map(str::to_string)
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// Raw /proc/<pid>/environ (needs ptrace-read access to the process, i.e.
/// root or the same user).
pub fn read_proc_environ(pid: u32) -> io::Result<Vec<u8>> {
    let path = format!("/proc/{pid}/environ");
    let with_path = |e: io::Error| io::Error::new(e.kind(), format!("read {path}: {e}"));
    let file = File::open(&path).map_err(with_path)?;
    let mut buf = Vec::new();
    file.take(MAX_ENVIRON_BYTES)
        .read_to_end(&mut buf)
        .map_err(with_path)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(list: &[&str]) -> Vec<EnvPattern> {
        list.iter().map(|s| EnvPattern::parse(s).unwrap()).collect()
    }

    #[test]
    fn values_never_appear_in_output() {
        let values = [
            "sk-proj-SECRETVALUE123",
            "sk-ant-api03-TOPSECRET",
            "AKIAEXAMPLEKEY",
            "wJalrXUtnFEMI/K7MDENG=bPxRfiCY",
            "OPENAI_API_KEY",
        ];
        let blob = format!(
            "PATH=/usr/bin\0OPENAI_API_KEY={}\0ANTHROPIC_API_KEY={}\0AWS_ACCESS_KEY_ID={}\0\
             AWS_SECRET_ACCESS_KEY={}\0NOTE={}\0",
            values[0], values[1], values[2], values[3], values[4]
        );
        let names = env_names_of_interest(blob.as_bytes(), &default_env_patterns());
        assert_eq!(
            names,
            [
                "ANTHROPIC_API_KEY",
                "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY",
                "OPENAI_API_KEY"
            ]
        );
        // The last value is itself a variable name, so check only real secrets.
        for value in &values[..4] {
            assert!(
                names.iter().all(|n| !n.contains(value)),
                "value {value:?} leaked into {names:?}"
            );
        }
    }

    #[test]
    fn wildcards() {
        let pats = patterns(&["AWS_*", "*_API_KEY", "HF_TOKEN"]);
        let blob = b"AWS_REGION=us-east-1\0MY_API_KEY=x\0HF_TOKEN=y\0HF_TOKEN_2=z\0\
                     API_KEY=w\0aws_region=lower\0XAWS_Y=1\0AWS_=empty\0";
        assert_eq!(
            env_names_of_interest(blob, &pats),
            ["AWS_", "AWS_REGION", "HF_TOKEN", "MY_API_KEY"]
        );
    }

    #[test]
    fn default_patterns_cover_agent_config() {
        let blob = b"AZURE_OPENAI_ENDPOINT=https://x\0CLAUDE_CODE_USE_BEDROCK=1\0\
                     CODEX_HOME=/h\0MCP_SERVER_URL=u\0SOME_VENDOR_API_KEY=k\0HOME=/root\0";
        assert_eq!(
            env_names_of_interest(blob, &default_env_patterns()),
            [
                "AZURE_OPENAI_ENDPOINT",
                "CLAUDE_CODE_USE_BEDROCK",
                "CODEX_HOME",
                "MCP_SERVER_URL",
                "SOME_VENDOR_API_KEY"
            ]
        );
    }

    #[test]
    fn default_patterns_cover_late_2026_credentials() {
        let blob = b"ANTHROPIC_AUTH_TOKEN=t\0GH_TOKEN=g\0COPILOT_GITHUB_TOKEN=c\0\
                     CLOUDFLARE_API_TOKEN=x\0LITELLM_AUTH_TOKEN=y\0GOOSE_PROVIDER=p\0\
                     HF_ENDPOINT=https://hf-mirror.com\0KAGGLE_KEY=k\0\
                     GH_TOKENS=no\0MY_TOKEN=no\0AUTH_TOKEN=no\0TOKEN_API_X=no\0";
        assert_eq!(
            env_names_of_interest(blob, &default_env_patterns()),
            [
                "ANTHROPIC_AUTH_TOKEN",
                "CLOUDFLARE_API_TOKEN",
                "COPILOT_GITHUB_TOKEN",
                "GH_TOKEN",
                "GOOSE_PROVIDER",
                "HF_ENDPOINT",
                "KAGGLE_KEY",
                "LITELLM_AUTH_TOKEN"
            ]
        );
    }

    #[test]
    fn malformed_entries_are_skipped() {
        let pats = patterns(&["*_API_KEY", "FOO"]);
        let blob = b"BROKEN_API_KEY\0\0=OPENAI_API_KEY\0FOO\0\xff_API_KEY=v\0FOO=\0";
        assert_eq!(env_names_of_interest(blob, &pats), ["FOO"]);
        // No trailing NUL, and an empty blob.
        assert_eq!(env_names_of_interest(b"X_API_KEY=1", &pats), ["X_API_KEY"]);
        assert!(env_names_of_interest(b"", &pats).is_empty());
    }

    #[test]
    fn output_is_sorted_and_deduplicated() {
        let pats = patterns(&["B", "A", "*_KEY", "A_*"]);
        let blob = b"B=1\0A_KEY=2\0A=3\0A_KEY=4\0";
        assert_eq!(env_names_of_interest(blob, &pats), ["A", "A_KEY", "B"]);
    }

    #[test]
    fn pattern_parsing() {
        assert_eq!(EnvPattern::parse("X"), Ok(EnvPattern::Exact("X".into())));
        assert_eq!(
            EnvPattern::parse("AWS_*"),
            Ok(EnvPattern::Prefix("AWS_".into()))
        );
        assert_eq!(
            EnvPattern::parse("*_KEY"),
            Ok(EnvPattern::Suffix("_KEY".into()))
        );
        assert_eq!(EnvPattern::parse(""), Err(EnvPatternError::Empty));
        for bad in ["*", "**", "*A*", "A*B", "A**", "**A"] {
            assert!(
                matches!(EnvPattern::parse(bad), Err(EnvPatternError::BadWildcard(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            EnvPattern::parse("A=B"),
            Err(EnvPatternError::BadChar(_))
        ));
        for s in ["X", "AWS_*", "*_KEY"] {
            assert_eq!(EnvPattern::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(default_env_patterns().len(), DEFAULT_PATTERNS.len());
    }

    #[test]
    fn read_own_environ() {
        let blob = read_proc_environ(std::process::id()).unwrap();
        assert!(blob.split(|&b| b == 0).any(|e| e.starts_with(b"PATH=")));
        let err = read_proc_environ(u32::MAX).unwrap_err();
        assert!(err.to_string().contains("/proc/4294967295/environ"));
    }
}
