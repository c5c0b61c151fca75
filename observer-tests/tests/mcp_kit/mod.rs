//! Runs the real `mcp` SDK client (observer-tests/mcp/client.py) as a
//! registered agent under a daemon, against an MCP server it launches over
//! stdio, and gathers what the daemon recorded.
// Not every test binary uses every helper.
#![allow(dead_code)]
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use serde_json::{json, Value};

use crate::{
    common,
    llm_kit::sdk_python,
    tls_kit::{release, wait_visible},
};

/// observer-tests/mcp: the client and the servers written for the tests.
pub fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("mcp")
}

/// One call the client makes.
pub fn call(tool: &str, arguments: Value) -> Value {
    json!({"tool": tool, "arguments": arguments})
}

pub struct McpRun {
    /// The client's event lines (initialized, tools, call ...).
    pub client: Vec<Value>,
    /// Every record the daemon wrote.
    pub records: Vec<Value>,
    pub db: PathBuf,
    pub seed: PathBuf,
    /// The daemon's state directory and output files (for byte searches).
    pub state: PathBuf,
    pub written: Vec<PathBuf>,
    pub pid: u32,
    _dir: tempfile::TempDir,
}

impl McpRun {
    /// The run's `mcp.*` receipts exported as OCSF API Activity events, in
    /// store order; every exported event of the store is checked against
    /// the OCSF schema first.
    pub fn ocsf_api_events(&self) -> Vec<Value> {
        crate::llm_kit::ocsf_exported::checked_ocsf_events(&self.db)
            .into_iter()
            .filter(|ev| ev["class_uid"] == 6003)
            .collect()
    }

    /// The records of `event` made by the client.
    pub fn of(&self, event: &str) -> Vec<&Value> {
        self.records
            .iter()
            .filter(|r| common::is_event(r, event) && r["process"]["pid"] == self.pid)
            .collect()
    }
}

/// Runs the client as agent `agent` with `plan` (client.py's format);
/// `extra_config` is added to observer.toml.
pub fn run_client(agent: &str, plan: &Value, extra_config: &str) -> McpRun {
    run_client_with(agent, plan, extra_config, "")
}

/// [`run_client`] with `agent_lines` added to the agent's `[[agents]]`
/// entry (`capture_content = "redacted"`).
pub fn run_client_with(agent: &str, plan: &Value, extra_config: &str, agent_lines: &str) -> McpRun {
    let dir = tempfile::tempdir().unwrap();
    let plan_path = dir.path().join("plan.json");
    std::fs::write(&plan_path, plan.to_string()).unwrap();
    // The agent waits for a line before it starts: by then the daemon
    // watches it, so the server it launches is watched from its exec.
    let exe = dir.path().join(format!("{agent}.py"));
    common::write_executable(
        &exe,
        &format!(
            "#!{}\n# ssl: loaded before the wait, so `status` shows the agent hooked.\nimport runpy, ssl, sys\nsys.stdin.readline()\nsys.argv = ['client.py', sys.argv[1]]\nrunpy.run_path({:?}, run_name='__main__')\n",
            sdk_python().display(),
            scripts().join("client.py").display().to_string()
        ),
    );
    let config = format!(
        "{extra_config}\n[plaintext]\nenabled = true\n[[agents]]\nid = {agent:?}\nexecutables = [{:?}]\n{agent_lines}\n",
        exe.display().to_string()
    );
    let state = dir.path().join("daemon");
    std::fs::create_dir(&state).unwrap();
    let d = common::Daemon::start_in(common::StateDir::Shared(state.clone()), &config);
    // Its events to a file: a call's arguments are echoed whole, more
    // than a pipe holds while the test waits for the client to finish.
    let out_path = dir.path().join("client.out");
    let client = Command::new(&exe)
        .arg(&plan_path)
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .spawn()
        .unwrap();
    let pid = client.id();
    wait_visible(&d.socket(), agent);
    release(client);
    let out = std::fs::read_to_string(&out_path).unwrap();
    let client: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let calls = client.iter().filter(|e| e["event"] == "call").count();
    // The calls are recorded as their answers come (or when the session
    // ends with the client).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while d
        .records()
        .iter()
        .filter(|r| common::is_event(r, "mcp_tool_call") && r["process"]["pid"] == pid)
        .count()
        < calls
    {
        assert!(
            std::time::Instant::now() < deadline,
            "not all {calls} tool calls recorded: {}",
            d.stderr_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let db = d.store();
    let seed = d.master_seed();
    let written = vec![d.events.clone(), d.stderr.clone()];
    let records = d.stop();
    McpRun {
        client,
        records,
        db,
        seed,
        state,
        written,
        pid,
        _dir: dir,
    }
}

/// `sha256:` of JCS(v): what a tool call's `arguments_sha256` must be.
pub fn jcs_sha256(v: &Value) -> String {
    format!(
        "sha256:{}",
        hex::encode(observer_receipts::jcs::canonical_sha256(v).unwrap())
    )
}
