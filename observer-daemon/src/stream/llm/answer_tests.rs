//! Tests of [`super`] with answers shaped as the providers send them.
use super::*;

fn usage(input: u64, output: u64, cached: Option<u64>) -> Usage {
    Usage {
        input_tokens: Some(input),
        output_tokens: Some(output),
        cached_input_tokens: cached,
    }
}

#[test]
fn openai_chat_whole_answer_with_a_tool_call() {
    let body = br#"{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-4o-mini-2024-07-18",
        "choices":[{"index":0,"message":{"role":"assistant","content":null,
        "tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{}"}}]},
        "finish_reason":"tool_calls"}],
        "usage":{"prompt_tokens":82,"completion_tokens":17,"total_tokens":99,"prompt_tokens_details":{"cached_tokens":64}}}"#;
    let a = answered(Api::ChatCompletions, Some("application/json"), body);
    assert_eq!(a.model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
    assert_eq!(a.finish_reason.as_deref(), Some("tool_calls"));
    assert_eq!(a.tool_calls, ["get_weather"]);
    assert_eq!(a.usage, usage(82, 17, Some(64)));
    assert!(!a.streamed && a.error.is_none());
}

#[test]
fn openai_chat_stream_with_usage_in_the_last_chunk() {
    let body = b"data: {\"model\":\"gpt-4o\",\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}],\"usage\":null}\n\n\
data: {\"model\":\"gpt-4o\",\"choices\":[{\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}],\"usage\":null}\n\n\
data: {\"model\":\"gpt-4o\",\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n\
data: {\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}\n\n\
data: [DONE]\n\n";
    let a = answered(
        Api::ChatCompletions,
        Some("text/event-stream; charset=utf-8"),
        body,
    );
    assert_eq!(
        a,
        Answered {
            model: Some("gpt-4o".into()),
            finish_reason: Some("stop".into()),
            usage: Usage {
                input_tokens: Some(9),
                output_tokens: Some(2),
                cached_input_tokens: None
            },
            tool_calls: vec![],
            error: None,
            streamed: true,
        }
    );
}

#[test]
fn openai_responses_stream_reads_the_completed_response() {
    let body = b"event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"model\":\"gpt-4.1\",\"status\":\"in_progress\",\"output\":[],\"usage\":null}}\n\n\
event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\n\n\
event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"model\":\"gpt-4.1-2025-04-14\",\"status\":\"completed\",\
\"output\":[{\"type\":\"function_call\",\"name\":\"shell\",\"arguments\":\"{}\"},{\"type\":\"message\"}],\
\"usage\":{\"input_tokens\":120,\"input_tokens_details\":{\"cached_tokens\":100},\"output_tokens\":30}}}\n\n";
    let a = answered(Api::Responses, Some("text/event-stream"), body);
    assert_eq!(a.model.as_deref(), Some("gpt-4.1-2025-04-14"));
    assert_eq!(a.finish_reason.as_deref(), Some("completed"));
    assert_eq!(a.tool_calls, ["shell"]);
    assert_eq!(a.usage, usage(120, 30, Some(100)));
}

#[test]
fn anthropic_stream_as_the_messages_api_sends_it() {
    let body = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5-20250929\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":25,\"cache_read_input_tokens\":10,\"output_tokens\":1}}}\n\n\
event: ping\ndata: {\"type\": \"ping\"}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"Bash\",\"input\":{}}}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\n\n\
event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    let a = answered(
        Api::Messages,
        Some("text/event-stream; charset=utf-8"),
        body,
    );
    assert_eq!(a.model.as_deref(), Some("claude-sonnet-4-5-20250929"));
    assert_eq!(a.finish_reason.as_deref(), Some("tool_use"));
    assert_eq!(a.tool_calls, ["Bash"]);
    assert_eq!(a.usage, usage(25, 15, Some(10)));
}

#[test]
fn anthropic_whole_message_and_an_error() {
    let body = br#"{"id":"msg_2","type":"message","model":"claude-haiku-4-5","content":[{"type":"text","text":"ok"}],
        "stop_reason":"end_turn","usage":{"input_tokens":5,"output_tokens":3}}"#;
    let a = answered(Api::Messages, Some("application/json"), body);
    assert_eq!(
        (a.model.as_deref(), a.finish_reason.as_deref()),
        (Some("claude-haiku-4-5"), Some("end_turn"))
    );
    assert_eq!(a.usage, usage(5, 3, None));
    let err = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
    assert_eq!(
        answered(Api::Messages, Some("application/json"), err)
            .error
            .as_deref(),
        Some("overloaded_error")
    );
}

#[test]
fn gemini_stream_takes_the_last_usage() {
    let body = b"data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hi\"}],\"role\":\"model\"}}],\"usageMetadata\":{\"promptTokenCount\":8,\"candidatesTokenCount\":1},\"modelVersion\":\"gemini-2.5-flash\"}\r\n\r\n\
data: {\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"name\":\"read_file\",\"args\":{}}}],\"role\":\"model\"},\"finishReason\":\"STOP\"}],\"usageMetadata\":{\"promptTokenCount\":8,\"candidatesTokenCount\":12,\"cachedContentTokenCount\":4},\"modelVersion\":\"gemini-2.5-flash\"}\r\n\r\n";
    let a = answered(Api::GenerateContent, Some("text/event-stream"), body);
    assert_eq!(a.model.as_deref(), Some("gemini-2.5-flash"));
    assert_eq!(a.finish_reason.as_deref(), Some("STOP"));
    assert_eq!(a.tool_calls, ["read_file"]);
    assert_eq!(a.usage, usage(8, 12, Some(4)));
}

#[test]
fn ollama_json_lines() {
    let body = b"{\"model\":\"llama3.2\",\"message\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"done\":false}\n\
{\"model\":\"llama3.2\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":\"stop\",\"prompt_eval_count\":26,\"eval_count\":4}\n";
    let a = answered(Api::OllamaChat, Some("application/x-ndjson"), body);
    assert_eq!(
        (a.model.as_deref(), a.finish_reason.as_deref()),
        (Some("llama3.2"), Some("stop"))
    );
    assert_eq!(a.usage, usage(26, 4, None));
    assert!(a.streamed);
}
