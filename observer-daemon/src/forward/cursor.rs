//! A sink's durable position in the forwarded stream, kept outside the
//! receipt database so a sink never takes a SQLite write lock that could
//! stall the receipt writer. Written atomically: temp file, fsync, rename,
//! directory fsync.
use std::{
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

/// Next receipt to forward, and the size of the last checkpoint forwarded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Position {
    pub next_leaf: u64,
    pub checkpoint_size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CursorError {
    #[error("cursor {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cursor {path}: line {line}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

pub struct Cursor {
    path: PathBuf,
}

impl Cursor {
    pub fn new(dir: &Path, sink: &str) -> Cursor {
        Cursor {
            path: dir.join(format!("{sink}.cursor")),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored position; the start of the log if there is none yet.
    pub fn load(&self) -> Result<Position, CursorError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Position::default()),
            Err(source) => {
                return Err(CursorError::Io {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        let mut pos = Position::default();
        let mut seen = (false, false);
        for (i, line) in text.lines().enumerate() {
            let invalid = |message: String| CursorError::Invalid {
                path: self.path.clone(),
                line: i + 1,
                message,
            };
            let Some((key, value)) = line.split_once('=') else {
                return Err(invalid(format!("{line:?} is not key=value")));
            };
            let n: u64 = value
                .trim()
                .parse()
                .map_err(|e| invalid(format!("{key}: {e}")))?;
            match key.trim() {
                "next_leaf" => (pos.next_leaf, seen.0) = (n, true),
                "checkpoint_size" => (pos.checkpoint_size, seen.1) = (n, true),
                other => return Err(invalid(format!("unknown key {other:?}"))),
            }
        }
        if !(seen.0 && seen.1) {
            return Err(CursorError::Invalid {
                path: self.path.clone(),
                line: text.lines().count(),
                message: "next_leaf and checkpoint_size are both required".into(),
            });
        }
        Ok(pos)
    }

    pub fn store(&self, pos: Position) -> Result<(), CursorError> {
        let io = |source| CursorError::Io {
            path: self.path.clone(),
            source,
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io)?;
        let tmp = self.path.with_extension("cursor.tmp");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        write!(
            f,
            "next_leaf={}\ncheckpoint_size={}\n",
            pos.next_leaf, pos.checkpoint_size
        )
        .map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cursor::new(&dir.path().join("sinks"), "siem");
        assert_eq!(c.load().unwrap(), Position::default());
        let p = Position {
            next_leaf: 42,
            checkpoint_size: 40,
        };
        c.store(p).unwrap();
        assert_eq!(c.load().unwrap(), p);
        assert_eq!(
            std::fs::read_to_string(c.path()).unwrap(),
            "next_leaf=42\ncheckpoint_size=40\n"
        );
        std::fs::write(c.path(), "next_leaf=42\ncheckpoint_size=x\n").unwrap();
        let err = c.load().unwrap_err().to_string();
        assert!(
            err.contains("siem.cursor: line 2: checkpoint_size"),
            "{err}"
        );
    }
}
