//! Who may use the control socket: root, or a member of the socket's
//! group. The file mode already keeps others out; this check holds even if
//! the socket's mode or its directory are loosened by mistake.
use nix::unistd::{Gid, Uid, User};

/// The peer's credentials as SO_PEERCRED reports them at connect time.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    /// None when the peer is in another pid namespace.
    pub pid: Option<i32>,
}

/// Whether `peer` may talk to the daemon. `group` is the socket's group
/// (None: root only).
pub fn allowed(peer: &Peer, group: Option<u32>) -> bool {
    if peer.uid == 0 {
        return true;
    }
    let Some(group) = group else {
        return false;
    };
    if peer.gid == group {
        return true;
    }
    // The process's own supplementary groups when it can be seen (what it
    // runs with now), else the group database's list for its uid.
    match peer.pid.and_then(proc_groups) {
        Some(groups) => groups.contains(&group),
        None => database_groups(peer.uid, peer.gid).contains(&group),
    }
}

/// `Groups:` of /proc/<pid>/status.
fn proc_groups(pid: i32) -> Option<Vec<u32>> {
    if pid <= 0 {
        return None;
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_groups(&status)
}

fn parse_groups(status: &str) -> Option<Vec<u32>> {
    let line = status.lines().find_map(|l| l.strip_prefix("Groups:"))?;
    Some(
        line.split_whitespace()
            .filter_map(|g| g.parse().ok())
            .collect(),
    )
}

/// getgrouplist(3) of the uid's user name; empty if the uid has no name.
fn database_groups(uid: u32, gid: u32) -> Vec<u32> {
    let Ok(Some(user)) = User::from_uid(Uid::from_raw(uid)) else {
        return Vec::new();
    };
    let Ok(name) = std::ffi::CString::new(user.name) else {
        return Vec::new();
    };
    nix::unistd::getgrouplist(&name, Gid::from_raw(gid))
        .map(|gs| gs.into_iter().map(Gid::as_raw).collect())
        .unwrap_or_default()
}

/// The message a refused peer reads.
pub fn refusal(peer: &Peer, group: Option<(&str, u32)>) -> String {
    match group {
        Some((name, gid)) => format!(
            "permission denied: uid {} is neither root nor a member of group {name} (gid {gid}); \
             the observer control socket serves only those",
            peer.uid
        ),
        None => format!(
            "permission denied: uid {} is not root; the observer control socket is root-only \
             (its group does not exist)",
            peer.uid
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_line_is_parsed() {
        let status =
            "Name:\tsh\nUid:\t1000\t1000\t1000\t1000\nGroups:\t4 27 1001 \nVmPeak:\t1 kB\n";
        assert_eq!(parse_groups(status), Some(vec![4, 27, 1001]));
        assert_eq!(parse_groups("Groups:\t\n"), Some(vec![]));
        assert_eq!(parse_groups("Name:\tx\n"), None);
    }

    #[test]
    fn root_primary_and_supplementary_members_are_allowed() {
        let me = std::process::id() as i32;
        assert!(allowed(
            &Peer {
                uid: 0,
                gid: 0,
                pid: None
            },
            None
        ));
        assert!(!allowed(
            &Peer {
                uid: 1000,
                gid: 1000,
                pid: None
            },
            None
        ));
        assert!(allowed(
            &Peer {
                uid: 1000,
                gid: 4242,
                pid: None
            },
            Some(4242)
        ));
        // Our own process: its Groups line decides, not the database.
        let mine = proc_groups(me).unwrap();
        let other = (60000..70000).find(|g| !mine.contains(g)).unwrap();
        assert!(!allowed(
            &Peer {
                uid: 1000,
                gid: 1000,
                pid: Some(me)
            },
            Some(other)
        ));
        if let Some(g) = mine.first() {
            assert!(allowed(
                &Peer {
                    uid: 1000,
                    gid: 1000,
                    pid: Some(me)
                },
                Some(*g)
            ));
        }
    }
}
