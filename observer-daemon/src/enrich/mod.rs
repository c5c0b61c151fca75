//! Enrichment: the enricher turns decoded kernel events into enriched
//! records from the process table (seeded by a /proc scan), executable
//! hashes, cgroup paths and their systemd/container meaning, user and group
//! names, the names (never values) of interesting environment variables,
//! and redacted command lines.

pub mod cgroup;
pub mod clock;
pub mod enricher;
pub mod environ;
pub mod exe_hash;
pub mod proc_scan;
pub mod process_table;
pub mod redact;
pub mod users;

pub use cgroup::CgroupResolver;
pub use environ::{EnvPattern, EnvPatternError};
pub use exe_hash::{ExeHashCache, HashError};
pub use users::UserNames;
