//! The agent's own actions as OCSF 1.3.0 events: an `llm.request` is an
//! HTTP Activity (4002, Post) with the request as `http_request`, the
//! answer's status as `http_response` and the API host as `dst_endpoint`;
//! an `mcp.*` receipt is an API Activity (6003) whose `api` names the
//! operation (the tool, `initialize`, `tools/list`) and the server as its
//! `service`, with the session's pipe or socket as `src_endpoint`.
//!
//! Only what the stored context says is mapped; what OCSF has no member for
//! (provider, model, tokens, digests, verdicts) stays in the context under
//! `unmapped.observer`. These rows are few next to process and file events,
//! so they are built as `Value`s only (the text path leaves them to
//! `ocsf::format`).
use serde_json::{json, Map, Value};

/// Inserts the class's members for `llm.request` (4002) or `mcp.*` (6003)
/// into `ev`; `actor_process` is the OCSF process of the acting process.
pub(crate) fn map(
    ev: &mut Map<String, Value>,
    class_uid: u32,
    ctx: &Value,
    actor_process: Option<Value>,
) {
    let actor = match actor_process {
        Some(p) => json!({"process": p}),
        None => json!({}),
    };
    match class_uid {
        4002 => {
            ev.insert("actor".into(), actor);
            map_http(ev, ctx.get("llm_request").unwrap_or(&Value::Null));
        }
        6003 => {
            ev.insert("actor".into(), actor);
            map_api(ev, ctx);
        }
        _ => {}
    }
}

fn text<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// `http_request`, `http_response` and `dst_endpoint` of an LLM API call.
/// A call that never saw an answer has response code 0 and status Failure.
fn map_http(ev: &mut Map<String, Value>, r: &Value) {
    let host = text(r, "host").unwrap_or("");
    // TLS plaintext came from an HTTPS connection; a socket read is HTTP.
    let scheme = if text(r, "transport") == Some("tls") {
        "https"
    } else {
        "http"
    };
    let full_path = text(r, "path").unwrap_or("/");
    let (path, query) = full_path.split_once('?').unwrap_or((full_path, ""));
    let (hostname, port) = split_host(host);
    let mut url = json!({
        "scheme": scheme,
        "hostname": hostname,
        "path": path,
        "url_string": format!("{scheme}://{host}{full_path}"),
    });
    if let Some(port) = port {
        url["port"] = json!(port);
    }
    if !query.is_empty() {
        url["query_string"] = json!(query);
    }
    let mut request = json!({
        "http_method": text(r, "method").unwrap_or("POST"),
        "url": url,
    });
    if let Some(v) = text(r, "http_version") {
        request["version"] = json!(v);
    }
    ev.insert("http_request".into(), request);
    let status = r.get("status").and_then(Value::as_u64);
    ev.insert("http_response".into(), json!({"code": status.unwrap_or(0)}));
    if let Some(code) = status {
        ev.insert("status_code".into(), json!(code.to_string()));
    }
    match status {
        Some(code) if code < 400 => {}
        Some(_) => failure(ev, text(r, "error").unwrap_or("error answer")),
        None => failure(ev, "no answer"),
    }
    let mut dst = json!({"hostname": hostname});
    if let Some(port) = port {
        dst["port"] = json!(port);
    }
    ev.insert("dst_endpoint".into(), dst);
}

/// A Host header's name and port (`api.example:8443`, `[::1]:11434`).
fn split_host(host: &str) -> (&str, Option<u16>) {
    match host.rsplit_once(':') {
        Some((name, port)) if !name.ends_with(':') => match port.parse::<u16>() {
            Ok(p) => (name.trim_start_matches('[').trim_end_matches(']'), Some(p)),
            Err(_) => (host, None),
        },
        _ => (host, None),
    }
}

/// `api` and `src_endpoint` of an MCP session, tool call, other request
/// (with the resource read or prompt got as `resources`) or tool listing.
fn map_api(ev: &mut Map<String, Value>, ctx: &Value) {
    let (detail, operation) = if let Some(c) = ctx.get("mcp_tool_call") {
        (c, text(c, "tool").unwrap_or("tools/call"))
    } else if let Some(r) = ctx.get("mcp_request") {
        let method = text(r, "method").unwrap_or("unknown");
        let kind = if method == "prompts/get" {
            "prompt"
        } else {
            "resource"
        };
        if let Some(target) = text(r, "target") {
            ev.insert("resources".into(), json!([{"type": kind, "name": target}]));
        }
        (r, method)
    } else if let Some(s) = ctx.get("mcp_session") {
        (s, "initialize")
    } else if let Some(d) = ctx.get("mcp_tool_definition") {
        (d, "tools/list")
    } else {
        (&Value::Null, "unknown")
    };
    let mut api = json!({"operation": operation});
    if let Some(server) = detail.get("server") {
        let mut service = Map::new();
        for key in ["name", "version"] {
            if let Some(v) = text(server, key) {
                service.insert(key.into(), json!(v));
            }
        }
        api["service"] = Value::Object(service);
    }
    if let Some(id) = text(detail, "request_id") {
        api["request"] = json!({"uid": id});
    }
    if let Some(outcome) = text(detail, "outcome") {
        let mut response = json!({"message": outcome});
        if let Some(code) = detail.get("error_code").and_then(Value::as_i64) {
            response["code"] = json!(code);
            response["error"] = json!("JSON-RPC error");
        }
        api["response"] = response;
        if outcome != "result" {
            failure(ev, outcome);
        }
    }
    ev.insert("api".into(), api);
    // The session's pipe or socket as the client holds it.
    let mut src = Map::new();
    if let Some(t) = text(detail, "transport") {
        src.insert("name".into(), json!(t));
    }
    if let Some(s) = text(detail, "session") {
        src.insert("uid".into(), json!(s));
    }
    ev.insert("src_endpoint".into(), Value::Object(src));
}

fn failure(ev: &mut Map<String, Value>, detail: &str) {
    ev.insert("status_id".into(), json!(2));
    ev.insert("status".into(), json!("Failure"));
    ev.insert("status_detail".into(), json!(detail));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_headers_split_into_name_and_port() {
        assert_eq!(split_host("api.openai.com"), ("api.openai.com", None));
        assert_eq!(split_host("127.0.0.1:8443"), ("127.0.0.1", Some(8443)));
        assert_eq!(split_host("[::1]:11434"), ("::1", Some(11434)));
        assert_eq!(split_host("::1"), ("::1", None));
        assert_eq!(split_host("host:notaport"), ("host:notaport", None));
    }

    #[test]
    fn a_call_without_an_answer_is_a_failure_with_code_zero() {
        let ctx = json!({"llm_request": {
            "host": "api.anthropic.com", "method": "POST", "path": "/v1/messages?beta=[REDACTED]",
            "http_version": "1.1", "status": null, "transport": "tls"
        }});
        let mut ev = Map::new();
        map(&mut ev, 4002, &ctx, None);
        assert_eq!(ev["actor"], json!({}));
        assert_eq!(
            ev["http_request"],
            json!({"http_method": "POST", "version": "1.1", "url": {
                "scheme": "https", "hostname": "api.anthropic.com", "path": "/v1/messages",
                "query_string": "beta=[REDACTED]",
                "url_string": "https://api.anthropic.com/v1/messages?beta=[REDACTED]"
            }})
        );
        assert_eq!(ev["http_response"], json!({"code": 0}));
        assert_eq!(
            (&ev["status_id"], &ev["status_detail"]),
            (&json!(2), &json!("no answer"))
        );
        assert!(!ev.contains_key("status_code"));
    }

    #[test]
    fn an_error_answer_names_the_providers_error() {
        let ctx = json!({"llm_request": {"host": "h", "status": 429, "error": "rate_limit_error", "transport": "tcp"}});
        let mut ev = Map::new();
        map(&mut ev, 4002, &ctx, Some(json!({"pid": 7})));
        assert_eq!(ev["actor"], json!({"process": {"pid": 7}}));
        assert_eq!(ev["http_request"]["url"]["scheme"], "http");
        assert_eq!(ev["status_code"], "429");
        assert_eq!(ev["status_detail"], "rate_limit_error");
    }
}
