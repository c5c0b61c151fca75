//! The `observerctl` command line. Only clap and std here: `cargo xtask
//! man` includes this file to generate the man pages and shell completions
//! from the same definitions the binary parses.
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub mod fleet;

/// Exit status: success.
pub const EXIT_OK: u8 = 0;
/// Exit status: a verification failed (receipts, proof, audit pack).
pub const EXIT_VERIFY_FAILED: u8 = 1;
/// Exit status: bad usage or bad input (arguments, times, files).
pub const EXIT_USAGE: u8 = 2;
/// Exit status: the daemon is needed but unreachable, or it holds the store.
pub const EXIT_DAEMON: u8 = 3;
/// Exit status: the receipt store cannot be opened or read.
pub const EXIT_STORE: u8 = 4;
/// Exit status: the control socket refused us (not root, not in its group).
pub const EXIT_DENIED: u8 = 5;
/// Exit status: `doctor` found a check that failed.
pub const EXIT_DOCTOR_FAILED: u8 = 6;

#[derive(Parser, Debug)]
#[command(
    name = "observerctl",
    version,
    about = "Query, verify and prove the observer's signed receipts",
    long_about = "Query, verify and prove the observer's signed observation receipts. \
                  These commands read the SQLite receipt store directly (read-only); the \
                  daemon does not need to run.\n\nExit status: 0 ok, 1 verification failure, \
                  2 usage or bad input, 3 daemon unreachable or holding the store, 4 store \
                  unreadable, 5 refused by the control socket, 6 a doctor check failed. \
                  `status`, `agents tree` and `policy show` ask the running daemon over its \
                  control socket."
)]
pub struct Cli {
    /// The receipt store. Default: receipts.store of --config, else
    /// /var/lib/observer/observer.db.
    #[arg(long, value_name = "PATH", global = true)]
    pub db: Option<PathBuf>,
    /// The daemon's configuration (for the default store, master seed,
    /// control socket and policy directory). Default:
    /// /etc/observer/observer.toml when it exists, else the built-in defaults.
    #[arg(long, value_name = "PATH", global = true)]
    pub config: Option<PathBuf>,
    /// The daemon's control socket. Default: control.socket of --config,
    /// else /run/observer/observer.sock.
    #[arg(long, value_name = "PATH", global = true)]
    pub socket: Option<PathBuf>,
    /// One JSON document on stdout (errors as {"error": {...}}).
    #[arg(long, global = true, conflicts_with = "jsonl")]
    pub json: bool,
    /// JSON lines: one object per row (lists), else as --json.
    #[arg(long, global = true)]
    pub jsonl: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List receipts matching filters, in time order; `receipts show` one.
    #[command(visible_alias = "events", args_conflicts_with_subcommands = true)]
    Receipts {
        #[command(subcommand)]
        show: Option<ReceiptsCommand>,
        #[command(flatten)]
        filter: Filter,
    },
    /// The latest matching receipts; with -f, then every new one as the
    /// daemon commits it (streamed over the control socket: root or the
    /// socket's group). Readable live view on a terminal, rows with --jsonl.
    Tail {
        /// Keep printing receipts as they are committed, until interrupted.
        #[arg(short = 'f', long)]
        follow: bool,
        /// How many of the latest matches to print first.
        #[arg(short = 'n', long, default_value_t = 10, value_name = "N")]
        lines: u64,
        #[command(flatten)]
        filter: Filter,
    },
    /// Agent chains: first/last seen, receipt counts, chain head, key id;
    /// `agents tree PID` asks the daemon for a process tree.
    #[command(args_conflicts_with_subcommands = true)]
    Agents {
        #[command(subcommand)]
        tree: Option<AgentsCommand>,
    },
    /// The running daemon: probes, events/s, drops, receipts, chains, last
    /// checkpoint, policy digest, sink backlogs (over the control socket).
    Status,
    /// Check the host: privileges, BTF, tracefs, cgroup2, and load and
    /// attach every eBPF program type the daemon uses. No daemon needed.
    Doctor,
    /// Validate a policy directory, or show the policy set in force.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// shadow_ai.finding receipts grouped by agent, executable, user,
    /// indicator and rule.
    Shadow {
        #[command(flatten)]
        window: Window,
    },
    /// LLM API use from the llm.request receipts: requests and tokens
    /// (input, output, cached input) per agent, provider and model.
    Usage {
        /// Only this agent (a glob: `unregistered:*`).
        #[arg(long, value_name = "AGENT")]
        agent: Option<String>,
        #[command(flatten)]
        window: Window,
    },
    /// MCP servers per agent from the mcp.* receipts: each tool a server
    /// listed or the agent called, the calls, errors and calls never
    /// answered, and the worst verdict of the server's tool definitions.
    Mcp {
        /// Only this agent (a glob: `unregistered:*`).
        #[arg(long, value_name = "AGENT")]
        agent: Option<String>,
        #[command(flatten)]
        window: Window,
    },
    /// What happened on this host: per agent and unregistered executable
    /// the counts by action, findings by rule and risk, the top
    /// destinations; over the receipts the filters select (e.g. `--since
    /// today`).
    #[command(visible_alias = "summary")]
    Stats {
        #[command(flatten)]
        selection: Selection,
        /// How many destinations to list.
        #[arg(long, default_value_t = 10, value_name = "N")]
        top: usize,
    },
    /// Verify the store offline (every check of RECEIPTS.md); exit 1 on
    /// any failure, naming the first.
    Verify(VerifyArgs),
    /// Write an inclusion proof (c2sp.org/tlog-proof) of a receipt against
    /// the latest checkpoint, with the receipt and its key announcement.
    Proof {
        /// Receipt hash (64 hex) or `<agent_id>:<seq>`.
        receipt: String,
        /// Write to FILE instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Mode of the file written (octal). Default 0600: it is a copy
        /// of what the 0600 store holds; widen it explicitly, e.g. 0640.
        #[arg(long, value_name = "OCTAL", default_value = "0600", value_parser = parse_mode)]
        mode: u32,
    },
    /// Check a proof file offline with only the pinned master public key.
    VerifyProof {
        /// A file written by `observerctl proof`.
        file: PathBuf,
        /// The pinned master public key (AKP JWK file).
        #[arg(long, value_name = "FILE")]
        pubkey: PathBuf,
    },
    /// Signed audit packs of a time window (RECEIPTS.md "Audit pack").
    #[command(subcommand)]
    AuditPack(AuditPackCommand),
    /// The public keys of the store.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Export receipts (and, without content filters, the signed
    /// checkpoints) in log order, one JSON object per line: OCSF 1.3.0
    /// events, CloudEvents 1.0, or the signed envelopes with their
    /// contexts (jsonl).
    Export(ExportArgs),
    /// Erase a receipt's context (right to erasure), recorded as an
    /// observer.policy receipt. Offline only: refused while the daemon
    /// holds the store.
    Erase {
        /// Receipt hash (64 hex) or `<agent_id>:<seq>`.
        receipt: String,
        /// Why (recorded in the erasure receipt).
        #[arg(long, default_value = "erasure request")]
        reason: String,
        /// The master seed. Default: receipts.master_seed of --config.
        #[arg(long, value_name = "FILE")]
        master_seed: Option<PathBuf>,
    },
    /// The receipts many hosts forwarded into ClickHouse: verify every
    /// host under its pinned master key; pin the hosts' keys; list the
    /// hosts, their agents and findings, and receipts across hosts.
    #[command(subcommand)]
    Fleet(fleet::FleetCommand),
}

#[derive(Subcommand, Debug)]
pub enum AgentsCommand {
    /// A process's ancestors and descendants with their agent, from the
    /// daemon's live process table.
    Tree {
        /// Process id.
        pid: u32,
    },
}

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Validate a policy directory offline (as `observerd
    /// --check-policies`); exit 1 naming file:line:column when invalid.
    Check {
        /// The directory (agents.toml, rules.toml, indicators/).
        dir: PathBuf,
    },
    /// The policy set in force and its digest: from the daemon when it is
    /// reachable, else loaded from the configured policy directory.
    Show,
}

#[derive(Subcommand, Debug)]
pub enum ReceiptsCommand {
    /// One receipt with its context and its verification result.
    Show {
        /// Receipt hash (64 hex) or `<agent_id>:<seq>`.
        receipt: String,
        /// Pinned master public key (AKP JWK file) to check the key
        /// announcement; without it the chain key is checked against its
        /// announcement only.
        #[arg(long, value_name = "FILE")]
        pubkey: Option<PathBuf>,
    },
}

/// A time window. TIME: a duration before now (`-1h`, `1h ago`, `30m`,
/// `2d`), `now`, `today` or `yesterday` (local midnight), a local date or
/// time (`2026-12-01`, `"2026-12-01 18:00"`, `"2026-12-01 18:00:05"`), or
/// RFC 3339 with an offset (`2026-12-01T18:00:00Z`). Local: the TZ
/// variable, else /etc/localtime.
#[derive(Args, Debug, Clone, Default)]
pub struct Window {
    /// Only receipts issued at or after TIME: -1h, 1h ago, 30m, now, today,
    /// yesterday, 2026-12-01, "2026-12-01 18:00[:05]" (local time), or RFC
    /// 3339 (2026-12-01T18:00:00Z).
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub since: Option<String>,
    /// Only receipts issued at or before TIME (forms as --since).
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub until: Option<String>,
}

/// Which receipts: the filters `receipts`, `tail`, `export` and `stats`
/// share. Values are globs (`*`, `?`; anything else literal); a flag given
/// twice matches either value, different flags must all match.
#[derive(Args, Debug, Clone, Default)]
pub struct Selection {
    /// Agent id, e.g. `claude` or `'unregistered:*'`. Every GLOB: `*` and
    /// `?` are wildcards; a flag given twice matches either value.
    #[arg(long, value_name = "GLOB")]
    pub agent: Vec<String>,
    /// Action type, e.g. process.exec or `'network.*'`.
    #[arg(long, value_name = "GLOB")]
    pub action: Vec<String>,
    /// Risk class.
    #[arg(long, value_enum)]
    pub risk: Vec<Risk>,
    /// User of the acting process: name, or uid when all digits.
    #[arg(long, value_name = "GLOB")]
    pub user: Vec<String>,
    /// Rule id of a shadow_ai.finding.
    #[arg(long, value_name = "GLOB")]
    pub rule: Vec<String>,
    /// Destination: remote address, `address:port`, or a name it is known
    /// by (DNS, SNI); a finding's matched destination.
    #[arg(long, value_name = "GLOB")]
    pub dst: Vec<String>,
    /// File path of a file.open (or a finding's matched path).
    #[arg(long, value_name = "GLOB")]
    pub path: Vec<String>,
    /// systemd unit of the acting process.
    #[arg(long, value_name = "GLOB")]
    pub unit: Vec<String>,
    /// Process id in the context, or of an entry of a file.open list.
    #[arg(long)]
    pub pid: Vec<u32>,
    /// Executable: its path in the context or in a file.open list's entry
    /// (a glob), or its sha256 (`sha256:<hex>` or 64 hex).
    #[arg(long, value_name = "PATH|HASH")]
    pub exe: Vec<String>,
    /// Chain (issuer_id).
    #[arg(long, value_name = "GLOB")]
    pub chain: Vec<String>,
    #[command(flatten)]
    pub window: Window,
}

/// A selection and how many of its matches to list.
#[derive(Args, Debug, Clone, Default)]
pub struct Filter {
    #[command(flatten)]
    pub selection: Selection,
    /// At most N receipts: the N most recent matches, printed in log order.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Risk {
    Low,
    Medium,
    High,
    Unknown,
}

impl Risk {
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Low => "low",
            Risk::Medium => "medium",
            Risk::High => "high",
            Risk::Unknown => "unknown",
        }
    }
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Report only failures of receipts issued at or after TIME (the whole
    /// log is still checked: links and the Merkle root need every receipt).
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub since: Option<String>,
    /// Report only failures of this chain (issuer_id).
    #[arg(long, value_name = "ISSUER_ID")]
    pub chain: Option<String>,
    /// Also verify every signature with the second ML-DSA-65 implementation.
    #[arg(long)]
    pub independent: bool,
    /// The pinned master public key (AKP JWK file).
    #[arg(long, value_name = "FILE")]
    pub pubkey: Option<PathBuf>,
    /// Derive the master public key from this seed (root). Default, without
    /// --pubkey: receipts.master_seed of --config.
    #[arg(long, value_name = "FILE", conflicts_with = "pubkey")]
    pub master_seed: Option<PathBuf>,
    /// A signed checkpoint kept off-host (repeatable): the log must still
    /// contain it.
    #[arg(long, value_name = "NOTE")]
    pub checkpoint: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Record format.
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// Write to FILE (via FILE.tmp, fsynced, then renamed) instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Mode of the --out file (octal). Default 0600: an export is a copy
    /// of what the 0600 store holds; widen it explicitly, e.g. 0640.
    #[arg(long, value_name = "OCTAL", default_value = "0600", value_parser = parse_mode)]
    pub mode: u32,
    #[command(flatten)]
    pub selection: Selection,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// OCSF 1.3.0 events (Process, Network, File System, DNS Activity,
    /// Detection Finding; Base Event otherwise).
    Ocsf,
    /// CloudEvents 1.0 structured JSON, the signed receipt in `data`.
    Cloudevents,
    /// The signed envelope and its context as stored.
    Jsonl,
}

#[derive(Subcommand, Debug)]
pub enum AuditPackCommand {
    /// Write the signed audit pack of the receipts issued in [start, end].
    Export {
        #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
        start: String,
        #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
        end: String,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Mode of the file written (octal). Default 0600: it is a copy
        /// of what the 0600 store holds; widen it explicitly, e.g. 0640.
        #[arg(long, value_name = "OCTAL", default_value = "0600", value_parser = parse_mode)]
        mode: u32,
        /// The master seed that signs the pack. Default: receipts.master_seed of --config.
        #[arg(long, value_name = "FILE")]
        master_seed: Option<PathBuf>,
    },
    /// Verify an audit pack offline with only the pinned master public key.
    Verify {
        bundle: PathBuf,
        /// The pinned master public key (AKP JWK file).
        #[arg(long, value_name = "FILE")]
        pubkey: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// The keys: kid, chain, agent.
    Show,
    /// The JWK Set of the master and chain public keys.
    Export {
        /// Only the genesis master public key, as one JWK (the key to pin).
        #[arg(long)]
        master: bool,
    },
    /// Rotate the master key (root; asks the running daemon): a new random
    /// master seed, recorded by an observer.key receipt the old master
    /// signs; chain keys follow lazily. Old receipts keep verifying under
    /// the pinned genesis key.
    Rotate {
        /// Why, recorded in the rotation receipt.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
}

/// An output file mode: octal permission bits, at most 0777 (no set-id or
/// sticky bits on an export).
pub fn parse_mode(text: &str) -> Result<u32, String> {
    let mode = u32::from_str_radix(text, 8)
        .map_err(|_| format!("{text:?} is not an octal mode such as 0640"))?;
    if mode > 0o777 {
        return Err(format!("{text:?}: only permission bits (at most 0777)"));
    }
    Ok(mode)
}
