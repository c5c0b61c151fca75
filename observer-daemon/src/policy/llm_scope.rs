//! An LLM API request against the declared scope of the registered agent
//! that made it: its provider against `allowed_providers`, the model it
//! asked for against `allowed_models` (rule `llm-request-out-of-scope`).
use serde_json::{json, Value};

use super::{agents::Registry, indicators::Indicators};
use crate::stream::llm::{call::LlmRequestDetail, endpoint::split_host};

/// The model a request is judged by: the one asked for (the answer names
/// a dated version of it, `gpt-4o` → `gpt-4o-2024-08-06`), else the one
/// that answered.
pub fn judged_model(call: &LlmRequestDetail) -> Option<&str> {
    call.model_requested
        .as_deref()
        .or(call.model_answered.as_deref())
}

/// The provider id (as `allowed_providers` names them) a request went
/// to: the AI endpoint its host is, else the provider the stream layer
/// named when the indicators know it (`azure_openai` is `azure-openai`).
/// None for a host that is no known provider (a local or compatible
/// server): not judged by provider.
fn llm_provider(ind: &Indicators, call: &LlmRequestDetail) -> Option<String> {
    let (name, _) = split_host(&call.host);
    ind.provider_of_name(&name.to_ascii_lowercase())
        .or_else(|| ind.provider_by_id(&call.provider.replace('_', "-")))
        .map(|p| p.id.clone())
}

/// For an `llm_request` by the registered agent `agent` that declared
/// providers or models: what in it is outside them (empty: inside). None
/// when there is nothing to judge (not an agent, nothing declared).
pub(super) fn outside_scope(
    registry: &Registry,
    ind: &Indicators,
    agent: Option<&str>,
    call: &LlmRequestDetail,
) -> Option<Vec<String>> {
    let agent = registry.get(agent?)?;
    if agent.allowed_providers.is_empty() && agent.allowed_models.is_empty() {
        return None;
    }
    let mut outside = Vec::new();
    if !agent.allowed_providers.is_empty() {
        if let Some(p) = llm_provider(ind, call) {
            if !agent.allowed_providers.contains(&p) {
                outside.push(format!("provider {p} is not in allowed_providers"));
            }
        }
    }
    if !agent.allowed_models.is_empty() {
        if let Some(m) = judged_model(call) {
            if !agent.allowed_models.matches(m) {
                outside.push(format!("model {m} is not in allowed_models"));
            }
        }
    }
    Some(outside)
}

/// What an out-of-scope request asked of whom.
pub fn matched(call: &LlmRequestDetail) -> Value {
    json!({
        "outside_agent_scope": true,
        "provider": call.provider,
        "api": call.api,
        "host": call.host,
        "model_requested": call.model_requested,
        "model_answered": call.model_answered,
    })
}
