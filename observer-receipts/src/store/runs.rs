//! Daemon runs (and offline maintenance) as the store records them: an
//! unclean stop is a run with no stop time.
use rusqlite::{params, OptionalExtension};

use super::{RunRow, Store, StoreError};

/// What opened the store for writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    /// observerd. Only daemon runs count for [`Store::last_run`] and
    /// unclean-stop detection.
    Daemon,
    /// Offline work with the daemon stopped, such as an erasure or a prune.
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

impl Store {
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

    /// Marks run `run` as stopped cleanly at `stopped_at` (RFC 3339 UTC).
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
}
