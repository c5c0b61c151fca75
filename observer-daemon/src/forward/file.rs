//! `file` sink: JSON lines (0600), delivered when fsync returns. Rotated
//! before a line would take the file past `max_bytes`: `<path>` becomes
//! `<path>.1`, `.1` becomes `.2` ..., and files beyond `max_files` rotated
//! ones are deleted.
use std::{
    fs::File,
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use super::{
    config::FileConfig,
    sink::{SendError, Sink},
};
use crate::export::{self, Format, Item};

pub struct FileSink {
    cfg: FileConfig,
    format: Format,
    file: Option<(File, u64)>,
}

fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".{n}"));
    PathBuf::from(p)
}

impl FileSink {
    pub fn new(cfg: FileConfig, format: Format) -> FileSink {
        FileSink {
            cfg,
            format,
            file: None,
        }
    }

    fn open(&mut self) -> std::io::Result<()> {
        if self.file.is_none() {
            if let Some(dir) = self.cfg.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&self.cfg.path)?;
            let size = f.metadata()?.len();
            self.file = Some((f, size));
        }
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        if let Some((f, _)) = self.file.take() {
            f.sync_all()?;
        }
        let path = &self.cfg.path;
        let _ = std::fs::remove_file(rotated(path, self.cfg.max_files));
        for n in (1..self.cfg.max_files).rev() {
            match std::fs::rename(rotated(path, n), rotated(path, n + 1)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        std::fs::rename(path, rotated(path, 1))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
        self.open()
    }

    fn write_batch(&mut self, batch: &[Item]) -> std::io::Result<()> {
        self.open()?;
        for item in batch {
            let mut line = export::to_json_text(item, self.format).into_bytes();
            line.push(b'\n');
            let size = self.file.as_ref().map_or(0, |(_, s)| *s);
            if size > 0 && size + line.len() as u64 > self.cfg.max_bytes {
                self.rotate()?;
            }
            if let Some((f, size)) = self.file.as_mut() {
                f.write_all(&line)?;
                *size += line.len() as u64;
            }
        }
        if let Some((f, _)) = self.file.as_mut() {
            f.sync_data()?;
        }
        Ok(())
    }
}

impl Sink for FileSink {
    fn send(&mut self, batch: &[Item]) -> Result<(), SendError> {
        self.write_batch(batch).map_err(|e| {
            SendError::new(
                "write",
                format!("{}: {e}", self.cfg.path.display()),
                batch.len(),
            )
        })
    }

    fn reset(&mut self) {
        self.file = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::fixtures::exec_receipt;

    #[test]
    fn rotates_at_size_and_keeps_max_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let mut s = FileSink::new(
            FileConfig {
                path: path.clone(),
                max_bytes: 4096,
                max_files: 2,
            },
            Format::Receipt,
        );
        let items: Vec<Item> = (0..40)
            .map(|i| {
                let mut r = exec_receipt();
                r.leaf_index = i;
                Item::Receipt(r)
            })
            .collect();
        for chunk in items.chunks(7) {
            s.send(chunk).unwrap();
        }
        let read = |p: &Path| -> Vec<u64> {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(|l| {
                    serde_json::from_str::<serde_json::Value>(l).unwrap()["log_index"]
                        .as_u64()
                        .unwrap()
                })
                .collect()
        };
        let (cur, one, two) = (
            read(&path),
            read(&rotated(&path, 1)),
            read(&rotated(&path, 2)),
        );
        assert!(!rotated(&path, 3).exists());
        for p in [&path, &rotated(&path, 1), &rotated(&path, 2)] {
            assert!(std::fs::metadata(p).unwrap().len() <= 4096);
        }
        // The newest lines, contiguous across the kept files, ending at 39.
        let kept: Vec<u64> = two.iter().chain(&one).chain(&cur).copied().collect();
        assert_eq!(*kept.last().unwrap(), 39);
        assert!(kept.windows(2).all(|w| w[1] == w[0] + 1), "{kept:?}");
        assert!(kept[0] > 0, "the oldest file was deleted");
    }
}
