//! Why a store operation failed, always naming the store.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("receipt store {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("receipt store {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("receipt store {path}: {source}")]
    Io {
        path: PathBuf,
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
