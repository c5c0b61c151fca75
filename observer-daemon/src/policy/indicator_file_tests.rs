//! The late-2026 indicators (issue #15), continued: MCP launches, file
//! indicators (model files, SDKs, credentials), home-relative model caches
//! and refused malformed keys. Each new entry has a positive case and a
//! near miss.
use super::indicator_tests::exec_hits;
use super::tests::{copy_with, default_policy, event, hits, open, process};
use super::*;

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

/// An edit of one policy file's text.
type Edit = fn(String) -> String;

#[test]
fn malformed_new_keys_are_refused_with_location() {
    let cases: [(&str, Edit, &str); 5] = [
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

#[test]
fn sensitive_paths_are_secrets_credentials_and_models_not_sdks_or_devices() {
    let p = super::tests::default_policy();
    let ind = &p.indicators;
    for path in [
        "/home/u/.ssh/id_ed25519",
        "/tmp/x/.ssh/id_rsa",
        "/etc/shadow",
        "/home/u/.codex/auth.json",
        "/home/u/.claude/.credentials.json",
        "/tmp/w/model.safetensors",
        "/srv/llama.gguf",
    ] {
        assert!(ind.sensitive_path(path), "{path}");
    }
    for path in [
        "/etc/hostname",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
        "/usr/lib/python3/dist-packages/openai/__init__.py",
        "/dev/nvidiactl",
        "/tmp/w/model.safetensors.txt",
    ] {
        assert!(!ind.sensitive_path(path), "{path}");
    }
}
