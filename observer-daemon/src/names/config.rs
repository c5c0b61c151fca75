//! The `[names]` section of observer.toml.
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NamesSection {
    /// Attach the names programs (DNS answers, TLS SNI, socket owners).
    /// Default true.
    pub enabled: bool,
    /// cgroup v2 directory the programs attach to; every socket of its
    /// subtree is covered. Default: the cgroup2 mount point found in
    /// /proc/self/mountinfo (the root of the hierarchy).
    pub cgroup: Option<PathBuf>,
    /// ClientHello bytes copied from the kernel (1..=1024). Default 1024.
    pub tls_capture_bytes: u32,
    /// DNS message bytes copied from the kernel (1..=1024). Default 1024.
    pub dns_capture_bytes: u32,
    /// Sockets whose owning process the kernel remembers (LRU). Default 65536.
    pub socket_owner_entries: u32,
    /// Addresses kept in the IP -> names cache (LRU). Default 65536.
    pub cache_addresses: usize,
    /// Names kept per address (the most recent win). Default 16.
    pub cache_names_per_address: usize,
    /// A DNS answer names its address for at least this long, whatever its
    /// TTL (clients cache past short TTLs). Default 60.
    pub min_ttl_s: u32,
    /// ... and for at most this long. Default 86400.
    pub max_ttl_s: u32,
    /// A TCP connect record waits this long for its TLS ClientHello (one
    /// round trip plus the client's TLS setup) before it is written without
    /// an SNI name. Default 500.
    pub sni_wait_ms: u64,
    /// Connect records waiting at once; beyond this the oldest is written
    /// at once (counted as `connect_wait_overflow`). Default 4096.
    pub sni_wait_max: usize,
}

impl Default for NamesSection {
    fn default() -> Self {
        NamesSection {
            enabled: true,
            cgroup: None,
            tls_capture_bytes: 1024,
            dns_capture_bytes: 1024,
            socket_owner_entries: 65536,
            cache_addresses: 65536,
            cache_names_per_address: 16,
            min_ttl_s: 60,
            max_ttl_s: 86400,
            sni_wait_ms: 500,
            sni_wait_max: 4096,
        }
    }
}

impl NamesSection {
    /// The offending field and why, for `ConfigError::Invalid`.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let cap = observer_common::PACKET_PAYLOAD_LEN as u32;
        for (field, v) in [
            ("names.tls_capture_bytes", self.tls_capture_bytes),
            ("names.dns_capture_bytes", self.dns_capture_bytes),
        ] {
            if v == 0 || v > cap {
                return Err((field, format!("{v} is not in 1..={cap}")));
            }
        }
        if self.socket_owner_entries == 0 {
            return Err(("names.socket_owner_entries", "must be > 0".into()));
        }
        if self.cache_addresses == 0 || self.cache_names_per_address == 0 {
            return Err(("names.cache_addresses", "cache sizes must be > 0".into()));
        }
        if self.min_ttl_s > self.max_ttl_s {
            return Err((
                "names.min_ttl_s",
                format!("{} exceeds max_ttl_s {}", self.min_ttl_s, self.max_ttl_s),
            ));
        }
        if self.sni_wait_max == 0 {
            return Err(("names.sni_wait_max", "must be > 0".into()));
        }
        Ok(())
    }
}
