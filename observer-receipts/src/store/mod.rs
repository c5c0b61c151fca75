//! The SQLite store: receipts (envelope and context kept apart), chain
//! heads, public keys, the Merkle log's perfect-subtree nodes, signed
//! checkpoints and daemon runs. WAL mode; one writer; schema versioned by
//! `PRAGMA user_version`. It is also the forwarding spool.
//!
//! Opening and migrating are here; the schema in `schema`, what the
//! store answers in `reads`, the writes of a transaction in [`Batch`], the
//! writer's lock in [`WriterLock`].
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use crate::merkle::Hash;

mod batch;
mod error;
mod lock;
mod reads;
mod rows;
mod runs;
mod schema;
#[cfg(test)]
mod tests;

pub use batch::Batch;
pub use error::StoreError;
pub use lock::WriterLock;
pub use rows::{
    ChainHead, CheckpointRow, KeyRow, MasterRow, NewKey, NewReceipt, ReceiptRow, RunRow,
};
pub use runs::RunKind;
pub(crate) use schema::MIGRATIONS;
use schema::OLDEST_READABLE;

/// An open receipt store: one SQLite connection. Open it with
/// [`Store::open`] to write (after taking the [`WriterLock`]) or with
/// [`Store::open_read_only`] to verify or query.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens (creating 0600 if needed) and migrates the store for writing.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let io = |source| StoreError::Io {
            path: path.to_owned(),
            source,
        };
        // The state directory and every directory above it must be root's
        // and closed to others (created 0700 when missing), and the
        // database a 0600 file of root's, opened without following a
        // link: SQLite then opens it by name inside a directory nobody
        // else can change.
        let untrusted = |error: crate::trust::TrustError| StoreError::Invalid {
            path: path.to_owned(),
            message: error.to_string(),
        };
        let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
            Some(dir) => crate::trust::TrustedDir::create(dir, 0o700),
            None => crate::trust::TrustedDir::open(Path::new(".")),
        }
        .map_err(untrusted)?;
        // Created by us with 0600 before SQLite opens it: its -wal and -shm
        // files inherit the database file's mode.
        let name = path
            .file_name()
            .ok_or_else(|| io(std::io::ErrorKind::InvalidInput.into()))?;
        dir.open_file(
            name,
            nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CREAT | nix::fcntl::OFlag::O_APPEND,
            0o600,
            crate::trust::Secrecy::Secret,
        )
        .map_err(untrusted)?;
        let conn = crate::sqlite::connect(path, OpenFlags::default()).map_err(|source| {
            StoreError::Sqlite {
                path: path.to_owned(),
                source,
            }
        })?;
        let mut store = Store {
            conn,
            path: path.to_owned(),
        };
        store.pragmas()?;
        store.migrate()?;
        let converted = crate::stored_envelope::convert_whole_rows(&mut store.conn)
            .map_err(|e| store.err(e))?;
        if converted > 0 {
            log::info!(
                "receipt store {}: {converted} signatures moved out of their envelope texts (schema 3)",
                path.display()
            );
        }
        Ok(store)
    }

    /// Opens an existing store without writing to it (verification,
    /// queries while the daemon runs).
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        let conn = crate::sqlite::connect(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| StoreError::Sqlite {
            path: path.to_owned(),
            source,
        })?;
        let store = Store {
            conn,
            path: path.to_owned(),
        };
        let version: u32 = store
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| store.err(e))?;
        if !(OLDEST_READABLE as usize..=MIGRATIONS.len()).contains(&(version as usize)) {
            return Err(StoreError::Invalid {
                path: path.to_owned(),
                message: format!(
                    "schema version {version}, this build reads versions {OLDEST_READABLE} to {}",
                    MIGRATIONS.len()
                ),
            });
        }
        if version == 2 {
            crate::stored_envelope::read_schema_2(&store.conn).map_err(|e| store.err(e))?;
        }
        Ok(store)
    }

    /// The database file this store was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn pragmas(&mut self) -> Result<(), StoreError> {
        // FULL: a committed batch survives power loss too; batching keeps
        // the fsync cost per receipt small.
        self.conn
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
            )
            .map_err(|e| self.err(e))
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let version: usize = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get::<_, u32>(0))
            .map_err(|e| self.err(e))? as usize;
        if version > MIGRATIONS.len() {
            return Err(StoreError::Invalid {
                path: self.path.clone(),
                message: format!(
                    "schema version {version} is newer than this build ({})",
                    MIGRATIONS.len()
                ),
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = self.conn.transaction().map_err(|e| StoreError::Sqlite {
                path: self.path.clone(),
                source: e,
            })?;
            tx.execute_batch(sql)
                .and_then(|()| tx.pragma_update(None, "user_version", (i + 1) as u32))
                .and_then(|()| tx.commit())
                .map_err(|e| StoreError::Sqlite {
                    path: self.path.clone(),
                    source: e,
                })?;
        }
        Ok(())
    }

    /// The schema version (`PRAGMA user_version`): the number of
    /// migrations applied.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        self.conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    /// A stored perfect-subtree hash of the Merkle log.
    pub fn merkle_node(&self, level: u32, index: u64) -> Result<Option<Hash>, StoreError> {
        let blob: Option<Vec<u8>> = self
            .conn
            .prepare_cached("SELECT hash FROM merkle_nodes WHERE level = ?1 AND idx = ?2")
            .and_then(|mut s| {
                s.query_row(params![level, index as i64], |r| r.get(0))
                    .optional()
            })
            .map_err(|e| self.err(e))?;
        blob.map(|b| {
            b.try_into().map_err(|_| StoreError::Invalid {
                path: self.path.clone(),
                message: format!("merkle node ({level}, {index}) is not 32 bytes"),
            })
        })
        .transpose()
    }

    /// Runs `f` in one transaction; commits if it returns Ok.
    pub fn transaction<T>(
        &mut self,
        f: impl FnOnce(&mut Batch<'_>) -> Result<T, rusqlite::Error>,
    ) -> Result<T, StoreError> {
        let path = self.path.clone();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        let mut batch = Batch { tx };
        let out = f(&mut batch).map_err(err)?;
        batch.tx.commit().map_err(err)?;
        Ok(out)
    }

    /// Direct access for maintenance tools and tests (e.g. tamper tests).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }
}

/// Reads Merkle nodes from the store for proofs and for resuming the
/// frontier.
pub struct StoreNodes<'s>(pub &'s Store);

impl crate::merkle::NodeSource for StoreNodes<'_> {
    type Error = StoreError;

    fn node(&self, level: u32, index: u64) -> Result<Hash, StoreError> {
        self.0
            .merkle_node(level, index)?
            .ok_or_else(|| StoreError::Invalid {
                path: self.0.path.clone(),
                message: format!("merkle node ({level}, {index}) is missing"),
            })
    }
}
