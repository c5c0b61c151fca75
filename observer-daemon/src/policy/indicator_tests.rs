//! The late-2026 indicators (issue #15): each new entry with a positive
//! case and a near miss, the two-argument autonomous flags, generic names
//! that need confirmation, remote MCP servers and home-relative model
//! caches. Helpers are shared with tests.rs.
use serde_json::json;

use super::tests::{copy_with, default_policy, event, exec, hits, net, open, process};
use super::*;
use crate::{receipt::payload::RiskClass, record::*};

/// The rule ids an exec of `argv` (by `exe`) produces, unregistered.
fn exec_hits(exe: &str, argv: &[&str]) -> Vec<(String, RiskClass, Value)> {
    let comm: String = base(argv[0]).chars().take(15).collect();
    hits(
        &default_policy(),
        &event(process(&comm, exe, argv, None), exec(argv)),
    )
}

fn base(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

fn ids(h: &[(String, RiskClass, Value)]) -> Vec<&str> {
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

#[test]
fn new_mcp_launches_and_near_misses() {
    let launcher = |argv: &[&str]| {
        exec_hits("/usr/bin/node", argv)
            .into_iter()
            .find(|h| h.0 == "mcp-server-launched")
            .map(|h| h.2["launcher"].as_str().unwrap().to_string())
    };
    for (argv, want) in [
        (
            vec!["node", "/usr/bin/npx", "-y", "@playwright/mcp@latest"],
            "package-runner",
        ),
        (vec!["npx", "-y", "@upstash/context7-mcp"], "package-runner"),
        (vec!["bunx", "linear-mcp-server"], "package-runner"),
        (
            vec!["pnpm", "dlx", "@acme/jira-mcp", "--stdio"],
            "package-runner",
        ),
        (vec!["yarn", "dlx", "figma-mcp"], "package-runner"),
        (vec!["npm", "exec", "--", "shadcn-mcp"], "package-runner"),
        (
            vec!["uv", "run", "--with", "x", "postgres-mcp"],
            "package-runner",
        ),
        (
            vec!["uv", "tool", "run", "mcp-server-git"],
            "package-runner",
        ),
        (vec!["/usr/local/bin/context7-mcp"], "mcp-binary"),
        (
            vec!["node", "/opt/srv/dist/notion-mcp-server.js"],
            "mcp-binary",
        ),
        (vec!["github-mcp-server", "stdio"], "github-mcp-server"),
        (
            vec![
                "docker",
                "run",
                "-i",
                "--rm",
                "-e",
                "GITHUB_PERSONAL_ACCESS_TOKEN",
                "ghcr.io/github/github-mcp-server",
            ],
            "github-mcp-server",
        ),
        (
            vec!["npx", "mcp-remote", "https://mcp.linear.app/sse"],
            "mcp-remote",
        ),
        (
            vec!["docker", "mcp", "gateway", "run"],
            "docker-mcp-gateway",
        ),
    ] {
        assert_eq!(launcher(&argv).as_deref(), Some(want), "{argv:?}");
    }
    for argv in [
        vec!["npx", "create-mcp-app", "my-app"],
        vec!["npx", "playwright", "test"],
        vec!["bunx", "vite"],
        vec!["pnpm", "dlx", "create-vite"],
        vec!["uv", "run", "pytest"],
        vec!["ls", "foo-mcp"],
        vec!["docker", "mcp", "catalog", "ls"],
        vec!["docker", "run", "ghcr.io/github/super-linter"],
        vec!["cat", "mcp-remote"],
    ] {
        assert_eq!(launcher(&argv), None, "{argv:?}");
    }
}

#[test]
fn new_file_indicators_and_near_misses() {
    let p = default_policy();
    let by = |comm: &str, path: &str| {
        hits(
            &p,
            &event(
                process(comm, &format!("/usr/bin/{comm}"), &[comm], None),
                open(path),
            ),
        )
        .into_iter()
        .map(|h| h.0)
        .collect::<Vec<_>>()
    };
    for ext in [
        ".ckpt",
        ".h5",
        ".keras",
        ".tflite",
        ".pte",
        ".engine",
        ".llamafile",
    ] {
        let path = format!("/home/alice/models/m{ext}");
        assert_eq!(
            by("python3", &path),
            vec!["model-weights-unregistered"],
            "{path}"
        );
        assert!(
            by("python3", &format!("{path}.txt")).is_empty(),
            "{path}.txt"
        );
    }
    for path in [
        "/home/bob/.lmstudio/models/qwen/q.bin",
        "/root/.cache/huggingface/hub/models--x--y/blobs/0123",
        "/home/carol/.ollama/models/blobs/sha256-00ff",
    ] {
        assert_eq!(
            by("python3", path),
            vec!["model-weights-unregistered"],
            "{path}"
        );
    }
    for path in [
        "/srv/.lmstudio/models/q.bin",
        "/home/.lmstudio/models/q.bin",
        "/home/bob/lmstudio/models/q.bin",
    ] {
        assert!(by("python3", path).is_empty(), "{path}");
    }
    for path in [
        "/usr/lib/python3/dist-packages/openai/__init__.py",
        "/usr/lib/python3/dist-packages/anthropic/__init__.py",
        "/venv/lib/python3.12/site-packages/claude_agent_sdk/__init__.py",
        "/venv/lib/python3.12/site-packages/agents/__init__.py",
        "/venv/lib/python3.12/site-packages/pydantic_ai/__init__.py",
        "/venv/lib/python3.12/site-packages/langgraph/graph/__init__.py",
        "/venv/lib/python3.12/site-packages/crewai/__init__.py",
        "/venv/lib/python3.12/site-packages/llama_index/core/__init__.py",
        "/app/node_modules/@anthropic-ai/claude-agent-sdk/package.json",
        "/app/node_modules/@openai/agents/package.json",
    ] {
        assert_eq!(by("python3", path), vec!["ai-sdk-loaded"], "{path}");
    }
    for path in [
        "/usr/lib/python3/dist-packages/openai/version.py",
        "/srv/agents/__init__.py",
        "/venv/lib/python3.12/site-packages/crewai_tools/__init__.py",
    ] {
        assert!(by("python3", path).is_empty(), "{path}");
    }
    for (path, owner) in [
        ("/home/u/.config/gh/hosts.yml", "gh"),
        ("/home/u/.local/share/opencode/auth.json", "opencode"),
        (
            "/home/u/.config/Claude/claude_desktop_config.json",
            "claude",
        ),
        ("/home/u/.cursor/mcp.json", "cursor"),
        ("/home/u/.claude.json", "claude"),
    ] {
        assert_eq!(
            by("cat", path),
            vec!["ai-credential-read-by-non-owner"],
            "{path}"
        );
        assert!(by(owner, path).is_empty(), "{owner} owns {path}");
    }
    assert!(by("cat", "/home/u/.config/gh/config.yml").is_empty());
    assert!(by("cat", "/home/u/.cursor/settings.json").is_empty());
}

#[test]
fn home_relative_paths_expand_per_home_for_the_kernel() {
    let files = load::read_dir(&tests::shipped()).unwrap();
    let homes = vec!["/home/alice".to_string(), "/var/lib/svc".to_string()];
    let ind = indicators::compile_with_homes(&files, &homes).unwrap();
    let prefixes: Vec<String> = ind.model_files.kernel_prefixes().collect();
    for p in [
        "/home/alice/.ollama/models/blobs/",
        "/var/lib/svc/.ollama/models/blobs/",
        "/var/lib/svc/.cache/huggingface/hub/",
        "/usr/share/ollama/.ollama/models/blobs/",
    ] {
        assert!(prefixes.iter().any(|x| x == p), "{p} in {prefixes:?}");
    }
    assert!(ind
        .model_files
        .matches("/var/lib/svc/.lmstudio/models/m.bin"));
    let without = indicators::compile_with_homes(&files, &[]).unwrap();
    assert!(!without
        .model_files
        .matches("/var/lib/svc/.lmstudio/models/m.bin"));
    assert!(without
        .model_files
        .matches("/home/x/.lmstudio/models/m.bin"));
    assert_eq!(
        homes::passwd_homes(
            "root:x:0:0:root:/root:/bin/bash\nollama:x:998:998::/usr/share/ollama/:/bin/false\n\
             nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\nsys:x:3:3:sys:/:/bin/sh\nbad line\n"
        ),
        ["/root", "/usr/share/ollama", "/nonexistent"]
    );
    // The loaded policy pushes /root's expansion (root's home exists here).
    let p = default_policy();
    assert!(p
        .kernel
        .prefixes
        .iter()
        .any(|x| x == "/root/.ollama/models/blobs/"));
}

#[test]
fn malformed_new_keys_are_refused_with_location() {
    let cases: [(&str, fn(String) -> String, &str); 5] = [
        (
            "indicators/agent_clis.toml",
            |t| {
                t.replace(
                    "autonomous_flags = [\"--yolo\", \"-y\", \"--approval-mode yolo\"]",
                    "autonomous_flags = [\"--approval-mode  yolo\"]",
                )
            },
            "one space",
        ),
        (
            "indicators/agent_clis.toml",
            |t| format!("{t}\n[[cli]]\nid = \"x\"\ngeneric_names = [\"x\"]\n"),
            "need a non-empty `requires_any`",
        ),
        (
            "indicators/agent_clis.toml",
            |t| {
                format!("{t}\n[[cli]]\nid = \"y\"\nprocess_names = [\"y\"]\nrequires_any = {{ argv = [\"y\"] }}\n")
            },
            "there are none",
        ),
        (
            "indicators/agent_clis.toml",
            |t| {
                format!("{t}\n[[cli]]\nid = \"z\"\ngeneric_names = [\"z\"]\nrequires_any = {{ argvs = [\"z\"] }}\n")
            },
            "unknown field `argvs`",
        ),
        (
            "indicators/model_files.toml",
            |t| t.replace("\".lmstudio/models/\"", "\"/abs/models/\""),
            "relative to a home directory",
        ),
    ];
    for (file, edit, want) in cases {
        let dir = copy_with(file, edit);
        let err = Policy::load(dir.path(), &[]).unwrap_err().to_string();
        assert!(err.contains(want), "{file}: {err}");
        assert!(err.contains(file), "{err} names the file");
        assert!(
            err.split(':')
                .nth(1)
                .is_some_and(|l| l.parse::<u32>().is_ok()),
            "{err} has a line"
        );
    }
}
