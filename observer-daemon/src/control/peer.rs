//! Who may use the control socket: root, or a member of the socket's
//! group. The file mode already keeps others out; this check holds even if
//! the socket's mode or its directory are loosened by mistake.
use nix::unistd::{Gid, Uid, User};

/// The peer's credentials as the kernel recorded them at connect time.
#[derive(Debug, Clone)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    /// None when the peer is in another pid namespace.
    pub pid: Option<i32>,
    /// Supplementary groups (SO_PEERGROUPS); None if the kernel gave none.
    pub groups: Option<Vec<u32>>,
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
    // The groups the peer held when it connected, as the kernel recorded
    // them: not /proc/<pid>, whose pid may be reused by another process
    // once the peer has handed its connection to a child and exited.
    match &peer.groups {
        Some(groups) => groups.contains(&group),
        None => database_groups(peer.uid, peer.gid).contains(&group),
    }
}

/// SO_PEERGROUPS of a connected Unix socket: the peer's supplementary
/// groups at connect time.
pub fn peer_groups(fd: std::os::fd::BorrowedFd<'_>) -> Option<Vec<u32>> {
    use std::os::fd::AsRawFd;
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    for _ in 0..2 {
        let mut len = (groups.len() * std::mem::size_of::<libc::gid_t>()) as libc::socklen_t;
        // SAFETY: the buffer holds `len` bytes and outlives the call.
        let rc = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let count = len as usize / std::mem::size_of::<libc::gid_t>();
        if rc == 0 {
            groups.truncate(count);
            return Some(groups);
        }
        // ERANGE: `len` now says how much the kernel needs.
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::ERANGE) {
            return None;
        }
        groups.resize(count.max(groups.len() + 1), 0);
    }
    None
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

    fn peer(uid: u32, gid: u32, groups: Option<Vec<u32>>) -> Peer {
        Peer {
            uid,
            gid,
            pid: None,
            groups,
        }
    }

    #[test]
    fn root_primary_and_supplementary_members_are_allowed() {
        assert!(allowed(&peer(0, 0, None), None));
        assert!(!allowed(&peer(1000, 1000, None), None));
        assert!(allowed(&peer(1000, 4242, None), Some(4242)));
        assert!(allowed(&peer(1000, 1000, Some(vec![27, 4242])), Some(4242)));
        assert!(!allowed(&peer(1000, 1000, Some(vec![27])), Some(4242)));
    }

    #[test]
    fn peer_groups_are_the_connecting_process_groups() {
        use std::os::fd::AsFd;
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut got = peer_groups(a.as_fd()).expect("SO_PEERGROUPS");
        got.sort_unstable();
        let mut mine: Vec<u32> = nix::unistd::getgroups()
            .unwrap()
            .into_iter()
            .map(Gid::as_raw)
            .collect();
        mine.sort_unstable();
        assert_eq!(got, mine);
    }
}
