//! The kernel side: reading the running kernel (BTF offsets, tracepoint
//! layouts, program statistics), loading the embedded eBPF object and
//! attaching its programs. Nothing here knows about enrichment, policies or
//! receipts; the layers above get events and counters from it.
pub mod btf;
pub mod kernel_config;
#[cfg(feature = "ebpf")]
pub mod load_error;
#[cfg(feature = "ebpf")]
pub mod loader;
#[cfg(feature = "ebpf")]
pub mod names_attach;
pub mod prog_stats;
#[cfg(feature = "ebpf")]
pub mod tls_attach;
pub mod tls_signatures;
pub mod tls_static;
pub mod tls_symbols;
