//! The daemon's Unix control socket (docs/observerctl.md, "Control
//! socket"): line-delimited JSON requests and responses, one connection per
//! client, every peer checked with SO_PEERCRED. `server` serves it inside
//! observerd, `client` is what observerctl uses.
pub mod client;
pub mod config;
pub mod follow;
pub mod peer;
pub mod protocol;
pub mod query;
pub mod server;
pub mod state;
pub mod status;
pub mod tree;
pub mod wire;
