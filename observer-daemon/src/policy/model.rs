//! The policy files as written: serde structs, every one strict
//! (`deny_unknown_fields`). Serialised back, they are the canonical form the
//! policy digest is computed over (comments and layout do not count).
use serde::{Deserialize, Serialize};

use crate::receipt::payload::RiskClass;

/// `agents.toml`.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentsFile {
    #[serde(default)]
    pub agent: Vec<AgentDef>,
}

/// A registered agent. A process is this agent when ANY matcher matches
/// it at exec (or at the startup scan); its descendants inherit it.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentDef {
    pub id: String,
    #[serde(default)]
    pub description: String,
    /// Absolute paths or globs of the executable, the exec'd path, or the
    /// script an interpreter runs (argv[0], argv[1]).
    #[serde(default)]
    pub executables: Vec<String>,
    /// `sha256:<hex>` (or bare hex) of the executable.
    #[serde(default)]
    pub sha256: Vec<String>,
    /// Interpreter names or globs (`node`, `python3*`), matched on the
    /// executable's file name; used together with `scripts`.
    #[serde(default)]
    pub interpreters: Vec<String>,
    /// Script paths or globs: an argv entry after the interpreter.
    #[serde(default)]
    pub scripts: Vec<String>,
    /// Regexes over argv joined with single spaces.
    #[serde(default)]
    pub argv: Vec<String>,
    #[serde(default)]
    pub uids: Vec<u32>,
    #[serde(default)]
    pub users: Vec<String>,
    /// systemd unit names or globs (`claude-agent.service`).
    #[serde(default)]
    pub units: Vec<String>,
    /// cgroup v2 paths or globs (`/system.slice/agents.slice/**`).
    #[serde(default)]
    pub cgroups: Vec<String>,
    /// Domain names (`api.anthropic.com`) or wildcards
    /// (`*.openai.azure.com`) the agent may contact. Empty: no restriction.
    #[serde(default)]
    pub allowed_destinations: Vec<String>,
    /// AI provider ids from the endpoint and gateway lists. Empty: no
    /// restriction.
    #[serde(default)]
    pub allowed_providers: Vec<String>,
    /// Model names or globs (`gpt-4o*`; `*` does not cross `/`, `**`
    /// does) the agent may ask an LLM API for. Empty: no restriction.
    #[serde(default)]
    pub allowed_models: Vec<String>,
    /// What of its LLM bodies and MCP tool arguments and results is kept:
    /// `none` (the default: digests and parsed fields only), `redacted`
    /// (credentials and personal data replaced) or `full` (credentials
    /// replaced).
    #[serde(default)]
    pub capture_content: super::capture::CaptureContent,
}

/// `indicators/ai_endpoints.toml` and `indicators/ai_gateways.toml`.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvidersFile {
    #[serde(default)]
    pub provider: Vec<ProviderDef>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderDef {
    pub id: String,
    #[serde(default)]
    pub name: String,
    /// Exact names or `*.suffix` wildcards (any depth below the suffix).
    pub domains: Vec<String>,
    /// Published dedicated address ranges (CIDR), matched by address too.
    #[serde(default)]
    pub cidrs: Vec<String>,
}

/// `indicators/local_inference.toml`.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServersFile {
    #[serde(default)]
    pub server: Vec<ServerDef>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerDef {
    pub id: String,
    /// comm or executable file name (globs).
    #[serde(default)]
    pub process_names: Vec<String>,
    /// Regexes over argv joined with spaces (`-m vllm.entrypoints`).
    #[serde(default)]
    pub argv: Vec<String>,
    /// Default listening ports (documentation and the `ports` condition).
    #[serde(default)]
    pub ports: Vec<u16>,
    /// Names too common to trust alone (`chat`): they match only when
    /// `requires_any` confirms them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub generic_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_any: Option<Confirmation>,
}

/// `indicators/agent_clis.toml`.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClisFile {
    #[serde(default)]
    pub cli: Vec<CliDef>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CliDef {
    pub id: String,
    /// comm, executable or script file name (globs).
    #[serde(default)]
    pub process_names: Vec<String>,
    /// Flags that make the agent act without asking. `--yolo` matches the
    /// argv entry `--yolo` or `--yolo=<anything>`; `--approval-mode yolo`
    /// (flag, space, value) matches the two entries `--approval-mode`
    /// `yolo`, the entry `--approval-mode=yolo` and, for a short flag
    /// (`-a never`), `-anever`.
    #[serde(default)]
    pub autonomous_flags: Vec<String>,
    /// Names too common to trust alone (`q`, `amp`, `goose`): they match
    /// only when `requires_any` confirms them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub generic_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_any: Option<Confirmation>,
}

/// What confirms a generic name: any one entry of any list holding.
/// Only what the process shows at exec is used (a connection comes later).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Confirmation {
    /// Regexes over argv joined with single spaces (`^\S*q (chat|login)`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub argv: Vec<String>,
    /// Globs over the executable path, the exec'd path and every argv
    /// entry (`**/node_modules/@sourcegraph/amp/**`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Globs over the comm of any ancestor.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ancestor_names: Vec<String>,
    /// Globs over the environment variable names recorded at exec (only
    /// names `[enrich] env_names` keeps; values are never read).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_names: Vec<String>,
}

/// `indicators/mcp_servers.toml`.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchersFile {
    #[serde(default)]
    pub launcher: Vec<LauncherDef>,
    /// Remote (HTTP) MCP servers, by destination name: same format as a
    /// provider of ai_endpoints.toml.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remote: Vec<ProviderDef>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LauncherDef {
    pub id: String,
    /// Regexes over argv joined with single spaces.
    pub argv: Vec<String>,
}

/// Path lists: model files, AI SDKs, GPU devices, other secrets. Prefixes
/// and suffixes are pushed into the kernel's path filters; `contains` is
/// matched in user space only (on opens reported for another reason).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathsFile {
    #[serde(default)]
    pub prefixes: Vec<String>,
    #[serde(default)]
    pub suffixes: Vec<String>,
    #[serde(default)]
    pub contains: Vec<String>,
    /// Paths relative to a home directory (`.ollama/models/blobs/`): they
    /// match under /root, every /home/<user> and every home in
    /// /etc/passwd, and are pushed to the kernel as one prefix per home
    /// that exists when the policy is loaded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub home_prefixes: Vec<String>,
}

/// `indicators/ai_credentials.toml`.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsFile {
    #[serde(default)]
    pub credential: Vec<CredentialDef>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialDef {
    pub id: String,
    /// Path suffixes (`/.claude/.credentials.json`), pushed to the kernel.
    pub suffixes: Vec<String>,
    /// Process names (globs) that own the file: their reads are expected.
    #[serde(default)]
    pub owners: Vec<String>,
}

/// `rules.toml`.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesFile {
    #[serde(default)]
    pub rule: Vec<RuleDef>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleDef {
    pub id: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    pub risk: RiskClass,
    pub reason: String,
    #[serde(default)]
    pub mitre_atlas: Vec<String>,
    #[serde(default)]
    pub mitre_attack: Vec<String>,
    #[serde(default)]
    pub owasp_llm: Vec<String>,
    pub when: Conditions,
    /// Checked in order when the rule matched: the first that also
    /// matches raises the risk and adds its reason.
    #[serde(default)]
    pub escalate: Vec<Escalation>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Escalation {
    pub risk: RiskClass,
    pub reason: String,
    pub when: Conditions,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Exec,
    Connect,
    Listen,
    FileOpen,
    /// An LLM API call seen in a watched process's TLS plaintext.
    LlmRequest,
    /// The tools an MCP server listed to a watched client, checked.
    McpToolDefinition,
}

/// Indicator lists a condition can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IndicatorRef {
    /// A destination name (or published range) of an AI API.
    AiApi,
    /// A destination of an AI gateway or proxy.
    AiGateway,
    /// A destination of a model hub (model weights and cards).
    ModelHub,
    /// The process is a local inference server.
    LocalInference,
    /// The process is an agent CLI.
    AgentCli,
    /// An agent CLI with one of its autonomous-mode flags.
    AutonomousMode,
    /// argv is an MCP server launch (exec), or the destination is a remote
    /// MCP server (connect).
    McpServer,
    ModelFile,
    AiSdk,
    AiCredential,
    GpuDevice,
    SecretFile,
}

/// Conditions of a rule: every one given must hold; a list inside one
/// condition matches when any entry does.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conditions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<Vec<EventKind>>,
    /// The process belongs to a registered agent (true) or not (false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub indicator: Option<IndicatorRef>,
    /// comm or executable file name (globs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_names: Option<Vec<String>>,
    /// None of these may match comm or the executable file name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_process_names: Option<Vec<String>>,
    /// Executable path globs (`/tmp/**`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe_paths: Option<Vec<String>>,
    /// Regexes over argv joined with single spaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argv: Option<Vec<String>>,
    /// Some ancestor's comm matches (globs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ancestor_names: Option<Vec<String>>,
    /// File path globs (file_open).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    /// connect: remote port; listen: local port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<u16>>,
    /// connect: remote address; listen: local address is loopback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loopback: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uids: Option<Vec<u32>>,
    /// With `indicator = "ai_credential"`: the process owns the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_owner: Option<bool>,
    /// connect by a registered agent to a destination outside its
    /// declared destinations or providers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outside_agent_scope: Option<bool>,
    /// mcp_tool_definition: the verdict of the definition checks is one
    /// of these (`clean`, `warning`, `dangerous`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_verdict: Option<Vec<String>>,
}
