//! `observerctl fleet`: the command line of the fleet commands, over the
//! receipts many hosts forwarded into ClickHouse (docs/fleet.md).
use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{Filter, Window};

/// The pinned key directory's default: trust anchors are configuration.
pub const DEFAULT_KEYS_DIR: &str = "/etc/observer/fleet-keys";

#[derive(Subcommand, Debug)]
pub enum FleetCommand {
    /// Verify every host's log in the fleet store under the host's pinned
    /// master key: signatures, chain links, keys, the Merkle log against
    /// every checkpoint the host forwarded; report per host what is
    /// missing and the first failure. Exit 1 on any failure.
    Verify(FleetVerifyArgs),
    /// The hosts' pinned master keys (the only keys `fleet verify` trusts).
    #[command(subcommand)]
    Keys(FleetKeysCommand),
    /// Each host of the fleet store: receipts, chains, first and last
    /// issued, the newest checkpoint's size and age.
    Hosts(FleetHostsArgs),
    /// shadow_ai.finding receipts per host and rule: counts by risk, how
    /// many agents, first and last seen.
    Findings(FleetFindingsArgs),
    /// The agents of each host: receipts, counts by action, first and last
    /// seen.
    Agents(FleetAgentsArgs),
    /// The receipts of every host that match the filters of `receipts`, in
    /// time order, each with its host.
    // Boxed: the filters of `receipts` make it several times the others.
    Receipts(Box<FleetReceiptsArgs>),
}

/// Where the fleet store is.
#[derive(Args, Debug, Clone)]
pub struct ClickHouseArgs {
    /// ClickHouse's HTTP interface, e.g. http://127.0.0.1:8123 or
    /// https://clickhouse.example:8443.
    #[arg(long = "clickhouse", value_name = "URL")]
    pub url: String,
    /// The database of the receipts, checkpoints and keys tables.
    #[arg(long, value_name = "NAME", default_value = "observer")]
    pub database: String,
    /// The ClickHouse user (default: the server's default user). Not
    /// `--user`: that is the process user filter of `fleet receipts`.
    #[arg(id = "clickhouse_user", long = "clickhouse-user", value_name = "USER")]
    pub user: Option<String>,
    /// A file holding the password (mode 0600).
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Send the password over http:// (e.g. to a server on loopback).
    #[arg(long)]
    pub allow_password_over_http: bool,
    /// PEM CA certificates for https:// (default: the system bundle).
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
}

/// The directory of pinned keys.
#[derive(Args, Debug, Clone)]
pub struct KeysDirArg {
    /// The directory of the hosts' pinned master keys.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_KEYS_DIR)]
    pub keys_dir: PathBuf,
}

/// Which hosts a query reads.
#[derive(Args, Debug, Clone, Default)]
pub struct HostsArg {
    /// Only these hosts (repeat or separate with commas): a log origin
    /// `<deployer_id>/host/<hostname>`, or just a host name (no `/`); `*`
    /// and `?` are wildcards. Default: every host.
    #[arg(long, value_name = "HOST", value_delimiter = ',')]
    pub hosts: Vec<String>,
}

#[derive(Args, Debug)]
pub struct FleetHostsArgs {
    #[command(flatten)]
    pub clickhouse: ClickHouseArgs,
    #[command(flatten)]
    pub hosts: HostsArg,
}

#[derive(Args, Debug)]
pub struct FleetFindingsArgs {
    #[command(flatten)]
    pub clickhouse: ClickHouseArgs,
    #[command(flatten)]
    pub hosts: HostsArg,
    /// Only findings of these rules (the context's `rule_id`; a glob).
    #[arg(long, value_name = "GLOB")]
    pub rule: Vec<String>,
    #[command(flatten)]
    pub window: Window,
}

#[derive(Args, Debug)]
pub struct FleetAgentsArgs {
    #[command(flatten)]
    pub clickhouse: ClickHouseArgs,
    #[command(flatten)]
    pub hosts: HostsArg,
    /// Only these agents (a glob: `'unregistered:*'`).
    #[arg(long, value_name = "GLOB")]
    pub agent: Vec<String>,
    #[command(flatten)]
    pub window: Window,
}

#[derive(Args, Debug)]
pub struct FleetReceiptsArgs {
    #[command(flatten)]
    pub clickhouse: ClickHouseArgs,
    #[command(flatten)]
    pub hosts: HostsArg,
    #[command(flatten)]
    pub filter: Filter,
}

#[derive(Args, Debug)]
pub struct FleetVerifyArgs {
    #[command(flatten)]
    pub clickhouse: ClickHouseArgs,
    #[command(flatten)]
    pub keys: KeysDirArg,
    /// Only these hosts (log origins, `<deployer_id>/host/<hostname>`;
    /// repeat or separate with commas). Default: every host the store holds
    /// or a key is pinned for.
    #[arg(long, value_name = "HOST", value_delimiter = ',')]
    pub hosts: Vec<String>,
    /// Report only failures of receipts issued at or after TIME (every
    /// receipt is still checked: links and the Merkle log need them all).
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub since: Option<String>,
    /// Pin a host's genesis master key from the fleet store when none is
    /// pinned yet (and say so in the report). Without it such a host is
    /// reported unverified.
    #[arg(long)]
    pub trust_on_first_use: bool,
    /// Also verify every signature with the second ML-DSA-65 implementation.
    #[arg(long)]
    pub independent: bool,
}

#[derive(Subcommand, Debug)]
pub enum FleetKeysCommand {
    /// Pin HOST's genesis master public key (the JWK `observerctl keys
    /// export --master` prints on that host).
    Add {
        /// The host's log origin, `<deployer_id>/host/<hostname>`.
        host: String,
        /// The AKP JWK file.
        jwk: PathBuf,
        /// Replace a different key already pinned (a reinstalled host).
        #[arg(long)]
        replace: bool,
        #[command(flatten)]
        keys: KeysDirArg,
    },
    /// The pinned keys: host, kid, how and when pinned.
    List {
        #[command(flatten)]
        keys: KeysDirArg,
    },
}
