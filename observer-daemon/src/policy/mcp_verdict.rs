//! What the MCP tool-definition checks (`mcp_tools`) find and conclude,
//! in a file of its own: the records that carry a verdict (the stream
//! layer's `mcp_tool_definition`) import these types without importing the
//! policy that computes them.
use serde::{Deserialize, Serialize};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum Risk {
    Low,
    Medium,
    High,
}

impl TryFrom<String> for Risk {
    type Error = String;
    fn try_from(s: String) -> Result<Risk, String> {
        match s.as_str() {
            "low" => Ok(Risk::Low),
            "medium" => Ok(Risk::Medium),
            "high" => Ok(Risk::High),
            _ => Err(format!(
                "`risk` must be `low`, `medium` or `high`, not {s:?}"
            )),
        }
    }
}

/// What one `tools/list` answer amounts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Clean,
    Warning,
    Dangerous,
}

/// No findings: clean; only low or medium: warning; any high: dangerous.
pub fn verdict(findings: &[ToolFinding]) -> Verdict {
    match findings.iter().map(|f| f.risk).max() {
        None => Verdict::Clean,
        Some(Risk::High) => Verdict::Dangerous,
        Some(_) => Verdict::Warning,
    }
}

/// One thing found in one tool's definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ToolFinding {
    /// The tool's name, escaped (hidden and control characters as
    /// `\u{..}`) and cut to 96 characters.
    pub tool: String,
    /// `injection_phrase`, `hidden_character`, `dangerous_input`,
    /// `typosquat`, `embedded_secret` or `definition_changed`.
    pub check: &'static str,
    pub risk: Risk,
    /// What and where, never a secret found.
    pub reason: String,
}
