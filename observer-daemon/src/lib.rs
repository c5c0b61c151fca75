//! observer daemon library: loads the eBPF probes, reads and decodes kernel
//! events, enriches them, and hands them to outputs. `observerd` is a thin
//! binary over this library.
//!
//! The `ebpf` feature (default) embeds the eBPF object and compiles what
//! needs it (loader, run loop, names attach, doctor). Without it the rest
//! (configuration, policies, control protocol and client, forwarding, live
//! view) builds with stable Rust alone: observer-ctl uses it that way.

pub mod config;
pub mod control;
#[cfg(feature = "ebpf")]
pub mod daemon;
pub mod deployer;
#[cfg(feature = "ebpf")]
pub mod doctor;
pub mod doctor_table;
pub mod enrich;
pub mod event;
pub use observer_receipts::export;
pub mod format;
pub mod forward;
pub mod kernel;
pub mod live_view;
pub mod names;
pub mod pipeline;
pub mod policy;
pub mod receipt;
pub mod record;
pub mod service;
pub mod stream;
pub use observer_receipts::trust;
