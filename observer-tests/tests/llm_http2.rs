//! HTTP/2 through the real daemon: node's built-in `http2` client as a
//! registered agent (node exports SSL_write/SSL_read, so its TLS is
//! visible) sends two OpenAI chat completions over one HTTP/2 connection
//! to a local `http2.createSecureServer` that answers like OpenAI: one
//! JSON answer, one streamed as server-sent events. Each stream is one
//! `llm_request` record and one `llm.request` receipt with exactly the
//! provider, model, usage, status and finish reason the server sent,
//! `http_version` "2", and the digests of the bytes the server read and
//! sent; the chain verifies; the API key is nowhere the daemon wrote.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]
mod llm_kit;
mod tls_kit;

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
};

use observer_testkit as common;
use serde_json::{json, Value};
use tls_kit::{release, sha256, wait_visible, Fixture, Kill};

/// Answers stream N with answer file N (`.sse`: text/event-stream, one
/// write per event; otherwise application/json in one write), once the
/// request body has ended; writes down the request's headers and body and
/// the body it sent.
const SERVER: &str = r#"
const http2 = require("http2"), fs = require("fs");
const [cert, key, out, ...answers] = process.argv.slice(1);
let n = 0;
const server = http2.createSecureServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) });
server.on("stream", (stream, headers) => {
  const i = n++;
  const chunks = [];
  stream.on("data", (c) => chunks.push(c));
  stream.on("end", () => {
    fs.writeFileSync(`${out}/request_headers.${i}`, JSON.stringify(headers));
    fs.writeFileSync(`${out}/request_body.${i}`, Buffer.concat(chunks));
    const answer = fs.readFileSync(answers[i]);
    fs.writeFileSync(`${out}/response_body.${i}`, answer);
    if (answers[i].endsWith(".sse")) {
      stream.respond({ ":status": 200, "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache" });
      for (const event of answer.toString().split("\n\n").slice(0, -1)) stream.write(event + "\n\n");
      stream.end();
    } else {
      stream.respond({ ":status": 200, "content-type": "application/json" });
      stream.end(answer);
    }
  });
});
server.listen(0, "127.0.0.1", () => console.log(server.address().port));
"#;

/// The agent: one HTTP/2 session, the JSON call then the streamed one,
/// after a line on stdin (so the test can see it hooked first).
const AGENT: &str = r#"
const http2 = require("http2"), fs = require("fs");
const [port, key, ca] = process.argv.slice(2);
const ask = (session, body) => new Promise((resolve, reject) => {
  const req = session.request({
    ":method": "POST", ":path": "/v1/chat/completions", "content-type": "application/json",
    "authorization": `Bearer ${key}`, "x-api-key": key,
  });
  let status;
  const chunks = [];
  req.on("response", (h) => { status = h[":status"]; });
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => resolve([status, Buffer.concat(chunks).toString()]));
  req.on("error", reject);
  req.end(body);
});
process.stdin.once("data", async () => {
  const session = http2.connect(`https://127.0.0.1:${port}`, { ca: fs.readFileSync(ca) });
  const messages = [{ role: "user", content: "What is the weather in Paris?" }];
  const [s1, a1] = await ask(session, JSON.stringify({ model: "gpt-4o-mini", messages,
    tools: [{ type: "function", function: { name: "get_weather", parameters: { type: "object", properties: {} } } }] }));
  const r1 = JSON.parse(a1);
  console.log(s1, r1.model, r1.choices[0].finish_reason, r1.usage.prompt_tokens);
  const [s2, a2] = await ask(session, JSON.stringify({ model: "gpt-4o-mini", messages, stream: true,
    stream_options: { include_usage: true } }));
  console.log(s2, a2.split("\n\n").filter((e) => e).length);
  session.close(() => process.exit(0));
});
"#;

const JSON_ANSWER: &str = r#"{"id":"chatcmpl-h2a","object":"chat.completion","created":1733450000,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":57,"completion_tokens":12,"total_tokens":69}}"#;

fn sse_answer() -> String {
    let chunk = |choices: &str, usage: &str| {
        format!("data: {{\"id\":\"chatcmpl-h2b\",\"object\":\"chat.completion.chunk\",\"created\":1733450001,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{choices}]{usage}}}\n\n")
    };
    let mut s = chunk(
        r#"{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}"#,
        "",
    );
    for word in ["Sunny", " and", " mild", "."] {
        s += &chunk(
            &format!(r#"{{"index":0,"delta":{{"content":"{word}"}},"finish_reason":null}}"#),
            "",
        );
    }
    s += &chunk(r#"{"index":0,"delta":{},"finish_reason":"length"}"#, "");
    s += &chunk(
        "",
        r#","usage":{"prompt_tokens":21,"completion_tokens":5,"total_tokens":26}"#,
    );
    s + "data: [DONE]\n\n"
}

#[test]
fn node_http2_json_and_streamed_calls_are_exact_llm_request_receipts() {
    let fx = Fixture::new(b"");
    let out = fx.path("exchanges");
    std::fs::create_dir(&out).unwrap();
    let sse = sse_answer();
    std::fs::write(fx.path("answer0.json"), JSON_ANSWER).unwrap();
    std::fs::write(fx.path("answer1.sse"), &sse).unwrap();
    let mut server = Command::new("node")
        .args(["-e", SERVER, "--"])
        .arg(fx.path("cert.pem"))
        .arg(fx.path("key.pem"))
        .arg(&out)
        .arg(fx.path("answer0.json"))
        .arg(fx.path("answer1.sse"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _server = Kill(server);
    let port: u16 = line.trim().parse().unwrap();

    let agent = fx.path("h2-agent.js");
    common::write_executable(&agent, &format!("#!/usr/bin/node\n{AGENT}"));
    // Long enough to be a key to the argv redaction (the agent takes it as an
    // argument): what is checked here is the HTTP/2 path.
    let key = format!("sk-observer-http2-agent-{}", std::process::id());
    let config = format!(
        "[plaintext]\nenabled = true\n[[agents]]\nid = \"h2-agent\"\nexecutables = [{:?}]\n",
        agent.display().to_string()
    );
    let state = fx.path("daemon");
    std::fs::create_dir(&state).unwrap();
    let mut d = common::Daemon::start_in(common::StateDir::Shared(state.clone()), &config);
    let client = Command::new(&agent)
        .arg(port.to_string())
        .arg(&key)
        .arg(fx.path("cert.pem"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = client.id();
    wait_visible(&d.socket(), "h2-agent");
    let stdout = String::from_utf8(release(client)).unwrap();
    assert_eq!(
        stdout, "200 gpt-4o-mini-2024-07-18 tool_calls 57\n200 8\n",
        "the client's view"
    );

    let read = |name: &str| std::fs::read(out.join(name)).unwrap();
    let mut records = Vec::new();
    for n in 0..2 {
        let headers: Value =
            serde_json::from_slice(&read(&format!("request_headers.{n}"))).unwrap();
        assert_eq!(
            headers["authorization"],
            format!("Bearer {key}"),
            "the key was sent"
        );
        let digest = sha256(&read(&format!("request_body.{n}")));
        records.push(d.wait_for(|r| {
            common::is_event(r, "llm_request")
                && r["process"]["pid"] == pid
                && r["llm_request"]["request_body"]["sha256"] == digest.as_str()
        }));
    }
    let db = d.store();
    let seed = d.master_seed();
    let written = [d.events.clone(), d.stderr.clone()];
    llm_kit::assert_key_absent(&key, &state, &written);
    let all = d.stop();
    llm_kit::assert_key_absent(&key, &state, &written);

    let calls = all
        .iter()
        .filter(|r| common::is_event(r, "llm_request"))
        .count();
    assert_eq!(calls, 2, "one record per request");
    for (n, record) in records.iter().enumerate() {
        let call = &record["llm_request"];
        let (request, response) = (
            read(&format!("request_body.{n}")),
            read(&format!("response_body.{n}")),
        );
        assert_eq!(record["process"]["agent"], "h2-agent");
        assert_eq!(call["http_version"], "2");
        assert_eq!(call["provider"], "openai_compatible");
        assert_eq!(call["api"], "chat.completions");
        assert_eq!(call["host"], format!("127.0.0.1:{port}"));
        assert_eq!(call["method"], "POST");
        assert_eq!(call["path"], "/v1/chat/completions");
        assert_eq!(call["status"], 200);
        assert_eq!(call["model_requested"], "gpt-4o-mini");
        assert_eq!(call["model_answered"], "gpt-4o-mini-2024-07-18");
        assert_eq!(call["request_body"]["bytes"], request.len());
        assert_eq!(call["request_body"]["complete"], true);
        assert_eq!(call["response_body"]["sha256"], sha256(&response));
        assert_eq!(call["response_body"]["bytes"], response.len());
        assert_eq!(call["response_body"]["complete"], true, "{call}");
    }
    let (unstreamed, streamed) = (&records[0]["llm_request"], &records[1]["llm_request"]);
    assert_eq!(unstreamed["stream"], false);
    assert_eq!(unstreamed["finish_reason"], "tool_calls");
    assert_eq!(unstreamed["tools_offered"], json!(["get_weather"]));
    assert_eq!(unstreamed["tool_calls"], json!(["get_weather"]));
    assert_eq!(
        unstreamed["usage"],
        json!({"input_tokens": 57, "output_tokens": 12})
    );
    assert_eq!(streamed["stream"], true);
    assert_eq!(streamed["finish_reason"], "length");
    assert_eq!(
        streamed["usage"],
        json!({"input_tokens": 21, "output_tokens": 5})
    );
    // Two streams of one connection.
    assert_eq!(unstreamed["connection"], streamed["connection"]);

    let receipts = common::stored_receipts_of(&db, "llm.request");
    assert_eq!(receipts.len(), 2, "one receipt per request");
    for record in &records {
        let r = receipts
            .iter()
            .find(|r| r.context.as_ref().unwrap()["llm_request"] == record["llm_request"])
            .unwrap_or_else(|| panic!("no receipt carries {}", record["llm_request"]));
        assert_eq!(r.payload["agent_id"], "h2-agent");
        assert!(r.chain.ends_with("/agent/h2-agent"), "{}", r.chain);
    }
    let report = common::verify_store(&db, &seed, vec![]);
    assert!(report.ok(), "{:#?}", report.failures);
    let log = std::fs::read_to_string(&written[1]).unwrap();
    let intake = log
        .lines()
        .find(|l| l.contains("plaintext: read "))
        .unwrap_or_else(|| panic!("no intake line: {log}"));
    assert!(
        intake
            .contains("2 HTTP requests, 2 LLM API calls, 1 HTTP/2 connections, 0 streams given up"),
        "{intake}"
    );
}
