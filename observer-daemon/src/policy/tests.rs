//! Policy loading, compilation and rule evaluation over hand-built
//! enriched events (the kernel-level tests are in tests/shadow_ai.rs).
use std::path::{Path, PathBuf};

use super::{rules::Hit, *};
use crate::{enrich::process_table::Origin, receipt::payload::RiskClass, record::*};

pub(super) fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

/// A copy of the shipped policies in a temp dir, with `edit` applied to
/// one file.
pub(super) fn copy_with(file: &str, edit: impl Fn(String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("indicators")).unwrap();
    for rel in std::iter::once("agents.toml".to_string())
        .chain(std::iter::once("rules.toml".to_string()))
        .chain(
            load::INDICATOR_FILES
                .iter()
                .map(|f| format!("indicators/{f}")),
        )
    {
        let mut text = std::fs::read_to_string(shipped().join(&rel)).unwrap();
        if rel == file {
            text = edit(text);
        }
        std::fs::write(dir.path().join(&rel), text).unwrap();
    }
    dir
}

pub(super) fn process(comm: &str, exe: &str, argv: &[&str], agent: Option<&str>) -> ProcessView {
    ProcessView {
        pid: 4242,
        tid: 4242,
        ppid: 1,
        uid: 1000,
        user: Some("alice".into()),
        gid: 1000,
        group: None,
        loginuid: None,
        comm: comm.into(),
        exe: Some(exe.into()),
        exe_sha256: Some(format!("sha256:{}", "ab".repeat(32))),
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env_names: vec![],
        cgroup_id: 1,
        cgroup: None,
        unit: None,
        container_id: None,
        origin: Origin::Exec,
        watched: false,
        agent: agent.map(String::from),
    }
}

pub(super) fn event(process: ProcessView, detail: Detail) -> EnrichedEvent {
    EnrichedEvent {
        event: "x",
        time: "2026-11-23T00:00:00.000000000Z".into(),
        boot_ns: 1,
        cpu: 0,
        seq: 1,
        process,
        parents: vec![Ancestor {
            pid: 1,
            comm: "bash".into(),
            exe: Some("/usr/bin/bash".into()),
        }],
        detail,
    }
}

pub(super) fn net(remote: &str, port: u16, names: &[(&str, NameSource)]) -> NetDetail {
    NetDetail {
        fd: 3,
        result: 0,
        error: None,
        family: "inet",
        socket_type: "stream".into(),
        local_addr: "10.0.0.2".into(),
        local_port: 40000,
        remote_addr: remote.into(),
        remote_port: port,
        dst_names: names
            .iter()
            .map(|(n, s)| DstName {
                name: n.to_string(),
                source: *s,
            })
            .collect(),
    }
}

fn listen(addr: &str, port: u16) -> Detail {
    let mut n = net("0.0.0.0", 0, &[]);
    n.local_addr = addr.into();
    n.local_port = port;
    Detail::Listen(n)
}

pub(super) fn open(path: &str) -> Detail {
    Detail::FileOpen(OpenDetail {
        path: path.into(),
        result: 3,
        error: None,
        flags: 0,
        flags_text: "O_RDONLY".into(),
        mode: 0,
        reasons: vec!["suffix"],
        openat2: false,
        dfd: -100,
    })
}

pub(super) fn exec(argv: &[&str]) -> Detail {
    Detail::Exec(ExecDetail {
        filename: argv[0].into(),
        argv: argv.iter().map(|s| s.to_string()).collect(),
        argv_truncated: false,
        argv_missing: false,
        result: 0,
        error: None,
        execveat: false,
    })
}

pub(super) fn hits(policy: &Policy, ev: &EnrichedEvent) -> Vec<(String, RiskClass, Value)> {
    let mut out: Vec<Hit> = Vec::new();
    policy.evaluate(ev, &mut String::new(), &mut out);
    out.into_iter()
        .map(|h| (policy.rules.rules[h.rule].id.clone(), h.risk, h.matched))
        .collect()
}

pub(super) fn default_policy() -> Policy {
    Policy::load(&shipped(), &[]).unwrap()
}

#[test]
fn shipped_policies_load_and_digest_is_stable() {
    let a = default_policy();
    let b = default_policy();
    assert_eq!(a.digest, b.digest);
    assert!(a.digest.starts_with("sha256:") && a.digest.len() == 71);
    assert_eq!(a.registry.len(), 0);
    let ids: Vec<&str> = a.rules.rules.iter().map(|r| r.id.as_str()).collect();
    for id in [
        "ai-api-egress-unregistered",
        "ai-gateway-use",
        "local-inference-server-started",
        "local-inference-listening",
        "agent-cli-unregistered",
        "agent-autonomous-mode",
        "mcp-server-launched",
        "ai-credential-read-by-non-owner",
        "agent-reads-other-secrets",
        "model-weights-unregistered",
        "ai-sdk-loaded",
        "gpu-compute-unregistered",
        "agent-out-of-scope-destination",
        "model-hub-fetch-unregistered",
    ] {
        assert!(ids.contains(&id), "{id} missing");
    }
    for (id, provider) in [
        ("openai", "api.openai.com"),
        ("anthropic", "api.anthropic.com"),
        ("azure-openai", "myres.openai.azure.com"),
        ("aws-bedrock", "bedrock-runtime.us-east-1.amazonaws.com"),
        ("google-gemini", "generativelanguage.googleapis.com"),
        ("mistral", "api.mistral.ai"),
        ("cohere", "api.cohere.com"),
        ("groq", "api.groq.com"),
        ("together", "api.together.xyz"),
        ("fireworks", "api.fireworks.ai"),
        ("perplexity", "api.perplexity.ai"),
        ("deepseek", "api.deepseek.com"),
        ("xai", "api.x.ai"),
        ("openrouter", "openrouter.ai"),
        ("huggingface", "router.huggingface.co"),
        ("replicate", "api.replicate.com"),
        ("github-copilot", "api.githubcopilot.com"),
        ("cursor", "api2.cursor.sh"),
    ] {
        assert_eq!(
            a.indicators
                .provider_of_name(provider)
                .map(|p| p.id.as_str()),
            Some(id)
        );
    }
    // Telemetry hosts are not AI API endpoints.
    assert!(a
        .indicators
        .provider_of_name("statsig.anthropic.com")
        .is_none());
    // Comments do not change the digest; content does.
    let commented = copy_with("rules.toml", |t| format!("# a comment\n{t}"));
    assert_eq!(
        Policy::load(commented.path(), &[]).unwrap().digest,
        a.digest
    );
    let changed = copy_with("rules.toml", |t| {
        t.replacen("risk = \"medium\"", "risk = \"low\"", 1)
    });
    assert_ne!(Policy::load(changed.path(), &[]).unwrap().digest, a.digest);
    // What the kernel is told.
    for s in [
        ".gguf",
        "/.claude/.credentials.json",
        "site-packages/openai/__init__.py",
        "/.ssh/id_ed25519",
    ] {
        assert!(a.kernel.suffixes.iter().any(|x| x == s), "{s}");
    }
    for p in ["/dev/nvidia-uvm", "/dev/kfd"] {
        assert!(a.kernel.prefixes.iter().any(|x| x == p), "{p}");
    }
}

#[test]
fn misspelt_condition_is_refused_with_location_and_suggestion() {
    let dir = copy_with("rules.toml", |t| {
        t.replacen(
            "registered = false, indicator = \"ai_api\"",
            "registerd = false, indicator = \"ai_api\"",
            1,
        )
    });
    let err = Policy::load(dir.path(), &[]).unwrap_err().to_string();
    let path = dir.path().join("rules.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let line = text.lines().position(|l| l.contains("registerd")).unwrap() + 1;
    let col = text
        .lines()
        .nth(line - 1)
        .unwrap()
        .find("registerd")
        .unwrap()
        + 1;
    assert!(
        err.starts_with(&format!(
            "{}:{line}:{col}: unknown field `registerd`",
            path.display()
        )),
        "{err}"
    );
    assert!(err.ends_with("did you mean `registered`?"), "{err}");
}

#[test]
fn bad_values_are_refused_with_location() {
    let dir = copy_with("indicators/ai_endpoints.toml", |t| {
        t.replace("\"api.openai.com\"", "\"API.openai.com\"")
    });
    let err = Policy::load(dir.path(), &[]).unwrap_err().to_string();
    assert!(
        err.contains("ai_endpoints.toml:")
            && err.contains("`API.openai.com` is not a lower-case domain"),
        "{err}"
    );
    let dir = copy_with("rules.toml", |t| {
        t.replacen("indicator = \"ai_api\"", "indicator = \"ai_apis\"", 1)
    });
    let err = Policy::load(dir.path(), &[]).unwrap_err().to_string();
    assert!(
        err.contains("unknown variant `ai_apis`") && err.ends_with("did you mean `ai_api`?"),
        "{err}"
    );
    let dir = copy_with("agents.toml", |t| {
        format!("{t}\n[[agent]]\nid = \"a\"\nexecutables = [\"/x\"]\nallowed_providers = [\"anthropc\"]\n")
    });
    let err = Policy::load(dir.path(), &[]).unwrap_err().to_string();
    assert!(
        err.contains("agents.toml:")
            && err.contains("unknown provider `anthropc`")
            && err.ends_with("did you mean `anthropic`?"),
        "{err}"
    );
    let dir = copy_with("agents.toml", |t| format!("{t}\n[[agent]]\nid = \"a\"\n"));
    let err = Policy::load(dir.path(), &[]).unwrap_err().to_string();
    assert!(err.contains("has no matcher"), "{err}");
    let dir = copy_with("rules.toml", |t| t);
    std::fs::write(dir.path().join("indicators/ai_endpoint.toml"), "").unwrap();
    let err = Policy::load(dir.path(), &[]).unwrap_err().to_string();
    assert!(
        err.contains("unknown policy file `ai_endpoint.toml`; did you mean `ai_endpoints.toml`?"),
        "{err}"
    );
    std::fs::remove_file(dir.path().join("indicators/ai_endpoint.toml")).unwrap();
    std::fs::remove_file(dir.path().join("indicators/gpu_devices.toml")).unwrap();
    let err = Policy::load(dir.path(), &[]).unwrap_err().to_string();
    assert!(err.contains("gpu_devices.toml"), "{err}");
}

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

#[test]
fn file_rules() {
    let p = default_policy();
    let by = |comm: &str, agent: Option<&str>, path: &str| {
        hits(
            &p,
            &event(
                process(comm, &format!("/usr/bin/{comm}"), &[comm], agent),
                open(path),
            ),
        )
        .into_iter()
        .map(|h| (h.0, h.1))
        .collect::<Vec<_>>()
    };
    assert_eq!(
        by("python3", None, "/srv/m/llama.gguf"),
        vec![("model-weights-unregistered".into(), RiskClass::Medium)]
    );
    assert_eq!(by("python3", Some("a"), "/srv/m/llama.gguf"), vec![]);
    assert_eq!(by("python3", None, "/srv/m/llama.bin"), vec![]);
    assert_eq!(
        by("ollama", None, "/home/u/.ollama/models/blobs/sha256-1234"),
        vec![("model-weights-unregistered".into(), RiskClass::Medium)]
    );
    assert_eq!(
        by("cat", None, "/home/u/.claude/.credentials.json"),
        vec![("ai-credential-read-by-non-owner".into(), RiskClass::High)]
    );
    assert_eq!(
        by("claude", None, "/home/u/.claude/.credentials.json"),
        vec![]
    );
    assert_eq!(
        by("claude", Some("cc"), "/home/u/.ssh/id_ed25519"),
        vec![("agent-reads-other-secrets".into(), RiskClass::High)]
    );
    assert_eq!(by("ssh", None, "/home/u/.ssh/id_ed25519"), vec![]);
    assert_eq!(
        by(
            "python3",
            None,
            "/usr/lib/python3/site-packages/openai/__init__.py"
        ),
        vec![("ai-sdk-loaded".into(), RiskClass::Low)]
    );
    assert_eq!(
        by("python3", None, "/dev/nvidia-uvm"),
        vec![("gpu-compute-unregistered".into(), RiskClass::Low)]
    );
}

#[test]
fn registry_matchers() {
    let dir = copy_with("agents.toml", |t| {
        format!(
            "{t}\n[[agent]]\nid = \"node-agent\"\ninterpreters = [\"node\"]\nscripts = [\"/opt/agent/*.js\"]\n\n\
             [[agent]]\nid = \"by-hash\"\nsha256 = [\"{}\"]\n\n\
             [[agent]]\nid = \"by-glob\"\nexecutables = [\"/opt/*/bin/agent\"]\n\n\
             [[agent]]\nid = \"by-unit\"\nunits = [\"agent-*.service\"]\n\n\
             [[agent]]\nid = \"by-argv\"\nargv = [\"^python3 -m my_agent( |$)\"]\n",
            "cd".repeat(32)
        )
    });
    let p = Policy::load(dir.path(), &[]).unwrap();
    let m = |f: agents::ImageFacts| p.registry.match_image(&f).map(|a| a.to_string());
    let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let node = argv(&["node", "/opt/agent/main.js"]);
    assert_eq!(
        m(agents::ImageFacts {
            exe: Some("/usr/bin/node"),
            argv: &node,
            ..Default::default()
        })
        .as_deref(),
        Some("node-agent")
    );
    assert_eq!(
        m(agents::ImageFacts {
            exe: Some("/usr/bin/python3"),
            argv: &node,
            ..Default::default()
        }),
        None,
        "wrong interpreter"
    );
    let hash = format!("sha256:{}", "cd".repeat(32));
    assert_eq!(
        m(agents::ImageFacts {
            sha256: Some(&hash),
            ..Default::default()
        })
        .as_deref(),
        Some("by-hash")
    );
    assert_eq!(
        m(agents::ImageFacts {
            exe: Some("/opt/x/bin/agent"),
            ..Default::default()
        })
        .as_deref(),
        Some("by-glob")
    );
    assert_eq!(
        m(agents::ImageFacts {
            unit: Some("agent-7.service"),
            ..Default::default()
        })
        .as_deref(),
        Some("by-unit")
    );
    let py = argv(&["python3", "-m", "my_agent"]);
    assert_eq!(
        m(agents::ImageFacts {
            argv: &py,
            ..Default::default()
        })
        .as_deref(),
        Some("by-argv")
    );
    assert_eq!(
        m(agents::ImageFacts {
            exe: Some("/usr/bin/ls"),
            ..Default::default()
        }),
        None
    );
    assert_eq!(
        p.kernel.watched_executables,
        Vec::<String>::new(),
        "globs are not pushed"
    );
}

#[test]
fn unregistered_chain_id_is_16_hex() {
    assert_eq!(
        unregistered_agent_id(Some(&format!("sha256:{}", "0123456789abcdef".repeat(4)))),
        "unregistered:0123456789abcdef"
    );
    assert_eq!(unregistered_agent_id(None), "unregistered:0000000000000000");
}

#[test]
fn no_match_path_is_cheap() {
    let p = default_policy();
    let ev = event(
        process("make", "/usr/bin/make", &["make", "-j8"], None),
        open("/usr/include/stdio.h"),
    );
    let per_event = bench_evaluate(&p, &ev, 20_000);
    // Not a speed assertion (that is `cargo xtask bench`): the helper runs
    // and reports a finite cost.
    assert!(per_event.as_nanos() > 0);
}

/// Counts this thread's heap allocations, to prove the no-match path
/// allocates nothing.
struct CountingAlloc;

thread_local! {
    static ALLOCATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static COUNTING: CountingAlloc = CountingAlloc;

#[test]
fn the_no_match_path_allocates_nothing() {
    let p = default_policy();
    let events = [
        event(
            process("make", "/usr/bin/make", &["make", "-j8"], None),
            open("/usr/include/stdio.h"),
        ),
        event(
            process("gcc", "/usr/bin/gcc", &["gcc", "-c", "x.c"], None),
            exec(&["gcc", "-c", "x.c"]),
        ),
        event(
            process(
                "curl",
                "/usr/bin/curl",
                &["curl", "https://example.com"],
                None,
            ),
            Detail::Connect(net(
                "93.184.216.34",
                443,
                &[("example.com", NameSource::Sni)],
            )),
        ),
        event(
            process("nginx", "/usr/sbin/nginx", &["nginx"], None),
            listen("0.0.0.0", 80),
        ),
    ];
    let mut argv = String::new();
    let mut out = Vec::new();
    // Warm up: the argv buffer grows once, the regex caches fill.
    for ev in &events {
        p.evaluate(ev, &mut argv, &mut out);
    }
    assert!(out.is_empty());
    let before = ALLOCATIONS.with(|c| c.get());
    for _ in 0..100 {
        for ev in &events {
            p.evaluate(ev, &mut argv, &mut out);
        }
    }
    assert_eq!(ALLOCATIONS.with(|c| c.get()) - before, 0);
    assert!(out.is_empty());
}
