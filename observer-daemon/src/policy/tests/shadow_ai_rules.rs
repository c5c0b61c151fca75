//! The shadow-AI rules of the shipped policies over hand-built events:
//! AI API egress, model hubs, registered agents, local inference, agent CLIs.
use super::*;

#[test]
fn ai_api_egress_by_unregistered_process() {
    let p = default_policy();
    let names = [
        ("api.openai.com", NameSource::Dns),
        ("api.openai.com", NameSource::Sni),
    ];
    let ev = event(
        process(
            "python3",
            "/usr/bin/python3.11",
            &["python3", "app.py"],
            None,
        ),
        Detail::Connect(net("104.18.7.192", 443, &names)),
    );
    let h = hits(&p, &ev);
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].0, "ai-api-egress-unregistered");
    assert_eq!(h[0].1, RiskClass::Medium);
    assert_eq!(
        h[0].2,
        serde_json::json!({"indicator": "ai_api", "provider": "openai", "destination": "api.openai.com", "sources": ["dns", "sni"]})
    );
    // curl, python -c, /tmp: high.
    for (comm, exe, argv) in [
        (
            "curl",
            "/usr/bin/curl",
            vec!["curl", "https://api.openai.com/v1/models"],
        ),
        (
            "python3",
            "/usr/bin/python3.11",
            vec!["python3", "-c", "import openai"],
        ),
        ("x", "/dev/shm/x", vec!["/dev/shm/x"]),
    ] {
        let ev = event(
            process(comm, exe, &argv, None),
            Detail::Connect(net("1.2.3.4", 443, &names)),
        );
        let h = hits(&p, &ev);
        assert_eq!(
            (h[0].0.as_str(), h[0].1),
            ("ai-api-egress-unregistered", RiskClass::High),
            "{comm}"
        );
    }
    // Wildcard Azure name, Anthropic range by address.
    let ev = event(
        process("app", "/usr/bin/app", &["app"], None),
        Detail::Connect(net(
            "1.2.3.4",
            443,
            &[("myres.openai.azure.com", NameSource::Sni)],
        )),
    );
    assert_eq!(hits(&p, &ev)[0].2["provider"], "azure-openai");
    let ev = event(
        process("app", "/usr/bin/app", &["app"], None),
        Detail::Connect(net("160.79.104.10", 443, &[])),
    );
    assert_eq!(
        hits(&p, &ev)[0].2,
        serde_json::json!({"indicator": "ai_api", "provider": "anthropic", "destination": "160.79.104.10", "sources": ["address"]})
    );
    // Negatives: a non-AI name, a look-alike, no name at all.
    for names in [
        vec![("example.com", NameSource::Dns)],
        vec![("api.openai.com.evil.net", NameSource::Sni)],
        vec![],
    ] {
        let ev = event(
            process("curl", "/usr/bin/curl", &["curl"], None),
            Detail::Connect(net("93.184.216.34", 443, &names)),
        );
        assert!(hits(&p, &ev).is_empty(), "{names:?}");
    }
    // A registered agent's egress is not shadow AI.
    let ev = event(
        process("claude", "/usr/bin/claude", &["claude"], Some("cc")),
        Detail::Connect(net("1.2.3.4", 443, &names)),
    );
    assert!(hits(&p, &ev).is_empty());
}

/// A model hub fetch is a finding for curl (medium) or an unknown
/// program (low), none for package managers and browsers (by any of their
/// process names: `python3 -m pip` is named by its module), and never an
/// AI API finding; Hugging Face's inference hosts stay AI APIs.
#[test]
fn model_hub_fetch_excludes_package_managers_and_browsers() {
    let p = default_policy();
    let hub = |comm: &str, exe: &str, argv: &[&str], name: &str| {
        let ev = event(
            process(comm, exe, argv, None),
            Detail::Connect(net(
                "3.160.0.1",
                443,
                &[(name, NameSource::Dns), (name, NameSource::Sni)],
            )),
        );
        hits(&p, &ev)
            .into_iter()
            .map(|h| (h.0, h.1, h.2))
            .collect::<Vec<_>>()
    };
    let found = |risk, name: &str, provider: &str| {
        vec![(
            "model-hub-fetch-unregistered".to_string(),
            risk,
            serde_json::json!({"indicator": "model_hub", "provider": provider,
                "destination": name, "sources": ["dns", "sni"]}),
        )]
    };
    let curl = [
        "curl",
        "-LO",
        "https://huggingface.co/x/y/resolve/main/m.gguf",
    ];
    assert_eq!(
        hub("curl", "/usr/bin/curl", &curl, "huggingface.co"),
        found(RiskClass::Medium, "huggingface.co", "huggingface-hub")
    );
    assert_eq!(
        hub("fetcher", "/opt/fetcher", &["fetcher"], "cdn-lfs.hf.co"),
        found(RiskClass::Low, "cdn-lfs.hf.co", "huggingface-hub")
    );
    assert_eq!(
        hub(
            "ollama",
            "/usr/local/bin/ollama",
            &["ollama", "pull", "llama3"],
            "registry.ollama.ai"
        ),
        found(RiskClass::Low, "registry.ollama.ai", "ollama-registry")
    );
    for (comm, exe, argv) in [
        (
            "python3",
            "/usr/bin/python3.11",
            vec!["python3", "-m", "pip", "download", "x"],
        ),
        (
            "pip",
            "/usr/bin/python3.11",
            vec!["/usr/bin/python3", "/usr/bin/pip", "install", "x"],
        ),
        ("uv", "/usr/local/bin/uv", vec!["uv", "pip", "install", "x"]),
        (
            "http",
            "/usr/lib/apt/methods/http",
            vec!["/usr/lib/apt/methods/http"],
        ),
        ("npm", "/usr/bin/node", vec!["npm", "install"]),
        (
            "firefox-esr",
            "/usr/lib/firefox-esr/firefox-esr",
            vec!["firefox-esr"],
        ),
        (
            "Socket Process",
            "/usr/lib/firefox/firefox",
            vec!["/usr/lib/firefox/firefox", "-contentproc"],
        ),
        (
            "chrome",
            "/opt/google/chrome/chrome",
            vec!["/opt/google/chrome/chrome"],
        ),
    ] {
        assert_eq!(hub(comm, exe, &argv, "huggingface.co"), vec![], "{comm}");
    }
    // The inference API is not the hub: an AI API finding, for pip too.
    let api = hub(
        "pip",
        "/usr/bin/python3.11",
        &["pip"],
        "router.huggingface.co",
    );
    assert_eq!(api.len(), 1);
    assert_eq!(api[0].0, "ai-api-egress-unregistered");
    // A registered agent's hub fetch is not shadow activity.
    let ev = event(
        process("curl", "/usr/bin/curl", &["curl"], Some("a")),
        Detail::Connect(net(
            "3.160.0.1",
            443,
            &[("huggingface.co", NameSource::Sni)],
        )),
    );
    assert!(hits(&p, &ev).is_empty());
}

#[test]
fn registered_agent_scope() {
    let dir = copy_with("agents.toml", |t| {
        format!("{t}\n[[agent]]\nid = \"cc\"\nexecutables = [\"/usr/bin/claude\"]\nallowed_providers = [\"anthropic\"]\n\n[[agent]]\nid = \"strict\"\nexecutables = [\"/usr/bin/strict\"]\nallowed_destinations = [\"*.github.com\"]\nallowed_providers = [\"openai\"]\n")
    });
    let p = Policy::load(dir.path(), &[]).unwrap();
    let at = |agent: &str, name: &str| {
        let ev = event(
            process("x", "/usr/bin/x", &["x"], Some(agent)),
            Detail::Connect(net("1.2.3.4", 443, &[(name, NameSource::Sni)])),
        );
        hits(&p, &ev)
            .into_iter()
            .map(|h| (h.0, h.1))
            .collect::<Vec<_>>()
    };
    let out = vec![(
        "agent-out-of-scope-destination".to_string(),
        RiskClass::High,
    )];
    assert_eq!(at("cc", "api.anthropic.com"), vec![]);
    assert_eq!(at("cc", "api.openai.com"), out);
    assert_eq!(
        at("cc", "example.com"),
        vec![],
        "providers only: non-AI not constrained"
    );
    assert_eq!(at("strict", "api.github.com"), vec![]);
    assert_eq!(at("strict", "api.openai.com"), vec![]);
    assert_eq!(at("strict", "example.com"), out);
    assert_eq!(
        at("strict", "github.com"),
        out,
        "a wildcard does not match its suffix"
    );
    let out_of_scope = event(
        process("x", "/usr/bin/x", &["x"], Some("cc")),
        Detail::Connect(net("1.2.3.4", 443, &[("api.openai.com", NameSource::Dns)])),
    );
    assert_eq!(
        hits(&p, &out_of_scope)[0].2,
        serde_json::json!({"outside_agent_scope": true, "remote_addr": "1.2.3.4", "remote_port": 443,
            "dst_names": [{"name": "api.openai.com", "source": "dns"}]})
    );
    // A lookup's connect to a resolver whose address also carries an AI
    // name is not egress to that name: neither out of scope nor shadow AI.
    let lookup = |agent: Option<&str>| {
        event(
            process("x", "/usr/bin/x", &["x"], agent),
            Detail::Connect(net("1.2.3.4", 53, &[("api.openai.com", NameSource::Dns)])),
        )
    };
    assert!(hits(&p, &lookup(Some("cc"))).is_empty());
    assert!(hits(&p, &lookup(None)).is_empty());
}

#[test]
fn local_inference_listening() {
    let p = default_policy();
    let ollama = || {
        process(
            "ollama",
            "/usr/local/bin/ollama",
            &["ollama", "serve"],
            None,
        )
    };
    let h = hits(&p, &event(ollama(), listen("127.0.0.1", 11434)));
    assert_eq!(h.len(), 1);
    assert_eq!(
        (h[0].0.as_str(), h[0].1),
        ("local-inference-listening", RiskClass::Medium)
    );
    assert_eq!(
        h[0].2,
        serde_json::json!({"indicator": "local_inference", "server": "ollama", "default_port": true})
    );
    let h = hits(&p, &event(ollama(), listen("0.0.0.0", 11434)));
    assert_eq!(
        (h[0].0.as_str(), h[0].1),
        ("local-inference-listening", RiskClass::High)
    );
    let h = hits(&p, &event(ollama(), listen("::", 11434)));
    assert_eq!(h[0].1, RiskClass::High);
    assert!(hits(
        &p,
        &event(
            process("nginx", "/usr/sbin/nginx", &["nginx"], None),
            listen("0.0.0.0", 8080)
        )
    )
    .is_empty());
    let h = hits(
        &p,
        &event(
            process(
                "python3",
                "/usr/bin/python3.11",
                &["python3", "-m", "vllm.entrypoints.openai.api_server"],
                None,
            ),
            exec(&["python3", "-m", "vllm.entrypoints.openai.api_server"]),
        ),
    );
    assert_eq!(h[0].2["server"], "vllm");
}

#[test]
fn agent_clis_autonomous_mode_and_mcp() {
    let p = default_policy();
    let argv = ["/tmp/x/claude", "--dangerously-skip-permissions"];
    let h = hits(
        &p,
        &event(process("claude", "/usr/bin/dash", &argv, None), exec(&argv)),
    );
    let ids: Vec<(&str, RiskClass)> = h.iter().map(|h| (h.0.as_str(), h.1)).collect();
    assert_eq!(
        ids,
        vec![
            ("agent-cli-unregistered", RiskClass::Medium),
            ("agent-autonomous-mode", RiskClass::High)
        ]
    );
    assert_eq!(
        h[1].2,
        serde_json::json!({"indicator": "autonomous_mode", "cli": "claude-code", "flag": "--dangerously-skip-permissions"})
    );
    // A node agent is matched by its script.
    let argv = ["node", "/usr/local/bin/codex", "--full-auto"];
    let h = hits(
        &p,
        &event(
            process("node", "/usr/bin/node", &argv, Some("reg")),
            exec(&argv),
        ),
    );
    assert_eq!(
        h.iter().map(|h| h.0.as_str()).collect::<Vec<_>>(),
        vec!["agent-autonomous-mode"]
    );
    // `cat claude` is not the claude CLI.
    let argv = ["cat", "claude"];
    assert!(hits(
        &p,
        &event(process("cat", "/usr/bin/cat", &argv, None), exec(&argv))
    )
    .is_empty());
    for argv in [
        vec![
            "node",
            "/usr/bin/npx",
            "-y",
            "@modelcontextprotocol/server-filesystem",
            "/srv",
        ],
        vec!["uvx", "mcp-server-fetch"],
        vec!["python3", "-m", "mcp_server_git", "--repository", "."],
    ] {
        let h = hits(
            &p,
            &event(process("node", "/usr/bin/node", &argv, None), exec(&argv)),
        );
        assert_eq!(
            (h[0].0.as_str(), h[0].1),
            ("mcp-server-launched", RiskClass::Medium),
            "{argv:?}"
        );
    }
    let argv = ["uvx", "mcp-server-fetch"];
    let h = hits(
        &p,
        &event(
            process("uvx", "/usr/bin/uvx", &argv, Some("reg")),
            exec(&argv),
        ),
    );
    assert_eq!(h[0].1, RiskClass::Low);
}
