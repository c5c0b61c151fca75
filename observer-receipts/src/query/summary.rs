//! The one-line summary of a receipt's context that `receipts`, `tail`
//! and the live view print: the command line, the destination and its
//! names, the file, the rule that fired.
use serde_json::Value;

/// A string member of `v` at `path` (other values as JSON text), or "-".
pub fn text_at(v: &Value, path: &[&str]) -> String {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// A network event's remote address and port, then the names it is known
/// by (DNS answers, TLS SNI), each once: `104.18.32.7:443 (api.openai.com)`.
fn destination(n: &Value) -> String {
    let addr = format!(
        "{}:{}",
        text_at(n, &["remote_addr"]),
        text_at(n, &["remote_port"])
    );
    let mut names: Vec<String> = Vec::new();
    for name in n["dst_names"].as_array().into_iter().flatten() {
        let name = text_at(name, &["name"]);
        if !name.is_empty() && !names.contains(&name) {
            names.push(name);
        }
    }
    if names.is_empty() {
        addr
    } else {
        format!("{addr} ({})", names.join(", "))
    }
}

/// What happened, in one line, from the context.
pub fn summary(ctx: &Value) -> String {
    if ctx.get("erased") == Some(&Value::Bool(true)) {
        return "(context erased)".into();
    }
    if let Some(rule) = ctx.get("rule_id").and_then(Value::as_str) {
        // A finding: which rule, and why it fired.
        return match ctx.get("reason").and_then(Value::as_str) {
            Some(reason) => format!("{rule}: {reason}"),
            None => rule.to_string(),
        };
    }
    if let Some(e) = ctx.get("exec") {
        return exec_summary(e);
    }
    if let Some(call) = ctx.get("llm_request") {
        return llm_summary(call);
    }
    if let Some(line) = mcp_summary(ctx) {
        return line;
    }
    if let Some(o) = ctx.get("file_open") {
        return open_summary(o);
    }
    for kind in ["connect", "accept", "listen", "bind"] {
        if let Some(n) = ctx.get(kind) {
            return format!("{kind} {}", destination(n));
        }
    }
    if let Some(x) = ctx.get("exit") {
        return format!("exit code {}", text_at(x, &["exit_code"]));
    }
    if let Some(ev) = ctx.get("event").and_then(Value::as_str) {
        return ev.to_string();
    }
    if let Some(kid) = ctx.get("kid").and_then(Value::as_str) {
        return format!("key {kid} for {}", text_at(ctx, &["issuer_id"]));
    }
    String::new()
}

/// An LLM API call: `provider model in/out tokens status finish`, e.g.
/// `anthropic claude-sonnet-4-5 1200/85 tokens 200 end_turn`; the model
/// answered if known, else the one asked; `?` for what was not reported.
pub fn llm_summary(call: &Value) -> String {
    let model = call["model_answered"]
        .as_str()
        .or(call["model_requested"].as_str())
        .unwrap_or("?");
    let count = |k: &str| {
        call["usage"][k]
            .as_u64()
            .map_or_else(|| "?".to_string(), |n| n.to_string())
    };
    let status = call["status"]
        .as_u64()
        .map_or_else(|| "no answer".to_string(), |s| s.to_string());
    let mut line = format!(
        "{} {model} {}/{} tokens {status}",
        text_at(call, &["provider"]),
        count("input_tokens"),
        count("output_tokens")
    );
    if let Some(f) = call["finish_reason"].as_str().or(call["error"].as_str()) {
        line.push(' ');
        line.push_str(f);
    }
    line
}

/// An MCP record: a tool call as `server tool outcome` (`mcp-time
/// get_current_time result`, `filesystem read_file error -32603`), a
/// resources/read or prompts/get as `server method target outcome`, a
/// session as `server version over transport`, a tools/list answer as
/// `server: N tools verdict`.
pub fn mcp_summary(ctx: &Value) -> Option<String> {
    let asked = match (ctx.get("mcp_tool_call"), ctx.get("mcp_request")) {
        (Some(c), _) => Some((c, text_at(c, &["tool"]))),
        (None, Some(r)) => Some((
            r,
            format!("{} {}", text_at(r, &["method"]), text_at(r, &["target"])),
        )),
        (None, None) => None,
    };
    if let Some((c, what)) = asked {
        let mut line = format!(
            "{} {what} {}",
            text_at(c, &["server", "name"]),
            text_at(c, &["outcome"])
        );
        if let Some(code) = c["error_code"].as_i64() {
            line.push_str(&format!(" {code}"));
        }
        if c["truncated"] == Value::Bool(true) {
            line.push_str(" (truncated)");
        }
        return Some(line);
    }
    if let Some(s) = ctx.get("mcp_session") {
        return Some(format!(
            "{} {} over {}",
            text_at(s, &["server", "name"]),
            text_at(s, &["server", "version"]),
            text_at(s, &["transport"])
        ));
    }
    let d = ctx.get("mcp_tool_definition")?;
    Some(format!(
        "{}: {} tools {}",
        text_at(d, &["server", "name"]),
        d["tools"].as_array().map_or(0, Vec::len),
        text_at(d, &["verdict"])
    ))
}

/// A file open: the path and how often it was opened, and how many other
/// paths a folded receipt lists.
fn open_summary(o: &Value) -> String {
    let line = format!("{} x{}", text_at(o, &["path"]), text_at(o, &["count"]));
    format!("{line}{}", more_paths(o))
}

/// ` (+N more paths)`: the distinct paths other than the first that a
/// folded `file_open` lists (each once, whatever its flags or outcome);
/// empty when there are none.
pub fn more_paths(file_open: &Value) -> String {
    let first = file_open["path"].as_str();
    let mut others: Vec<&str> = file_open["paths"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["path"].as_str())
        .filter(|p| Some(*p) != first)
        .collect();
    others.sort_unstable();
    others.dedup();
    match others.len() {
        0 => String::new(),
        1 => " (+1 more path)".into(),
        n => format!(" (+{n} more paths)"),
    }
}

/// An exec: its argv, and the directories its PATH search tried first;
/// a failed exec says so, why, and the path it tried.
fn exec_summary(e: &Value) -> String {
    if e["result"].as_i64().is_some_and(|r| r != 0) {
        let why = match e["error"].as_str() {
            Some(name) => name.to_string(),
            None => format!("result {}", text_at(e, &["result"])),
        };
        return format!("exec failed {why} {}", text_at(e, &["filename"]));
    }
    let argv: Vec<String> = e["argv"]
        .as_array()
        .map(|a| a.iter().map(|v| text_at(v, &[])).collect())
        .unwrap_or_default();
    let line = if argv.is_empty() {
        text_at(e, &["filename"])
    } else {
        argv.join(" ")
    };
    match e["path_search"].as_array().map(Vec::len) {
        Some(n) if n > 0 => format!("{line} (found after {n} failed in path search)"),
        _ => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn summaries_name_destinations_and_rules() {
        let connect = json!({"connect": {"remote_addr": "104.18.32.7", "remote_port": 443,
            "dst_names": [{"name": "api.openai.com", "source": "dns"},
                          {"name": "api.openai.com", "source": "sni"},
                          {"name": "openai.map.fastly.net", "source": "dns"}]}});
        assert_eq!(
            summary(&connect),
            "connect 104.18.32.7:443 (api.openai.com, openai.map.fastly.net)"
        );
        let unnamed =
            json!({"accept": {"remote_addr": "10.0.0.9", "remote_port": 5555, "dst_names": []}});
        assert_eq!(summary(&unnamed), "accept 10.0.0.9:5555");
        // A finding says its rule and reason, not the event that fired it.
        let finding = json!({"rule_id": "local-inference-listening", "event": "listen",
            "reason": "a local inference server is listening", "matched": {"server": "ollama"}});
        assert_eq!(
            summary(&finding),
            "local-inference-listening: a local inference server is listening"
        );
        assert_eq!(summary(&json!({"rule_id": "r"})), "r");
    }

    #[test]
    fn llm_calls_read_provider_model_tokens_and_status() {
        let call = json!({"llm_request": {"provider": "anthropic", "model_requested": "claude-sonnet-4-5",
            "model_answered": "claude-sonnet-4-5-20250929", "status": 200, "finish_reason": "end_turn",
            "usage": {"input_tokens": 1200, "output_tokens": 85}}});
        assert_eq!(
            summary(&call),
            "anthropic claude-sonnet-4-5-20250929 1200/85 tokens 200 end_turn"
        );
        let unanswered = json!({"llm_request": {"provider": "openai", "model_requested": "gpt-4o",
            "model_answered": null, "status": null, "usage": {}}});
        assert_eq!(summary(&unanswered), "openai gpt-4o ?/? tokens no answer");
        let failed = json!({"llm_request": {"provider": "openai", "status": 429,
            "error": "rate_limit_exceeded", "usage": {}}});
        assert_eq!(
            summary(&failed),
            "openai ? ?/? tokens 429 rate_limit_exceeded"
        );
    }

    #[test]
    fn exec_summaries_say_a_failure_and_a_path_search() {
        let ok = json!({"exec": {"filename": "/usr/bin/ls", "argv": ["ls", "-l"], "result": 0,
                                 "error": null}});
        assert_eq!(summary(&ok), "ls -l");
        let failed = json!({"exec": {"filename": "/usr/local/bin/foo", "argv": ["foo"],
                                     "result": -2, "error": "ENOENT"}});
        assert_eq!(summary(&failed), "exec failed ENOENT /usr/local/bin/foo");
        let unnamed = json!({"exec": {"filename": "/x", "argv": [], "result": -4095,
                                      "error": null}});
        assert_eq!(summary(&unnamed), "exec failed result -4095 /x");
        let searched = json!({"exec": {"filename": "/c/prog", "argv": ["prog", "a"], "result": 0,
            "path_search": [{"filename": "/a/prog", "error": "ENOENT"},
                            {"filename": "/b/prog", "error": "EACCES"}]}});
        assert_eq!(
            summary(&searched),
            "prog a (found after 2 failed in path search)"
        );
    }

    #[test]
    fn open_summaries_say_how_many_more_paths_a_fold_lists() {
        let one = json!({"file_open": {"path": "/etc/hostname", "count": 3}});
        assert_eq!(summary(&one), "/etc/hostname x3");
        let unfolded = json!({"file_open": {"path": "/etc/hostname"}});
        assert_eq!(summary(&unfolded), "/etc/hostname x-");
        let folded = json!({"file_open": {"path": "/a", "count": 2, "paths": [
            {"path": "/a", "flags": 0}, {"path": "/b"}, {"path": "/a", "flags": 1},
            {"path": "/c"}, {"path": "/b", "result": -2}]}});
        assert_eq!(summary(&folded), "/a x2 (+2 more paths)");
        let two = json!({"file_open": {"path": "/a", "count": 1,
            "paths": [{"path": "/a"}, {"path": "/b"}]}});
        assert_eq!(summary(&two), "/a x1 (+1 more path)");
        let alone = json!({"file_open": {"path": "/a", "count": 1, "paths": [{"path": "/a"}]}});
        assert_eq!(summary(&alone), "/a x1");
    }
}
