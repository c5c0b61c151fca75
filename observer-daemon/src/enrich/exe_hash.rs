//! SHA-256 of executables, cached by file identity.
//!
//! The cache key is (st_dev, st_ino, mtime, size) rather than the path: a
//! binary rebuilt in place gets a new mtime (and usually a new inode), so it
//! is hashed again, while a hot binary exec'd thousands of times is read once.
//! The exec event carries the same identity from the kernel, so a hit needs
//! no file access at all.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::num::NonZeroUsize;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use lru::LruCache;

use crate::event::FileIdentity;
use sha2::{Digest, Sha256};

/// Files larger than this are not hashed by default: reading them would stall
/// the event pipeline for little benefit.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 256 * 1024 * 1024;

const CHUNK_SIZE: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("open {}: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error("stat {}: {source}", path.display())]
    Stat { path: PathBuf, source: io::Error },
    #[error("read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("readlink {}: {source}", path.display())]
    Readlink { path: PathBuf, source: io::Error },
    #[error("{} is no longer the file the process exec'd", path.display())]
    Replaced { path: PathBuf },
    #[error("{} is not a regular file", path.display())]
    NotRegularFile { path: PathBuf },
    #[error("{} is {size} bytes, above the {limit}-byte hashing limit", path.display())]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
}

fn identity_of(meta: &fs::Metadata) -> FileIdentity {
    FileIdentity {
        dev: meta.dev(),
        ino: meta.ino(),
        mtime_sec: meta.mtime(),
        mtime_nsec: meta.mtime_nsec(),
        size: meta.size(),
    }
}

/// A hashed file: its digest and the path it was first hashed under.
#[derive(Clone)]
struct Hashed {
    sha256: String,
    path: PathBuf,
}

pub struct ExeHashCache {
    cache: LruCache<FileIdentity, Hashed>,
    max_file_size: u64,
    hits: u64,
    misses: u64,
}

impl ExeHashCache {
    /// `capacity` bounds the number of cached hashes (0 is treated as 1);
    /// files above `max_file_size` bytes are refused with `TooLarge`.
    pub fn new(capacity: usize, max_file_size: u64) -> Self {
        ExeHashCache {
            cache: LruCache::new(NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN)),
            max_file_size,
            hits: 0,
            misses: 0,
        }
    }

    /// Returns `sha256:<lowercase hex>` of the file at `path`.
    pub fn hash_path(&mut self, path: &Path) -> Result<String, HashError> {
        let file = open_nonblocking(path)?;
        Ok(self.hash_file(file, path, path)?.sha256)
    }

    /// The executable of a process that just exec'd, with its path.
    ///
    /// With the file's identity from the kernel's exec event a cached hash
    /// is found without touching /proc (the usual case: the same binaries
    /// run again and again, by processes that are often gone before their
    /// event is read). Otherwise /proc/PID/exe is read once; when the
    /// process is gone, each of `candidates` (the path it exec'd, then its
    /// argv[0], which names the interpreter of a script) is hashed only if
    /// it is the file the kernel ran (same identity), so the digest always
    /// describes the bytes that were executed.
    pub fn hash_exec(
        &mut self,
        pid: u32,
        identity: Option<FileIdentity>,
        candidates: &[&str],
    ) -> Result<(PathBuf, String), HashError> {
        if let Some(hit) = identity.and_then(|id| self.cache.get(&id)) {
            self.hits += 1;
            return Ok((hit.path.clone(), hit.sha256.clone()));
        }
        let mut error = match self.hash_proc_exe(pid) {
            Ok(found) => return Ok(found),
            Err(e) => e,
        };
        let Some(expected) = identity else {
            return Err(error);
        };
        for candidate in candidates.iter().filter(|c| names_a_file(c)) {
            let path = Path::new(candidate);
            let file = match open_nonblocking(path) {
                Ok(file) => file,
                Err(e) => {
                    error = e;
                    continue;
                }
            };
            match fstat(&file, path) {
                Ok(meta) if identity_of(&meta) == expected => {}
                Ok(_) => {
                    error = HashError::Replaced {
                        path: path.to_path_buf(),
                    };
                    continue;
                }
                Err(e) => {
                    error = e;
                    continue;
                }
            }
            // The path the kernel resolved, as /proc/PID/exe would give it.
            let name = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
            let hashed = self.hash_file(file, path, &name)?;
            return Ok((hashed.path, hashed.sha256));
        }
        Err(error)
    }

    /// Hashes the executable of `pid` and returns it with the link target.
    ///
    /// The magic link is opened rather than its target path: that works when
    /// the binary was deleted or replaced and when it lives in another mount
    /// namespace, and the cache key comes from the opened fd, so it always
    /// describes the bytes actually hashed.
    pub fn hash_proc_exe(&mut self, pid: u32) -> Result<(PathBuf, String), HashError> {
        let link = PathBuf::from(format!("/proc/{pid}/exe"));
        let file = open_nonblocking(&link)?;
        let target = fs::read_link(&link).map_err(|source| HashError::Readlink {
            path: link.clone(),
            source,
        })?;
        let hash = self.hash_file(file, &link, &target)?.sha256;
        Ok((target, hash))
    }

    /// (hits, misses) since creation.
    pub fn stats(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }

    pub fn len(&self) -> usize {
        self.cache.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    /// Hashes `file` (opened as `path`), cached under its identity with
    /// `name` as the path it is known by.
    fn hash_file(&mut self, mut file: File, path: &Path, name: &Path) -> Result<Hashed, HashError> {
        let meta = fstat(&file, path)?;
        let key = identity_of(&meta);
        if let Some(hit) = self.cache.get(&key) {
            self.hits += 1;
            return Ok(hit.clone());
        }
        self.misses += 1;
        if !meta.is_file() {
            return Err(HashError::NotRegularFile {
                path: path.to_path_buf(),
            });
        }
        if key.size > self.max_file_size {
            return Err(HashError::TooLarge {
                path: path.to_path_buf(),
                size: key.size,
                limit: self.max_file_size,
            });
        }
        let hashed = Hashed {
            sha256: sha256_stream(&mut file, path)?,
            path: name.to_path_buf(),
        };
        // A file written to while we read it would cache a hash that matches
        // neither version under the old key; only cache a stable read.
        if identity_of(&fstat(&file, path)?) == key {
            self.cache.put(key, hashed.clone());
        }
        Ok(hashed)
    }
}

/// An exec'd path that names the file on its own: absolute, and not one of
/// the exec'ing process's descriptors (fexecve runs `/dev/fd/N`).
pub(crate) fn names_a_file(filename: &str) -> bool {
    filename.starts_with('/')
        && !filename.starts_with("/dev/fd/")
        && !filename.starts_with("/proc/self/fd/")
}

/// O_NONBLOCK keeps a FIFO passed as a path from blocking the caller; it has
/// no effect on regular files.
fn open_nonblocking(path: &Path) -> Result<File, HashError> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|source| HashError::Open {
            path: path.to_path_buf(),
            source,
        })
}

fn fstat(file: &File, path: &Path) -> Result<fs::Metadata, HashError> {
    file.metadata().map_err(|source| HashError::Stat {
        path: path.to_path_buf(),
        source,
    })
}

fn sha256_stream(file: &mut File, path: &Path) -> Result<String, HashError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK_SIZE];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(HashError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
    }
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::{Duration, SystemTime};

    fn expected(bytes: &[u8]) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
    }

    fn write_file(path: &Path, bytes: &[u8]) {
        let mut f = File::create(path).unwrap();
        f.write_all(bytes).unwrap();
    }

    #[test]
    fn hash_matches_independent_sha256() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bin");
        // Larger than one chunk so the streaming loop runs several times.
        let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        write_file(&path, &bytes);
        let mut cache = ExeHashCache::new(8, DEFAULT_MAX_FILE_SIZE);
        assert_eq!(cache.hash_path(&path).unwrap(), expected(&bytes));
    }

    #[test]
    fn empty_file_hash() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut cache = ExeHashCache::new(8, DEFAULT_MAX_FILE_SIZE);
        assert_eq!(cache.hash_path(file.path()).unwrap(), expected(b""));
    }

    #[test]
    fn second_call_is_a_cache_hit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bin");
        write_file(&path, b"hello");
        let mut cache = ExeHashCache::new(8, DEFAULT_MAX_FILE_SIZE);
        let first = cache.hash_path(&path).unwrap();
        assert_eq!(cache.stats(), (0, 1));
        let second = cache.hash_path(&path).unwrap();
        assert_eq!(cache.stats(), (1, 1));
        assert_eq!(first, second);
    }

    #[test]
    fn rewritten_file_gets_new_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bin");
        write_file(&path, b"version-1");
        let mut cache = ExeHashCache::new(8, DEFAULT_MAX_FILE_SIZE);
        assert_eq!(cache.hash_path(&path).unwrap(), expected(b"version-1"));

        // Same size and same inode: only the mtime tells the versions apart.
        write_file(&path, b"version-2");
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_modified(SystemTime::now() + Duration::from_secs(10))
            .unwrap();
        drop(f);
        assert_eq!(cache.hash_path(&path).unwrap(), expected(b"version-2"));
        assert_eq!(cache.stats(), (0, 2));
    }

    #[test]
    fn lru_capacity_is_respected() {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = (0..3)
            .map(|i| {
                let p = dir.path().join(format!("bin{i}"));
                write_file(&p, format!("content {i}").as_bytes());
                p
            })
            .collect();
        let mut cache = ExeHashCache::new(2, DEFAULT_MAX_FILE_SIZE);
        for p in &paths {
            cache.hash_path(p).unwrap();
        }
        assert_eq!(cache.len(), 2);
        // The least recently used entry was evicted, so it is hashed again.
        cache.hash_path(&paths[0]).unwrap();
        assert_eq!(cache.stats(), (0, 4));
        cache.hash_path(&paths[2]).unwrap();
        assert_eq!(cache.stats(), (1, 4));
        assert_eq!(cache.len(), 2);
    }

    /// A pid no process has (above the kernel's pid_max limit).
    const GONE: u32 = u32::MAX;

    #[test]
    fn exec_of_a_gone_process_hashes_the_same_file_then_hits_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tool");
        write_file(&path, b"#!/bin/true\n");
        let id = identity_of(&fs::metadata(&path).unwrap());
        let name = path.to_str().unwrap();
        let mut cache = ExeHashCache::new(8, DEFAULT_MAX_FILE_SIZE);
        let (found, hash) = cache.hash_exec(GONE, Some(id), &[name]).unwrap();
        assert_eq!(
            (found.as_path(), hash.as_str()),
            (path.as_path(), expected(b"#!/bin/true\n").as_str())
        );
        assert_eq!(cache.stats(), (0, 1));
        // Found by identity alone: the path is gone and still it answers.
        fs::remove_file(&path).unwrap();
        let (found, again) = cache.hash_exec(GONE, Some(id), &[name]).unwrap();
        assert_eq!((found, again), (path.clone(), hash));
        assert_eq!(cache.stats(), (1, 1));
    }

    #[test]
    fn exec_of_a_replaced_file_is_not_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tool");
        write_file(&path, b"old");
        let old = identity_of(&fs::metadata(&path).unwrap());
        let other = dir.path().join("other");
        write_file(&other, b"new");
        fs::rename(&other, &path).unwrap();
        let mut cache = ExeHashCache::new(8, DEFAULT_MAX_FILE_SIZE);
        match cache.hash_exec(GONE, Some(old), &[path.to_str().unwrap()]) {
            Err(HashError::Replaced { path: p }) => assert_eq!(p, path),
            other => panic!("expected Replaced, got {other:?}"),
        }
        // Without the kernel's identity nothing says which file ran.
        assert!(matches!(
            cache.hash_exec(GONE, None, &[path.to_str().unwrap()]),
            Err(HashError::Open { .. })
        ));
        assert!(cache.is_empty());
    }

    #[test]
    fn exec_of_a_gone_script_finds_its_interpreter_by_identity() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("script");
        write_file(&script, b"#!/interp\n");
        let interp = dir.path().join("interp");
        write_file(&interp, b"interpreter bytes");
        let link = dir.path().join("link-to-interp");
        std::os::unix::fs::symlink(&interp, &link).unwrap();
        let id = identity_of(&fs::metadata(&interp).unwrap());
        let mut cache = ExeHashCache::new(8, DEFAULT_MAX_FILE_SIZE);
        let candidates = [script.to_str().unwrap(), link.to_str().unwrap()];
        let (found, hash) = cache.hash_exec(GONE, Some(id), &candidates).unwrap();
        assert_eq!(found, interp, "named as the kernel resolved it");
        assert_eq!(hash, expected(b"interpreter bytes"));
    }

    #[test]
    fn exec_of_a_running_process_reads_its_exe() {
        let me = std::process::id();
        let exe = fs::read_link("/proc/self/exe").unwrap();
        let id = identity_of(&fs::metadata(&exe).unwrap());
        let mut cache = ExeHashCache::new(8, DEFAULT_MAX_FILE_SIZE);
        let (found, hash) = cache.hash_exec(me, Some(id), &["relative-name"]).unwrap();
        assert_eq!(found, exe);
        assert_eq!(cache.stats(), (0, 1));
        assert_eq!(
            cache.hash_exec(GONE, Some(id), &["x"]).unwrap(),
            (exe, hash)
        );
        assert_eq!(cache.stats(), (1, 1));
    }

    #[test]
    fn oversized_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        write_file(&path, &[0u8; 100]);
        let mut cache = ExeHashCache::new(8, 10);
        match cache.hash_path(&path) {
            Err(HashError::TooLarge { size, limit, .. }) => {
                assert_eq!((size, limit), (100, 10));
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_path() {
        let mut cache = ExeHashCache::new(8, DEFAULT_MAX_FILE_SIZE);
        let err = cache
            .hash_path(Path::new("/nonexistent/observer-test"))
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/observer-test"));
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            cache.hash_path(dir.path()),
            Err(HashError::NotRegularFile { .. })
        ));
    }

    #[test]
    fn hash_proc_exe_of_self() {
        let mut cache = ExeHashCache::new(8, DEFAULT_MAX_FILE_SIZE);
        let (path, hash) = cache.hash_proc_exe(std::process::id()).unwrap();
        assert_eq!(path, std::env::current_exe().unwrap());
        assert_eq!(hash, expected(&fs::read(&path).unwrap()));
        cache.hash_proc_exe(std::process::id()).unwrap();
        assert_eq!(cache.stats(), (1, 1));
    }
}
