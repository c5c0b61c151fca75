//! `observerctl`: the offline commands, working straight from the SQLite
//! receipt store opened read-only, and the clients of the daemon's control
//! socket (docs/observerctl.md). One file per command under `cmd/`, which
//! runs it; one module per command group beside it holding the work, thin
//! over the evidence crate (observer-receipts: queries, verification,
//! formats) and the daemon's library (configuration, policies, control
//! protocol), which it uses without the eBPF object, so this crate builds
//! with stable Rust alone; `bin/observerctl.rs` only parses, hands the
//! command line to [`cmd::run`] and reports errors.
pub mod agents;
pub mod audit_pack;
pub mod cli;
pub mod cmd;
pub mod daemon;
mod direct_file;
pub mod doctor;
pub mod erase;
pub mod export;
mod export_order;
pub mod fleet;
pub mod follow;
pub mod keys;
pub mod mcp;
pub mod output;
pub mod policy;
pub mod progress;
pub mod proof;
pub mod receipts;
pub mod selection;
pub mod stats;
pub mod time;
pub mod usage;
pub mod verify;

use std::path::{Path, PathBuf};

use observer_receipts::{
    json, keys as receipt_keys,
    store::{Store, StoreError},
};

pub use output::Output;

/// Why a command failed; each kind has its exit status and a stable name
/// in JSON error objects.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// Bad arguments or input files.
    #[error("{0}")]
    Usage(String),
    /// The store cannot be opened or read.
    #[error("{0}")]
    Store(String),
    /// The daemon is needed, or holds what we need.
    #[error("{0}")]
    Daemon(String),
    /// Something to verify did not verify.
    #[error("{0}")]
    Verification(String),
    /// Writing output failed.
    #[error("{0}")]
    Io(String),
    /// The control socket refused us.
    #[error("{0}")]
    Denied(String),
    /// A policy directory does not validate.
    #[error("{0}")]
    PolicyInvalid(String),
}

impl CtlError {
    pub fn kind(&self) -> &'static str {
        match self {
            CtlError::Usage(_) => "usage",
            CtlError::Store(_) => "store_unreadable",
            CtlError::Daemon(_) => "daemon",
            CtlError::Verification(_) => "verification_failed",
            CtlError::Io(_) => "io",
            CtlError::Denied(_) => "permission_denied",
            CtlError::PolicyInvalid(_) => "policy_invalid",
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            CtlError::Usage(_) => cli::EXIT_USAGE,
            CtlError::Store(_) => cli::EXIT_STORE,
            CtlError::Daemon(_) => cli::EXIT_DAEMON,
            CtlError::Verification(_) => cli::EXIT_VERIFY_FAILED,
            CtlError::Io(_) => cli::EXIT_USAGE,
            CtlError::Denied(_) => cli::EXIT_DENIED,
            CtlError::PolicyInvalid(_) => cli::EXIT_VERIFY_FAILED,
        }
    }
}

impl From<StoreError> for CtlError {
    fn from(e: StoreError) -> Self {
        CtlError::Store(e.to_string())
    }
}

impl From<observer_receipts::query::QueryError> for CtlError {
    fn from(e: observer_receipts::query::QueryError) -> Self {
        CtlError::Store(e.to_string())
    }
}

impl From<observer_receipts::verify::VerifyError> for CtlError {
    fn from(e: observer_receipts::verify::VerifyError) -> Self {
        use observer_receipts::verify::VerifyError;
        match e {
            VerifyError::Store(e) => CtlError::Store(e.to_string()),
            e @ VerifyError::MasterRotations(_) => CtlError::Verification(e.to_string()),
            e @ VerifyError::MasterKey(_) => CtlError::Usage(e.to_string()),
            VerifyError::Source(e) => CtlError::Store(e),
        }
    }
}

impl From<std::io::Error> for CtlError {
    fn from(e: std::io::Error) -> Self {
        CtlError::Io(format!("writing output: {e}"))
    }
}

/// Where things are: the store, and the master seed for the commands that
/// sign (audit-pack export, erase).
pub struct Paths {
    pub db: PathBuf,
    pub master_seed: PathBuf,
}

/// Opens the store read-only with a message that says what to do.
pub fn open_store(path: &Path) -> Result<Store, CtlError> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CtlError::Store(format!(
                "receipt store {} does not exist (set --db or --config)",
                path.display()
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(CtlError::Store(format!(
                "receipt store {}: permission denied (the store is root-only, mode 0600: run as root)",
                path.display()
            )))
        }
        Err(e) => {
            return Err(CtlError::Store(format!(
                "receipt store {}: {e}",
                path.display()
            )))
        }
        Ok(_) => {}
    }
    // SQLite opens lazily: touch the file now so a permission problem is
    // reported as such, not as a failed query later.
    if let Err(e) = std::fs::File::open(path) {
        let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
            " (the store is root-only, mode 0600: run as root)"
        } else {
            ""
        };
        return Err(CtlError::Store(format!(
            "receipt store {}: {e}{hint}",
            path.display()
        )));
    }
    Ok(Store::open_read_only(path)?)
}

/// Reads a pinned master public key: an AKP JWK file.
pub fn read_pubkey(path: &Path) -> Result<Vec<u8>, CtlError> {
    let text = std::fs::read(path)
        .map_err(|e| CtlError::Usage(format!("public key {}: {e}", path.display())))?;
    let jwk = json::parse_strict(&text)
        .map_err(|e| CtlError::Usage(format!("public key {}: {e}", path.display())))?;
    receipt_keys::public_key_from_jwk(&jwk)
        .map_err(|e| CtlError::Usage(format!("public key {}: {e}", path.display())))
}

/// Loads the master seed (root only).
pub fn load_master_seed(path: &Path) -> Result<receipt_keys::MasterSeed, CtlError> {
    receipt_keys::MasterSeed::load_existing(path)
        .map_err(|e| CtlError::Usage(format!("master seed {}: {e}", path.display())))
}

/// Parses a receipt reference: 64 hex digits (its receipt hash) or
/// `<agent_id>:<seq>` on that agent's chain.
pub fn resolve_receipt(store: &Store, reference: &str) -> Result<Vec<u8>, CtlError> {
    if reference.len() == 64 && reference.bytes().all(|b| b.is_ascii_hexdigit()) {
        return hex::decode(reference.to_ascii_lowercase())
            .map_err(|e| CtlError::Usage(format!("receipt hash {reference:?}: {e}")));
    }
    let (agent, seq) = reference
        .rsplit_once(':')
        .and_then(|(a, s)| Some((a, s.parse::<u64>().ok()?)))
        .ok_or_else(|| {
            CtlError::Usage(format!(
                "receipt {reference:?}: expected a receipt hash (64 hex digits) or <agent_id>:<seq>"
            ))
        })?;
    let hash = store.receipt_hash_at_seq(agent, seq)?;
    hash.ok_or_else(|| CtlError::Usage(format!("no receipt {agent}:{seq} in the store")))
}
