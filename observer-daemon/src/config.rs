//! `observer.toml`: serde structs with documented defaults, validated into
//! [`Config`]. Unknown keys are errors that name the key, line and column.
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: invalid value for `{field}`: {reason}")]
    Invalid {
        path: PathBuf,
        field: &'static str,
        reason: String,
    },
}

/// The whole file. Every section and key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConfigFile {
    /// Policy directory (agents.toml, rules.toml, indicators/): see
    /// docs/policies.md. Default: none (the built-in set).
    /// Must come before the first `[section]` in the file.
    pub policies_dir: Option<PathBuf>,
    /// Without a policy directory (or while it is missing), use the policy
    /// set built into the binary. Default true; false keeps only
    /// observer.toml's `[[agents]]` (no shadow-AI rules) then.
    pub builtin_policies: Option<bool>,
    pub kernel: KernelSection,
    pub files: FilesSection,
    pub watch: WatchSection,
    pub enrich: EnrichSection,
    pub pipeline: PipelineSection,
    pub receipts: ReceiptsSection,
    pub agents: Vec<AgentEntry>,
    pub names: crate::names::config::NamesSection,
    pub forwarding: crate::forward::config::ForwardingSection,
    pub sinks: Vec<crate::forward::config::SinkEntry>,
    pub metrics: crate::service::metrics::config::MetricsSection,
    pub control: crate::control::config::ControlSection,
    pub plaintext: crate::stream::config::PlaintextSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KernelSection {
    /// Ring buffer size in bytes: a power of two, at least one page.
    /// Default 8 MiB.
    pub ring_buffer_bytes: u32,
    /// Wake the reader once this many bytes wait in the ring buffer; below
    /// that the reader polls every `poll_interval_ms`. 0 wakes on every
    /// event. Default 64 KiB.
    pub wakeup_bytes: u64,
    /// Reader poll period in milliseconds. Default 10.
    pub poll_interval_ms: u64,
    /// Repeat opens of one path by one process inside this window are
    /// suppressed in the kernel (and counted). 0 disables. Default 1000.
    pub open_dedup_ms: u64,
    /// How often kernel counters are read for loss accounting. Default 1000.
    pub counters_interval_ms: u64,
    /// BTF of the running kernel, for structure offsets.
    /// Default /sys/kernel/btf/vmlinux.
    pub btf_path: PathBuf,
}

impl Default for KernelSection {
    fn default() -> Self {
        KernelSection {
            ring_buffer_bytes: 8 * 1024 * 1024,
            wakeup_bytes: 64 * 1024,
            poll_interval_ms: 10,
            open_dedup_ms: 1000,
            counters_interval_ms: 1000,
            btf_path: PathBuf::from("/sys/kernel/btf/vmlinux"),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilesSection {
    /// Opens of paths starting with one of these are reported (absolute
    /// paths as passed to open; at most 255 bytes each).
    pub prefixes: Vec<String>,
    /// Opens of paths ending with one of these are reported (at most 64
    /// bytes each).
    pub suffixes: Vec<String>,
}

impl Default for FilesSection {
    fn default() -> Self {
        FilesSection {
            prefixes: [
                "/root/.ssh/",
                "/root/.aws/",
                "/etc/shadow",
                "/etc/sudoers",
                "/dev/nvidia",
                "/dev/kfd",
            ]
            .map(String::from)
            .to_vec(),
            suffixes: [
                ".gguf",
                ".ggml",
                ".safetensors",
                ".llamafile",
                ".onnx",
                ".ckpt",
                ".keras",
                ".tflite",
                ".pte",
                "/.claude/.credentials.json",
                "/.codex/auth.json",
                "/.gemini/oauth_creds.json",
                "/.config/gh/hosts.yml",
                "/.local/share/opencode/auth.json",
                "/.aws/credentials",
                "/.ssh/id_rsa",
                "/.ssh/id_ed25519",
                "/.netrc",
                "/.git-credentials",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WatchSection {
    /// Executables (exact paths) whose processes, and every descendant,
    /// have all their file opens reported. Until the agent registry lands
    /// this is how an agent is named.
    pub executables: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnrichSection {
    /// Environment variable names (exact, `PREFIX_*` or `*_SUFFIX`) whose
    /// presence is recorded at exec. Values are never read into events.
    /// Default: AI provider keys and agent settings.
    pub env_names: Option<Vec<String>>,
    /// Processes kept in the process table. Default 65536.
    pub process_table_capacity: usize,
    /// Executables larger than this are not hashed. Default 256 MiB.
    pub hash_max_bytes: u64,
}

impl Default for EnrichSection {
    fn default() -> Self {
        EnrichSection {
            env_names: None,
            process_table_capacity: 65536,
            hash_max_bytes: 256 << 20,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineSection {
    /// Events buffered between the ring-buffer reader and enrichment; when
    /// full, the reader drops (and counts) rather than block. Default 65536.
    pub channel_capacity: usize,
}

impl Default for PipelineSection {
    fn default() -> Self {
        PipelineSection {
            channel_capacity: 65536,
        }
    }
}

/// `[receipts] file_open_fold`: how an agent process's opens within
/// `file_open_window_ms` become receipts. Paths on the sensitive indicator
/// lists keep a receipt per path either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileOpenFold {
    /// One receipt per agent (chain) and window listing each distinct open
    /// with the process that made it (`pid`, `exe`): a build that spawns
    /// hundreds of processes costs a few receipts per second.
    Agent,
    /// One receipt per process and window listing each distinct open; a
    /// process's list ends when it execs or exits.
    Process,
    /// One receipt per (process, path, window), the layout before opens
    /// were listed: an analyst who wants a row per path, and the
    /// benchmark's baseline.
    Path,
}

impl FileOpenFold {
    pub fn as_str(self) -> &'static str {
        match self {
            FileOpenFold::Agent => "agent",
            FileOpenFold::Process => "process",
            FileOpenFold::Path => "path",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReceiptsSection {
    /// Write signed observation receipts. Default true.
    pub enabled: bool,
    /// SQLite store (created 0600). Default /var/lib/observer/observer.db.
    pub store: PathBuf,
    /// 32-byte master seed (created 0600 on first start). Every chain key
    /// derives from it. Default /var/lib/observer/master.seed.
    pub master_seed: PathBuf,
    /// The deployer's LEI, EIN or DID, the first part of every issuer_id.
    /// Default: a stable id of this host derived from /etc/machine-id
    /// (`urn:uuid:...`, see [`crate::deployer`]); set it.
    pub deployer_id: Option<String>,
    /// Host name in issuer ids. Default: the kernel's host name.
    pub hostname: Option<String>,
    /// "payload" keeps each receipt's context; "hash" keeps only its digest
    /// (agent chains; the observer's own receipts always keep theirs).
    pub mode: crate::receipt::payload::Mode,
    /// A signed checkpoint at least this often while receipts flow.
    /// Default 1000.
    pub checkpoint_interval_ms: u64,
    /// ML-DSA-65 signing threads. Default 2.
    pub signing_threads: usize,
    /// Receipts queued for signing and for the writer. Default 4096.
    pub queue_capacity: usize,
    /// Most receipts per SQLite transaction. Default 1024.
    pub batch_max: usize,
    /// While the store's file system is full, most signed receipts held in
    /// memory (about 6 KB each); later ones are dropped, counted and
    /// reported once there is room. Default 8192.
    pub full_hold_max: usize,
    /// The opens of one agent process within this window become one
    /// file.open receipt listing its paths (sensitive paths: one receipt
    /// per path). Default 1000; 0: a receipt per open.
    pub file_open_window_ms: u64,
    /// What one `file.open` receipt covers within the window. Default
    /// "agent": every open of the agent's processes, listed.
    pub file_open_fold: FileOpenFold,
    /// Failed execs of a PATH search fold into the receipt of the exec
    /// that ends it (`exec.path_search`). Default true; false gives every
    /// attempt its own receipt.
    pub path_search_fold: bool,
    /// Delete receipts older than this ("90d", "12h"); the deleted prefix
    /// is replaced by a signed anchor, so the rest still verifies. Default:
    /// keep everything.
    pub retention: Option<String>,
}

impl Default for ReceiptsSection {
    fn default() -> Self {
        ReceiptsSection {
            enabled: true,
            store: PathBuf::from("/var/lib/observer/observer.db"),
            master_seed: PathBuf::from("/var/lib/observer/master.seed"),
            deployer_id: None,
            hostname: None,
            mode: crate::receipt::payload::Mode::Payload,
            checkpoint_interval_ms: 1000,
            signing_threads: 2,
            queue_capacity: 4096,
            batch_max: 1024,
            full_hold_max: crate::receipt::pipeline::DEFAULT_FULL_HOLD_MAX,
            file_open_window_ms: 1000,
            file_open_fold: FileOpenFold::Agent,
            path_search_fold: true,
            retention: None,
        }
    }
}

/// A registered agent (interim form until policies/agents.toml lands):
/// processes that exec one of `executables` (exact path of the binary or
/// of the script an interpreter runs), and all their descendants, are it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentEntry {
    pub id: String,
    pub executables: Vec<String>,
    /// What of its LLM and MCP traffic is kept: `none` (the default),
    /// `redacted` or `full` (docs/events.md).
    #[serde(default)]
    pub capture_content: crate::policy::capture::CaptureContent,
}

/// A validated configuration.
#[derive(Debug)]
pub struct Config {
    pub source: Option<PathBuf>,
    pub policies_dir: Option<PathBuf>,
    /// See [`ConfigFile::builtin_policies`].
    pub builtin_policies: bool,
    pub kernel: KernelSection,
    pub files: FilesSection,
    pub watch: WatchSection,
    pub enrich: EnrichSection,
    pub pipeline: PipelineSection,
    pub receipts: ReceiptsSection,
    pub agents: Vec<AgentEntry>,
    pub names: crate::names::config::NamesSection,
    /// Forwarding to SIEMs: docs/forwarding.md.
    pub forwarding: crate::forward::config::ForwardingSection,
    pub sinks: Vec<crate::forward::config::SinkEntry>,
    pub metrics: crate::service::metrics::config::MetricsSection,
    /// The control socket: docs/observerctl.md.
    pub control: crate::control::config::ControlSection,
    pub plaintext: crate::stream::config::PlaintextSection,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let file: ConfigFile = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: describe_toml_error(text, &e),
        })?;
        Self::validate(file, Some(path.to_owned()))
    }

    pub fn defaults() -> Config {
        Self::validate(ConfigFile::default(), None).expect("built-in defaults are valid")
    }

    fn validate(file: ConfigFile, source: Option<PathBuf>) -> Result<Config, ConfigError> {
        let path = source
            .clone()
            .unwrap_or_else(|| PathBuf::from("<defaults>"));
        let invalid = |field, reason: String| ConfigError::Invalid {
            path: path.clone(),
            field,
            reason,
        };
        let rb = file.kernel.ring_buffer_bytes;
        if !rb.is_power_of_two() || rb < 4096 {
            return Err(invalid(
                "kernel.ring_buffer_bytes",
                format!("{rb} is not a power of two >= 4096"),
            ));
        }
        if file.kernel.poll_interval_ms == 0 || file.kernel.counters_interval_ms == 0 {
            return Err(invalid(
                "kernel.poll_interval_ms",
                "intervals must be > 0".into(),
            ));
        }
        for p in &file.files.prefixes {
            if p.is_empty() || p.len() >= observer_common::PREFIX_KEY_LEN {
                return Err(invalid(
                    "files.prefixes",
                    format!("{p:?} must be 1..255 bytes"),
                ));
            }
        }
        for s in &file.files.suffixes {
            if s.is_empty() || s.len() > observer_common::SUFFIX_KEY_LEN {
                return Err(invalid(
                    "files.suffixes",
                    format!("{s:?} must be 1..64 bytes"),
                ));
            }
        }
        for x in &file.watch.executables {
            if !x.starts_with('/') || x.len() >= observer_common::PREFIX_KEY_LEN - 1 {
                return Err(invalid(
                    "watch.executables",
                    format!("{x:?} must be an absolute path of < 255 bytes"),
                ));
            }
        }
        if file.pipeline.channel_capacity == 0 || file.enrich.process_table_capacity == 0 {
            return Err(invalid(
                "pipeline.channel_capacity",
                "capacities must be > 0".into(),
            ));
        }
        let r = &file.receipts;
        if r.checkpoint_interval_ms == 0
            || r.signing_threads == 0
            || r.queue_capacity == 0
            || r.batch_max == 0
        {
            return Err(invalid(
                "receipts",
                "checkpoint_interval_ms, signing_threads, queue_capacity and batch_max must be > 0"
                    .into(),
            ));
        }
        if let Some(id) = &r.deployer_id {
            if id.is_empty() || id.contains(char::is_whitespace) {
                return Err(invalid(
                    "receipts.deployer_id",
                    format!("{id:?} must be a non-empty id without spaces"),
                ));
            }
        }
        if let Some(text) = &r.retention {
            match humantime::parse_duration(text) {
                Ok(d) if d >= std::time::Duration::from_secs(1) => {}
                Ok(_) => {
                    return Err(invalid(
                        "receipts.retention",
                        format!("{text:?} is shorter than 1s"),
                    ))
                }
                Err(e) => return Err(invalid("receipts.retention", format!("{text:?}: {e}"))),
            }
        }
        file.names
            .validate()
            .map_err(|(field, reason)| invalid(field, reason))?;
        let mut seen = std::collections::HashSet::new();
        for a in &file.agents {
            let valid = !a.id.is_empty()
                && a.id != crate::receipt::payload::OBSERVER_AGENT
                && !a.id.starts_with("unregistered:")
                && a.id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !valid {
                return Err(invalid(
                    "agents.id",
                    format!("{:?}: use letters, digits, '-', '_' or '.'; \"observer\" and \"unregistered:*\" are reserved", a.id),
                ));
            }
            if !seen.insert(a.id.as_str()) {
                return Err(invalid(
                    "agents.id",
                    format!("{:?} is registered twice", a.id),
                ));
            }
            if a.executables.is_empty()
                || a.executables
                    .iter()
                    .any(|x| !x.starts_with('/') || x.len() >= observer_common::PREFIX_KEY_LEN - 1)
            {
                return Err(invalid(
                    "agents.executables",
                    format!(
                        "agent {:?} needs one or more absolute paths of < 255 bytes",
                        a.id
                    ),
                ));
            }
        }
        crate::forward::validate::sinks(&file.sinks)
            .map_err(|(field, reason)| invalid(field, reason))?;
        if file.forwarding.poll_interval_ms == 0 {
            return Err(invalid("forwarding.poll_interval_ms", "must be > 0".into()));
        }
        if let Some(listen) = &file.metrics.listen {
            crate::service::metrics::config::parse_listen(listen)
                .map_err(|e| invalid("metrics.listen", e.to_string()))?;
        }
        if file.metrics.max_connections == 0 {
            return Err(invalid("metrics.max_connections", "must be > 0".into()));
        }
        if file.metrics.request_timeout_ms == 0 {
            return Err(invalid("metrics.request_timeout_ms", "must be > 0".into()));
        }
        file.control
            .validate()
            .map_err(|(field, reason)| invalid(field, reason))?;
        file.plaintext
            .validate()
            .map_err(|(field, reason)| invalid(field, reason))?;
        Ok(Config {
            source,
            policies_dir: file.policies_dir,
            builtin_policies: file.builtin_policies.unwrap_or(true),
            kernel: file.kernel,
            files: file.files,
            watch: file.watch,
            enrich: file.enrich,
            pipeline: file.pipeline,
            receipts: file.receipts,
            agents: file.agents,
            names: file.names,
            forwarding: file.forwarding,
            sinks: file.sinks,
            metrics: file.metrics,
            control: file.control,
            plaintext: file.plaintext,
        })
    }
}

/// toml's message plus "line L, column C" computed from the error span.
fn describe_toml_error(text: &str, err: &toml::de::Error) -> String {
    let message = err.message().trim().to_string();
    match err.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
}

#[cfg(test)]
mod tests;
