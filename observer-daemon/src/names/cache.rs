//! The IP -> names cache fed by DNS answers. Every name of a CNAME chain
//! is attached to the chain's final addresses. Entries expire by their
//! (clamped) TTL on the kernel's boot clock, so the answer and the connect
//! compare timestamps taken by the same clock. Memory is bounded: an LRU
//! of addresses, each with a bounded list of names.
use std::{net::IpAddr, num::NonZeroUsize};

use lru::LruCache;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    name: String,
    expires_boot_ns: u64,
}

pub struct NameCache {
    map: LruCache<IpAddr, Vec<Entry>>,
    per_address: usize,
    min_ttl_ns: u64,
    max_ttl_ns: u64,
}

/// IPv4-mapped IPv6 addresses (an AF_INET6 socket reaching an IPv4 host)
/// are the IPv4 address.
pub fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

impl NameCache {
    pub fn new(addresses: usize, per_address: usize, min_ttl_s: u32, max_ttl_s: u32) -> Self {
        NameCache {
            map: LruCache::new(NonZeroUsize::new(addresses).unwrap_or(NonZeroUsize::MIN)),
            per_address: per_address.max(1),
            min_ttl_ns: u64::from(min_ttl_s) * 1_000_000_000,
            max_ttl_ns: u64::from(max_ttl_s) * 1_000_000_000,
        }
    }

    /// `names` now name `addr` from `now_boot_ns` for `ttl_s` (clamped).
    pub fn insert(&mut self, addr: IpAddr, names: &[String], ttl_s: u32, now_boot_ns: u64) {
        let ttl_ns = (u64::from(ttl_s) * 1_000_000_000).clamp(self.min_ttl_ns, self.max_ttl_ns);
        let expires = now_boot_ns.saturating_add(ttl_ns);
        let entries = self.map.get_or_insert_mut(canonical(addr), Vec::new);
        for name in names {
            entries.retain(|e| &e.name != name);
            entries.push(Entry {
                name: name.clone(),
                expires_boot_ns: expires,
            });
        }
        // The most recently answered names win.
        if entries.len() > self.per_address {
            let excess = entries.len() - self.per_address;
            entries.drain(..excess);
        }
    }

    /// Names of `addr` still valid at `now_boot_ns`, oldest answer first.
    pub fn names(&mut self, addr: IpAddr, now_boot_ns: u64) -> Vec<String> {
        let key = canonical(addr);
        let Some(entries) = self.map.get_mut(&key) else {
            return Vec::new();
        };
        entries.retain(|e| e.expires_boot_ns > now_boot_ns);
        let names = entries.iter().map(|e| e.name.clone()).collect();
        if entries.is_empty() {
            self.map.pop(&key);
        }
        names
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ttl_is_clamped_and_expires() {
        let mut c = NameCache::new(8, 4, 60, 3600);
        let ip: IpAddr = "10.203.0.1".parse().unwrap();
        c.insert(ip, &names(&["a.example"]), 0, 100 * S);
        assert_eq!(c.names(ip, 159 * S), names(&["a.example"]));
        assert!(c.names(ip, 160 * S).is_empty());
        assert!(c.is_empty());
        c.insert(ip, &names(&["b.example"]), 999_999, 0);
        assert_eq!(c.names(ip, 3599 * S), names(&["b.example"]));
        assert!(c.names(ip, 3600 * S).is_empty());
    }

    #[test]
    fn chain_names_attach_and_are_bounded() {
        let mut c = NameCache::new(8, 3, 1, 100);
        let ip: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        c.insert(ip, &names(&["api.x", "edge.y"]), 10, 0);
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(c.names(v4, 1), names(&["api.x", "edge.y"]));
        c.insert(v4, &names(&["c", "d"]), 10, 1);
        assert_eq!(c.names(v4, 2), names(&["edge.y", "c", "d"]));
        // Re-answering a name refreshes it instead of duplicating it.
        c.insert(v4, &names(&["edge.y"]), 10, 3);
        assert_eq!(c.names(v4, 4), names(&["c", "d", "edge.y"]));
    }

    #[test]
    fn addresses_are_lru_bounded() {
        let mut c = NameCache::new(2, 4, 1, 100);
        for i in 0..5u8 {
            c.insert(IpAddr::from([10, 0, 0, i]), &names(&["n"]), 10, 0);
        }
        assert_eq!(c.len(), 2);
        assert!(c.names(IpAddr::from([10, 0, 0, 0]), 1).is_empty());
        assert_eq!(c.names(IpAddr::from([10, 0, 0, 4]), 1), names(&["n"]));
    }
}
