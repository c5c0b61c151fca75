//! The one-writer lock of a store (`<store>.lock`).
use std::{
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use super::StoreError;

/// Exclusive right to append to a store: one writer per store, ever, or
/// two processes would fork its chains. Released when dropped.
pub struct WriterLock {
    _lock: nix::fcntl::Flock<std::fs::File>,
}

impl WriterLock {
    /// Takes `<store>.lock` without waiting.
    pub fn acquire(store: &Path) -> Result<WriterLock, StoreError> {
        let mut lock_path = store.as_os_str().to_owned();
        lock_path.push(".lock");
        let lock_path = PathBuf::from(lock_path);
        if let Some(dir) = lock_path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                path: dir.to_owned(),
                source,
            })?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&lock_path)
            .map_err(|source| StoreError::Io {
                path: lock_path.clone(),
                source,
            })?;
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(WriterLock { _lock: lock }),
            Err((_, errno)) => Err(StoreError::Invalid {
                path: store.to_owned(),
                message: format!(
                    "another process writes to this store ({} is locked: {errno})",
                    lock_path.display()
                ),
            }),
        }
    }
}
