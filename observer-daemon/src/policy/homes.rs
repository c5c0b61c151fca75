//! Home directories, for indicator paths written relative to a home
//! (`.ollama/models/blobs/`). The kernel's path filter only knows absolute
//! prefixes, so such a path becomes one prefix per home that exists when
//! the policy is loaded (and again at every reload, which picks up new
//! users). In user space the same paths also match under any /home/<user>
//! and /root, so an open reported for another reason is still recognised.
use std::path::Path;

/// At most this many homes are expanded: the kernel's prefix filter holds
/// 1024 entries, shared with observer.toml's `[files]` and the other
/// lists. Homes past it are still matched in user space.
pub const MAX_HOMES: usize = 200;

/// The home directories of a host: /root, every directory under /home,
/// and every existing home directory named in /etc/passwd (service users
/// such as ollama's /usr/share/ollama), sorted, without duplicates and
/// without `/` (a home of `/` would make every path a home path).
pub fn local_homes() -> Vec<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let mut homes: Vec<String> = passwd_homes(&passwd);
    homes.push("/root".into());
    if let Ok(dir) = std::fs::read_dir("/home") {
        homes.extend(
            dir.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter_map(|e| e.file_name().into_string().ok())
                .map(|n| format!("/home/{n}")),
        );
    }
    homes.retain(|h| Path::new(h).is_dir());
    homes.sort();
    homes.dedup();
    homes.truncate(MAX_HOMES);
    homes
}

/// The sixth field of each passwd line, when it is an absolute path other
/// than `/` (without a trailing slash).
pub fn passwd_homes(passwd: &str) -> Vec<String> {
    passwd
        .lines()
        .filter_map(|l| l.split(':').nth(5))
        .map(|h| h.trim_end_matches('/'))
        .filter(|h| h.starts_with('/') && h.len() > 1)
        .map(str::to_string)
        .collect()
}

/// Whether `path` lies under `rel` (`.ollama/models/blobs/`) of /root, of
/// a /home/<user>, or of one of `homes`.
pub fn under_home(path: &str, rel: &str, homes: &[String]) -> bool {
    let below = |rest: &str| rest.strip_prefix('/').is_some_and(|r| r.starts_with(rel));
    if let Some(rest) = path.strip_prefix("/root") {
        if below(rest) {
            return true;
        }
    }
    if let Some(rest) = path.strip_prefix("/home/") {
        if let Some(slash) = rest.find('/') {
            if slash > 0 && below(&rest[slash..]) {
                return true;
            }
        }
    }
    homes
        .iter()
        .any(|h| path.strip_prefix(h.as_str()).is_some_and(below))
}
