//! The master seed's files around a key rotation (docs/RECEIPTS.md, "Key
//! rotation"). A rotation writes a new random seed to `<seed>.next`, waits
//! until the rotation receipt (signed by the old master) is committed, then
//! renames `.next` over the seed file: after that the old seed is gone, so
//! a later leak of the new seed cannot sign as the old keys. A crash in
//! between is settled at the next start by [`recover`]: the store says
//! whether the rotation happened.
//!
//! `<seed>.genesis.jwk` holds the genesis master's public key (the key an
//! auditor pins), written while the seed file still holds the genesis
//! seed; `observerctl verify` pins it by default, since after a rotation
//! the seed no longer derives it.
use std::{
    ffi::OsString,
    fs::{File, OpenOptions},
    io::{ErrorKind, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use super::{
    jcs,
    keys::{ChainKey, KeyError, MasterSeed},
    mldsa::SEED_LEN,
    store::{Store, StoreError},
};

/// Why a step with the seed's files around a rotation failed.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    /// A seed (the current one or `.next`) could not be loaded, or the OS
    /// gave no randomness for a new one.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// [`recover`] could not open or read the store: it then keeps `.next`.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing, renaming or syncing a seed or JWK file (or its directory)
    /// failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory the call was about.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// `<seed>.genesis.jwk` was not opened: it or a directory above it
    /// fails the checks of [`crate::trust`], or opening it failed for a
    /// reason other than its absence.
    #[error(transparent)]
    Untrusted(#[from] crate::trust::TrustError),
    /// `<seed>.genesis.jwk` is not a well-formed ML-DSA-65 AKP JWK.
    #[error("{}: {reason}", path.display())]
    Jwk {
        /// The JWK file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// `<seed>.next` already exists: a rotation is under way or was
    /// interrupted, and [`recover`] must settle it first.
    #[error("{} exists: another rotation is in progress or was interrupted (the next daemon start settles it)", .0.display())]
    InProgress(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RotationError + '_ {
    move |source| RotationError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(suffix);
    PathBuf::from(name)
}

/// `<seed>.next`: the new seed while its rotation is not yet committed.
pub fn next_path(seed: &Path) -> PathBuf {
    with_suffix(seed, ".next")
}

/// `<seed>.genesis.jwk`: the genesis master public key (AKP JWK).
pub fn genesis_path(seed: &Path) -> PathBuf {
    with_suffix(seed, ".genesis.jwk")
}

fn sync_parent(path: &Path) -> Result<(), RotationError> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(io(parent))
}

/// A new random seed, written to `<seed>.next` (0600, file and directory
/// fsynced) before anything is signed with it.
pub fn write_next(seed: &Path) -> Result<MasterSeed, RotationError> {
    let next = next_path(seed);
    let mut bytes = [0u8; SEED_LEN];
    getrandom::getrandom(&mut bytes).map_err(KeyError::Randomness)?;
    let new = MasterSeed::from_bytes(bytes);
    bytes.fill(0);
    let mut file = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&next)
    {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            return Err(RotationError::InProgress(next))
        }
        Err(e) => return Err(io(&next)(e)),
    };
    if let Err(e) = file
        .write_all(new.secret_bytes())
        .and_then(|()| file.sync_all())
    {
        let _ = std::fs::remove_file(&next);
        return Err(io(&next)(e));
    }
    sync_parent(&next)?;
    Ok(new)
}

/// Replaces the seed with `<seed>.next` (after the rotation receipt is
/// committed) and fsyncs the directory.
pub fn commit_next(seed: &Path) -> Result<(), RotationError> {
    let next = next_path(seed);
    std::fs::rename(&next, seed).map_err(io(&next))?;
    sync_parent(seed)
}

/// What [`recover`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// No `.next`: nothing to do.
    Clean,
    /// The store holds the rotation to this master kid: `.next` became
    /// the seed.
    Completed {
        /// Kid of the master `.next` derives, now the seed's.
        kid: String,
    },
    /// No rotation to this kid was committed: `.next` was deleted.
    Discarded {
        /// Kid of the master the deleted `.next` derived; empty when it
        /// was truncated (a crash while writing it).
        kid: String,
    },
}

/// At daemon start, before the seed is loaded: finishes or discards an
/// interrupted rotation. The store is opened (and migrated) only when
/// `.next` exists; an unreadable store is an error, never a reason to
/// delete a seed that may be the only one able to continue it.
pub fn recover(seed: &Path, store: &Path) -> Result<Recovery, RotationError> {
    let next = next_path(seed);
    let new = match MasterSeed::load_existing(&next) {
        Ok(new) => new,
        Err(KeyError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {
            return Ok(Recovery::Clean)
        }
        // A truncated `.next` (crash while writing it): nothing was ever
        // signed with it.
        Err(KeyError::Length { .. }) => {
            std::fs::remove_file(&next).map_err(io(&next))?;
            sync_parent(&next)?;
            return Ok(Recovery::Discarded { kid: String::new() });
        }
        Err(e) => return Err(e.into()),
    };
    let kid = ChainKey::master_key(&new).kid;
    let committed = store.exists() && {
        let store = Store::open(store)?;
        store
            .keys()?
            .iter()
            .any(|k| k.kid == kid && k.agent_id == "observer" && k.rotates.is_some())
    };
    if committed {
        commit_next(seed)?;
        Ok(Recovery::Completed { kid })
    } else {
        std::fs::remove_file(&next).map_err(io(&next))?;
        sync_parent(&next)?;
        Ok(Recovery::Discarded { kid })
    }
}

/// The genesis master public key from `<seed>.genesis.jwk`, `None` when
/// there is none. It is the key `verify` pins when given no key, so it is
/// trusted as the seed is: the file and every directory above it owned by
/// root (or the caller) and writable by no one else, opened without
/// following a link. A key planted there by another user would let that
/// user's receipts verify.
pub fn read_genesis_public(seed: &Path) -> Result<Option<Vec<u8>>, RotationError> {
    use std::io::Read as _;
    let path = genesis_path(seed);
    let mut file = match crate::trust::open_file(&path, crate::trust::Secrecy::Public) {
        Ok(file) => file,
        Err(e) if e.io_kind() == Some(ErrorKind::NotFound) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut text = Vec::new();
    file.read_to_end(&mut text).map_err(io(&path))?;
    let jwk = super::json::parse_strict(&text).map_err(|e| RotationError::Jwk {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    super::keys::public_key_from_jwk(&jwk)
        .map(Some)
        .map_err(|e| RotationError::Jwk {
            path,
            reason: e.to_string(),
        })
}

/// Writes `<seed>.genesis.jwk` (0644, atomically) unless it exists.
/// Callers pass the genesis master: the daemon does so only while the
/// store's master generation is 1.
pub fn write_genesis_public(seed: &Path, genesis: &ChainKey) -> Result<bool, RotationError> {
    let path = genesis_path(seed);
    if path.exists() {
        return Ok(false);
    }
    let text = jcs::canonicalize(&genesis.jwk()).map_err(|e| RotationError::Io {
        path: path.clone(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let tmp = with_suffix(&path, ".tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&tmp)
        .map_err(io(&tmp))?;
    file.write_all(&text)
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    sync_parent(&path)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn next_is_private_and_commit_replaces_the_seed() {
        let dir = tempfile::tempdir().unwrap();
        let seed = dir.path().join("master.seed");
        std::fs::write(&seed, [1u8; SEED_LEN]).unwrap();
        std::fs::set_permissions(&seed, std::fs::Permissions::from_mode(0o600)).unwrap();
        let new = write_next(&seed).unwrap();
        let next = next_path(&seed);
        let mode = std::fs::metadata(&next).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read(&next).unwrap(), new.secret_bytes());
        assert!(matches!(
            write_next(&seed),
            Err(RotationError::InProgress(p)) if p == next
        ));
        commit_next(&seed).unwrap();
        assert!(!next.exists());
        assert_eq!(std::fs::read(&seed).unwrap(), new.secret_bytes());
    }

    #[test]
    fn recover_discards_a_next_without_a_store_or_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let seed = dir.path().join("master.seed");
        let store = dir.path().join("observer.db");
        std::fs::write(&seed, [1u8; SEED_LEN]).unwrap();
        assert_eq!(recover(&seed, &store).unwrap(), Recovery::Clean);
        let new = write_next(&seed).unwrap();
        let kid = ChainKey::master_key(&new).kid;
        assert_eq!(
            recover(&seed, &store).unwrap(),
            Recovery::Discarded { kid: kid.clone() }
        );
        assert!(!next_path(&seed).exists());
        assert_eq!(std::fs::read(&seed).unwrap(), [1u8; SEED_LEN]);
        // An empty store has no rotation either.
        Store::open(&store).unwrap();
        write_next(&seed).unwrap();
        assert!(matches!(
            recover(&seed, &store).unwrap(),
            Recovery::Discarded { .. }
        ));
        assert_eq!(std::fs::read(&seed).unwrap(), [1u8; SEED_LEN]);
    }

    #[test]
    fn genesis_public_key_is_written_once() {
        let dir = tempfile::tempdir().unwrap();
        let seed = dir.path().join("master.seed");
        let genesis = ChainKey::master_key(&MasterSeed::from_bytes([3u8; SEED_LEN]));
        assert!(write_genesis_public(&seed, &genesis).unwrap());
        let other = ChainKey::master_key(&MasterSeed::from_bytes([4u8; SEED_LEN]));
        assert!(!write_genesis_public(&seed, &other).unwrap());
        let text = std::fs::read(genesis_path(&seed)).unwrap();
        let jwk: serde_json::Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(jwk["kid"], genesis.kid.as_str());
        let mode = std::fs::metadata(genesis_path(&seed))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o644);
    }

    /// The key verify pins by default is read only when it is trusted: a
    /// key made writable by others, owned by another user or replaced by a
    /// link is refused with its path and the reason, never used.
    #[test]
    fn genesis_public_key_is_read_only_when_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let seed = dir.path().join("master.seed");
        let path = genesis_path(&seed);
        assert_eq!(read_genesis_public(&seed).unwrap(), None);
        let genesis = ChainKey::master_key(&MasterSeed::from_bytes([3u8; SEED_LEN]));
        write_genesis_public(&seed, &genesis).unwrap();
        assert_eq!(
            read_genesis_public(&seed).unwrap().as_deref(),
            Some(genesis.public_key())
        );

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let refused = read_genesis_public(&seed).unwrap_err().to_string();
        assert_eq!(
            refused,
            format!(
                "{}: has mode 0666: its group or others may write to it; they must not (chmod go-w)",
                path.display()
            )
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();

        // Another user's key (the suite runs as root, which can hand a
        // file to nobody).
        std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
        let refused = read_genesis_public(&seed).unwrap_err().to_string();
        assert!(
            refused.starts_with(&format!("{}: is owned by ", path.display())),
            "{refused}"
        );
        std::os::unix::fs::chown(&path, Some(0), None).unwrap();

        // A link in its place, even to a good key.
        let elsewhere = dir.path().join("elsewhere.jwk");
        std::fs::rename(&path, &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        let refused = read_genesis_public(&seed).unwrap_err().to_string();
        assert!(refused.contains("is a symbolic link"), "{refused}");
    }
}
