//! How much of an agent's LLM and MCP traffic is kept (`capture_content`
//! of an agent in agents.toml or observer.toml's `[[agents]]`), in a file
//! of its own so the configuration can name it without the policy.
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaptureContent {
    /// Digests and the parsed fields only (the default).
    #[default]
    None,
    /// The bodies, arguments and results, with credentials and personal
    /// data (e-mail addresses, phone numbers) replaced.
    Redacted,
    /// The bodies, arguments and results, with credentials replaced.
    Full,
}
