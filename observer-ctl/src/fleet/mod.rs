//! The fleet store: the receipts, checkpoints and keys many hosts'
//! `clickhouse` sinks forward into one ClickHouse (docs/fleet.md).
//! `clickhouse` reads it, `keys` holds the hosts' pinned master keys,
//! `source` hands one host's log from it to the verifier (its receipts
//! read ahead by `host_rows`) and `verify`
//! checks each host; `query` lists hosts, agents, findings and receipts
//! across the hosts (its conditions from `sql` and `context_filter`).
pub mod clickhouse;
mod context_filter;
mod host_rows;
pub mod keys;
pub mod query;
pub mod source;
mod sql;
pub mod verify;

use std::path::Path;

use crate::{cli::fleet::ClickHouseArgs, CtlError};

/// The client of the store the `--clickhouse` flags name.
pub fn connect(args: &ClickHouseArgs) -> Result<clickhouse::ClickHouse, CtlError> {
    clickhouse::ClickHouse::new(&clickhouse::Settings {
        url: args.url.clone(),
        database: args.database.clone(),
        user: args.user.clone(),
        password_file: args.password_file.clone(),
        allow_password_over_http: args.allow_password_over_http,
        ca_file: args.ca_file.clone(),
    })
}

/// The pinned key directory.
pub fn key_dir(dir: &Path) -> keys::KeyDir {
    keys::KeyDir::new(dir)
}
