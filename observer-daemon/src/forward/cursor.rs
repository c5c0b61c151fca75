//! A sink's durable position in the forwarded stream, kept outside the
//! receipt database so a sink never takes a SQLite write lock that could
//! stall the receipt writer. Written atomically: temp file, fsync, rename,
//! directory fsync. The cursor directory and every directory above it
//! must be root's and closed to others, and the files in it are opened
//! on the checked directory's descriptor without following links, so a
//! link planted at the temporary name cannot make the daemon truncate
//! another file (crate::trust).
use std::{
    io::{Read, Write},
    path::{Path, PathBuf},
};

use nix::fcntl::OFlag;

use crate::trust::{Secrecy, TrustError, TrustedDir};

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
    #[error("cursor: {0}")]
    Untrusted(TrustError),
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
        let text = match self.read() {
            Ok(t) => t,
            Err(e) if e.io_kind() == Some(std::io::ErrorKind::NotFound) => {
                return Ok(Position::default())
            }
            Err(e) => return Err(CursorError::Untrusted(e)),
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

    fn read(&self) -> Result<String, TrustError> {
        let (dir, name) = TrustedDir::of_file(&self.path)?;
        let mut file = dir.open_file(name, OFlag::O_RDONLY, 0, Secrecy::Public)?;
        let mut text = String::new();
        file.read_to_string(&mut text)
            .map_err(|source| TrustError {
                path: self.path.clone(),
                problem: crate::trust::Problem::Io {
                    what: "reading",
                    source,
                },
            })?;
        Ok(text)
    }

    pub fn store(&self, pos: Position) -> Result<(), CursorError> {
        let io = |source| CursorError::Io {
            path: self.path.clone(),
            source,
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let dir = TrustedDir::create(dir, 0o700).map_err(CursorError::Untrusted)?;
        let name = self.path.file_name().unwrap_or_default();
        let tmp = self.path.with_extension("cursor.tmp");
        let tmp_name = tmp.file_name().unwrap_or_default();
        let mut f = dir
            .create_temporary(tmp_name, 0o600, OFlag::empty())
            .map_err(CursorError::Untrusted)?;
        write!(
            f,
            "next_leaf={}\ncheckpoint_size={}\n",
            pos.next_leaf, pos.checkpoint_size
        )
        .map_err(io)?;
        f.sync_all().map_err(io)?;
        dir.rename(tmp_name, name).map_err(CursorError::Untrusted)?;
        dir.sync().map_err(CursorError::Untrusted)
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

    #[test]
    fn a_link_planted_at_the_temporary_name_is_refused_and_its_target_kept() {
        let dir = tempfile::tempdir().unwrap();
        let sinks = dir.path().join("sinks");
        let c = Cursor::new(&sinks, "siem");
        std::fs::create_dir(&sinks).unwrap();
        let target = dir.path().join("root-owned");
        std::fs::write(&target, b"keep me").unwrap();
        std::os::unix::fs::symlink(&target, sinks.join("siem.cursor.tmp")).unwrap();
        let err = c.store(Position::default()).unwrap_err().to_string();
        assert!(
            err.contains(&format!(
                "{}: is a symbolic link",
                sinks.join("siem.cursor.tmp").display()
            )),
            "{err}"
        );
        assert_eq!(std::fs::read(&target).unwrap(), b"keep me");
        assert!(!c.path().exists());
    }
}
