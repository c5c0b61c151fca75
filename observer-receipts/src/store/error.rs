//! Why a store operation failed, always naming the store.
use std::path::PathBuf;

/// Why a store operation failed. Every variant names the store (or, for
/// [`StoreError::Io`], the file or directory that failed).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused a statement, an open or a commit; a full file system
    /// is one of these ([`StoreError::is_full`]).
    #[error("receipt store {path}: {source}")]
    Sqlite {
        /// The store's database file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The store cannot be used as it is: its directory or file fails the
    /// checks of [`crate::trust`], its schema version is one this build
    /// does not read, another process holds the writer lock, or a stored
    /// value is malformed (e.g. a Merkle node missing or not 32 bytes).
    #[error("receipt store {path}: {message}")]
    Invalid {
        /// The store's database file.
        path: PathBuf,
        /// What is wrong, for people.
        message: String,
    },
    /// A file-system call outside SQLite failed: creating the lock file or
    /// its directory, or a store path without a file name.
    #[error("receipt store {path}: {source}")]
    Io {
        /// The file or directory the call was about.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl StoreError {
    /// The store's file system has no room left (see
    /// [`crate::sqlite::is_full`]).
    pub fn is_full(&self) -> bool {
        matches!(self, StoreError::Sqlite { source, .. } if crate::sqlite::is_full(source))
    }
}
