//! A file written around the page cache (`O_DIRECT`), for `export --out`.
//!
//! A buffered write copies every byte into a freshly allocated page-cache
//! page. On a VM whose free memory belongs to the host until first touched
//! (virtio-balloon free page reporting, as on the machines we measure),
//! that copy is the export's largest cost: writing 6.7 GB through the page
//! cache ran at 290 MB/s, the same bytes with `O_DIRECT` at 1.2 GB/s, and
//! the page cache only held an export nobody reads back soon. The export
//! is fsynced before it is renamed into place anyway, so skipping the cache
//! loses nothing.
//!
//! Bytes are gathered into aligned buffers; a full buffer goes to a writer
//! thread while the next one fills, so the device writes while the export
//! formats. The unaligned tail goes through the page cache at the end.
use std::{
    fs::File,
    io::{self, Write},
    os::fd::AsRawFd,
    path::Path,
    thread::JoinHandle,
};

use crossbeam_channel::{bounded, Receiver, Sender};
use nix::fcntl::OFlag;

use super::CtlError;
use observer_daemon::trust::{create_output_file, Problem, TrustError};

/// `O_DIRECT` wants buffers, offsets and lengths aligned to the device's
/// logical block size: 512 or 4096, and 4096 serves both.
const ALIGN: usize = 4096;
/// Bytes per direct write: large enough that the per-request cost is
/// nothing next to the transfer.
const CHUNK: usize = 4 << 20;
/// Buffers in all: one filling, the others queued for or in the writer.
/// With one spare the export stalled whenever the disk paused (18-21 s for
/// 1M OCSF receipts with three spares, 24.6 s with one).
const BUFFERS: usize = 4;

/// A buffer whose usable part starts at an `ALIGN` boundary (empty while
/// its owner has handed its buffer on).
#[derive(Default)]
struct Aligned {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl Aligned {
    fn new() -> Self {
        let storage = vec![0u8; CHUNK + ALIGN];
        let start = storage.as_ptr().align_offset(ALIGN);
        Aligned {
            storage,
            start,
            len: 0,
        }
    }

    fn filled(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }

    /// Appends what fits of `bytes`; returns how much did.
    fn fill(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(CHUNK - self.len);
        let at = self.start + self.len;
        self.storage[at..at + n].copy_from_slice(&bytes[..n]);
        self.len += n;
        n
    }
}

/// Writes through `O_DIRECT`; [`DirectFile::finish`] writes the tail and
/// hands the file back for syncing.
pub(super) struct DirectFile {
    current: Aligned,
    to_writer: Option<Sender<Aligned>>,
    from_writer: Receiver<Aligned>,
    writer: Option<JoinHandle<io::Result<File>>>,
}

impl DirectFile {
    /// Creates `path` anew (`O_EXCL`, never through a link, exactly
    /// `mode`: observer_daemon::trust::create_output_file) for direct writing.
    /// `Ok(None)`: the file system refuses `O_DIRECT` (tmpfs before Linux
    /// 6.6, some FUSE file systems); the caller writes through the page
    /// cache instead.
    pub(super) fn create(path: &Path, mode: u32) -> Result<Option<Self>, CtlError> {
        let file = match create_output_file(path, mode, OFlag::O_DIRECT) {
            Ok(f) => f,
            Err(TrustError {
                problem: Problem::Io { source, .. },
                ..
            }) if source.raw_os_error() == Some(libc::EINVAL) => return Ok(None),
            Err(e) => return Err(CtlError::Io(e.to_string())),
        };
        let (to_writer, jobs) = bounded::<Aligned>(BUFFERS);
        let (returned, from_writer) = bounded::<Aligned>(BUFFERS);
        for _ in 1..BUFFERS {
            returned
                .send(Aligned::new())
                .expect("the receiver is held here");
        }
        let writer = std::thread::Builder::new()
            .name("export-direct-io".into())
            .spawn(move || write_chunks(file, &jobs, &returned))
            .map_err(|e| CtlError::Io(format!("starting the export writer: {e}")))?;
        Ok(Some(DirectFile {
            current: Aligned::new(),
            to_writer: Some(to_writer),
            from_writer,
            writer: Some(writer),
        }))
    }

    /// Hands the full buffer to the writer and takes a free one back.
    fn rotate(&mut self) -> io::Result<()> {
        let sent = match &self.to_writer {
            Some(tx) => tx.send(std::mem::take(&mut self.current)).is_ok(),
            None => false,
        };
        match self.from_writer.recv() {
            Ok(free) if sent => {
                self.current = free;
                self.current.len = 0;
                Ok(())
            }
            _ => Err(self.writer_error()),
        }
    }

    /// The writer stopped: its error.
    fn writer_error(&mut self) -> io::Error {
        self.to_writer = None;
        match self.writer.take().map(JoinHandle::join) {
            Some(Ok(Err(e))) => e,
            Some(Err(_)) => io::Error::other("the direct-I/O writer thread panicked"),
            _ => io::Error::other("the direct-I/O writer thread stopped"),
        }
    }

    /// Writes what is buffered, the last partial block through the page
    /// cache, and returns the file (not yet synced).
    pub(super) fn finish(mut self) -> io::Result<File> {
        let aligned = self.current.len / ALIGN * ALIGN;
        let tail = self.current.filled()[aligned..].to_vec();
        self.current.len = aligned;
        if aligned > 0 {
            self.rotate()?;
        }
        self.to_writer = None;
        let mut file = match self.writer.take().map(JoinHandle::join) {
            Some(Ok(result)) => result?,
            Some(Err(_)) => return Err(io::Error::other("the direct-I/O writer thread panicked")),
            None => return Err(io::Error::other("the direct-I/O writer thread stopped")),
        };
        if !tail.is_empty() {
            let flags = nix::fcntl::fcntl(file.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL)?;
            let buffered =
                nix::fcntl::OFlag::from_bits_truncate(flags) - nix::fcntl::OFlag::O_DIRECT;
            nix::fcntl::fcntl(file.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(buffered))?;
            file.write_all(&tail)?;
        }
        Ok(file)
    }
}

impl Write for DirectFile {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.current.storage.is_empty() {
            return Err(io::Error::other("an earlier direct write failed"));
        }
        if self.current.len == CHUNK {
            self.rotate()?;
        }
        Ok(self.current.fill(bytes))
    }

    /// Direct writes happen a chunk at a time; the rest waits for
    /// [`DirectFile::finish`].
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The writer thread: writes each buffer whole and gives it back. Stops at
/// the first error (returned) or when the sending side is dropped.
fn write_chunks(
    mut file: File,
    jobs: &Receiver<Aligned>,
    free: &Sender<Aligned>,
) -> io::Result<File> {
    for chunk in jobs {
        file.write_all(chunk.filled())?;
        if free.send(chunk).is_err() {
            break;
        }
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes that differ at every offset, so a chunk written twice, out of
    /// place or not at all shows.
    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 4093) as u8).collect()
    }

    fn open_flags(file: &File) -> i32 {
        nix::fcntl::fcntl(file.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL).unwrap()
    }

    #[test]
    fn writes_every_byte_in_order_around_the_page_cache() {
        // /tmp is the root file system here (ext4), which takes O_DIRECT.
        let dir = tempfile::tempdir().unwrap();
        for n in [
            0,
            1,
            ALIGN - 1,
            ALIGN,
            CHUNK - 1,
            CHUNK,
            CHUNK + ALIGN + 17,
            3 * CHUNK + 5,
        ] {
            let path = dir.path().join(format!("out-{n}"));
            let mut direct = DirectFile::create(&path, 0o600)
                .unwrap()
                .expect("O_DIRECT on ext4");
            let bytes = pattern(n);
            // Uneven pieces, as the export's batches are.
            for piece in bytes.chunks(100_003) {
                direct.write_all(piece).unwrap();
            }
            let file = direct.finish().unwrap();
            file.sync_all().unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), bytes, "{n} bytes");
        }
    }

    #[test]
    fn the_file_is_open_with_o_direct_while_chunks_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let mut direct = DirectFile::create(&path, 0o600).unwrap().unwrap();
        direct.write_all(&pattern(CHUNK + 1)).unwrap();
        // The writer thread owns the file; its descriptor is the newest
        // one of this process that names the path.
        let fd = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .find_map(|e| {
                let e = e.unwrap();
                let target = std::fs::read_link(e.path()).ok()?;
                (target == path).then(|| e.file_name().into_string().unwrap())
            })
            .expect("the file is open");
        let fdinfo = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap();
        let flags = fdinfo
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .map(|f| i32::from_str_radix(f.trim(), 8).unwrap())
            .unwrap();
        assert_eq!(flags & libc::O_DIRECT, libc::O_DIRECT, "{fdinfo}");
        let file = direct.finish().unwrap();
        // The tail went through the page cache.
        assert_eq!(open_flags(&file) & libc::O_DIRECT, 0);
        assert_eq!(std::fs::read(&path).unwrap(), pattern(CHUNK + 1));
    }

    /// A 4 MiB tmpfs, unmounted when dropped.
    struct SmallTmpfs(tempfile::TempDir);

    impl Drop for SmallTmpfs {
        fn drop(&mut self) {
            let _ = nix::mount::umount(self.0.path());
        }
    }

    #[test]
    fn a_failed_write_is_reported_and_later_writes_fail() {
        let fs = SmallTmpfs(tempfile::tempdir().unwrap());
        nix::mount::mount(
            Some("tmpfs"),
            fs.0.path(),
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("size=4m"),
        )
        .unwrap();
        // tmpfs takes O_DIRECT (Linux 6.6 on) and runs out of room in the
        // second chunk; the error shows once every spare buffer is used.
        let mut direct = DirectFile::create(&fs.0.path().join("out"), 0o600)
            .unwrap()
            .unwrap();
        let chunk = pattern(CHUNK);
        let mut result = Ok(());
        for _ in 0..2 * BUFFERS {
            result = direct.write_all(&chunk);
            if result.is_err() {
                break;
            }
        }
        let err = result.unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
        assert!(direct.write_all(b"x").is_err());
        assert!(direct.finish().is_err());
    }
}
