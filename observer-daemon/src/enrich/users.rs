//! uid/gid to name lookups through NSS (getpwuid_r/getgrgid_r), cached.
//!
//! NSS may go to LDAP or sssd, so each id is looked up once; ids without an
//! entry are cached too, since processes running as unnamed ids (containers,
//! sandboxes) would otherwise cost a lookup per event.

use std::num::NonZeroUsize;

use lru::LruCache;
use nix::unistd::{Gid, Group, Uid, User};

pub struct UserNames {
    users: LruCache<u32, Option<String>>,
    groups: LruCache<u32, Option<String>>,
}

impl UserNames {
    /// `capacity` bounds each of the user and group caches (0 is treated as 1).
    pub fn new(capacity: usize) -> Self {
        let cap = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        UserNames {
            users: LruCache::new(cap),
            groups: LruCache::new(cap),
        }
    }

    pub fn user_name(&mut self, uid: u32) -> Option<String> {
        cached(&mut self.users, uid, |id| {
            User::from_uid(Uid::from_raw(id)).map(|u| u.map(|u| u.name))
        })
    }

    pub fn group_name(&mut self, gid: u32) -> Option<String> {
        cached(&mut self.groups, gid, |id| {
            Group::from_gid(Gid::from_raw(id)).map(|g| g.map(|g| g.name))
        })
    }
}

/// A failed lookup (as opposed to "no such id") is not cached: it may be a
/// transient NSS failure.
fn cached(
    cache: &mut LruCache<u32, Option<String>>,
    id: u32,
    lookup: impl FnOnce(u32) -> nix::Result<Option<String>>,
) -> Option<String> {
    if let Some(name) = cache.get(&id) {
        return name.clone();
    }
    match lookup(id) {
        Ok(name) => {
            cache.put(id, name.clone());
            name
        }
        Err(e) => {
            log::debug!("name lookup for id {id} failed: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (uid_t)-2: never allocated by useradd, and not "nobody" (65534).
    const UNUSED_ID: u32 = 4_294_967_294;

    #[test]
    fn root_user_and_group() {
        let mut names = UserNames::new(16);
        assert_eq!(names.user_name(0).as_deref(), Some("root"));
        assert_eq!(names.group_name(0).as_deref(), Some("root"));
        // Served from the cache the second time.
        assert_eq!(names.user_name(0).as_deref(), Some("root"));
    }

    #[test]
    fn unused_ids_are_none_and_cached() {
        let mut names = UserNames::new(16);
        assert_eq!(names.user_name(UNUSED_ID), None);
        assert_eq!(names.group_name(UNUSED_ID), None);
        assert_eq!(names.users.peek(&UNUSED_ID), Some(&None));
        assert_eq!(names.groups.peek(&UNUSED_ID), Some(&None));
    }

    #[test]
    fn caches_are_bounded() {
        let mut names = UserNames::new(2);
        for id in [0, 1, 2, UNUSED_ID] {
            names.user_name(id);
            names.group_name(id);
        }
        assert_eq!(names.users.len(), 2);
        assert_eq!(names.groups.len(), 2);
    }
}
