//! The real `openai` Python SDK (pinned, observer-tests/llm_sdks) as a
//! registered agent, against a local TLS server that answers like OpenAI:
//! `chat.completions.create` answered with a gzip-coded JSON body, then
//! the same with `stream=True` and `stream_options={"include_usage":
//! True}` answered with server-sent events in chunked transfer coding,
//! both over one kept-alive connection. Each call is one `llm_request`
//! record and one `llm.request` receipt with exactly the provider, API,
//! models, usage, status and finish reason the server sent, and the
//! digests of the body the server read and the body it sent (content
//! coding kept, chunk framing removed); the chain verifies; the API key is
//! nowhere the daemon wrote.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]
mod llm_kit;
mod tls_kit;

use llm_kit::{gzip, run_agent};
use serde_json::json;

/// The agent: both calls, through one client, no retries.
const SCRIPT: &str = r#"
import sys, openai
port, key = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=f"https://127.0.0.1:{port}/v1", api_key=key, max_retries=0)
sys.stdin.readline()
r = client.chat.completions.create(
    model="gpt-4o-mini",
    messages=[{"role": "user", "content": "What is the weather in Paris?"}],
    tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}}],
)
print(r.model, r.choices[0].finish_reason, r.choices[0].message.tool_calls[0].function.name,
      r.usage.prompt_tokens, r.usage.completion_tokens)
usage = None
finish = None
for chunk in client.chat.completions.create(
    model="gpt-4o-mini",
    messages=[{"role": "user", "content": "Say hi"}],
    stream=True,
    stream_options={"include_usage": True},
):
    for c in chunk.choices:
        finish = c.finish_reason or finish
    usage = chunk.usage or usage
print(chunk.model, finish, usage.prompt_tokens, usage.completion_tokens)
"#;

const JSON_ANSWER: &str = r#"{"id":"chatcmpl-obs1","object":"chat.completion","created":1733450000,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":57,"completion_tokens":12,"total_tokens":69,"prompt_tokens_details":{"cached_tokens":32}},"system_fingerprint":"fp_obs"}"#;

fn sse_answer() -> Vec<u8> {
    let chunk = |choices: &str, usage: &str| {
        format!(
            "data: {{\"id\":\"chatcmpl-obs2\",\"object\":\"chat.completion.chunk\",\"created\":1733450001,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_obs\",\"choices\":[{choices}]{usage}}}\n\n"
        )
    };
    let mut s = String::new();
    s += &chunk(
        r#"{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}"#,
        r#","usage":null"#,
    );
    for word in ["Hi", "!", " How", " can", " I", " help", "?"] {
        s += &chunk(
            &format!(r#"{{"index":0,"delta":{{"content":"{word}"}},"finish_reason":null}}"#),
            r#","usage":null"#,
        );
    }
    s += &chunk(
        r#"{"index":0,"delta":{},"finish_reason":"stop"}"#,
        r#","usage":null"#,
    );
    s += &chunk(
        "",
        r#","usage":{"prompt_tokens":9,"completion_tokens":8,"total_tokens":17}"#,
    );
    s += "data: [DONE]\n\n";
    s.into_bytes()
}

#[test]
fn the_openai_sdk_json_and_streamed_calls_are_exact_llm_request_receipts() {
    let json_body = gzip(JSON_ANSWER.as_bytes());
    let sse = sse_answer();
    let run = run_agent(
        "openai-sdk-agent",
        SCRIPT,
        &[("answer0.json.gz", &json_body), ("answer1.sse", &sse)],
    );
    assert_eq!(
        run.stdout,
        "gpt-4o-mini-2024-07-18 tool_calls get_weather 57 12\ngpt-4o-mini-2024-07-18 stop 9 8\n"
    );
    // What the SDK sent, as the server read it.
    let first: serde_json::Value = serde_json::from_slice(&run.exchanges[0].request_body).unwrap();
    assert_eq!(first["model"], "gpt-4o-mini");
    let head = String::from_utf8_lossy(&run.exchanges[0].request).to_ascii_lowercase();
    assert!(head.contains("accept-encoding: gzip"), "{head}");
    assert!(head.contains("x-stainless-retry-count: 0"), "{head}");

    let unstreamed = &run.records[0]["llm_request"];
    assert_eq!(unstreamed["provider"], "openai_compatible");
    assert_eq!(unstreamed["api"], "chat.completions");
    assert_eq!(unstreamed["path"], "/v1/chat/completions");
    assert_eq!(unstreamed["model_requested"], "gpt-4o-mini");
    assert_eq!(unstreamed["model_answered"], "gpt-4o-mini-2024-07-18");
    assert_eq!(unstreamed["stream"], false);
    assert_eq!(unstreamed["finish_reason"], "tool_calls");
    assert_eq!(unstreamed["tools_offered"], json!(["get_weather"]));
    assert_eq!(unstreamed["tool_calls"], json!(["get_weather"]));
    assert_eq!(
        unstreamed["usage"],
        json!({"input_tokens": 57, "output_tokens": 12, "cached_input_tokens": 32})
    );
    // The digest is of the body as sent: gzip-coded.
    assert_eq!(
        unstreamed["response_body"]["bytes"],
        json_body.len(),
        "{unstreamed}"
    );

    let streamed = &run.records[1]["llm_request"];
    assert_eq!(streamed["provider"], "openai_compatible");
    assert_eq!(streamed["api"], "chat.completions");
    assert_eq!(streamed["model_requested"], "gpt-4o-mini");
    assert_eq!(streamed["model_answered"], "gpt-4o-mini-2024-07-18");
    assert_eq!(streamed["stream"], true);
    assert_eq!(streamed["finish_reason"], "stop");
    assert_eq!(streamed["tools_offered"], json!([]));
    assert_eq!(streamed["tool_calls"], json!([]));
    assert_eq!(
        streamed["usage"],
        json!({"input_tokens": 9, "output_tokens": 8})
    );
    // Both went over one connection (the SDK keeps it alive): its SSL
    // object, then the socket the TLS calls wrote to and its peer.
    assert_eq!(unstreamed["connection"], streamed["connection"]);
    let connection = unstreamed["connection"].as_str().unwrap();
    let words: Vec<&str> = connection.split(' ').collect();
    assert!(
        words.len() == 4
            && words[0].starts_with("0x")
            && words[1] == "fd"
            && words[2].parse::<u32>().is_ok_and(|fd| fd >= 3)
            && words[3] == format!("127.0.0.1:{}", run.port),
        "{connection}"
    );
}
