//! cgroup v2: resolving the kernel's cgroup id to a path, and reading systemd
//! units and container ids out of a path.

use std::ffi::OsString;
use std::fs;
use std::num::NonZeroUsize;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lru::LruCache;

/// A missing id triggers a full walk of the hierarchy; when ids keep missing
/// (e.g. short-lived cgroups already gone) this caps the cost.
const MIN_RESCAN_INTERVAL: Duration = Duration::from_millis(100);

/// Mount point of the cgroup2 filesystem (the first one in mountinfo).
pub fn find_cgroup2_mount() -> Option<PathBuf> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
    parse_cgroup2_mount(&mountinfo)
}

/// Pure part of `find_cgroup2_mount`, over /proc/<pid>/mountinfo contents.
pub fn parse_cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        // Optional fields vary in number; " - " marks where they end.
        let (left, right) = line.split_once(" - ")?;
        if right.split(' ').next()? != "cgroup2" {
            return None;
        }
        let mount_point = left.split(' ').nth(4)?;
        Some(PathBuf::from(OsString::from_vec(unescape_octal(
            mount_point,
        ))))
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let digits = bytes.get(i + 1..i + 4);
        if bytes[i] == b'\\' {
            if let Some(d) = digits.filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b))) {
                let value = d.iter().fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
                if let Ok(byte) = u8::try_from(value) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// Maps cgroup v2 ids to paths relative to the cgroup2 mount.
///
/// On 64-bit kernels the id the kernel reports (bpf_get_current_cgroup_id)
/// is the inode number of the cgroup's directory in cgroupfs, and kernfs does
/// not reuse those numbers, so a cached mapping never goes wrong.
pub struct CgroupResolver {
    mount: PathBuf,
    cache: LruCache<u64, String>,
    last_walk: Option<Instant>,
    walks: u64,
}

impl CgroupResolver {
    /// `capacity` bounds the cache (0 is treated as 1).
    pub fn new(mount: PathBuf, capacity: usize) -> Self {
        CgroupResolver {
            mount,
            cache: LruCache::new(NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN)),
            last_walk: None,
            walks: 0,
        }
    }

    /// Path of cgroup `id` with a leading '/' ("/" for the root), or None if
    /// it is not found or a walk ran less than 100 ms ago.
    pub fn path_for_id(&mut self, id: u64) -> Option<String> {
        if let Some(path) = self.cache.get(&id) {
            return Some(path.clone());
        }
        if self
            .last_walk
            .is_some_and(|t| t.elapsed() < MIN_RESCAN_INTERVAL)
        {
            return None;
        }
        let entries = walk(&self.mount);
        // Timed from the end so a slow walk still leaves the interval idle.
        self.last_walk = Some(Instant::now());
        self.walks += 1;
        let mut found = None;
        for (ino, path) in entries {
            if ino == id {
                found = Some(path);
            } else {
                self.cache.put(ino, path);
            }
        }
        // Inserted last so a hierarchy larger than the cache cannot evict it.
        let path = found?;
        self.cache.put(id, path.clone());
        Some(path)
    }

    /// Number of full hierarchy walks so far.
    pub fn walks(&self) -> u64 {
        self.walks
    }

    pub fn len(&self) -> usize {
        self.cache.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }
}

/// (inode, path relative to `root`) for `root` and every directory below it.
/// Directories that vanish mid-walk are skipped: cgroups come and go.
fn walk(root: &Path) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let Ok(meta) = fs::symlink_metadata(root) else {
        return out;
    };
    out.push((meta.ino(), "/".to_string()));
    // An explicit stack: hierarchy depth is not ours to trust for recursion.
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if !meta.is_dir() {
                continue;
            }
            let child_rel = format!("{rel}/{}", entry.file_name().to_string_lossy());
            out.push((meta.ino(), child_rel.clone()));
            stack.push((entry.path(), child_rel));
        }
    }
    out
}

/// The systemd unit a cgroup belongs to: its innermost `.service` or
/// `.scope` component. Innermost rather than outermost so that units run by
/// a user manager (`.../user@1000.service/app.slice/foo.service`) resolve to
/// the user's unit, not to the manager.
pub fn systemd_unit(cgroup_path: &str) -> Option<String> {
    cgroup_path
        .split('/')
        .rev()
        .find(|c| is_unit_name(c, ".service") || is_unit_name(c, ".scope"))
        .map(str::to_string)
}

fn is_unit_name(component: &str, suffix: &str) -> bool {
    component.len() > suffix.len() && component.ends_with(suffix)
}

/// Prefixes of the per-container scopes created by the systemd cgroup driver
/// of docker, containerd (CRI), CRI-O and podman.
const SCOPE_PREFIXES: &[&str] = &["docker-", "cri-containerd-", "crio-", "libpod-"];

/// Parents under which the cgroupfs drivers name a container's cgroup by its
/// bare id (`/docker/<id>`, `/kubepods/burstable/pod<uid>/<id>`).
const BARE_ID_PARENTS: &[&str] = &["docker", "kubepods", "kubepods.slice"];

/// The 64-hex container id in a cgroup path; the innermost one wins so that
/// nested containers report the one the process actually runs in.
pub fn container_id(cgroup_path: &str) -> Option<String> {
    let components: Vec<&str> = cgroup_path.split('/').filter(|c| !c.is_empty()).collect();
    components.iter().enumerate().rev().find_map(|(i, c)| {
        if let Some(stem) = c.strip_suffix(".scope") {
            let id = SCOPE_PREFIXES.iter().find_map(|p| stem.strip_prefix(p))?;
            return is_hex64(id).then(|| id.to_string());
        }
        let under_runtime = components[..i].iter().any(|a| BARE_ID_PARENTS.contains(a));
        (under_runtime && is_hex64(c)).then(|| c.to_string())
    })
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The cgroup v2 path from /proc/<pid>/cgroup contents (its "0::<path>"
/// line); None on a v1-only system or a malformed file.
pub fn parse_proc_cgroup(contents: &str) -> Option<String> {
    contents
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .filter(|path| path.starts_with('/'))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f4e2c1a9b8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";

    #[test]
    fn systemd_unit_table() {
        let cases: &[(&str, Option<&str>)] = &[
            ("/system.slice/ssh.service", Some("ssh.service")),
            ("/init.scope", Some("init.scope")),
            ("/", None),
            ("", None),
            ("/system.slice", None),
            (
                "/user.slice/user-1000.slice/session-3.scope",
                Some("session-3.scope"),
            ),
            (
                "/user.slice/user-1000.slice/user@1000.service/app.slice/foo.service",
                Some("foo.service"),
            ),
            (
                "/user.slice/user-1000.slice/user@1000.service/init.scope",
                Some("init.scope"),
            ),
            (
                "/user.slice/user-1000.slice/user@1000.service",
                Some("user@1000.service"),
            ),
            (
                &format!("/system.slice/docker-{ID}.scope"),
                Some(&format!("docker-{ID}.scope")),
            ),
            // A delegated subtree inside a service still belongs to it.
            ("/system.slice/foo.service/worker", Some("foo.service")),
            ("/system.slice/.service", None),
            ("/observer-test-42", None),
        ];
        for (path, want) in cases {
            assert_eq!(systemd_unit(path).as_deref(), *want, "path {path:?}");
        }
    }

    #[test]
    fn container_id_table() {
        let cases: Vec<(String, Option<&str>)> = vec![
            (format!("/system.slice/docker-{ID}.scope"), Some(ID)),
            (format!("/docker/{ID}"), Some(ID)),
            (format!("/system.slice/cri-containerd-{ID}.scope"), Some(ID)),
            (
                format!(
                    "/kubepods.slice/kubepods-burstable.slice/\
                     kubepods-burstable-pod1234_5678.slice/cri-containerd-{ID}.scope"
                ),
                Some(ID),
            ),
            (format!("/machine.slice/crio-{ID}.scope"), Some(ID)),
            (
                format!("/machine.slice/libpod-{ID}.scope/container"),
                Some(ID),
            ),
            (
                format!("/kubepods/burstable/pod1b2c3d4e-aaaa-bbbb/{ID}"),
                Some(ID),
            ),
            (format!("/kubepods/{ID}"), Some(ID)),
            // conmon runs beside the container, not in it.
            (format!("/machine.slice/libpod-conmon-{ID}.scope"), None),
            (format!("/machine.slice/crio-conmon-{ID}.scope"), None),
            // A bare id outside a runtime's tree is not trusted.
            (format!("/user.slice/{ID}"), None),
            (format!("/docker/{}", &ID[..63]), None),
            (format!("/docker/{}", ID.to_uppercase()), None),
            ("/system.slice/ssh.service".to_string(), None),
            ("/".to_string(), None),
        ];
        for (path, want) in &cases {
            assert_eq!(container_id(path).as_deref(), *want, "path {path:?}");
        }
    }

    #[test]
    fn container_id_prefers_innermost() {
        let outer = "a".repeat(64);
        let path = format!("/docker/{outer}/docker/{ID}");
        assert_eq!(container_id(&path).as_deref(), Some(ID));
    }

    #[test]
    fn parse_proc_cgroup_table() {
        let cases: &[(&str, Option<&str>)] = &[
            (
                "0::/system.slice/ssh.service\n",
                Some("/system.slice/ssh.service"),
            ),
            ("0::/\n", Some("/")),
            (
                "12:pids:/user.slice\n1:name=systemd:/user.slice/session-2.scope\n\
                 0::/user.slice/session-2.scope\n",
                Some("/user.slice/session-2.scope"),
            ),
            ("12:pids:/user.slice\n1:name=systemd:/x\n", None),
            ("", None),
            ("0::\n", None),
            ("10::/not-v2\n", None),
        ];
        for (contents, want) in cases {
            assert_eq!(
                parse_proc_cgroup(contents).as_deref(),
                *want,
                "{contents:?}"
            );
        }
    }

    #[test]
    fn parse_cgroup2_mount_table() {
        let hybrid = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
                      40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n\
                      41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw\n";
        assert_eq!(
            parse_cgroup2_mount(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let unified =
            "35 24 0:30 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            parse_cgroup2_mount(unified),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        let escaped = "35 24 0:30 / /mnt/cg\\040two rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            parse_cgroup2_mount(escaped),
            Some(PathBuf::from("/mnt/cg two"))
        );
        let v1_only = "40 31 0:37 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n";
        assert_eq!(parse_cgroup2_mount(v1_only), None);
    }

    #[test]
    fn finds_real_cgroup2_mount() {
        let mount = find_cgroup2_mount().expect("cgroup2 mounted");
        assert!(mount.join("cgroup.procs").exists(), "{mount:?}");
    }

    /// Removes the test cgroup even when an assertion fails.
    struct CgroupDir(PathBuf);

    impl CgroupDir {
        fn create(mount: &Path, name: &str) -> Self {
            let path = mount.join(name);
            fs::create_dir(&path).unwrap();
            CgroupDir(path)
        }

        fn ino(&self) -> u64 {
            fs::metadata(&self.0).unwrap().ino()
        }
    }

    impl Drop for CgroupDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir(&self.0);
        }
    }

    #[test]
    fn resolves_real_cgroup_ids() {
        let mount = find_cgroup2_mount().expect("cgroup2 mounted");
        let name = format!("observer-test-{}", std::process::id());
        let dir = CgroupDir::create(&mount, &name);
        let mut resolver = CgroupResolver::new(mount.clone(), 4096);
        assert_eq!(resolver.path_for_id(dir.ino()), Some(format!("/{name}")));
        let root_ino = fs::metadata(&mount).unwrap().ino();
        assert_eq!(resolver.path_for_id(root_ino).as_deref(), Some("/"));
        assert_eq!(resolver.walks(), 1, "root should come from the first walk");
    }

    #[test]
    fn rescans_are_rate_limited() {
        let mount = find_cgroup2_mount().expect("cgroup2 mounted");
        let mut resolver = CgroupResolver::new(mount.clone(), 4096);
        assert_eq!(resolver.path_for_id(u64::MAX), None);
        let name = format!("observer-test-rl-{}", std::process::id());
        let dir = CgroupDir::create(&mount, &name);
        // Created after the walk and asked for within 100 ms: not walked again.
        assert_eq!(resolver.path_for_id(dir.ino()), None);
        assert_eq!(resolver.walks(), 1);
        std::thread::sleep(MIN_RESCAN_INTERVAL + Duration::from_millis(20));
        assert_eq!(resolver.path_for_id(dir.ino()), Some(format!("/{name}")));
        assert_eq!(resolver.walks(), 2);
    }

    #[test]
    fn cache_is_bounded() {
        let mount = find_cgroup2_mount().expect("cgroup2 mounted");
        let name = format!("observer-test-cap-{}", std::process::id());
        let parent = CgroupDir::create(&mount, &name);
        let children: Vec<CgroupDir> = (0..4)
            .map(|i| CgroupDir::create(&parent.0, &format!("c{i}")))
            .collect();
        let mut resolver = CgroupResolver::new(mount, 2);
        let want = children[3].ino();
        assert_eq!(resolver.path_for_id(want), Some(format!("/{name}/c3")));
        assert!(resolver.len() <= 2);
        // Children must go before their parent: rmdir needs an empty cgroup.
        drop(children);
    }
}
