//! LLM calls to a local inference server over plain HTTP on loopback, read
//! from the agent's socket calls (`sendto`/`recvfrom` and `write`/`read`
//! of a watched process on a loopback TCP socket), not from a TLS library:
//! - the real `openai` SDK pointed at an Ollama-style server on
//!   127.0.0.1:11434 (`/v1/chat/completions`, JSON then a stream);
//! - Ollama's own `/api/chat` through Python's urllib.
//!
//! Each call is one `llm.request` receipt with exactly what the server
//! sent, `transport` `tcp` and the socket named; the key is nowhere.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]
mod llm_kit;
mod tls_kit;

use llm_kit::{run_agent_over, Over};
use serde_json::json;

/// Ollama's port: the endpoint table knows it on loopback.
const OLLAMA: u16 = 11434;

/// The tests take turns on the one port.
static PORT: std::sync::Mutex<()> = std::sync::Mutex::new(());

const SDK_SCRIPT: &str = r#"
import sys, openai
port, key = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=f"http://127.0.0.1:11434/v1", api_key=key, max_retries=0)
sys.stdin.readline()
r = client.chat.completions.create(model="llama3.2", messages=[{"role": "user", "content": "hi"}])
print(r.model, r.choices[0].finish_reason, r.usage.prompt_tokens, r.usage.completion_tokens)
finish = None
for chunk in client.chat.completions.create(
    model="llama3.2", messages=[{"role": "user", "content": "hi"}], stream=True,
    stream_options={"include_usage": True},
):
    for c in chunk.choices:
        finish = c.finish_reason or finish
    usage = chunk.usage or None
print(finish, usage.prompt_tokens, usage.completion_tokens)
"#;

const JSON_ANSWER: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1733450000,"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[{"index":0,"message":{"role":"assistant","content":"Hello!"},"finish_reason":"stop"}],"usage":{"prompt_tokens":26,"completion_tokens":3,"total_tokens":29}}"#;

fn sse_answer() -> Vec<u8> {
    let chunk = |choices: &str, usage: &str| {
        format!("data: {{\"id\":\"chatcmpl-2\",\"object\":\"chat.completion.chunk\",\"created\":1733450001,\"model\":\"llama3.2\",\"system_fingerprint\":\"fp_ollama\",\"choices\":[{choices}]{usage}}}\n\n")
    };
    let mut s = chunk(
        r#"{"index":0,"delta":{"role":"assistant","content":"Hi"},"finish_reason":null}"#,
        "",
    );
    s += &chunk(
        r#"{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":"length"}"#,
        "",
    );
    s += &chunk(
        "",
        r#","usage":{"prompt_tokens":26,"completion_tokens":2,"total_tokens":28}"#,
    );
    s += "data: [DONE]\n\n";
    s.into_bytes()
}

#[test]
fn the_openai_sdk_against_a_local_ollama_over_plain_http_is_read_from_the_socket() {
    let _port = PORT.lock().unwrap_or_else(|e| e.into_inner());
    let sse = sse_answer();
    let run = run_agent_over(
        "local-openai-agent",
        SDK_SCRIPT,
        &[
            ("answer0.json", JSON_ANSWER.as_bytes()),
            ("answer1.sse", &sse),
        ],
        Over::Plain(OLLAMA),
    );
    assert_eq!(run.stdout, "llama3.2 stop 26 3\nlength 26 2\n");
    for (record, stream) in run.records.iter().zip([false, true]) {
        let call = &record["llm_request"];
        assert_eq!(call["provider"], "ollama", "{call}");
        assert_eq!(call["api"], "chat.completions");
        assert_eq!(call["host"], "127.0.0.1:11434");
        assert_eq!(call["transport"], "tcp");
        let conn = call["connection"].as_str().unwrap();
        assert!(
            conn.starts_with("fd ") && conn.ends_with(" 127.0.0.1:11434"),
            "{conn}"
        );
        assert_eq!(call["model_requested"], "llama3.2");
        assert_eq!(call["model_answered"], "llama3.2");
        assert_eq!(call["stream"], stream);
    }
    let (json, streamed) = (
        &run.records[0]["llm_request"],
        &run.records[1]["llm_request"],
    );
    assert_eq!(json["finish_reason"], "stop");
    assert_eq!(
        json["usage"],
        json!({"input_tokens": 26, "output_tokens": 3})
    );
    assert_eq!(streamed["finish_reason"], "length");
    assert_eq!(
        streamed["usage"],
        json!({"input_tokens": 26, "output_tokens": 2})
    );
    // One kept-alive socket for both.
    assert_eq!(json["connection"], streamed["connection"]);
}

/// Ollama's native chat API through the standard library: `urllib` sends
/// the head and body over the socket, Ollama's answer carries its own
/// usage names (`prompt_eval_count`, `eval_count`, `done_reason`).
const URLLIB_SCRIPT: &str = r#"
import json, sys, urllib.request
port, key = sys.argv[1], sys.argv[2]
body = json.dumps({"model": "qwen2.5:7b", "stream": False,
                   "messages": [{"role": "user", "content": "Why is the sky blue?"}],
                   "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]}).encode()
sys.stdin.readline()
req = urllib.request.Request("http://127.0.0.1:11434/api/chat", data=body,
                             headers={"Content-Type": "application/json", "Authorization": "Bearer " + key})
with urllib.request.urlopen(req) as r:
    a = json.load(r)
print(a["model"], a["done_reason"], a["prompt_eval_count"], a["eval_count"])
"#;

const OLLAMA_ANSWER: &str = r#"{"model":"qwen2.5:7b","created_at":"2026-12-06T18:00:00Z","message":{"role":"assistant","content":"Rayleigh scattering."},"done":true,"done_reason":"stop","total_duration":1000,"prompt_eval_count":31,"eval_count":5}"#;

#[test]
fn ollamas_own_chat_api_through_urllib_is_an_exact_receipt() {
    let _port = PORT.lock().unwrap_or_else(|e| e.into_inner());
    let run = run_agent_over(
        "local-urllib-agent",
        URLLIB_SCRIPT,
        &[("answer0.json", OLLAMA_ANSWER.as_bytes())],
        Over::Plain(OLLAMA),
    );
    assert_eq!(run.stdout, "qwen2.5:7b stop 31 5\n");
    let call = &run.records[0]["llm_request"];
    assert_eq!(call["provider"], "ollama");
    assert_eq!(call["api"], "ollama.chat");
    assert_eq!(call["path"], "/api/chat");
    assert_eq!(call["transport"], "tcp");
    assert_eq!(call["model_requested"], "qwen2.5:7b");
    assert_eq!(call["model_answered"], "qwen2.5:7b");
    assert_eq!(call["stream"], false);
    assert_eq!(call["finish_reason"], "stop");
    assert_eq!(call["tools_offered"], json!(["lookup"]));
    assert_eq!(
        call["usage"],
        json!({"input_tokens": 31, "output_tokens": 5})
    );
}
