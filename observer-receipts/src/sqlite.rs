//! The one place that opens SQLite connections to a receipt store, so every
//! connection (the writer's, read-only opens by the verifier, forwarding and
//! observerctl) gets the same settings, and the one place that says whether
//! an error means "the store cannot grow".
use std::{path::Path, time::Duration};

use rusqlite::{config::DbConfig, Connection, ErrorCode, OpenFlags};

/// How long a statement waits for another connection's lock before it
/// fails with SQLITE_BUSY. The daemon is the only writer, but checkpoints
/// of the WAL, a retention plan or an observerctl read can briefly hold a
/// lock another connection needs: waiting is always right, failing at once
/// never is.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens `path` with `flags` and applies the settings every connection
/// needs:
/// - `busy_timeout` ([`BUSY_TIMEOUT`]): wait for a lock instead of failing;
/// - defensive mode (SQLITE_DBCONFIG_DEFENSIVE): no `writable_schema`, no
///   direct writes to shadow tables, so a statement cannot corrupt the
///   file's structure;
/// - untrusted schema (`trusted_schema = OFF`): functions with side effects
///   are not run from views, triggers or defaults stored in the file (a
///   store copied from elsewhere is data, not code);
/// - `receipt_envelope(envelope_text, sig)`, the one way to read a stored
///   envelope (`stored_envelope::join`).
pub fn connect(path: &Path, flags: OpenFlags) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false)?;
    super::stored_envelope::register(&conn)?;
    Ok(conn)
}

/// True if `e` says the file system holding the store has no room left:
/// SQLITE_FULL, or the shared-memory file of the WAL that could not be
/// extended (SQLITE_IOERR_SHMSIZE, which is how a full tmpfs shows at open).
pub fn is_full(e: &rusqlite::Error) -> bool {
    match e {
        rusqlite::Error::SqliteFailure(f, _) => {
            f.code == ErrorCode::DiskFull || f.extended_code == rusqlite::ffi::SQLITE_IOERR_SHMSIZE
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RW: OpenFlags = OpenFlags::SQLITE_OPEN_READ_WRITE.union(OpenFlags::SQLITE_OPEN_CREATE);

    #[test]
    fn a_write_waits_for_another_connections_lock_instead_of_failing_busy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let first = connect(&path, RW).unwrap();
        first
            .execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x INTEGER);")
            .unwrap();
        first
            .execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES (1);")
            .unwrap();
        let (locked_tx, locked_rx) = std::sync::mpsc::channel();
        let second = std::thread::spawn({
            let path = path.clone();
            move || {
                let conn = connect(&path, RW).unwrap();
                locked_tx.send(()).unwrap();
                // Without a busy timeout this fails at once with
                // SQLITE_BUSY: the first connection holds the write lock.
                conn.execute("INSERT INTO t VALUES (2)", [])
            }
        });
        locked_rx.recv().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        first.execute_batch("COMMIT").unwrap();
        assert_eq!(second.join().unwrap().unwrap(), 1);
        let rows: Vec<i64> = first
            .prepare("SELECT x FROM t ORDER BY x")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows, [1, 2]);
    }

    #[test]
    fn connections_are_defensive_and_do_not_trust_the_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let conn = connect(&path, RW).unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        assert!(conn.db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE).unwrap());
        assert!(!conn
            .db_config(DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA)
            .unwrap());
        let trusted: i64 = conn
            .pragma_query_value(None, "trusted_schema", |r| r.get(0))
            .unwrap();
        assert_eq!(trusted, 0);
        // Defensive: the schema table cannot be written, even with
        // writable_schema requested.
        let err = conn
            .execute_batch(
                "PRAGMA writable_schema = ON; DELETE FROM sqlite_schema WHERE name = 't';",
            )
            .unwrap_err();
        assert!(err.to_string().contains("may not be modified"), "{err}");
        let read_only = connect(&path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        assert!(read_only
            .db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE)
            .unwrap());
    }
}
