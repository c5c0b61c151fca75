//! Precompiled matchers. Every `matches` borrows and allocates nothing.
use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use regex::{Regex, RegexSet};

/// Turns a glob into an anchored regex: `**` any characters, `*` and `?`
/// any (one) character except `/`, `[...]` a class; the rest literal.
pub fn glob_to_regex(glob: &str) -> String {
    let mut out = String::from("^");
    let mut chars = glob.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                out.push_str(".*");
            }
            '*' => out.push_str("[^/]*"),
            '?' => out.push_str("[^/]"),
            '[' => {
                let mut class = String::new();
                for d in chars.by_ref() {
                    if d == ']' {
                        break;
                    }
                    class.push(d);
                }
                let class = class
                    .strip_prefix('!')
                    .map_or(class.clone(), |c| format!("^{c}"));
                out.push('[');
                out.push_str(&class.replace('\\', "\\\\"));
                out.push(']');
            }
            c => out.push_str(&regex::escape(&c.to_string())),
        }
    }
    out.push('$');
    out
}

fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Names or paths: exact entries in a hash set, globs in one regex set.
#[derive(Debug, Default)]
pub struct GlobSet {
    exact: HashSet<String>,
    globs: Option<RegexSet>,
}

impl GlobSet {
    pub fn new(patterns: &[String]) -> Result<GlobSet, String> {
        let (globs, exact): (Vec<&String>, Vec<&String>) =
            patterns.iter().partition(|p| is_glob(p));
        let globs = if globs.is_empty() {
            None
        } else {
            Some(
                RegexSet::new(globs.iter().map(|g| glob_to_regex(g)))
                    .map_err(|e| format!("bad glob: {e}"))?,
            )
        };
        Ok(GlobSet {
            exact: exact.into_iter().cloned().collect(),
            globs,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.globs.is_none()
    }

    pub fn matches(&self, s: &str) -> bool {
        self.exact.contains(s) || self.globs.as_ref().is_some_and(|g| g.is_match(s))
    }
}

/// Regexes (any matches).
#[derive(Debug, Default)]
pub struct Regexes(Option<RegexSet>);

impl Regexes {
    pub fn new(patterns: &[String]) -> Result<Regexes, String> {
        if patterns.is_empty() {
            return Ok(Regexes(None));
        }
        for p in patterns {
            Regex::new(p).map_err(|e| format!("bad regex {p:?}: {e}"))?;
        }
        RegexSet::new(patterns)
            .map(|s| Regexes(Some(s)))
            .map_err(|e| e.to_string())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    pub fn matches(&self, s: &str) -> bool {
        self.0.as_ref().is_some_and(|r| r.is_match(s))
    }
}

/// A DNS name pattern: exact (`api.openai.com`) or wildcard
/// (`*.openai.azure.com`: any name below the suffix, at any depth, not the
/// suffix itself). Lower case, no trailing dot.
pub fn valid_domain_pattern(p: &str) -> bool {
    let name = p.strip_prefix("*.").unwrap_or(p);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        })
}

/// Exact names and wildcard suffixes, each tagged with a value (a
/// provider index). Lookups walk the name's dot boundaries: no allocation.
#[derive(Debug, Default)]
pub struct DomainSet<T: Copy> {
    exact: std::collections::HashMap<String, T>,
    /// Keys are the suffix after `*.` (`openai.azure.com`).
    wildcard: std::collections::HashMap<String, T>,
}

impl<T: Copy> DomainSet<T> {
    pub fn insert(&mut self, pattern: &str, tag: T) {
        match pattern.strip_prefix("*.") {
            Some(suffix) => self.wildcard.insert(suffix.to_string(), tag),
            None => self.exact.insert(pattern.to_string(), tag),
        };
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty()
    }

    /// The tag of the most specific pattern `name` matches. Names are
    /// compared case-insensitively only when already lower case (DNS
    /// answers and SNI are lower-cased by their parsers); a trailing dot is
    /// ignored.
    pub fn lookup(&self, name: &str) -> Option<T> {
        let name = name.strip_suffix('.').unwrap_or(name);
        if let Some(t) = self.exact.get(name) {
            return Some(*t);
        }
        let mut rest = name;
        while let Some((_, parent)) = rest.split_once('.') {
            if let Some(t) = self.wildcard.get(parent) {
                return Some(*t);
            }
            rest = parent;
        }
        None
    }
}

/// An IPv4 or IPv6 network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (addr, len) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a CIDR (address/length)"))?;
        let addr: IpAddr = addr
            .parse()
            .map_err(|e| format!("{s:?}: bad address: {e}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len: u8 = len
            .parse()
            .ok()
            .filter(|l| *l <= max)
            .ok_or_else(|| format!("{s:?}: prefix length must be 0..={max}"))?;
        Ok(Cidr { addr, len })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(
                u128::from(u32::from(net)),
                u128::from(u32::from(ip)),
                self.len,
                32,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(u128::from(net), u128::from(ip), self.len, 128)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: u128, b: u128, len: u8, bits: u32) -> bool {
    if len == 0 {
        return true;
    }
    let shift = bits - u32::from(len);
    (a >> shift) == (b >> shift)
}

/// Loopback by address (127/8, ::1, v4-mapped 127/8).
pub fn is_loopback(addr: &str) -> bool {
    match addr.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.is_loopback(),
        Ok(IpAddr::V6(v6)) => {
            v6 == Ipv6Addr::LOCALHOST
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4: Ipv4Addr| v4.is_loopback())
        }
        Err(_) => false,
    }
}

/// Literal path prefixes, suffixes and substrings, and paths relative to
/// a home directory.
#[derive(Debug, Default, Clone)]
pub struct PathSet {
    pub prefixes: Vec<String>,
    pub suffixes: Vec<String>,
    pub contains: Vec<String>,
    /// `.ollama/models/blobs/`: under /root, any /home/<user> or `homes`.
    pub home_relative: Vec<String>,
    /// The homes found when the policy was loaded (see homes.rs).
    pub homes: Vec<String>,
}

impl PathSet {
    pub fn matches(&self, path: &str) -> bool {
        self.suffixes.iter().any(|s| path.ends_with(s.as_str()))
            || self.prefixes.iter().any(|p| path.starts_with(p.as_str()))
            || self.contains.iter().any(|c| path.contains(c.as_str()))
            || self
                .home_relative
                .iter()
                .any(|r| super::homes::under_home(path, r, &self.homes))
    }

    /// What the kernel's prefix filter must hold: the absolute prefixes
    /// and each home-relative path under each home (those that fit a
    /// prefix key).
    pub fn kernel_prefixes(&self) -> impl Iterator<Item = String> + '_ {
        let expanded = self.homes.iter().flat_map(move |h| {
            self.home_relative
                .iter()
                .map(move |r| format!("{h}/{r}"))
                .filter(|p| p.len() < observer_common::PREFIX_KEY_LEN)
        });
        self.prefixes.iter().cloned().chain(expanded)
    }
}

/// The file name of a path.
pub fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let g = GlobSet::new(&["/tmp/**".into(), "python3*".into(), "node".into()]).unwrap();
        assert!(g.matches("/tmp/a/b/c"));
        assert!(g.matches("python3.11"));
        assert!(g.matches("node"));
        assert!(!g.matches("nodejs"));
        assert!(!g.matches("/var/tmp/x"));
        let one = GlobSet::new(&["/opt/*/bin/agent".into()]).unwrap();
        assert!(one.matches("/opt/x/bin/agent"));
        assert!(!one.matches("/opt/x/y/bin/agent"));
        assert_eq!(glob_to_regex("a.b[!c]"), "^a\\.b[^c]$");
    }

    #[test]
    fn domains_exact_and_wildcard() {
        let mut d = DomainSet::default();
        d.insert("api.openai.com", 1);
        d.insert("*.openai.azure.com", 2);
        assert_eq!(d.lookup("api.openai.com"), Some(1));
        assert_eq!(d.lookup("api.openai.com."), Some(1));
        assert_eq!(d.lookup("x.api.openai.com"), None);
        assert_eq!(d.lookup("myres.openai.azure.com"), Some(2));
        assert_eq!(d.lookup("a.b.openai.azure.com"), Some(2));
        assert_eq!(d.lookup("openai.azure.com"), None);
        assert_eq!(d.lookup("evilopenai.azure.com"), None);
        assert!(valid_domain_pattern("*.openai.azure.com"));
        assert!(!valid_domain_pattern("API.openai.com"));
        assert!(!valid_domain_pattern("a..b"));
    }

    #[test]
    fn cidrs() {
        let c = Cidr::parse("160.79.104.0/23").unwrap();
        assert!(c.contains("160.79.105.7".parse().unwrap()));
        assert!(!c.contains("160.79.106.1".parse().unwrap()));
        assert!(c.contains("::ffff:160.79.104.1".parse().unwrap()));
        let v6 = Cidr::parse("2607:6bc0::/48").unwrap();
        assert!(v6.contains("2607:6bc0::10".parse().unwrap()));
        assert!(!v6.contains("2607:6bc1::10".parse().unwrap()));
        assert!(Cidr::parse("1.2.3.4/33").is_err());
        assert!(Cidr::parse("1.2.3.4").is_err());
        assert!(is_loopback("127.0.0.1") && is_loopback("::1") && !is_loopback("0.0.0.0"));
    }
}
