//! Which LLM API a request went to: the provider from the host (TLS SNI
//! or the Host header), the API from the path. A host we do not know that
//! serves a known API path (a local vLLM, a proxy, a test server) is
//! `openai_compatible`, `anthropic_compatible` or `gemini_compatible`.

/// The shape of the API: what the bodies look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    /// `/v1/chat/completions` (OpenAI and every compatible server).
    ChatCompletions,
    /// `/v1/completions` (legacy).
    Completions,
    /// `/v1/responses`.
    Responses,
    /// `/v1/embeddings`.
    Embeddings,
    /// Anthropic `/v1/messages`.
    Messages,
    /// Gemini `models/{model}:generateContent` / `:streamGenerateContent`.
    GenerateContent,
    /// Bedrock runtime `/model/{id}/invoke`, `/converse` and their stream forms.
    Bedrock,
    /// Ollama's own `/api/chat` and `/api/generate`.
    OllamaChat,
}

impl Api {
    pub fn name(self) -> &'static str {
        match self {
            Api::ChatCompletions => "chat.completions",
            Api::Completions => "completions",
            Api::Responses => "responses",
            Api::Embeddings => "embeddings",
            Api::Messages => "messages",
            Api::GenerateContent => "generate_content",
            Api::Bedrock => "bedrock",
            Api::OllamaChat => "ollama.chat",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub provider: &'static str,
    pub api: Api,
    /// The model named in the path (Gemini, Bedrock, Azure deployments).
    pub path_model: Option<String>,
}

/// Hosts of the providers, by suffix match on the host name.
const HOSTS: &[(&str, &str)] = &[
    ("api.openai.com", "openai"),
    (".openai.azure.com", "azure_openai"),
    (".cognitiveservices.azure.com", "azure_openai"),
    ("api.anthropic.com", "anthropic"),
    ("generativelanguage.googleapis.com", "google_gemini"),
    ("aiplatform.googleapis.com", "google_vertex"),
    (".amazonaws.com", "aws_bedrock"),
    ("openrouter.ai", "openrouter"),
    ("api.groq.com", "groq"),
    ("api.mistral.ai", "mistral"),
    ("api.deepseek.com", "deepseek"),
    ("api.together.xyz", "together"),
    ("api.together.ai", "together"),
    ("api.x.ai", "xai"),
    ("api.fireworks.ai", "fireworks"),
    ("api.perplexity.ai", "perplexity"),
    ("api.cohere.com", "cohere"),
];

/// Local inference servers by their usual port on loopback.
const LOCAL_PORTS: &[(u16, &str)] = &[(11434, "ollama"), (8080, "llama_cpp"), (8000, "vllm")];

/// The provider of `host` (a name or address, with or without `:port`).
pub fn provider_of_host(host: &str) -> Option<&'static str> {
    let (name, port) = split_host(host);
    let name = name.to_ascii_lowercase();
    if let Some((_, p)) = HOSTS.iter().find(|(h, _)| {
        if h.starts_with('.') {
            name.ends_with(h)
        } else {
            name == *h || name.ends_with(&format!(".{h}"))
        }
    }) {
        if *p == "aws_bedrock" && !name.starts_with("bedrock-runtime") {
            return None;
        }
        return Some(p);
    }
    let loopback =
        name == "localhost" || name.starts_with("127.") || name == "::1" || name == "[::1]";
    if loopback {
        return LOCAL_PORTS
            .iter()
            .find(|(p, _)| Some(*p) == port)
            .map(|(_, n)| *n);
    }
    None
}

/// The LLM API of a request to `host` for `target` (path and query), if
/// it is one.
pub fn identify(host: &str, target: &str) -> Option<Endpoint> {
    let path = target.split('?').next().unwrap_or(target);
    let known = provider_of_host(host);
    let (api, path_model) = api_of_path(path)?;
    let provider = match (known, api) {
        (Some(p), _) => p,
        // Bedrock's paths mean nothing on another host.
        (None, Api::Bedrock) => return None,
        (None, Api::Messages) => "anthropic_compatible",
        (None, Api::GenerateContent) => "gemini_compatible",
        (None, Api::OllamaChat) => "ollama",
        (None, _) => "openai_compatible",
    };
    Some(Endpoint {
        provider,
        api,
        path_model,
    })
}

fn api_of_path(path: &str) -> Option<(Api, Option<String>)> {
    let ends = |suffix: &str| path.ends_with(suffix);
    // Azure: /openai/deployments/{deployment}/chat/completions
    let deployment = path
        .split("/deployments/")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .map(str::to_string);
    if ends("/chat/completions") {
        return Some((Api::ChatCompletions, deployment));
    }
    if ends("/completions") {
        return Some((Api::Completions, deployment));
    }
    if ends("/responses") {
        return Some((Api::Responses, deployment));
    }
    if ends("/embeddings") {
        return Some((Api::Embeddings, deployment));
    }
    if ends("/v1/messages") {
        return Some((Api::Messages, None));
    }
    if ends("/api/chat") || ends("/api/generate") {
        return Some((Api::OllamaChat, None));
    }
    if let Some((before, method)) = path.rsplit_once(':') {
        if method == "generateContent" || method == "streamGenerateContent" {
            let model = before.rsplit("/models/").next().map(str::to_string);
            return Some((Api::GenerateContent, model));
        }
    }
    if let Some(rest) = path.strip_prefix("/model/") {
        let (model, action) = rest.rsplit_once('/')?;
        if [
            "invoke",
            "invoke-with-response-stream",
            "converse",
            "converse-stream",
        ]
        .contains(&action)
        {
            return Some((Api::Bedrock, Some(percent_decode(model))));
        }
    }
    None
}

/// A Host header's name and port (`[v6]:port` too).
pub fn split_host(host: &str) -> (&str, Option<u16>) {
    if let Some(rest) = host.strip_prefix('[') {
        if let Some((addr, tail)) = rest.split_once(']') {
            return (addr, tail.strip_prefix(':').and_then(|p| p.parse().ok()));
        }
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => (name, port.parse().ok()),
        _ => (host, None),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(host: &str, target: &str) -> Option<(&'static str, &'static str, Option<String>)> {
        identify(host, target).map(|e| (e.provider, e.api.name(), e.path_model))
    }

    #[test]
    fn providers_by_host_and_apis_by_path() {
        assert_eq!(
            id("api.openai.com", "/v1/chat/completions"),
            Some(("openai", "chat.completions", None))
        );
        assert_eq!(
            id("api.openai.com:443", "/v1/responses"),
            Some(("openai", "responses", None))
        );
        assert_eq!(
            id("api.openai.com", "/v1/embeddings"),
            Some(("openai", "embeddings", None))
        );
        assert_eq!(
            id("api.anthropic.com", "/v1/messages?beta=true"),
            Some(("anthropic", "messages", None))
        );
        assert_eq!(
            id(
                "generativelanguage.googleapis.com",
                "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
            ),
            Some((
                "google_gemini",
                "generate_content",
                Some("gemini-2.5-pro".into())
            ))
        );
        assert_eq!(
            id(
                "myres.openai.azure.com",
                "/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21"
            ),
            Some((
                "azure_openai",
                "chat.completions",
                Some("gpt4o-prod".into())
            ))
        );
        assert_eq!(
            id(
                "bedrock-runtime.us-east-1.amazonaws.com",
                "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/invoke"
            ),
            Some((
                "aws_bedrock",
                "bedrock",
                Some("anthropic.claude-3-5-sonnet-20240620-v1:0".into())
            ))
        );
        assert_eq!(
            id("openrouter.ai", "/api/v1/chat/completions"),
            Some(("openrouter", "chat.completions", None))
        );
        assert_eq!(
            id("api.groq.com", "/openai/v1/chat/completions"),
            Some(("groq", "chat.completions", None))
        );
        assert_eq!(
            id("localhost:11434", "/api/chat"),
            Some(("ollama", "ollama.chat", None))
        );
        assert_eq!(
            id("127.0.0.1:11434", "/v1/chat/completions"),
            Some(("ollama", "chat.completions", None))
        );
        assert_eq!(
            id("127.0.0.1:8000", "/v1/completions"),
            Some(("vllm", "completions", None))
        );
    }

    #[test]
    fn unknown_hosts_with_known_paths_are_compatible_apis() {
        assert_eq!(
            id("127.0.0.1:4443", "/v1/messages"),
            Some(("anthropic_compatible", "messages", None))
        );
        assert_eq!(
            id("llm.internal", "/v1/chat/completions"),
            Some(("openai_compatible", "chat.completions", None))
        );
        assert_eq!(id("example.com", "/index.html"), None);
        assert_eq!(id("s3.amazonaws.com", "/model/x/invoke"), None);
        assert_eq!(id("api.openai.com", "/v1/files"), None);
    }
}
