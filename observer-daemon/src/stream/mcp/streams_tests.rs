use observer_common::EventKind;
use serde_json::json;

use super::*;
use crate::stream::{
    mcp::session::digest,
    plaintext::{Call, Descriptor},
};

const CLIENT: u32 = 100;
const SERVER: u32 = 200;
/// The pipe the client writes requests into (the server's stdin).
const REQUESTS: u64 = 5001;
/// The pipe the server writes answers into (the server's stdout).
const ANSWERS: u64 = 5002;

fn piece(tgid: u32, ino: u64, ns: u64, call: Call, channel: Channel, data: &[u8]) -> Plaintext {
    Plaintext {
        header: Header {
            kind: EventKind::IoData,
            cpu: 0,
            seq: ns,
            boot_ns: ns,
            tgid,
            tid: tgid,
            uid: 0,
            gid: 0,
            cgroup_id: 1,
            comm: if tgid == CLIENT { "agent" } else { "server" }.into(),
        },
        conn: ConnId::Io(ino),
        call,
        descriptor: Some(Descriptor { fd: 3, channel }),
        len: data.len() as u32,
        offset: 0,
        data: data.to_vec(),
    }
}

fn pipe(tgid: u32, ino: u64, ns: u64, call: Call, data: &str) -> Plaintext {
    piece(tgid, ino, ns, call, Channel::Pipe, data.as_bytes())
}

const INIT: &str = "{\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"2025-06-18\",\"capabilities\":{},\"clientInfo\":{\"name\":\"mcp\",\"version\":\"0.1.0\"}},\"jsonrpc\":\"2.0\",\"id\":0}\n";
const INIT_OK: &str = "{\"jsonrpc\":\"2.0\",\"id\":0,\"result\":{\"protocolVersion\":\"2025-06-18\",\"capabilities\":{\"tools\":{\"listChanged\":false},\"experimental\":{}},\"serverInfo\":{\"name\":\"mcp-time\",\"version\":\"1.9.4\"}}}\n";
const CALL: &str = "{\"method\":\"tools/call\",\"params\":{\"name\":\"get_current_time\",\"arguments\":{\"timezone\":\"Europe/Paris\"}},\"jsonrpc\":\"2.0\",\"id\":1}\n";
const CALL_OK: &str = "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"12:00\"}],\"isError\":false}}\n";

fn calls(out: &[McpOut]) -> Vec<&McpToolCallDetailRef> {
    out.iter()
        .filter_map(|o| match o {
            McpOut::ToolCall(_, d) => Some(d.as_ref()),
            _ => None,
        })
        .collect()
}

type McpToolCallDetailRef = crate::stream::mcp::detail::McpToolCallDetail;

/// The client's and the server's copies of a stdio session, in the order
/// the ring gives them: the server's ends say which pipes pair, are muted,
/// and one receipt per call comes from the client's side.
#[test]
fn a_stdio_session_is_joined_by_the_server_and_read_from_the_client() {
    let mut m = McpStreams::new(1 << 20);
    let mut out = Vec::new();
    for p in [
        pipe(CLIENT, REQUESTS, 1, Call::Write, INIT),
        pipe(SERVER, REQUESTS, 2, Call::Read, INIT),
        pipe(SERVER, ANSWERS, 3, Call::Write, INIT_OK),
        pipe(CLIENT, ANSWERS, 4, Call::Read, INIT_OK),
        pipe(CLIENT, REQUESTS, 10_000_000, Call::Write, CALL),
        pipe(CLIENT, ANSWERS, 13_000_000, Call::Read, CALL_OK),
    ] {
        assert!(m.wants(&p));
        m.push(p, &mut out);
    }
    assert_eq!(m.take_muted(), [(SERVER, REQUESTS), (SERVER, ANSWERS)]);
    let McpOut::Session(h, s) = &out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(h.tgid, CLIENT);
    assert_eq!(s.server.name, "mcp-time");
    assert_eq!(s.server.version.as_deref(), Some("1.9.4"));
    assert_eq!(s.server.pid, Some(SERVER));
    assert_eq!(s.channel.transport, "stdio");
    assert_eq!(s.channel.session, format!("pipe:[{REQUESTS}]"));
    assert_eq!(s.client_name.as_deref(), Some("mcp"));
    assert_eq!(s.protocol_version.as_deref(), Some("2025-06-18"));
    assert_eq!(s.server_capabilities, ["experimental", "tools"]);
    let c = calls(&out);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].tool, "get_current_time");
    assert_eq!(c[0].server.name, "mcp-time");
    assert_eq!(c[0].outcome, "result");
    assert_eq!(c[0].is_error, Some(false));
    assert_eq!(c[0].request.request_id.as_deref(), Some("1"));
    assert_eq!(c[0].latency_ms, Some(3));
    assert_eq!(
        c[0].request.arguments_sha256.as_deref(),
        Some(digest(&json!({"timezone": "Europe/Paris"})).as_str())
    );
    assert_eq!(c[0].request.request_bytes, CALL.len() as u64 - 1);
    assert!(c[0].request.request_complete && !c[0].request.truncated);
    assert_eq!(m.counts.tool_calls, 1);
    assert_eq!(m.counts.sessions, 1);
}

/// Two servers started at once answer with the same ids: the answers a
/// client reads wait until the server side says which pipe is whose.
#[test]
fn answers_wait_for_their_pipe_when_two_sessions_share_ids() {
    let mut m = McpStreams::new(1 << 20);
    let mut out = Vec::new();
    let other_ok = INIT_OK.replace("mcp-time", "filesystem");
    for p in [
        pipe(CLIENT, REQUESTS, 1, Call::Write, INIT),
        pipe(CLIENT, 6001, 2, Call::Write, INIT),
        // The client reads the second server's answer before that server's
        // write shows up in the ring.
        pipe(CLIENT, 6002, 3, Call::Read, &other_ok),
        pipe(CLIENT, ANSWERS, 4, Call::Read, INIT_OK),
    ] {
        m.push(p, &mut out);
    }
    assert!(out.is_empty(), "{out:?}");
    for p in [
        pipe(SERVER, REQUESTS, 5, Call::Read, INIT),
        pipe(SERVER, ANSWERS, 6, Call::Write, INIT_OK),
        pipe(SERVER + 1, 6001, 7, Call::Read, INIT),
        pipe(SERVER + 1, 6002, 8, Call::Write, &other_ok),
    ] {
        m.push(p, &mut out);
    }
    m.settle(9, &mut out);
    let mut names: Vec<(String, String)> = out
        .iter()
        .map(|o| match o {
            McpOut::Session(_, s) => (s.channel.session.clone(), s.server.name.clone()),
            o => panic!("{o:?}"),
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            (format!("pipe:[{REQUESTS}]"), "mcp-time".to_string()),
            ("pipe:[6001]".to_string(), "filesystem".to_string())
        ]
    );
}

#[test]
fn calls_without_answers_end_with_the_client_and_errors_are_told_apart() {
    let mut m = McpStreams::new(1 << 20);
    let mut out = Vec::new();
    let bad = CALL
        .replace("\"id\":1", "\"id\":2")
        .replace("Europe/Paris", "Mars/Olympus");
    let failed = "{\"jsonrpc\":\"2.0\",\"id\":2,\"error\":{\"code\":-32602,\"message\":\"bad\"}}\n";
    let tool_err = "{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"content\":[],\"isError\":true}}\n";
    let third = CALL.replace("\"id\":1", "\"id\":3");
    let fourth = CALL.replace("\"id\":1", "\"id\":4");
    // A socket: both directions on the client's one end.
    for (ns, call, data) in [
        (1, Call::Write, INIT),
        (2, Call::Read, INIT_OK),
        (3, Call::Write, bad.as_str()),
        (4, Call::Read, failed),
        (5, Call::Write, third.as_str()),
        (6, Call::Read, tool_err),
        (7, Call::Write, fourth.as_str()),
    ] {
        m.push(
            piece(CLIENT, 7000, ns, call, Channel::Unix, data.as_bytes()),
            &mut out,
        );
    }
    m.exited(CLIENT, &mut out);
    let c = calls(&out);
    let got: Vec<_> = c
        .iter()
        .map(|c| (c.outcome, c.error_code, c.is_error))
        .collect();
    assert_eq!(
        got,
        [
            ("error", Some(-32602), None),
            ("tool_error", None, Some(true)),
            ("no_answer", None, None)
        ]
    );
    assert_eq!(c[0].channel.transport, "unix");
    assert_eq!(m.sessions(), 0);
}

#[test]
fn json_that_is_not_json_rpc_is_muted_and_a_huge_call_is_still_a_call() {
    let mut m = McpStreams::new(1024);
    let mut out = Vec::new();
    let log = pipe(
        CLIENT,
        8000,
        1,
        Call::Write,
        "{\"level\":\"info\",\"msg\":\"hi\"}\n",
    );
    assert!(m.wants(&log));
    m.push(log, &mut out);
    assert_eq!(m.take_muted(), [(CLIENT, 8000)]);
    assert_eq!(m.counts.not_rpc, 1);
    assert!(!m.wants(&pipe(CLIENT, 8001, 1, Call::Write, "plain text\n")));

    m.push(pipe(CLIENT, REQUESTS, 2, Call::Write, INIT), &mut out);
    let big = format!(
        "{{\"method\":\"tools/call\",\"params\":{{\"name\":\"write_file\",\"arguments\":{{\"content\":\"{}\"}}}},\"jsonrpc\":\"2.0\",\"id\":9}}\n",
        "a".repeat(1 << 20)
    );
    // Written in 64 KiB calls, as a pipe takes it.
    for (i, chunk) in big.as_bytes().chunks(65536).enumerate() {
        m.push(
            piece(
                CLIENT,
                REQUESTS,
                3 + i as u64,
                Call::Write,
                Channel::Pipe,
                chunk,
            ),
            &mut out,
        );
    }
    m.exited(CLIENT, &mut out);
    let c = calls(&out);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].tool, "write_file");
    assert!(c[0].request.truncated);
    assert!(
        c[0].request.request_complete,
        "every byte was seen, only not kept"
    );
    assert_eq!(c[0].request.request_bytes, big.len() as u64 - 1);
    assert_eq!(c[0].request.arguments_sha256, None);
    assert_eq!(c[0].outcome, "no_answer");
}

/// JSON-RPC that is not MCP (another protocol's methods) is let go after a
/// few messages instead of being copied for ever.
#[test]
fn json_rpc_of_another_protocol_is_muted() {
    let mut m = McpStreams::new(1 << 20);
    let mut out = Vec::new();
    for i in 0..MAX_UNKNOWN {
        let msg = format!("{{\"jsonrpc\":\"2.0\",\"id\":{i},\"method\":\"eth_blockNumber\"}}\n");
        assert!(m.take_muted().is_empty(), "muted after {i}");
        m.push(
            pipe(CLIENT, 9000, u64::from(i), Call::Write, &msg),
            &mut out,
        );
    }
    assert_eq!(m.take_muted(), [(CLIENT, 9000)]);
    assert!(out.is_empty());
    assert_eq!(m.sessions(), 0);
}

/// A hostile server's names are cut and redacted before they are recorded.
#[test]
fn names_the_server_chose_are_redacted() {
    let mut m = McpStreams::new(1 << 20);
    let mut out = Vec::new();
    let key = "sk-ant-api03-Hx7Qm2Vt9Lp4Rz8Kc3Nw6Yb1Jd5Fg0SaTeUoIi7PqWs2XcBv";
    let ok = INIT_OK.replace("mcp-time", &format!("srv {key}"));
    m.push(
        piece(CLIENT, 7001, 1, Call::Write, Channel::Unix, INIT.as_bytes()),
        &mut out,
    );
    m.push(
        piece(CLIENT, 7001, 2, Call::Read, Channel::Unix, ok.as_bytes()),
        &mut out,
    );
    let McpOut::Session(_, s) = &out[0] else {
        panic!("{out:?}")
    };
    assert!(!s.server.name.contains(key), "{}", s.server.name);
    assert!(s.server.name.starts_with("srv "), "{}", s.server.name);
}

/// A whole answer with a null id (the server could not parse a line)
/// answers no call; an answer cut before its id answers the oldest.
#[test]
fn a_null_id_answers_nothing_and_a_cut_answer_the_oldest_call() {
    let mut m = McpStreams::new(200);
    let mut out = Vec::new();
    let send = |m: &mut McpStreams, out: &mut Vec<McpOut>, ns: u64, call: Call, data: &str| {
        m.push(
            piece(CLIENT, 7100, ns, call, Channel::Unix, data.as_bytes()),
            out,
        );
    };
    send(&mut m, &mut out, 1, Call::Write, INIT);
    send(&mut m, &mut out, 2, Call::Read, INIT_OK);
    send(&mut m, &mut out, 3, Call::Write, CALL);
    send(
        &mut m,
        &mut out,
        4,
        Call::Read,
        "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32700,\"message\":\"Parse error\"}}\n",
    );
    assert!(calls(&out).is_empty(), "{out:?}");
    // Longer than the 200 bytes kept, `id` last as the TypeScript SDK
    // writes it: cut before the id.
    let long = format!(
        "{{\"result\":{{\"content\":[{{\"type\":\"text\",\"text\":\"{}\"}}]}},\"jsonrpc\":\"2.0\",\"id\":1}}\n",
        "z".repeat(300)
    );
    send(&mut m, &mut out, 5, Call::Read, &long);
    let c = calls(&out);
    assert_eq!(c.len(), 1, "{out:?}");
    assert_eq!(
        (c[0].tool.as_str(), c[0].outcome),
        ("get_current_time", "result")
    );
}

/// resources/read and prompts/get: one `mcp_request` each, with the URI or
/// prompt name, the prompt arguments' digest, the answer's digest or error
/// code, and `no_answer` for one still waiting when the client exits.
#[test]
fn resource_reads_and_prompt_gets_are_requests_with_their_outcome() {
    let mut m = McpStreams::new(1 << 20);
    let mut out = Vec::new();
    let read = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"resources/read\",\"params\":{\"uri\":\"file:///srv/notes.txt\"}}\n";
    let read_ok = "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"contents\":[{\"uri\":\"file:///srv/notes.txt\",\"text\":\"hi\"}]}}\n";
    let prompt = "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"prompts/get\",\"params\":{\"name\":\"review\",\"arguments\":{\"lang\":\"rust\"}}}\n";
    let prompt_err =
        "{\"jsonrpc\":\"2.0\",\"id\":2,\"error\":{\"code\":-32602,\"message\":\"no such prompt\"}}\n";
    let again = read.replace("\"id\":1", "\"id\":3");
    for (ns, call, data) in [
        (1, Call::Write, INIT),
        (2, Call::Read, INIT_OK),
        (3_000_000, Call::Write, read),
        (5_000_000, Call::Read, read_ok),
        (6_000_000, Call::Write, prompt),
        (6_500_000, Call::Read, prompt_err),
        (7_000_000, Call::Write, again.as_str()),
    ] {
        m.push(
            piece(CLIENT, 7000, ns, call, Channel::Unix, data.as_bytes()),
            &mut out,
        );
    }
    m.exited(CLIENT, &mut out);
    assert!(calls(&out).is_empty(), "{out:?}");
    let got: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            McpOut::Request(_, d) => Some((
                d.server.name.as_str(),
                d.method,
                d.target.as_str(),
                d.outcome,
                d.error_code,
                d.request.arguments_sha256.clone(),
                d.result_sha256.clone(),
                d.latency_ms,
            )),
            _ => None,
        })
        .collect();
    let contents = json!({"contents": [{"uri": "file:///srv/notes.txt", "text": "hi"}]});
    assert_eq!(
        got,
        [
            (
                "mcp-time",
                "resources/read",
                "file:///srv/notes.txt",
                "result",
                None,
                None,
                Some(digest(&contents)),
                Some(2)
            ),
            (
                "mcp-time",
                "prompts/get",
                "review",
                "error",
                Some(-32602),
                Some(digest(&json!({"lang": "rust"}))),
                None,
                Some(0)
            ),
            (
                "mcp-time",
                "resources/read",
                "file:///srv/notes.txt",
                "no_answer",
                None,
                None,
                None,
                None
            ),
        ]
    );
}
