//! Policy loading and compilation, and the helpers the rule tests share
//! (hand-built enriched events); the rules themselves are tested in
//! shadow_ai_rules.rs and matchers.rs, the kernel-level path in the
//! integration tests (shadow_ai*.rs).
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

pub(super) fn listen(addr: &str, port: u16) -> Detail {
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
        "llm-request-unregistered",
        "llm-request-out-of-scope",
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

mod llm_scope;
mod matchers;
mod shadow_ai_rules;
