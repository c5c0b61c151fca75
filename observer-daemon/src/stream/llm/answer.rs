//! What an LLM API answered: the model, the finish reason, token usage and
//! the tools the model asked to call, from a JSON body or a stream of
//! server-sent events (Ollama: JSON lines). Never the text itself.
use serde_json::Value;

use crate::stream::{
    llm::{endpoint::Api, request::text, Usage},
    sse,
};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answered {
    pub model: Option<String>,
    pub finish_reason: Option<String>,
    pub usage: Usage,
    pub tool_calls: Vec<String>,
    /// The provider's error type, for an error answer.
    pub error: Option<String>,
    /// The answer was a stream of events.
    pub streamed: bool,
}

/// Reads a decoded (content coding removed) response body.
pub fn answered(api: Api, content_type: Option<&str>, body: &[u8]) -> Answered {
    let mut a = Answered::default();
    let ct = content_type.unwrap_or("").to_ascii_lowercase();
    if ct.starts_with("text/event-stream") {
        a.streamed = true;
        for ev in sse::events(body) {
            if ev.data == "[DONE]" {
                continue;
            }
            if let Ok(json) = serde_json::from_str::<Value>(&ev.data) {
                read(api, ev.event.as_deref(), &json, &mut a);
            }
        }
    } else if ct.starts_with("application/x-ndjson")
        || (api == Api::OllamaChat && !ct.starts_with("application/json"))
    {
        a.streamed = true;
        for line in body.split(|b| *b == b'\n') {
            if let Ok(json) = serde_json::from_slice::<Value>(line) {
                read(api, None, &json, &mut a);
            }
        }
    } else if let Ok(json) = serde_json::from_slice::<Value>(body) {
        read(api, None, &json, &mut a);
    }
    a
}

/// Folds one JSON document (a whole answer or one streamed event) into `a`.
fn read(api: Api, event: Option<&str>, json: &Value, a: &mut Answered) {
    if let Some(kind) = text(&json["error"]["type"])
        .or_else(|| text(&json["error"]["status"]))
        .or_else(|| text(&json["error"]["code"]))
        .or_else(|| json["error"].as_str().map(|_| "error".to_string()))
    {
        a.error = Some(kind);
    }
    match api {
        Api::Messages => anthropic(event, json, a),
        Api::GenerateContent => gemini(json, a),
        Api::Responses => {
            // Streamed: response.completed / .incomplete / .failed carry
            // the whole response; unstreamed, the body is the response.
            let r = if json["response"].is_object() {
                &json["response"]
            } else {
                json
            };
            responses(r, a);
        }
        Api::OllamaChat => ollama(json, a),
        Api::Bedrock => bedrock(json, a),
        Api::ChatCompletions | Api::Completions | Api::Embeddings => chat(json, a),
    }
}

fn set(slot: &mut Option<u64>, v: &Value) {
    if let Some(n) = v.as_u64() {
        *slot = Some(n);
    }
}

fn set_text(slot: &mut Option<String>, v: &Value) {
    if let Some(s) = text(v) {
        if !s.is_empty() {
            *slot = Some(s);
        }
    }
}

fn chat(json: &Value, a: &mut Answered) {
    set_text(&mut a.model, &json["model"]);
    for choice in json["choices"].as_array().into_iter().flatten() {
        set_text(&mut a.finish_reason, &choice["finish_reason"]);
        // Whole answers carry `message`, streamed chunks `delta`; a
        // streamed call is named in its first chunk only.
        for m in [&choice["message"], &choice["delta"]] {
            for call in m["tool_calls"].as_array().into_iter().flatten() {
                if let Some(n) = text(&call["function"]["name"]) {
                    a.tool_calls.push(n);
                }
            }
        }
    }
    let u = &json["usage"];
    set(&mut a.usage.input_tokens, &u["prompt_tokens"]);
    set(&mut a.usage.output_tokens, &u["completion_tokens"]);
    set(
        &mut a.usage.cached_input_tokens,
        &u["prompt_tokens_details"]["cached_tokens"],
    );
}

fn responses(r: &Value, a: &mut Answered) {
    set_text(&mut a.model, &r["model"]);
    match r["status"].as_str() {
        Some("incomplete") => set_text(&mut a.finish_reason, &r["incomplete_details"]["reason"]),
        Some(s) if s != "in_progress" && s != "queued" => a.finish_reason = Some(s.to_string()),
        _ => {}
    }
    if r["output"].is_array() {
        a.tool_calls.clear();
    }
    for item in r["output"].as_array().into_iter().flatten() {
        if item["type"] == "function_call" {
            if let Some(n) = text(&item["name"]) {
                a.tool_calls.push(n);
            }
        }
    }
    let u = &r["usage"];
    set(&mut a.usage.input_tokens, &u["input_tokens"]);
    set(&mut a.usage.output_tokens, &u["output_tokens"]);
    set(
        &mut a.usage.cached_input_tokens,
        &u["input_tokens_details"]["cached_tokens"],
    );
}

fn anthropic(event: Option<&str>, json: &Value, a: &mut Answered) {
    let kind = event.or(json["type"].as_str());
    match kind {
        Some("message_start") => {
            let m = &json["message"];
            set_text(&mut a.model, &m["model"]);
            anthropic_usage(&m["usage"], a);
        }
        Some("content_block_start") => {
            if json["content_block"]["type"] == "tool_use" {
                if let Some(n) = text(&json["content_block"]["name"]) {
                    a.tool_calls.push(n);
                }
            }
        }
        Some("message_delta") => {
            set_text(&mut a.finish_reason, &json["delta"]["stop_reason"]);
            anthropic_usage(&json["usage"], a);
        }
        _ => {
            // A whole message.
            set_text(&mut a.model, &json["model"]);
            set_text(&mut a.finish_reason, &json["stop_reason"]);
            for block in json["content"].as_array().into_iter().flatten() {
                if block["type"] == "tool_use" {
                    if let Some(n) = text(&block["name"]) {
                        a.tool_calls.push(n);
                    }
                }
            }
            anthropic_usage(&json["usage"], a);
        }
    }
}

fn anthropic_usage(u: &Value, a: &mut Answered) {
    set(&mut a.usage.input_tokens, &u["input_tokens"]);
    set(&mut a.usage.output_tokens, &u["output_tokens"]);
    set(
        &mut a.usage.cached_input_tokens,
        &u["cache_read_input_tokens"],
    );
}

fn gemini(json: &Value, a: &mut Answered) {
    // A non-SSE stream is one JSON array of the chunks.
    if let Some(chunks) = json.as_array() {
        for c in chunks {
            gemini(c, a);
        }
        return;
    }
    set_text(&mut a.model, &json["modelVersion"]);
    for c in json["candidates"].as_array().into_iter().flatten() {
        set_text(&mut a.finish_reason, &c["finishReason"]);
        for part in c["content"]["parts"].as_array().into_iter().flatten() {
            if let Some(n) = text(&part["functionCall"]["name"]) {
                a.tool_calls.push(n);
            }
        }
    }
    let u = &json["usageMetadata"];
    set(&mut a.usage.input_tokens, &u["promptTokenCount"]);
    set(&mut a.usage.output_tokens, &u["candidatesTokenCount"]);
    set(
        &mut a.usage.cached_input_tokens,
        &u["cachedContentTokenCount"],
    );
}

fn ollama(json: &Value, a: &mut Answered) {
    set_text(&mut a.model, &json["model"]);
    set_text(&mut a.finish_reason, &json["done_reason"]);
    if let Some(calls) = json["message"]["tool_calls"].as_array() {
        for call in calls {
            if let Some(n) = text(&call["function"]["name"]) {
                a.tool_calls.push(n);
            }
        }
    }
    set(&mut a.usage.input_tokens, &json["prompt_eval_count"]);
    set(&mut a.usage.output_tokens, &json["eval_count"]);
}

fn bedrock(json: &Value, a: &mut Answered) {
    // Converse: stopReason and usage; InvokeModel carries the model
    // family's own body (Anthropic's on Bedrock).
    set_text(&mut a.finish_reason, &json["stopReason"]);
    let u = &json["usage"];
    set(&mut a.usage.input_tokens, &u["inputTokens"]);
    set(&mut a.usage.output_tokens, &u["outputTokens"]);
    if json["type"] == "message" {
        anthropic(None, json, a);
    }
}

#[cfg(test)]
#[path = "answer_tests.rs"]
mod tests;
