//! `llm-request-out-of-scope`: a registered agent's LLM API request to a
//! provider outside its `allowed_providers` or for a model outside its
//! `allowed_models`.
use serde_json::json;

use super::*;
use crate::stream::llm::call::{BodyDigest, LlmRequestDetail};

fn call(provider: &'static str, host: &str, requested: Option<&str>) -> Detail {
    Detail::LlmRequest(Box::new(LlmRequestDetail {
        provider,
        api: "chat.completions",
        host: host.into(),
        method: "POST".into(),
        path: "/v1/chat/completions".into(),
        http_version: "1.1",
        model_requested: requested.map(String::from),
        model_answered: Some("answered-model".into()),
        stream: false,
        status: Some(200),
        finish_reason: None,
        usage: Default::default(),
        tools_offered: vec![],
        tool_calls: vec![],
        error: None,
        latency_ms: None,
        request_body: BodyDigest {
            sha256: String::new(),
            bytes: 0,
            complete: true,
        },
        response_body: None,
        transport: "tls",
        connection: "1".into(),
        content: None,
        raw: None,
    }))
}

fn policy() -> Policy {
    let dir = copy_with("agents.toml", |t| {
        format!(
            "{t}\n[[agent]]\nid = \"models\"\nexecutables = [\"/usr/bin/m\"]\nallowed_models = [\"gpt-4o*\", \"o3\", \"openai/**\"]\n\n\
             [[agent]]\nid = \"providers\"\nexecutables = [\"/usr/bin/p\"]\nallowed_providers = [\"openai\"]\n\n\
             [[agent]]\nid = \"both\"\nexecutables = [\"/usr/bin/b\"]\nallowed_providers = [\"anthropic\"]\nallowed_models = [\"claude-*\"]\n\n\
             [[agent]]\nid = \"free\"\nexecutables = [\"/usr/bin/f\"]\n"
        )
    });
    Policy::load(dir.path(), &[]).unwrap()
}

/// The out-of-scope hits of `agent`'s request: (risk, reason).
fn out_of_scope(p: &Policy, agent: &str, detail: Detail) -> Vec<(RiskClass, String)> {
    let ev = event(process("x", "/usr/bin/x", &["x"], Some(agent)), detail);
    let mut out: Vec<Hit> = Vec::new();
    p.evaluate(&ev, &mut String::new(), &mut out);
    out.into_iter()
        .filter(|h| p.rules.rules[h.rule].id == "llm-request-out-of-scope")
        .map(|h| (h.risk, h.reason))
        .collect()
}

const WHY: &str =
    "a registered agent made an LLM API request outside its declared providers and models";

#[test]
fn models_by_glob_and_exact_name() {
    let p = policy();
    let at =
        |model: &str| out_of_scope(&p, "models", call("openai", "api.openai.com", Some(model)));
    assert!(at("gpt-4o").is_empty());
    assert!(at("gpt-4o-mini").is_empty());
    assert!(at("o3").is_empty());
    assert!(at("openai/gpt-5").is_empty(), "** crosses /");
    assert_eq!(
        at("o3-mini"),
        vec![(
            RiskClass::High,
            format!("{WHY} (openai answered-model): model o3-mini is not in allowed_models")
        )]
    );
    assert_eq!(at("gpt-4/o").len(), 1, "* does not cross /");
    // Without a requested model, the answered one is judged.
    assert_eq!(
        out_of_scope(&p, "models", call("openai", "api.openai.com", None))[0].1,
        format!("{WHY} (openai answered-model): model answered-model is not in allowed_models")
    );
}

#[test]
fn providers_by_host_and_by_name() {
    let p = policy();
    let at = |provider, host: &str| out_of_scope(&p, "providers", call(provider, host, Some("m")));
    assert!(at("openai", "api.openai.com").is_empty());
    assert_eq!(
        at("anthropic", "api.anthropic.com:443"),
        vec![(
            RiskClass::High,
            format!(
                "{WHY} (anthropic answered-model): provider anthropic is not in allowed_providers"
            )
        )]
    );
    // The stream layer's name when the host is not an indicator's.
    assert_eq!(at("azure_openai", "10.0.0.1").len(), 1);
    // A local or compatible server is no provider to judge.
    assert!(at("openai_compatible", "127.0.0.1:8443").is_empty());
    assert!(at("ollama", "localhost:11434").is_empty());
}

#[test]
fn both_declared_name_both_and_undeclared_is_unrestricted() {
    let p = policy();
    let both = out_of_scope(&p, "both", call("openai", "api.openai.com", Some("gpt-4o")));
    assert_eq!(
        both[0].1,
        format!("{WHY} (openai answered-model): provider openai is not in allowed_providers; model gpt-4o is not in allowed_models")
    );
    assert!(out_of_scope(
        &p,
        "both",
        call("anthropic", "api.anthropic.com", Some("claude-sonnet-4"))
    )
    .is_empty());
    assert!(out_of_scope(&p, "free", call("openai", "api.openai.com", Some("x"))).is_empty());
    // Unregistered: the unregistered rule, not this one.
    let ev = event(
        process("x", "/usr/bin/x", &["x"], None),
        call("openai", "api.openai.com", Some("x")),
    );
    let ids: Vec<String> = hits(&p, &ev).into_iter().map(|h| h.0).collect();
    assert_eq!(ids, ["llm-request-unregistered"]);
}

#[test]
fn matched_names_the_request() {
    let p = policy();
    let ev = event(
        process("x", "/usr/bin/x", &["x"], Some("models")),
        call("openai", "api.openai.com", Some("o1")),
    );
    assert_eq!(
        hits(&p, &ev)[0].2,
        json!({"outside_agent_scope": true, "provider": "openai", "api": "chat.completions",
            "host": "api.openai.com", "model_requested": "o1", "model_answered": "answered-model"})
    );
}

#[test]
fn an_empty_model_name_is_refused() {
    let dir = copy_with("agents.toml", |t| {
        format!("{t}\n[[agent]]\nid = \"a\"\nexecutables = [\"/x\"]\nallowed_models = [\"\"]\n")
    });
    let e = Policy::load(dir.path(), &[]).unwrap_err().to_string();
    assert!(e.contains("an empty model name"), "{e}");
}
