//! What an LLM API request asked: the model, whether it streams, and the
//! names of the tools it offered. Never the prompt.
use serde_json::Value;

use crate::stream::llm::endpoint::{Api, Endpoint};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Asked {
    pub model: Option<String>,
    pub stream: bool,
    pub tools: Vec<String>,
}

/// Reads a request body (JSON) for `endpoint`. `target` is the request's
/// path and query (Gemini streams by method name, Bedrock by action).
pub fn asked(endpoint: &Endpoint, target: &str, body: &[u8]) -> Asked {
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let path = target.split('?').next().unwrap_or(target);
    let model = endpoint
        .path_model
        .clone()
        .or_else(|| text(&json["model"]))
        .or_else(|| text(&json["modelId"]));
    let stream = match endpoint.api {
        Api::GenerateContent => path.ends_with(":streamGenerateContent"),
        Api::Bedrock => path.ends_with("-stream"),
        // Ollama streams unless told not to.
        Api::OllamaChat => json["stream"].as_bool().unwrap_or(true),
        _ => json["stream"].as_bool().unwrap_or(false),
    };
    Asked {
        model,
        stream,
        tools: tool_names(&json),
    }
}

/// Tool names in the shapes the APIs use: OpenAI chat
/// `tools[].function.name`, Responses and Anthropic `tools[].name`, Gemini
/// `tools[].functionDeclarations[].name`, Bedrock Converse
/// `toolConfig.tools[].toolSpec.name`.
fn tool_names(json: &Value) -> Vec<String> {
    let mut names = Vec::new();
    let tools = json["tools"]
        .as_array()
        .or_else(|| json["toolConfig"]["tools"].as_array());
    for tool in tools.into_iter().flatten() {
        let candidates = [
            &tool["function"]["name"],
            &tool["name"],
            &tool["toolSpec"]["name"],
        ];
        if let Some(n) = candidates.into_iter().find_map(text) {
            names.push(n);
        }
        for decl in tool["functionDeclarations"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let Some(n) = text(&decl["name"]) {
                names.push(n);
            }
        }
    }
    names
}

pub(crate) fn text(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::llm::endpoint::identify;

    fn ask(host: &str, target: &str, body: &str) -> Asked {
        asked(&identify(host, target).unwrap(), target, body.as_bytes())
    }

    #[test]
    fn openai_chat_puts_the_model_after_the_messages() {
        let a = ask(
            "api.openai.com",
            "/v1/chat/completions",
            r#"{"messages":[{"role":"user","content":"hi"}],"model":"gpt-4o-mini","stream":true,
               "tools":[{"type":"function","function":{"name":"get_weather","parameters":{}}}]}"#,
        );
        assert_eq!(
            a,
            Asked {
                model: Some("gpt-4o-mini".into()),
                stream: true,
                tools: vec!["get_weather".into()]
            }
        );
    }

    #[test]
    fn anthropic_gemini_bedrock_and_ollama_shapes() {
        let a = ask(
            "api.anthropic.com",
            "/v1/messages",
            r#"{"model":"claude-sonnet-4-5","max_tokens":10,"messages":[],"tools":[{"name":"Bash","input_schema":{}},{"name":"Read","input_schema":{}}]}"#,
        );
        assert_eq!(
            (a.model.as_deref(), a.stream, a.tools.len()),
            (Some("claude-sonnet-4-5"), false, 2)
        );
        let g = ask(
            "generativelanguage.googleapis.com",
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
            r#"{"contents":[],"tools":[{"functionDeclarations":[{"name":"ls"},{"name":"grep"}]}]}"#,
        );
        assert_eq!(
            g,
            Asked {
                model: Some("gemini-2.5-flash".into()),
                stream: true,
                tools: vec!["ls".into(), "grep".into()]
            }
        );
        let b = ask(
            "bedrock-runtime.eu-west-1.amazonaws.com",
            "/model/amazon.nova-pro-v1%3A0/converse-stream",
            r#"{"messages":[],"toolConfig":{"tools":[{"toolSpec":{"name":"lookup"}}]}}"#,
        );
        assert_eq!(
            b,
            Asked {
                model: Some("amazon.nova-pro-v1:0".into()),
                stream: true,
                tools: vec!["lookup".into()]
            }
        );
        let o = ask(
            "localhost:11434",
            "/api/chat",
            r#"{"model":"llama3.2","messages":[]}"#,
        );
        assert_eq!((o.model.as_deref(), o.stream), (Some("llama3.2"), true));
    }

    #[test]
    fn a_body_that_is_not_json_asks_nothing_known() {
        let a = ask(
            "api.openai.com",
            "/v1/chat/completions",
            "{\"model\":\"gpt-4o\",\"messa",
        );
        assert_eq!(a, Asked::default());
    }
}
