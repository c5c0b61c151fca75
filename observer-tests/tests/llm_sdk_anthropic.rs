//! The real `anthropic` Python SDK (pinned, observer-tests/llm_sdks) as a
//! registered agent, against a local TLS server that answers like
//! Anthropic: `messages.create` answered with a JSON message (a tool
//! call), then `messages.stream` answered with Anthropic's named
//! server-sent events in chunked transfer coding, both over one kept-alive
//! connection. Each call is one `llm_request` record and one
//! `llm.request` receipt with exactly the provider, API, models, usage,
//! status and stop reason the server sent, and the digests of the body the
//! server read and the body it sent (chunk framing removed); the chain
//! verifies; the API key is nowhere the daemon wrote.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]
mod llm_kit;
mod tls_kit;

use llm_kit::run_agent;
use serde_json::json;

/// The agent: both calls, through one client, no retries.
const SCRIPT: &str = r#"
import sys, anthropic
port, key = sys.argv[1], sys.argv[2]
client = anthropic.Anthropic(base_url=f"https://127.0.0.1:{port}", api_key=key, max_retries=0)
sys.stdin.readline()
m = client.messages.create(
    model="claude-sonnet-4-5",
    max_tokens=256,
    messages=[{"role": "user", "content": "What is the weather in Paris?"}],
    tools=[{"name": "get_weather", "description": "weather", "input_schema": {"type": "object", "properties": {}}}],
)
print(m.model, m.stop_reason, m.content[0].name, m.usage.input_tokens, m.usage.output_tokens)
with client.messages.stream(
    model="claude-haiku-4-5",
    max_tokens=64,
    messages=[{"role": "user", "content": "Say hi"}],
) as stream:
    text = "".join(stream.text_stream)
    final = stream.get_final_message()
print(final.model, final.stop_reason, text, final.usage.input_tokens, final.usage.output_tokens)
"#;

const JSON_ANSWER: &str = r#"{"id":"msg_obs1","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"tool_use","id":"toolu_obs1","name":"get_weather","input":{}}],"stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":384,"cache_creation_input_tokens":0,"cache_read_input_tokens":256,"output_tokens":41}}"#;

fn sse_answer() -> Vec<u8> {
    let mut s = String::new();
    let mut event = |name: &str, data: &str| s += &format!("event: {name}\ndata: {data}\n\n");
    event(
        "message_start",
        r#"{"type":"message_start","message":{"id":"msg_obs2","type":"message","role":"assistant","model":"claude-haiku-4-5-20251001","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":13,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}}"#,
    );
    event(
        "content_block_start",
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
    );
    event("ping", r#"{"type":"ping"}"#);
    for word in ["Hi", " there"] {
        event(
            "content_block_delta",
            &format!(
                r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":"{word}"}}}}"#
            ),
        );
    }
    event(
        "content_block_stop",
        r#"{"type":"content_block_stop","index":0}"#,
    );
    event(
        "message_delta",
        r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":6}}"#,
    );
    event("message_stop", r#"{"type":"message_stop"}"#);
    s.into_bytes()
}

#[test]
fn the_anthropic_sdk_json_and_streamed_calls_are_exact_llm_request_receipts() {
    let sse = sse_answer();
    let run = run_agent(
        "anthropic-sdk-agent",
        SCRIPT,
        &[
            ("answer0.json", JSON_ANSWER.as_bytes()),
            ("answer1.sse", &sse),
        ],
    );
    assert_eq!(
        run.stdout,
        "claude-sonnet-4-5-20250929 tool_use get_weather 384 41\nclaude-haiku-4-5-20251001 end_turn Hi there 13 6\n"
    );
    let head = String::from_utf8_lossy(&run.exchanges[0].request).to_ascii_lowercase();
    assert!(head.starts_with("post /v1/messages http/1.1\r\n"), "{head}");
    assert!(head.contains("x-stainless-retry-count: 0"), "{head}");

    let unstreamed = &run.records[0]["llm_request"];
    assert_eq!(unstreamed["provider"], "anthropic_compatible");
    assert_eq!(unstreamed["api"], "messages");
    assert_eq!(unstreamed["path"], "/v1/messages");
    assert_eq!(unstreamed["model_requested"], "claude-sonnet-4-5");
    assert_eq!(unstreamed["model_answered"], "claude-sonnet-4-5-20250929");
    assert_eq!(unstreamed["stream"], false);
    assert_eq!(unstreamed["finish_reason"], "tool_use");
    assert_eq!(unstreamed["tools_offered"], json!(["get_weather"]));
    assert_eq!(unstreamed["tool_calls"], json!(["get_weather"]));
    assert_eq!(
        unstreamed["usage"],
        json!({"input_tokens": 384, "output_tokens": 41, "cached_input_tokens": 256})
    );

    let streamed = &run.records[1]["llm_request"];
    assert_eq!(streamed["provider"], "anthropic_compatible");
    assert_eq!(streamed["api"], "messages");
    assert_eq!(streamed["model_requested"], "claude-haiku-4-5");
    assert_eq!(streamed["model_answered"], "claude-haiku-4-5-20251001");
    assert_eq!(streamed["stream"], true);
    assert_eq!(streamed["finish_reason"], "end_turn");
    assert_eq!(streamed["tools_offered"], json!([]));
    assert_eq!(streamed["tool_calls"], json!([]));
    // message_start's input and cache counts, message_delta's output.
    assert_eq!(
        streamed["usage"],
        json!({"input_tokens": 13, "output_tokens": 6, "cached_input_tokens": 0})
    );
    assert_eq!(unstreamed["connection"], streamed["connection"]);
}
