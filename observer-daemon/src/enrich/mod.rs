//! Enrichment helpers that turn raw kernel events into enriched events:
//! executable hashes, cgroup paths and their systemd/container meaning, user
//! and group names, and the names (never values) of interesting environment
//! variables.

pub mod cgroup;
pub mod environ;
pub mod exe_hash;
pub mod users;

pub use cgroup::CgroupResolver;
pub use environ::{EnvPattern, EnvPatternError};
pub use exe_hash::{ExeHashCache, HashError};
pub use users::UserNames;
