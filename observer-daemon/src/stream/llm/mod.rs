//! LLM API traffic: which provider and API a request went to, and what
//! the request asked and the answer said (model, usage, finish reason,
//! tools), from the bodies the HTTP layer assembled.
pub mod answer;
pub mod call;
pub mod endpoint;
pub mod request;

/// Token counts as the provider reported them (for streams: from the
/// event that carries the totals).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u64>,
    /// Input tokens served from the provider's prompt cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cached_input_tokens: Option<u64>,
}
