//! `[forwarding]` and `[[sinks]]` of observer.toml. Every key has a
//! documented default (also stated in observer.toml); unknown keys are
//! refused. Checks that need the sinks' own parsers are in `validate`.
use std::path::PathBuf;

use serde::Deserialize;

use crate::export::Format;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardingSection {
    /// Where each sink's cursor lives (`<dir>/<name>.cursor`). Default: a
    /// `sinks` directory beside the receipt store.
    pub cursor_dir: Option<PathBuf>,
    /// On SIGTERM, sinks get this long to deliver what is committed
    /// (including the final checkpoint) before the daemon exits. Default 5000.
    pub flush_timeout_ms: u64,
    /// How often an idle sink looks for new rows. Default 100.
    pub poll_interval_ms: u64,
}

impl Default for ForwardingSection {
    fn default() -> Self {
        ForwardingSection {
            cursor_dir: None,
            flush_timeout_ms: 5000,
            poll_interval_ms: 100,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkType {
    Syslog,
    Http,
    File,
    Clickhouse,
}

impl SinkEntry {
    /// `batch_max` as set, or the sink type's default.
    pub fn batch_max(&self) -> usize {
        self.batch_max.unwrap_or(match self.kind {
            SinkType::Clickhouse => 2_000,
            SinkType::Syslog | SinkType::Http | SinkType::File => 500,
        })
    }
}

impl SinkType {
    /// As `type` names it in observer.toml, metrics and status.
    pub fn as_str(self) -> &'static str {
        match self {
            SinkType::Syslog => "syslog",
            SinkType::Http => "http",
            SinkType::File => "file",
            SinkType::Clickhouse => "clickhouse",
        }
    }
}

/// One `[[sinks]]` entry. The settings table named like `type` is required
/// (`[sinks.syslog]`, `[sinks.http]`, `[sinks.file]` or `[sinks.clickhouse]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkEntry {
    /// Unique; letters, digits, '-', '_'. Names the cursor file.
    pub name: String,
    #[serde(rename = "type")]
    pub kind: SinkType,
    /// receipt | cloudevents | ocsf. Default receipt.
    #[serde(default = "default_format")]
    pub format: Format,
    /// Most records per delivery. Default 500, and 2000 for clickhouse:
    /// every INSERT there writes new parts that the server must merge, so
    /// a fleet of hosts draining backlogs wants few large inserts; 2000
    /// rows (about 14 MB) bound what the daemon holds per batch.
    #[serde(default)]
    pub batch_max: Option<usize>,
    /// Most records sent but not yet confirmed (syslog: waiting out
    /// `ack_delay_ms`). Bounds the duplicates one failure can cause, and a
    /// syslog sink's throughput to this many records per `ack_delay_ms`.
    /// At least `batch_max`. Default 50000.
    #[serde(default = "default_max_unconfirmed")]
    pub max_unconfirmed: usize,
    /// First retry delay; doubles per failure up to retry_max_ms, with
    /// jitter (a random delay in [d/2, d]). Defaults 200 and 30000.
    #[serde(default = "default_retry_initial_ms")]
    pub retry_initial_ms: u64,
    #[serde(default = "default_retry_max_ms")]
    pub retry_max_ms: u64,
    #[serde(default)]
    pub filter: FilterConfig,
    pub syslog: Option<SyslogConfig>,
    pub http: Option<HttpConfig>,
    pub file: Option<FileConfig>,
    pub clickhouse: Option<ClickHouseConfig>,
}

fn default_format() -> Format {
    Format::Receipt
}
fn default_max_unconfirmed() -> usize {
    50_000
}
fn default_retry_initial_ms() -> u64 {
    200
}
fn default_retry_max_ms() -> u64 {
    30_000
}

/// Which receipts a sink forwards; empty lists match everything.
/// Checkpoints are always forwarded.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterConfig {
    /// Agent ids (exact; "unregistered:*" matches every shadow agent).
    pub agents: Vec<String>,
    /// Action types, exact or a prefix ending in ".*" ("process.*").
    pub actions: Vec<String>,
    /// Risk classes: low, medium, high, unknown.
    pub risks: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyslogTransport {
    Tcp,
    Tls,
    Udp,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    /// host:port of the collector.
    pub address: String,
    /// tcp (RFC 6587 octet counting), tls (RFC 5425) or udp (RFC 5426, no
    /// acknowledgement at all). Default tcp.
    #[serde(default = "default_transport")]
    pub transport: SyslogTransport,
    #[serde(default)]
    pub tls: TlsConfig,
    /// Facility name (kern, user, daemon, auth, local0..local7). Default local0.
    #[serde(default = "default_facility")]
    pub facility: String,
    /// APP-NAME. Default "observerd".
    #[serde(default = "default_app_name")]
    pub app_name: String,
    /// A record counts as delivered once the collector's TCP stack acked
    /// it and the connection was still up this much later (time for the
    /// collector to read it from its socket). A reconnect re-sends every
    /// record not yet confirmed. Default 1000.
    #[serde(default = "default_ack_delay_ms")]
    pub ack_delay_ms: u64,
    /// Connect and write timeout. Default 10000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_transport() -> SyslogTransport {
    SyslogTransport::Tcp
}
fn default_facility() -> String {
    "local0".into()
}
fn default_app_name() -> String {
    "observerd".into()
}
fn default_ack_delay_ms() -> u64 {
    1000
}
fn default_timeout_ms() -> u64 {
    10_000
}

/// TLS client settings. The server certificate is always verified.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM CA certificates to trust. Default: the system bundle
    /// /etc/ssl/certs/ca-certificates.crt.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain and key (both or neither).
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Name checked against the server certificate. Default: the host of
    /// `address` / `url`.
    pub server_name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpEncoding {
    /// Splunk HEC event format: `{"time","host","source","sourcetype","event"}` objects.
    SplunkHec,
    /// Elastic `_bulk` NDJSON (`create` action per record).
    ElasticBulk,
    /// One JSON array of records.
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// http:// or https:// URL the batches are POSTed to.
    pub url: String,
    pub encoding: HttpEncoding,
    /// File holding the token (Splunk: "Authorization: Splunk <token>";
    /// others: "Authorization: Bearer <token>"). Must not be readable by
    /// group or others (mode 0600 or stricter). Default: none.
    pub token_file: Option<PathBuf>,
    /// Send the token over plain http:// anyway. Whoever listens on the
    /// URL's port gets it (a local user can bind it while the receiver is
    /// down), and so does every hop on the way. Default false: a
    /// token_file with an http:// URL is refused.
    #[serde(default)]
    pub allow_token_over_http: bool,
    /// "http://[user:password@]host:port" of an HTTP proxy (CONNECT tunnel
    /// for https:// URLs), or "direct". Wins over HTTPS_PROXY / HTTP_PROXY /
    /// NO_PROXY. Default: none (the environment decides).
    pub proxy: Option<String>,
    /// gzip request bodies. Default true.
    #[serde(default = "default_true")]
    pub gzip: bool,
    /// Elastic `_index` / Splunk `index`. Default: none (receiver's default).
    pub index: Option<String>,
    #[serde(default)]
    pub tls: TlsConfig,
    /// Connect, write and response timeout. Default 10000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// JSON-lines file (0600); rotated to `<path>.1`, `<path>.2` ...
    pub path: PathBuf,
    /// Rotate before a write would take the file past this size.
    /// Default 104857600 (100 MiB).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Rotated files kept (the oldest is deleted). Default 10.
    #[serde(default = "default_max_files")]
    pub max_files: u32,
}

fn default_max_bytes() -> u64 {
    100 << 20
}
fn default_max_files() -> u32 {
    10
}

/// `[sinks.clickhouse]`: rows inserted over ClickHouse's HTTP interface
/// into the tables of deploy/clickhouse/schema.sql (docs/fleet.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClickHouseConfig {
    /// http:// or https:// URL of the HTTP interface ("http://ch:8123").
    pub url: String,
    /// The database holding `receipts`, `checkpoints` and `keys`. Default
    /// "observer".
    #[serde(default = "default_database")]
    pub database: String,
    /// ClickHouse user. Default: none (the server's `default` user).
    pub user: Option<String>,
    /// File holding the user's password (HTTP Basic authentication). Must
    /// not be readable by group or others (mode 0600 or stricter). Default:
    /// none.
    pub password_file: Option<PathBuf>,
    /// Send the password over plain http:// anyway (as `allow_token_over_http`).
    /// Default false: a password_file with an http:// URL is refused.
    #[serde(default)]
    pub allow_password_over_http: bool,
    /// As for the http sink: "http://[user:password@]host:port" or "direct".
    pub proxy: Option<String>,
    /// gzip request bodies. Default false: a row is mostly its ML-DSA-65
    /// signature in base64, so gzip saves only about 45% of the bytes,
    /// and at zlib's fastest level (about 50 MB/s per core on the bench
    /// machine) it capped the sink at 7,500 receipts/s, against 20,000
    /// without (`cargo xtask bench fleet`). For links where bandwidth is
    /// scarcer than the host's CPU.
    #[serde(default)]
    pub gzip: bool,
    #[serde(default)]
    pub tls: TlsConfig,
    /// Connect, write and response timeout. Default 10000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// A batch holding fewer than `batch_max` receipts waits until this
    /// long after the previous insert (a full batch goes at once): every
    /// insert makes parts ClickHouse must merge, and it wants few large
    /// inserts, not one per poll from every host. 0: no wait. Default 1000.
    #[serde(default = "default_insert_interval_ms")]
    pub insert_interval_ms: u64,
}

fn default_database() -> String {
    "observer".into()
}
fn default_insert_interval_ms() -> u64 {
    1000
}
