//! The MCP tool-definition checks file (`indicators/mcp_tool_checks.toml`)
//! as written, apart from the checks (`mcp_tools`) so the loader can name
//! it without importing them.
use serde::{Deserialize, Serialize};

use super::mcp_verdict::Risk;

/// `indicators/mcp_tool_checks.toml`.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolChecksFile {
    #[serde(default)]
    pub injection: Vec<PhraseDef>,
    #[serde(default)]
    pub dangerous_inputs: DangerousInputsDef,
    #[serde(default)]
    pub typosquat: TyposquatDef,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhraseDef {
    pub phrase: String,
    pub risk: Risk,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DangerousInputsDef {
    #[serde(default = "medium")]
    pub risk: Risk,
    #[serde(default)]
    pub names: Vec<String>,
}

impl Default for DangerousInputsDef {
    fn default() -> Self {
        DangerousInputsDef {
            risk: Risk::Medium,
            names: Vec::new(),
        }
    }
}

fn medium() -> Risk {
    Risk::Medium
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TyposquatDef {
    #[serde(default = "four")]
    pub min_length: usize,
    #[serde(default = "six")]
    pub two_edit_min_length: usize,
    #[serde(default)]
    pub names: Vec<String>,
}

impl Default for TyposquatDef {
    fn default() -> Self {
        TyposquatDef {
            min_length: 4,
            two_edit_min_length: 6,
            names: Vec::new(),
        }
    }
}

fn four() -> usize {
    4
}
fn six() -> usize {
    6
}
