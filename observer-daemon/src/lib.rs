//! observer daemon library: loads the eBPF probes, reads and decodes kernel
//! events, enriches them, and hands them to outputs. `observerd` is a thin
//! binary over this library.

pub mod btf;
pub mod config;
pub mod enrich;
pub mod kernel_config;
pub mod loader;
