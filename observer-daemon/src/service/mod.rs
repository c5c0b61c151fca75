//! Service plumbing around the daemon: the systemd journal and
//! notification protocols, and the Prometheus metrics endpoint.
pub mod journal;
pub mod metrics;
pub mod notify;
