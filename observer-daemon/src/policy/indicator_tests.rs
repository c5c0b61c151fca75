//! The late-2026 indicators (issue #15): each new entry with a positive
//! case and a near miss, the two-argument autonomous flags, generic names
//! that need confirmation, remote MCP servers and home-relative model
//! caches. Helpers are shared with tests.rs.
use serde_json::json;

use super::tests::{default_policy, event, exec, hits, net, process};
use super::*;
use crate::{receipt::payload::RiskClass, record::*};

/// The rule ids an exec of `argv` (by `exe`) produces, unregistered.
pub(super) fn exec_hits(exe: &str, argv: &[&str]) -> Vec<(String, RiskClass, Value)> {
    let comm: String = base(argv[0]).chars().take(15).collect();
    hits(
        &default_policy(),
        &event(process(&comm, exe, argv, None), exec(argv)),
    )
}

fn base(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

pub(super) fn ids(h: &[(String, RiskClass, Value)]) -> Vec<&str> {
    h.iter().map(|h| h.0.as_str()).collect()
}

#[test]
fn new_endpoints_hubs_and_their_near_misses() {
    let p = default_policy();
    let provider = |n: &str| {
        p.indicators
            .provider_of_name(n)
            .map(|p| (p.id.as_str(), p.kind.as_str()))
    };
    for (name, id, kind) in [
        (
            "us-central1-aiplatform.googleapis.com",
            "google-vertex",
            "ai_api",
        ),
        (
            "europe-west4-aiplatform.googleapis.com",
            "google-vertex",
            "ai_api",
        ),
        (
            "bedrock-runtime.eu-north-1.amazonaws.com",
            "aws-bedrock",
            "ai_api",
        ),
        (
            "bedrock-agent-runtime.us-west-2.amazonaws.com",
            "aws-bedrock",
            "ai_api",
        ),
        (
            "bedrock-runtime.ap-southeast-4.amazonaws.com",
            "aws-bedrock",
            "ai_api",
        ),
        ("chatgpt.com", "openai-chatgpt", "ai_api"),
        ("cloudcode-pa.googleapis.com", "google-gemini-cli", "ai_api"),
        ("models.github.ai", "github-models", "ai_api"),
        (
            "my-llama.eastus2.models.ai.azure.com",
            "azure-openai",
            "ai_api",
        ),
        ("api.cerebras.ai", "cerebras", "ai_api"),
        ("api.sambanova.ai", "sambanova", "ai_api"),
        ("api.deepinfra.com", "deepinfra", "ai_api"),
        ("api.studio.nebius.com", "nebius", "ai_api"),
        ("api.moonshot.ai", "moonshot", "ai_api"),
        ("api.z.ai", "zai", "ai_api"),
        ("dashscope-intl.aliyuncs.com", "dashscope", "ai_api"),
        ("api.minimax.io", "minimax", "ai_api"),
        ("integrate.api.nvidia.com", "nvidia-nim", "ai_api"),
        ("api.ai21.com", "ai21", "ai_api"),
        ("api.voyageai.com", "voyage", "ai_api"),
        ("api.jina.ai", "jina", "ai_api"),
        ("hf-mirror.com", "hf-mirror", "model_hub"),
        ("www.kaggle.com", "kaggle", "model_hub"),
        ("api.ngc.nvidia.com", "nvidia-ngc", "model_hub"),
        ("ollama.com", "ollama-library", "model_hub"),
        ("mcp.linear.app", "mcp-linear", "mcp_server"),
        (
            "bindings.mcp.cloudflare.com",
            "mcp-cloudflare",
            "mcp_server",
        ),
    ] {
        assert_eq!(provider(name), Some((id, kind)), "{name}");
        // Near miss: the same name under another domain.
        let elsewhere = format!("{name}.evil.example");
        assert_eq!(provider(&elsewhere), None, "{elsewhere}");
    }
    for miss in [
        // Bedrock's control plane is not model traffic; telemetry is excluded.
        "bedrock.us-east-1.amazonaws.com",
        "ab.chatgpt.com",
        "us-central1-aiplatform.googleapis.com.example",
        "xus-central1-aiplatform.googleapis.com",
        "github.ai",
        "mcp.cloudflare.com",
        "linear.app",
        "nvidia.com",
    ] {
        assert_eq!(provider(miss), None, "{miss}");
    }
}

#[test]
fn remote_mcp_server_connect_is_a_finding_for_unregistered_processes() {
    let p = default_policy();
    let connect = |agent: Option<&str>, name: &str| {
        hits(
            &p,
            &event(
                process("node", "/usr/bin/node", &["node", "client.js"], agent),
                Detail::Connect(net("203.0.113.9", 443, &[(name, NameSource::Sni)])),
            ),
        )
    };
    let h = connect(None, "mcp.linear.app");
    assert_eq!(ids(&h), vec!["mcp-remote-server-unregistered"]);
    assert_eq!(h[0].1, RiskClass::Medium);
    assert_eq!(
        h[0].2,
        json!({"indicator": "mcp_server", "remote": "mcp-linear", "destination": "mcp.linear.app", "sources": ["sni"]})
    );
    assert!(connect(Some("reg"), "mcp.linear.app").is_empty());
    assert!(connect(None, "linear.app").is_empty());
    // A remote MCP server is not an AI API (no ai-api-egress finding).
    assert!(!ids(&connect(None, "mcp.notion.com")).contains(&"ai-api-egress-unregistered"));
}

#[test]
fn new_local_inference_servers_and_near_misses() {
    let server = |h: &[(String, RiskClass, Value)]| {
        h.iter()
            .find(|h| h.0 == "local-inference-server-started")
            .map(|h| h.2["server"].as_str().unwrap_or_default().to_string())
    };
    for (exe, argv, want) in [
        (
            "/usr/bin/docker",
            vec!["docker", "model", "run", "ai/smollm2"],
            "docker-model-runner",
        ),
        (
            "/srv/m/mistral.llamafile",
            vec!["./mistral.llamafile", "--server"],
            "llamafile",
        ),
        (
            "/usr/bin/sh",
            vec!["sh", "./mistral.llamafile"],
            "llamafile",
        ),
        (
            "/usr/bin/python3",
            vec![
                "python3",
                "/usr/local/bin/xinference-local",
                "--host",
                "0.0.0.0",
            ],
            "xinference",
        ),
        (
            "/opt/tritonserver/bin/tritonserver",
            vec!["tritonserver", "--model-repository=/m"],
            "triton",
        ),
        (
            "/usr/bin/python3",
            vec!["python3", "/usr/local/bin/trtllm-serve", "/m"],
            "triton",
        ),
        (
            "/usr/bin/python3",
            vec!["python3", "/opt/text-generation-webui/server.py", "--api"],
            "text-generation-webui",
        ),
        (
            "/usr/bin/python3",
            vec!["python3", "/home/u/tabbyAPI/main.py"],
            "tabbyapi",
        ),
        (
            "/usr/bin/python3",
            vec!["python3", "/usr/bin/ramalama", "serve", "granite"],
            "ramalama",
        ),
        (
            "/usr/bin/python3",
            vec!["python3", "/usr/local/bin/llama", "stack", "run", "starter"],
            "llama-stack",
        ),
        (
            "/opt/gpt4all/bin/chat",
            vec!["/opt/gpt4all/bin/chat"],
            "gpt4all",
        ),
    ] {
        assert_eq!(
            server(&exec_hits(exe, &argv)).as_deref(),
            Some(want),
            "{argv:?}"
        );
    }
    for (exe, argv) in [
        ("/usr/bin/docker", vec!["docker", "model", "ls"]),
        ("/usr/bin/cat", vec!["cat", "mistral.llamafile"]),
        (
            "/usr/bin/python3",
            vec!["python3", "-m", "pip", "install", "xinference"],
        ),
        (
            "/usr/bin/python3",
            vec!["python3", "/srv/app/server.py", "--api"],
        ),
        ("/usr/bin/python3", vec!["python3", "/home/u/app/main.py"]),
        (
            "/usr/bin/python3",
            vec!["python3", "/usr/bin/ramalama", "list"],
        ),
        (
            "/usr/bin/python3",
            vec!["python3", "/usr/local/bin/llama", "model", "list"],
        ),
        // ppp's chat(8) is not GPT4All.
        ("/usr/sbin/chat", vec!["chat", "-v", "ABORT", "BUSY"]),
    ] {
        assert_eq!(server(&exec_hits(exe, &argv)), None, "{argv:?}");
    }
    let h = exec_hits("/opt/gpt4all/bin/chat", &["/opt/gpt4all/bin/chat"]);
    assert_eq!(h[0].2["confirmed_by"], "paths");
}

#[test]
fn new_agent_clis_and_near_misses() {
    for name in ["cline", "kilocode", "kilo", "kiro-cli", "auggie", "aichat"] {
        let exe = format!("/usr/local/bin/{name}");
        let h = exec_hits(&exe, &[&exe]);
        assert_eq!(ids(&h), vec!["agent-cli-unregistered"], "{name}");
        assert!(
            exec_hits("/usr/bin/cat", &["cat", name]).is_empty(),
            "cat {name}"
        );
    }
    let cli = |exe: &str, argv: &[&str]| {
        exec_hits(exe, argv)
            .into_iter()
            .find(|h| h.0 == "agent-cli-unregistered")
            .map(|h| h.2)
    };
    // Generic names: confirmed, and the same name unconfirmed.
    for (exe, argv, id, by) in [
        (
            "/home/u/.local/bin/q",
            vec!["q", "chat"],
            "kiro-cli",
            "argv",
        ),
        ("/usr/bin/goose", vec!["goose", "session"], "goose", "argv"),
        (
            "/usr/bin/cursor",
            vec!["cursor", "agent", "fix the build"],
            "cursor-agent",
            "argv",
        ),
        (
            "/usr/local/bin/amp",
            vec!["amp", "-x", "fix"],
            "amp",
            "argv",
        ),
        (
            "/usr/bin/node",
            vec!["node", "/usr/lib/node_modules/@sourcegraph/amp/dist/amp"],
            "amp",
            "paths",
        ),
        (
            "/home/u/.local/bin/droid",
            vec!["droid", "exec", "task"],
            "factory-droid",
            "argv",
        ),
        (
            "/usr/bin/python3.12",
            vec![
                "/home/u/.local/pipx/venvs/llm/bin/python",
                "/home/u/.local/bin/llm",
                "hi",
            ],
            "llm",
            "paths",
        ),
        (
            "/usr/bin/python3",
            vec!["python3", "/usr/local/bin/llm", "-m", "gpt-5", "hi"],
            "llm",
            "argv",
        ),
        (
            "/usr/bin/python3",
            vec!["python3", "/usr/local/bin/interpreter", "--local"],
            "open-interpreter",
            "argv",
        ),
    ] {
        assert_eq!(
            cli(exe, &argv),
            Some(json!({"indicator": "agent_cli", "cli": id, "confirmed_by": by})),
            "{argv:?}"
        );
    }
    for (exe, argv) in [
        // harelba's q (SQL over CSV) installs /usr/bin/q.
        ("/usr/bin/q", vec!["q", "-H", "SELECT * FROM data.csv"]),
        ("/usr/bin/q", vec!["/usr/bin/q"]),
        // pressly/goose, the migration tool.
        (
            "/usr/local/bin/goose",
            vec!["goose", "postgres", "dbname=x", "up"],
        ),
        ("/usr/bin/cursor", vec!["cursor", "."]),
        // jmacdonald/amp, the text editor.
        ("/usr/bin/amp", vec!["amp", "src/main.rs"]),
        ("/usr/bin/droid", vec!["droid", "devices"]),
        (
            "/usr/bin/python3",
            vec!["python3", "/usr/local/bin/llm", "notes.txt"],
        ),
        ("/usr/bin/interpreter", vec!["interpreter", "prog.bas"]),
    ] {
        assert_eq!(cli(exe, &argv), None, "{argv:?}");
    }
    // An environment variable name confirms too (values are never read).
    let p = default_policy();
    let amp_process = || process("amp", "/usr/local/bin/amp", &["amp"], None);
    let argv = ["amp"];
    assert!(hits(&p, &event(amp_process(), exec(&argv))).is_empty());
    let mut amp = amp_process();
    amp.env_names = vec!["AMP_API_KEY".into()];
    let h = hits(&p, &event(amp, exec(&argv)));
    assert_eq!(h[0].2["confirmed_by"], "env_names");
    // So does an ancestor.
    let mut ev = event(
        process("cursor", "/usr/bin/cursor", &["cursor", "--help"], None),
        exec(&["cursor", "--help"]),
    );
    assert!(hits(&p, &ev).is_empty());
    ev.parents.push(Ancestor {
        pid: 7,
        comm: "goose".into(),
        exe: None,
    });
    assert!(
        hits(&p, &ev).is_empty(),
        "goose is not a cursor confirmation"
    );
}

#[test]
fn autonomous_flags_given_as_two_arguments() {
    let flag = |exe: &str, argv: &[&str]| {
        exec_hits(exe, argv)
            .into_iter()
            .find(|h| h.0 == "agent-autonomous-mode")
            .map(|h| {
                (
                    h.2["cli"].as_str().unwrap().to_string(),
                    h.2["flag"].as_str().unwrap().to_string(),
                )
            })
    };
    let some = |cli: &str, f: &str| Some((cli.to_string(), f.to_string()));
    let claude = "/usr/local/bin/claude";
    let bypass = some("claude-code", "--permission-mode bypassPermissions");
    assert_eq!(
        flag(claude, &[claude, "--permission-mode", "bypassPermissions"]),
        bypass
    );
    assert_eq!(
        flag(
            claude,
            &[claude, "-p", "x", "--permission-mode=bypassPermissions"]
        ),
        bypass
    );
    assert_eq!(flag(claude, &[claude, "--permission-mode", "plan"]), None);
    assert_eq!(flag(claude, &[claude, "--permission-mode"]), None);
    assert_eq!(flag(claude, &[claude, "bypassPermissions"]), None);
    assert_eq!(
        flag(
            claude,
            &[
                claude,
                "--permission-mode",
                "acceptEdits",
                "bypassPermissions"
            ]
        ),
        None
    );
    let codex = "/usr/local/bin/codex";
    for argv in [
        vec![codex, "-s", "danger-full-access"],
        vec![codex, "-sdanger-full-access"],
        vec![codex, "--sandbox", "danger-full-access"],
        vec![codex, "--sandbox=danger-full-access"],
    ] {
        assert!(
            flag(codex, &argv).is_some_and(|f| f.1.ends_with("danger-full-access")),
            "{argv:?}"
        );
    }
    assert_eq!(
        flag(codex, &[codex, "-a", "never"]),
        some("codex", "-a never")
    );
    assert_eq!(
        flag(codex, &[codex, "--ask-for-approval", "never"]),
        some("codex", "--ask-for-approval never")
    );
    for argv in [
        vec![codex, "-s", "read-only"],
        vec![codex, "-a", "on-request"],
        vec![codex, "--sandbox", "workspace-write"],
        vec![codex, "exec", "never"],
    ] {
        assert_eq!(flag(codex, &argv), None, "{argv:?}");
    }
    let gemini = "/usr/local/bin/gemini";
    assert_eq!(
        flag(gemini, &[gemini, "--approval-mode", "yolo"]),
        some("gemini-cli", "--approval-mode yolo")
    );
    assert_eq!(
        flag(gemini, &[gemini, "--approval-mode", "auto_edit"]),
        None
    );
    let droid = "/home/u/.local/bin/droid";
    assert_eq!(
        flag(droid, &["droid", "exec", "--auto", "high", "t"]),
        some("factory-droid", "--auto high")
    );
    assert_eq!(flag(droid, &["droid", "exec", "--auto", "low", "t"]), None);
    let copilot = "/usr/local/bin/copilot";
    assert_eq!(
        flag(copilot, &[copilot, "--allow-all"]),
        some("copilot-cli", "--allow-all")
    );
    assert_eq!(
        flag(copilot, &[copilot, "--allow-tool", "shell(git)"]),
        None
    );
    let kiro = "/usr/local/bin/kiro-cli";
    assert_eq!(
        flag(kiro, &[kiro, "chat", "--trust-all-tools"]),
        some("kiro-cli", "--trust-all-tools")
    );
    assert_eq!(flag(kiro, &[kiro, "chat", "--trust-tools=fs_read"]), None);
    let kilo = "/usr/local/bin/kilo";
    assert_eq!(
        flag(kilo, &[kilo, "run", "--auto", "fix"]),
        some("kilo", "--auto")
    );
}
