//! The SQLite store: receipts (envelope and context kept apart), chain
//! heads, public keys, the Merkle log's perfect-subtree nodes, signed
//! checkpoints and daemon runs. WAL mode; one writer; schema versioned by
//! `PRAGMA user_version`. It is also the forwarding spool.
use std::{
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Transaction};

use super::{chain::ChainHead, merkle::Hash};

/// Migrations in order; `user_version` is the number applied.
pub(crate) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    pid INTEGER NOT NULL,
    version TEXT NOT NULL,
    started_at TEXT NOT NULL,
    stopped_at TEXT,
    clean_stop INTEGER NOT NULL DEFAULT 0,
    -- 'daemon', or 'maintenance' for offline work such as an erasure
    kind TEXT NOT NULL DEFAULT 'daemon'
);
CREATE TABLE keys (
    kid TEXT PRIMARY KEY,
    issuer_id TEXT NOT NULL UNIQUE,
    agent_id TEXT NOT NULL,
    jwk TEXT NOT NULL,
    introduced_by BLOB NOT NULL
);
CREATE TABLE chains (
    issuer_id TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL,
    kid TEXT NOT NULL,
    seq INTEGER NOT NULL,
    head_payload_hash TEXT NOT NULL,
    head_receipt_hash BLOB NOT NULL
);
CREATE TABLE receipts (
    leaf_index INTEGER PRIMARY KEY,
    receipt_hash BLOB NOT NULL UNIQUE,
    issuer_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    agent_id TEXT NOT NULL,
    action_type TEXT NOT NULL,
    issued_ns INTEGER NOT NULL,
    risk_class TEXT NOT NULL,
    envelope TEXT NOT NULL,
    UNIQUE (issuer_id, seq)
);
CREATE INDEX receipts_by_agent ON receipts (agent_id, issued_ns);
CREATE INDEX receipts_by_action ON receipts (action_type, issued_ns);
CREATE INDEX receipts_by_time ON receipts (issued_ns);
CREATE INDEX receipts_by_risk ON receipts (risk_class, issued_ns);
CREATE TABLE contexts (
    leaf_index INTEGER PRIMARY KEY REFERENCES receipts (leaf_index),
    context TEXT NOT NULL
);
CREATE TABLE merkle_nodes (
    level INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
CREATE TABLE checkpoints (
    size INTEGER PRIMARY KEY,
    root BLOB NOT NULL,
    note TEXT NOT NULL,
    created_at TEXT NOT NULL
);
"#,
    r#"
-- Master key rotation (docs/RECEIPTS.md, "Key rotation"): a chain has one
-- key per master generation, so issuer_id is no longer unique. `generation`
-- is the master generation that derived the key (1: the genesis seed);
-- `rotates` the kid it replaced (NULL for a chain's first key).
CREATE TABLE keys_v2 (
    kid TEXT PRIMARY KEY,
    issuer_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    jwk TEXT NOT NULL,
    introduced_by BLOB NOT NULL,
    generation INTEGER NOT NULL DEFAULT 1,
    rotates TEXT
);
INSERT INTO keys_v2 (kid, issuer_id, agent_id, jwk, introduced_by)
    SELECT kid, issuer_id, agent_id, jwk, introduced_by FROM keys ORDER BY rowid;
DROP TABLE keys;
ALTER TABLE keys_v2 RENAME TO keys;
CREATE INDEX keys_by_issuer ON keys (issuer_id);
"#,
    r#"
-- The signature's bytes apart from the envelope's text (stored_envelope.rs):
-- 3,309 bytes instead of 4,412 base64url characters. Rows written before
-- keep the whole envelope (sig NULL) until `receipts_whole`, the list of
-- rows still to convert, has been worked through at the writer's open.
ALTER TABLE receipts RENAME COLUMN envelope TO envelope_text;
ALTER TABLE receipts ADD COLUMN sig BLOB;
CREATE INDEX receipts_whole ON receipts (leaf_index) WHERE sig IS NULL;
"#,
];

/// The oldest schema a read-only open still reads (through
/// `stored_envelope::read_schema_2`): a writer migrates, a reader may not.
const OLDEST_READABLE: u32 = 2;

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

pub struct Store {
    conn: Connection,
    path: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    Daemon,
    Maintenance,
}

impl RunKind {
    fn as_str(self) -> &'static str {
        match self {
            RunKind::Daemon => "daemon",
            RunKind::Maintenance => "maintenance",
        }
    }
}

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

/// A stored receipt row, as the verifier and queries read it.
#[derive(Debug, Clone)]
pub struct ReceiptRow {
    pub leaf_index: u64,
    pub receipt_hash: Vec<u8>,
    pub issuer_id: String,
    pub seq: u64,
    pub envelope: String,
    pub context: Option<String>,
}

#[derive(Debug, Clone)]
pub struct CheckpointRow {
    pub size: u64,
    pub root: Vec<u8>,
    pub note: String,
    pub created_at: String,
}

#[derive(Debug, Clone)]
pub struct RunRow {
    pub id: i64,
    pub pid: u32,
    pub version: String,
    pub started_at: String,
    pub stopped_at: Option<String>,
    pub clean_stop: bool,
}

#[derive(Debug, Clone)]
pub struct KeyRow {
    pub kid: String,
    pub issuer_id: String,
    pub agent_id: String,
    pub jwk: String,
    /// The master generation that derived the key (1: genesis).
    pub generation: u64,
    /// The kid this key replaced (a rotation), if any.
    pub rotates: Option<String>,
}

/// The master key the store's log currently ends with: the genesis master
/// or the newest master rotation's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterRow {
    pub kid: String,
    pub generation: u64,
}

/// A key announced by a committed `observer.key` receipt.
pub struct NewKey<'a> {
    pub kid: &'a str,
    pub issuer_id: &'a str,
    pub agent_id: &'a str,
    pub jwk: &'a str,
    pub generation: u64,
    pub rotates: Option<&'a str>,
}

/// One committed receipt, as the writer inserts it.
pub struct NewReceipt<'a> {
    pub leaf_index: u64,
    pub receipt_hash: &'a Hash,
    pub issuer_id: &'a str,
    pub seq: u64,
    pub agent_id: &'a str,
    pub action_type: &'a str,
    pub unix_ns: u64,
    pub risk_class: &'a str,
    pub envelope: &'a [u8],
    pub context: Option<&'a [u8]>,
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
        let conn = super::sqlite::connect(path, OpenFlags::default()).map_err(|source| {
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
        let converted = super::stored_envelope::convert_whole_rows(&mut store.conn)
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
        let conn = super::sqlite::connect(
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
            super::stored_envelope::read_schema_2(&store.conn).map_err(|e| store.err(e))?;
        }
        Ok(store)
    }

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
                .and_then(|_| tx.pragma_update(None, "user_version", (i + 1) as u32))
                .and_then(|_| tx.commit())
                .map_err(|e| StoreError::Sqlite {
                    path: self.path.clone(),
                    source: e,
                })?;
        }
        Ok(())
    }

    pub fn schema_version(&self) -> Result<u32, StoreError> {
        self.conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    /// Records a start of the daemon (or of offline maintenance); returns
    /// the run id.
    pub fn begin_run(
        &self,
        kind: RunKind,
        pid: u32,
        version: &str,
        started_at: &str,
    ) -> Result<i64, StoreError> {
        self.conn
            .execute(
                "INSERT INTO runs (pid, version, started_at, kind) VALUES (?1, ?2, ?3, ?4)",
                params![pid, version, started_at, kind.as_str()],
            )
            .map_err(|e| self.err(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn finish_run(&self, run: i64, stopped_at: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE runs SET stopped_at = ?2, clean_stop = 1 WHERE id = ?1",
                params![run, stopped_at],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The most recent daemon run, if any.
    pub fn last_run(&self) -> Result<Option<RunRow>, StoreError> {
        self.conn
            .query_row(
                "SELECT id, pid, version, started_at, stopped_at, clean_stop FROM runs
                 WHERE kind = 'daemon' ORDER BY id DESC LIMIT 1",
                [],
                |r| {
                    Ok(RunRow {
                        id: r.get(0)?,
                        pid: r.get(1)?,
                        version: r.get(2)?,
                        started_at: r.get(3)?,
                        stopped_at: r.get(4)?,
                        clean_stop: r.get::<_, i64>(5)? != 0,
                    })
                },
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    pub fn chain_heads(&self) -> Result<Vec<ChainHead>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT issuer_id, agent_id, kid, seq, head_payload_hash FROM chains")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(ChainHead {
                    issuer_id: r.get(0)?,
                    agent_id: r.get(1)?,
                    kid: r.get(2)?,
                    seq: r.get::<_, i64>(3)? as u64,
                    payload_hash: r.get(4)?,
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err(e));
        rows
    }

    /// Number of receipts, i.e. the Merkle log's size.
    pub fn log_size(&self) -> Result<u64, StoreError> {
        self.conn
            .query_row(
                "SELECT COALESCE(MAX(leaf_index) + 1, 0) FROM receipts",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(|e| self.err(e))
    }

    /// `issued_ns` of the newest receipt.
    pub fn last_issued_ns(&self) -> Result<Option<u64>, StoreError> {
        self.conn
            .query_row("SELECT MAX(issued_ns) FROM receipts", [], |r| {
                r.get::<_, Option<i64>>(0)
            })
            .map(|n| n.map(|n| n as u64))
            .map_err(|e| self.err(e))
    }

    pub fn latest_checkpoint(&self) -> Result<Option<CheckpointRow>, StoreError> {
        self.conn
            .query_row(
                "SELECT size, root, note, created_at FROM checkpoints ORDER BY size DESC LIMIT 1",
                [],
                checkpoint_row,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    pub fn checkpoints(&self) -> Result<Vec<CheckpointRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT size, root, note, created_at FROM checkpoints ORDER BY size")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], checkpoint_row)
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err(e));
        rows
    }

    pub fn keys(&self) -> Result<Vec<KeyRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT kid, issuer_id, agent_id, jwk, generation, rotates FROM keys ORDER BY rowid",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(KeyRow {
                    kid: r.get(0)?,
                    issuer_id: r.get(1)?,
                    agent_id: r.get(2)?,
                    jwk: r.get(3)?,
                    generation: r.get::<_, i64>(4)? as u64,
                    rotates: r.get(5)?,
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err(e));
        rows
    }

    /// The current master: the observer chain's key of the highest
    /// generation; `None` before the first receipt.
    pub fn current_master(&self) -> Result<Option<MasterRow>, StoreError> {
        self.conn
            .query_row(
                "SELECT kid, generation FROM keys WHERE agent_id = 'observer'
                 ORDER BY generation DESC, rowid DESC LIMIT 1",
                [],
                |r| {
                    Ok(MasterRow {
                        kid: r.get(0)?,
                        generation: r.get::<_, i64>(1)? as u64,
                    })
                },
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Every master rotation receipt still in the log, in log order:
    /// (leaf index, envelope, context).
    pub fn master_rotations(&self) -> Result<Vec<(u64, String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT r.leaf_index, receipt_envelope(r.envelope_text, r.sig), c.context
                 FROM receipts r
                 JOIN contexts c USING (leaf_index)
                 JOIN keys k ON k.introduced_by = r.receipt_hash
                 WHERE r.action_type = 'observer.key' AND r.agent_id = 'observer'
                   AND k.agent_id = 'observer' AND k.rotates IS NOT NULL
                 ORDER BY r.leaf_index",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get(1)?, r.get(2)?))
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err(e));
        rows
    }

    /// Calls `f` for every receipt in log order, with its context.
    pub fn for_each_receipt(
        &self,
        mut f: impl FnMut(ReceiptRow) -> bool,
    ) -> Result<(), StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT r.leaf_index, r.receipt_hash, r.issuer_id, r.seq,
                        receipt_envelope(r.envelope_text, r.sig), c.context
                 FROM receipts r LEFT JOIN contexts c ON c.leaf_index = r.leaf_index
                 ORDER BY r.leaf_index",
            )
            .map_err(|e| self.err(e))?;
        let mut rows = stmt.query([]).map_err(|e| self.err(e))?;
        while let Some(r) = rows.next().map_err(|e| self.err(e))? {
            let row = receipt_row(r).map_err(|e| self.err(e))?;
            if !f(row) {
                break;
            }
        }
        Ok(())
    }

    pub fn receipt_by_hash(&self, receipt_hash: &[u8]) -> Result<Option<ReceiptRow>, StoreError> {
        self.conn
            .query_row(
                "SELECT r.leaf_index, r.receipt_hash, r.issuer_id, r.seq,
                        receipt_envelope(r.envelope_text, r.sig), c.context
                 FROM receipts r LEFT JOIN contexts c ON c.leaf_index = r.leaf_index
                 WHERE r.receipt_hash = ?1",
                [receipt_hash],
                receipt_row,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// The envelope (as stored, reassembled) of the receipt at
    /// `leaf_index`; an error if there is none.
    pub fn envelope_at(&self, leaf_index: u64) -> Result<String, StoreError> {
        self.conn
            .query_row(
                "SELECT receipt_envelope(envelope_text, sig) FROM receipts WHERE leaf_index = ?1",
                [leaf_index as i64],
                |r| r.get::<_, String>(0),
            )
            .map_err(|e| self.err(e))
    }

    /// The `observer.key` receipt (envelope, context) that first announced
    /// the chain key `kid`.
    pub fn key_announcement(&self, kid: &str) -> Result<Option<(String, String)>, StoreError> {
        self.conn
            .query_row(
                "SELECT receipt_envelope(r.envelope_text, r.sig), c.context
                 FROM receipts r JOIN contexts c ON c.leaf_index = r.leaf_index
                 WHERE r.action_type = 'observer.key' AND r.agent_id = 'observer'
                   AND json_extract(c.context, '$.kid') = ?1 ORDER BY r.leaf_index LIMIT 1",
                [kid],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// The receipts issued in `[start_ns, end_ns]`, plus the receipts
    /// between them in each chain (a chain's seq order and issue times can
    /// differ by a file-open window), so that every chain among them is
    /// contiguous; in log order.
    pub fn window_receipts(
        &self,
        start_ns: u64,
        end_ns: u64,
    ) -> Result<Vec<ReceiptRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT issuer_id, MIN(seq), MAX(seq) FROM receipts
                 WHERE issued_ns >= ?1 AND issued_ns <= ?2 GROUP BY issuer_id",
            )
            .map_err(|e| self.err(e))?;
        let ranges = stmt
            .query_map(params![start_ns as i64, end_ns as i64], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err(e))?;
        let mut stmt = self
            .conn
            .prepare(
                "SELECT r.leaf_index, r.receipt_hash, r.issuer_id, r.seq, receipt_envelope(r.envelope_text, r.sig), c.context
                 FROM receipts r LEFT JOIN contexts c ON c.leaf_index = r.leaf_index
                 WHERE r.issuer_id = ?1 AND r.seq >= ?2 AND r.seq <= ?3",
            )
            .map_err(|e| self.err(e))?;
        let mut rows = Vec::new();
        for (issuer, lo, hi) in ranges {
            let part = stmt
                .query_map(params![issuer, lo, hi], receipt_row)
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .map_err(|e| self.err(e))?;
            rows.extend(part);
        }
        rows.sort_by_key(|r| r.leaf_index);
        Ok(rows)
    }

    /// The receipt hash of receipt `seq` of `agent_id`'s chain, if stored.
    pub fn receipt_hash_at_seq(
        &self,
        agent_id: &str,
        seq: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.conn
            .query_row(
                "SELECT receipt_hash FROM receipts WHERE agent_id = ?1 AND seq = ?2",
                params![agent_id, seq as i64],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// When the receipt at `leaf_index` was issued (ns since the epoch);
    /// an error if there is none.
    pub fn issued_ns_at(&self, leaf_index: u64) -> Result<u64, StoreError> {
        self.conn
            .query_row(
                "SELECT issued_ns FROM receipts WHERE leaf_index = ?1",
                [leaf_index as i64],
                |r| r.get::<_, i64>(0),
            )
            .map(|ns| ns as u64)
            .map_err(|e| self.err(e))
    }

    /// The envelope of receipt `seq` of the chain `issuer_id`, if stored
    /// (not pruned).
    pub fn envelope_of(&self, issuer_id: &str, seq: u64) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row(
                "SELECT receipt_envelope(envelope_text, sig) FROM receipts WHERE issuer_id = ?1 AND seq = ?2",
                params![issuer_id, seq as i64],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// The issuer id of `agent_id`'s chain; an error if it has none.
    pub fn chain_issuer(&self, agent_id: &str) -> Result<String, StoreError> {
        self.conn
            .query_row(
                "SELECT issuer_id FROM chains WHERE agent_id = ?1",
                [agent_id],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    /// The receipt hash of the newest `observer.policy` receipt that
    /// erased the context of the receipt `erased_hash_hex`; an error if
    /// there is none.
    pub fn erasure_receipt(&self, erased_hash_hex: &str) -> Result<Vec<u8>, StoreError> {
        self.conn
            .query_row(
                "SELECT r.receipt_hash FROM receipts r JOIN contexts c ON c.leaf_index = r.leaf_index
                 WHERE r.action_type = 'observer.policy' AND json_extract(c.context, '$.erase') = ?1
                 ORDER BY r.leaf_index DESC LIMIT 1",
                [erased_hash_hex],
                |r| r.get(0),
            )
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

/// Maps `leaf_index, receipt_hash, issuer_id, seq, envelope, context`.
fn receipt_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ReceiptRow> {
    Ok(ReceiptRow {
        leaf_index: r.get::<_, i64>(0)? as u64,
        receipt_hash: r.get(1)?,
        issuer_id: r.get(2)?,
        seq: r.get::<_, i64>(3)? as u64,
        envelope: r.get(4)?,
        context: r.get(5)?,
    })
}

fn checkpoint_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CheckpointRow> {
    Ok(CheckpointRow {
        size: r.get::<_, i64>(0)? as u64,
        root: r.get(1)?,
        note: r.get(2)?,
        created_at: r.get(3)?,
    })
}

/// Writes inside one transaction.
pub struct Batch<'c> {
    tx: Transaction<'c>,
}

impl Batch<'_> {
    pub fn insert_receipt(&mut self, r: &NewReceipt<'_>) -> rusqlite::Result<()> {
        let envelope = std::str::from_utf8(r.envelope).map_err(rusqlite::Error::Utf8Error)?;
        let (text, sig) = match super::stored_envelope::split(envelope) {
            Some((text, sig)) => (std::borrow::Cow::Owned(text), Some(sig)),
            None => (std::borrow::Cow::Borrowed(envelope), None),
        };
        self.tx
            .prepare_cached(
                "INSERT INTO receipts (leaf_index, receipt_hash, issuer_id, seq, agent_id,
                 action_type, issued_ns, risk_class, envelope_text, sig)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                r.leaf_index as i64,
                &r.receipt_hash[..],
                r.issuer_id,
                r.seq as i64,
                r.agent_id,
                r.action_type,
                r.unix_ns as i64,
                r.risk_class,
                text,
                sig
            ])?;
        if let Some(context) = r.context {
            let context = std::str::from_utf8(context).map_err(rusqlite::Error::Utf8Error)?;
            self.tx
                .prepare_cached("INSERT INTO contexts (leaf_index, context) VALUES (?1, ?2)")?
                .execute(params![r.leaf_index as i64, context])?;
        }
        Ok(())
    }

    pub fn upsert_chain(
        &mut self,
        head: &ChainHead,
        head_receipt_hash: &Hash,
    ) -> rusqlite::Result<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO chains (issuer_id, agent_id, kid, seq, head_payload_hash, head_receipt_hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (issuer_id) DO UPDATE SET seq = excluded.seq, kid = excluded.kid,
                   head_payload_hash = excluded.head_payload_hash,
                   head_receipt_hash = excluded.head_receipt_hash",
            )?
            .execute(params![
                head.issuer_id,
                head.agent_id,
                head.kid,
                head.seq as i64,
                head.payload_hash,
                &head_receipt_hash[..]
            ])?;
        Ok(())
    }

    pub fn insert_key(&mut self, key: &NewKey<'_>, introduced_by: &Hash) -> rusqlite::Result<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO keys (kid, issuer_id, agent_id, jwk, introduced_by, generation, rotates)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                key.kid,
                key.issuer_id,
                key.agent_id,
                key.jwk,
                &introduced_by[..],
                key.generation as i64,
                key.rotates
            ])?;
        Ok(())
    }

    pub fn insert_nodes(&mut self, nodes: &[(u32, u64, Hash)]) -> rusqlite::Result<()> {
        let mut stmt = self
            .tx
            .prepare_cached("INSERT INTO merkle_nodes (level, idx, hash) VALUES (?1, ?2, ?3)")?;
        for (level, idx, hash) in nodes {
            stmt.execute(params![level, *idx as i64, &hash[..]])?;
        }
        Ok(())
    }

    pub fn insert_checkpoint(
        &mut self,
        size: u64,
        root: &Hash,
        note: &str,
        created_at: &str,
    ) -> rusqlite::Result<()> {
        self.tx
            .prepare_cached(
                "INSERT OR IGNORE INTO checkpoints (size, root, note, created_at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![size as i64, &root[..], note, created_at])?;
        Ok(())
    }

    /// Deletes the receipts (and contexts) below log index `cut`. Merkle
    /// nodes stay: proofs for the remaining receipts need some of them, and
    /// they hold nothing observed.
    pub fn prune_below(&mut self, cut: u64) -> rusqlite::Result<()> {
        self.tx
            .prepare_cached("DELETE FROM contexts WHERE leaf_index < ?1")?
            .execute([cut as i64])?;
        self.tx
            .prepare_cached("DELETE FROM receipts WHERE leaf_index < ?1")?
            .execute([cut as i64])?;
        Ok(())
    }

    /// Replaces a context with the erasure marker.
    pub fn erase_context(&mut self, leaf_index: u64, marker: &str) -> rusqlite::Result<usize> {
        self.tx
            .prepare_cached("UPDATE contexts SET context = ?2 WHERE leaf_index = ?1")?
            .execute(params![leaf_index as i64, marker])
    }
}

/// Reads Merkle nodes from the store for proofs and for resuming the
/// frontier.
pub struct StoreNodes<'s>(pub &'s Store);

impl super::merkle::NodeSource for StoreNodes<'_> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn creates_0600_and_migrates_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/observer.db");
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap() as usize, MIGRATIONS.len());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let run = store
            .begin_run(
                RunKind::Daemon,
                42,
                "0.1.0",
                "2026-11-22T00:00:00.000000000Z",
            )
            .unwrap();
        store
            .begin_run(
                RunKind::Maintenance,
                43,
                "0.1.0",
                "2026-11-22T00:00:01.000000000Z",
            )
            .unwrap();
        drop(store);
        let store = Store::open(&path).unwrap();
        let last = store.last_run().unwrap().unwrap();
        assert_eq!((last.id, last.pid, last.clean_stop), (run, 42, false));
        assert_eq!(store.log_size().unwrap(), 0);
        for wal in ["observer.db-wal", "observer.db-shm"] {
            let p = dir.path().join("sub").join(wal);
            if let Ok(m) = std::fs::metadata(&p) {
                assert_eq!(m.permissions().mode() & 0o077, 0, "{wal}");
            }
        }
    }

    #[test]
    fn schema_1_keys_migrate_to_generation_1_and_allow_a_second_key_per_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("observer.db");
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .unwrap();
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.execute(
            "INSERT INTO keys (kid, issuer_id, agent_id, jwk, introduced_by)
             VALUES ('k1', 'i/agent/a', 'a', '{}', x'00')",
            [],
        )
        .unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        drop(conn);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap() as usize, MIGRATIONS.len());
        let keys = store.keys().unwrap();
        assert_eq!(
            keys.iter()
                .map(|k| (k.kid.as_str(), k.generation, k.rotates.clone()))
                .collect::<Vec<_>>(),
            [("k1", 1, None)]
        );
        let mut store = store;
        store
            .transaction(|tx| {
                tx.insert_key(
                    &NewKey {
                        kid: "k2",
                        issuer_id: "i/agent/a",
                        agent_id: "a",
                        jwk: "{}",
                        generation: 2,
                        rotates: Some("k1"),
                    },
                    &[1; 32],
                )
            })
            .unwrap();
        let keys = store.keys().unwrap();
        assert_eq!(keys[1].rotates.as_deref(), Some("k1"));
        assert_eq!(keys[1].generation, 2);
    }

    #[test]
    fn one_writer_per_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("observer.db");
        let first = WriterLock::acquire(&path).unwrap();
        let err = WriterLock::acquire(&path).err().unwrap().to_string();
        assert!(err.contains("another process writes"), "{err}");
        drop(first);
        WriterLock::acquire(&path).unwrap();
    }

    #[test]
    fn refuses_a_world_readable_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("observer.db");
        std::fs::write(&path, b"").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Store::open(&path).err().unwrap().to_string();
        assert!(err.contains("observer.db") && err.contains("0600"), "{err}");
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("observer.db");
        let store = Store::open(&path).unwrap();
        store
            .connection()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        drop(store);
        let err = Store::open(&path).err().unwrap().to_string();
        assert!(err.contains("schema version 99"), "{err}");
    }

    #[test]
    fn refuses_a_store_owned_by_another_user_or_in_a_directory_others_may_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("observer.db");
        drop(Store::open(&path).unwrap());
        let nobody = nix::unistd::User::from_name("nobody")
            .unwrap()
            .unwrap()
            .uid
            .as_raw();
        std::os::unix::fs::chown(&path, Some(nobody), None).unwrap();
        let err = Store::open(&path).err().unwrap().to_string();
        assert!(
            err.contains(&format!("{}: is owned by uid {nobody}", path.display())),
            "{err}"
        );
        std::os::unix::fs::chown(&path, Some(0), None).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = Store::open(&path).err().unwrap().to_string();
        assert!(
            err.contains(&format!("{}: has mode 0777", dir.path().display())),
            "{err}"
        );
    }
}
