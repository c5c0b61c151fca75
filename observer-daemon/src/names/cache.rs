//! The IP -> names cache fed by DNS answers. Every name of a CNAME chain
//! is attached to the chain's final addresses. Entries expire by their
//! (clamped) TTL on the kernel's boot clock, so the answer and the connect
//! compare timestamps taken by the same clock. Memory is bounded: an LRU
//! of addresses, each with at most `per_address` names.
//!
//! When an address has more names than that, the names in the middle of a
//! CNAME chain go first: a long chain (CDNs chain a dozen aliases) must not
//! push out the name that was asked (`api.openai.com`, the one policies
//! match) or the name that owns the address. Expired names go before any.
use std::{net::IpAddr, num::NonZeroUsize};

use lru::LruCache;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    name: String,
    expires_boot_ns: u64,
    /// The question of an answer, or the end of its chain (the name owning
    /// the address): kept in preference to the aliases between them.
    endpoint: bool,
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

    /// `chain` (the question name first, then each CNAME target in order)
    /// now names `addr` from `now_boot_ns` for `ttl_s` (clamped).
    pub fn insert(&mut self, addr: IpAddr, chain: &[String], ttl_s: u32, now_boot_ns: u64) {
        let ttl_ns = (u64::from(ttl_s) * 1_000_000_000).clamp(self.min_ttl_ns, self.max_ttl_ns);
        let expires = now_boot_ns.saturating_add(ttl_ns);
        let entries = self.map.get_or_insert_mut(canonical(addr), Vec::new);
        entries.retain(|e| e.expires_boot_ns > now_boot_ns);
        let last = chain.len().saturating_sub(1);
        for (i, name) in chain.iter().enumerate() {
            // A name once asked stays a name that was asked.
            let mut endpoint = i == 0 || i == last;
            if let Some(at) = entries.iter().position(|e| &e.name == name) {
                endpoint |= entries.remove(at).endpoint;
            }
            entries.push(Entry {
                name: name.clone(),
                expires_boot_ns: expires,
                endpoint,
            });
        }
        // Over the bound: the oldest alias goes, and only when no alias is
        // left the oldest question or owner name (the most recent answers
        // win among those).
        while entries.len() > self.per_address {
            let victim = entries.iter().position(|e| !e.endpoint).unwrap_or(0);
            entries.remove(victim);
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

    /// A chain of `aliases` CNAME targets from `question`.
    fn chain(question: &str, aliases: usize) -> Vec<String> {
        std::iter::once(question.to_string())
            .chain((0..aliases).map(|i| format!("alias{i}.cdn.example")))
            .collect()
    }

    #[test]
    fn a_long_chain_keeps_its_question_and_owner() {
        // 17 names, 16 kept (the shipped default): an alias goes, never the
        // name asked.
        let mut c = NameCache::new(8, 16, 1, 100);
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        let long = chain("api.openai.com", 16);
        c.insert(ip, &long, 10, 0);
        let kept = c.names(ip, 1);
        assert_eq!(kept.len(), 16);
        assert_eq!(kept[0], "api.openai.com");
        assert_eq!(kept[15], "alias15.cdn.example", "the owner stays");
        assert!(!kept.contains(&"alias0.cdn.example".to_string()));
    }

    #[test]
    fn an_earlier_question_survives_a_later_long_chain() {
        let mut c = NameCache::new(8, 4, 1, 100);
        let ip: IpAddr = "10.0.0.10".parse().unwrap();
        c.insert(ip, &names(&["api.anthropic.com"]), 10, 0);
        c.insert(ip, &chain("www.example", 20), 10, 1);
        assert_eq!(
            c.names(ip, 2),
            names(&[
                "api.anthropic.com",
                "www.example",
                "alias18.cdn.example",
                "alias19.cdn.example"
            ])
        );
    }

    #[test]
    fn expired_names_go_first() {
        let mut c = NameCache::new(8, 2, 1, 100);
        let ip: IpAddr = "10.0.0.11".parse().unwrap();
        c.insert(ip, &names(&["kept.example"]), 50, 0);
        // Answered later but expired sooner: it goes, not the older name.
        c.insert(ip, &names(&["old.example"]), 1, 0);
        c.insert(ip, &names(&["new.example"]), 50, 2 * S);
        assert_eq!(c.names(ip, 3 * S), names(&["kept.example", "new.example"]));
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
