//! Paths the daemon trusts: the master seed, the receipt store, the policy
//! directory, the state directories, sink cursors and the control socket's
//! directory. Whoever can write one of them can change what the daemon
//! signs or enforces, so trusting them by mode alone is not enough.
//!
//! The rule is ssh's `StrictModes`, applied on open descriptors:
//! - every directory from `/` down to the file is owned by root (or by the
//!   process's effective uid, so that tests and non-root tools such as
//!   `observerctl policy check` on a user's own copy still work) and is
//!   not writable by its group or others, unless it is root's and sticky
//!   like `/tmp` (there others may add names but not replace ours);
//! - the file itself is a regular file with a trusted owner, not writable
//!   by group or others, and for secrets (seed, store) not accessible to
//!   them at all;
//! - each component is opened with `O_NOFOLLOW` relative to the already
//!   checked directory's descriptor, so what was checked is what is read.
//!   A symbolic link met on the way is followed only when the directory
//!   holding it passed the check (only a trusted user could have put it
//!   there), and its target is checked the same way.
//!
//! Refusals name the path and what is wrong with it ([`TrustError`]).
use std::{
    collections::VecDeque,
    ffi::{OsStr, OsString},
    fs::File,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    path::{Component, Path, PathBuf},
};

use nix::{
    errno::Errno,
    fcntl::{openat, readlinkat, OFlag},
    sys::stat::{fchmod, fstat, fstatat, mkdirat, FileStat, Mode},
    unistd::{unlinkat, UnlinkatFlags},
};

#[cfg(test)]
mod tests;

/// Symbolic links followed in one walk before giving up (Linux's own
/// limit, `MAXSYMLINKS`).
const MAX_LINKS: usize = 40;

/// Whether a file's contents are secret: secrets may not be readable by
/// the group or others either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrecy {
    /// Policy files, cursors, tokens' directories: others may read them.
    Public,
    /// The master seed and the receipt store: owner only (0600 or 0400).
    Secret,
}

/// A path that may not be trusted, and why.
#[derive(Debug, thiserror::Error)]
#[error("{}: {problem}", path.display())]
pub struct TrustError {
    /// The path refused: the file, or the directory on its way that failed.
    pub path: PathBuf,
    /// What is wrong with it.
    pub problem: Problem,
}

/// What is wrong with a path.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    /// A system call on the path failed (missing, no permission, ...);
    /// [`TrustError::io_kind`] gives its kind.
    #[error("{what}: {source}")]
    Io {
        /// The operation, e.g. `"opening"`, `"stat"`, `"reading"`.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file itself (or a subdirectory opened by name) is a symbolic
    /// link: files are opened with `O_NOFOLLOW`.
    #[error("is a symbolic link; it is opened without following links, put the file itself there")]
    Symlink,
    /// Owned by neither root nor this process's effective uid.
    #[error("is owned by {owner}; it must be owned by {expected}")]
    Owner {
        /// The owner's uid.
        uid: u32,
        /// The owner as shown: `uid N (name)`.
        owner: String,
        /// Who may own it: `root`, or root or this process's user.
        expected: String,
    },
    /// Writable by group or others (a directory: unless root's and
    /// sticky, like `/tmp`).
    #[error(
        "has mode {mode:04o}: its group or others may write to it; they must not (chmod go-w)"
    )]
    Writable {
        /// Its permission bits (`st_mode & 0o7777`).
        mode: u32,
    },
    /// A [`Secrecy::Secret`] file accessible to group or others at all.
    #[error(
        "has mode {mode:04o}: it holds a secret and must not be accessible to group or others (expected 0600)"
    )]
    Readable {
        /// Its permission bits (`st_mode & 0o7777`).
        mode: u32,
    },
    /// A file expected, something else found (directory, device, socket),
    /// or the path has no file name.
    #[error("is not a regular file")]
    NotAFile,
    /// A directory expected on the way, something else found.
    #[error("is not a directory")]
    NotADirectory,
    /// More than 40 links followed in one walk (Linux's `MAXSYMLINKS`),
    /// likely a loop.
    #[error("has more than {MAX_LINKS} symbolic links on the way")]
    TooManyLinks,
}

impl TrustError {
    fn new(path: impl Into<PathBuf>, problem: Problem) -> TrustError {
        TrustError {
            path: path.into(),
            problem,
        }
    }

    fn io(path: impl Into<PathBuf>, what: &'static str, errno: Errno) -> TrustError {
        Self::new(
            path,
            Problem::Io {
                what,
                source: std::io::Error::from(errno),
            },
        )
    }

    /// The underlying I/O error's kind, if the refusal was one (a missing
    /// file is `NotFound`, which callers that create files look for).
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        match &self.problem {
            Problem::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }
}

/// Owners trusted with the daemon's files: root, and the effective uid of
/// this process (the daemon runs as root under systemd; tests and tools
/// run by a user trust that user's own files, never a third party's).
pub fn trusted_owner(uid: u32) -> bool {
    uid == 0 || uid == nix::unistd::geteuid().as_raw()
}

fn owner_problem(uid: u32) -> Problem {
    let name = |uid: u32| {
        nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map_or(format!("uid {uid}"), |u| format!("uid {uid} ({})", u.name))
    };
    let euid = nix::unistd::geteuid().as_raw();
    Problem::Owner {
        uid,
        owner: name(uid),
        expected: if euid == 0 {
            "root".into()
        } else {
            format!("root or {} (this process's user)", name(euid))
        },
    }
}

fn file_type(stat: &FileStat) -> u32 {
    stat.st_mode & libc::S_IFMT
}

fn permission_bits(stat: &FileStat) -> u32 {
    stat.st_mode & 0o7777
}

/// A directory on the way to a trusted file: a trusted owner, and not
/// writable by group or others unless it is root's and sticky (`/tmp`).
pub fn check_directory(stat: &FileStat) -> Result<(), Problem> {
    if file_type(stat) != libc::S_IFDIR {
        return Err(Problem::NotADirectory);
    }
    if !trusted_owner(stat.st_uid) {
        return Err(owner_problem(stat.st_uid));
    }
    let mode = permission_bits(stat);
    let sticky_root = mode & libc::S_ISVTX != 0 && stat.st_uid == 0;
    if mode & 0o022 != 0 && !sticky_root {
        return Err(Problem::Writable { mode });
    }
    Ok(())
}

/// A trusted file: regular, a trusted owner, not writable by group or
/// others, and for a secret not accessible to them at all.
pub fn check_file(stat: &FileStat, secrecy: Secrecy) -> Result<(), Problem> {
    if file_type(stat) != libc::S_IFREG {
        return Err(Problem::NotAFile);
    }
    if !trusted_owner(stat.st_uid) {
        return Err(owner_problem(stat.st_uid));
    }
    let mode = permission_bits(stat);
    if mode & 0o022 != 0 {
        return Err(Problem::Writable { mode });
    }
    if secrecy == Secrecy::Secret && mode & 0o077 != 0 {
        return Err(Problem::Readable { mode });
    }
    Ok(())
}

fn owned(raw: RawFd) -> OwnedFd {
    // SAFETY: `raw` was just returned by a successful open and is owned by
    // nobody else.
    unsafe { OwnedFd::from_raw_fd(raw) }
}

/// The directory part and the name of a file path.
fn split(path: &Path) -> Result<(&Path, &OsStr), TrustError> {
    let name = path
        .file_name()
        .ok_or_else(|| TrustError::new(path, Problem::NotAFile))?;
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    Ok((parent, name))
}

/// A directory whose every component passed [`check_directory`], held
/// open: files in it are opened relative to this descriptor.
#[derive(Debug)]
pub struct TrustedDir {
    fd: OwnedFd,
    path: PathBuf,
}

impl TrustedDir {
    /// Opens `path`, checking every directory from `/` down to it.
    pub fn open(path: &Path) -> Result<TrustedDir, TrustError> {
        Self::walk(path, None)
    }

    /// Like [`Self::open`], creating missing directories with `mode`
    /// (each created inside an already checked one).
    pub fn create(path: &Path, mode: u32) -> Result<TrustedDir, TrustError> {
        Self::walk(path, Some(mode))
    }

    /// The parent directory of `file`, checked, and the file's name in it.
    pub fn of_file(file: &Path) -> Result<(TrustedDir, &OsStr), TrustError> {
        let (parent, name) = split(file)?;
        Ok((Self::open(parent)?, name))
    }

    /// The path it was opened by, as given, for messages: files are opened
    /// through the held descriptor, never by this path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn walk(path: &Path, create: Option<u32>) -> Result<TrustedDir, TrustError> {
        let absolute = if path.is_absolute() {
            path.to_owned()
        } else {
            std::env::current_dir()
                .map_err(|source| {
                    TrustError::new(
                        path,
                        Problem::Io {
                            what: "finding the current directory",
                            source,
                        },
                    )
                })?
                .join(path)
        };
        let root = Path::new("/");
        let root_fd = openat(
            None,
            root,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| TrustError::io(root, "opening", e))?;
        let root_fd = owned(root_fd);
        Self::check_dir_fd(&root_fd, root)?;
        // The opened directories so far, so that `..` goes back to the
        // directory actually walked through (after a link, its target's
        // parent), never re-resolved by name.
        let mut stack: Vec<(OwnedFd, PathBuf)> = vec![(root_fd, root.to_owned())];
        let mut pending: VecDeque<OsString> = components(&absolute);
        let mut links = 0;
        while let Some(name) = pending.pop_front() {
            if name == ".." {
                if stack.len() > 1 {
                    stack.pop();
                }
                continue;
            }
            let (dir_fd, dir_path) = stack.last().expect("the root stays on the stack");
            let here = dir_path.join(&name);
            let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            let fd = match openat(
                Some(dir_fd.as_raw_fd()),
                name.as_os_str(),
                flags,
                Mode::empty(),
            ) {
                Err(Errno::ENOENT) if create.is_some() => {
                    let mode = Mode::from_bits_truncate(create.unwrap_or(0o700));
                    match mkdirat(Some(dir_fd.as_raw_fd()), name.as_os_str(), mode) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(TrustError::io(&here, "creating", e)),
                    }
                    openat(
                        Some(dir_fd.as_raw_fd()),
                        name.as_os_str(),
                        flags,
                        Mode::empty(),
                    )
                }
                other => other,
            }
            .map_err(|e| TrustError::io(&here, "opening", e))?;
            let fd = owned(fd);
            let stat = fstat(fd.as_raw_fd()).map_err(|e| TrustError::io(&here, "stat", e))?;
            if file_type(&stat) == libc::S_IFLNK {
                // The link lives in a checked directory: only a trusted
                // user could have made it, so its target is followed (and
                // checked like any other path).
                links += 1;
                if links > MAX_LINKS {
                    return Err(TrustError::new(path, Problem::TooManyLinks));
                }
                let target = readlinkat(Some(dir_fd.as_raw_fd()), name.as_os_str())
                    .map_err(|e| TrustError::io(&here, "reading the link", e))?;
                let target = PathBuf::from(target);
                if target.is_absolute() {
                    stack.truncate(1);
                }
                for component in components(&target).into_iter().rev() {
                    pending.push_front(component);
                }
                continue;
            }
            check_directory(&stat).map_err(|problem| TrustError::new(&here, problem))?;
            stack.push((fd, here));
        }
        let (fd, _) = stack.pop().expect("the root stays on the stack");
        Ok(TrustedDir {
            fd,
            path: path.to_owned(),
        })
    }

    fn check_dir_fd(fd: &OwnedFd, path: &Path) -> Result<(), TrustError> {
        let stat = fstat(fd.as_raw_fd()).map_err(|e| TrustError::io(path, "stat", e))?;
        check_directory(&stat).map_err(|problem| TrustError::new(path, problem))
    }

    /// A subdirectory, opened without following a link and checked.
    pub fn subdir(&self, name: &str) -> Result<TrustedDir, TrustError> {
        let path = self.path.join(name);
        let fd = openat(
            Some(self.fd.as_raw_fd()),
            name,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| TrustError::io(&path, "opening", e))?;
        let fd = owned(fd);
        let stat = fstat(fd.as_raw_fd()).map_err(|e| TrustError::io(&path, "stat", e))?;
        if file_type(&stat) == libc::S_IFLNK {
            return Err(TrustError::new(path, Problem::Symlink));
        }
        check_directory(&stat).map_err(|problem| TrustError::new(&path, problem))?;
        Ok(TrustedDir { fd, path })
    }

    /// Opens the file `name` with `flags` (plus `O_NOFOLLOW`) and checks
    /// it on the open descriptor: a planted link is refused, and the file
    /// checked is the file read.
    pub fn open_file(
        &self,
        name: &OsStr,
        flags: OFlag,
        create_mode: u32,
        secrecy: Secrecy,
    ) -> Result<File, TrustError> {
        let path = self.path.join(name);
        let fd = openat(
            Some(self.fd.as_raw_fd()),
            name,
            flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(create_mode),
        )
        .map_err(|e| match e {
            Errno::ELOOP => TrustError::new(&path, Problem::Symlink),
            e => TrustError::io(&path, "opening", e),
        })?;
        let file = File::from(owned(fd));
        let stat = fstat(file.as_raw_fd()).map_err(|e| TrustError::io(&path, "stat", e))?;
        check_file(&stat, secrecy).map_err(|problem| TrustError::new(&path, problem))?;
        Ok(file)
    }

    /// Reads the whole file `name` as text, checked as [`Secrecy::Public`].
    pub fn read_to_string(&self, name: &str) -> Result<String, TrustError> {
        use std::io::Read as _;
        let mut file = self.open_file(name.as_ref(), OFlag::O_RDONLY, 0, Secrecy::Public)?;
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(|source| {
            TrustError::new(
                self.path.join(name),
                Problem::Io {
                    what: "reading",
                    source,
                },
            )
        })?;
        Ok(text)
    }

    /// Creates `name` anew for writing with exactly `mode`, for a
    /// temporary file that is renamed into place afterwards. A regular
    /// file of a trusted owner already there is a leftover of an
    /// interrupted write and is replaced; anything else (a planted link, a
    /// stranger's file) is refused, never written through.
    pub fn create_temporary(
        &self,
        name: &OsStr,
        mode: u32,
        extra: OFlag,
    ) -> Result<File, TrustError> {
        create_temporary_at(&self.fd, &self.path, name, mode, extra)
    }

    /// Renames `from` to `to` inside this directory.
    pub fn rename(&self, from: &OsStr, to: &OsStr) -> Result<(), TrustError> {
        let fd = Some(self.fd.as_raw_fd());
        nix::fcntl::renameat(fd, from, fd, to)
            .map_err(|e| TrustError::io(self.path.join(to), "renaming into place", e))
    }

    /// Removes the file `name` (a link itself, never its target).
    pub fn remove(&self, name: &OsStr) -> Result<(), TrustError> {
        unlinkat(Some(self.fd.as_raw_fd()), name, UnlinkatFlags::NoRemoveDir)
            .map_err(|e| TrustError::io(self.path.join(name), "removing", e))
    }

    /// Flushes the directory's entries (after a create or a rename).
    pub fn sync(&self) -> Result<(), TrustError> {
        sync_dir(&self.fd, &self.path)
    }
}

fn sync_dir(fd: &OwnedFd, path: &Path) -> Result<(), TrustError> {
    let readable = openat(
        Some(fd.as_raw_fd()),
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| TrustError::io(path, "opening", e))?;
    File::from(owned(readable)).sync_all().map_err(|source| {
        TrustError::new(
            path,
            Problem::Io {
                what: "syncing",
                source,
            },
        )
    })
}

fn create_temporary_at(
    dir: &OwnedFd,
    dir_path: &Path,
    name: &OsStr,
    mode: u32,
    extra: OFlag,
) -> Result<File, TrustError> {
    let path = dir_path.join(name);
    let flags = OFlag::O_WRONLY
        | OFlag::O_CREAT
        | OFlag::O_EXCL
        | OFlag::O_NOFOLLOW
        | OFlag::O_CLOEXEC
        | extra;
    let create = || {
        openat(
            Some(dir.as_raw_fd()),
            name,
            flags,
            Mode::from_bits_truncate(mode),
        )
    };
    let fd = match create() {
        Err(Errno::EEXIST) => {
            let stat = fstatat(
                Some(dir.as_raw_fd()),
                name,
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|e| TrustError::io(&path, "stat", e))?;
            match file_type(&stat) {
                libc::S_IFLNK => return Err(TrustError::new(&path, Problem::Symlink)),
                libc::S_IFREG if trusted_owner(stat.st_uid) => {}
                libc::S_IFREG => return Err(TrustError::new(&path, owner_problem(stat.st_uid))),
                _ => return Err(TrustError::new(&path, Problem::NotAFile)),
            }
            unlinkat(Some(dir.as_raw_fd()), name, UnlinkatFlags::NoRemoveDir)
                .map_err(|e| TrustError::io(&path, "removing the leftover", e))?;
            create()
        }
        other => other,
    }
    .map_err(|e| TrustError::io(&path, "creating", e))?;
    let fd = owned(fd);
    // The umask narrowed the mode given to open; the caller's mode is
    // what the file must have (`observerctl --mode` may widen it).
    fchmod(fd.as_raw_fd(), Mode::from_bits_truncate(mode))
        .map_err(|e| TrustError::io(&path, "setting the mode of", e))?;
    Ok(File::from(fd))
}

/// Creates an output file the user asked for (`observerctl --out`) in a
/// directory of their choosing: the directory is not checked, but the
/// file is created new (`O_EXCL`), never through a link, with exactly
/// `mode`; a leftover regular file of ours is replaced.
pub fn create_output_file(path: &Path, mode: u32, extra: OFlag) -> Result<File, TrustError> {
    let (parent, name) = split(path)?;
    let dir = openat(
        None,
        parent,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    // Named by the file asked for: that is what the user knows.
    .map_err(|e| TrustError::io(path, "opening its directory", e))?;
    create_temporary_at(&owned(dir), parent, name, mode, extra)
}

/// Opens an existing file read-only after checking its directory chain and
/// the file itself: the one call for a file the daemon must trust (the
/// master seed, a sink token).
pub fn open_file(path: &Path, secrecy: Secrecy) -> Result<File, TrustError> {
    let (dir, name) = TrustedDir::of_file(path)?;
    dir.open_file(name, OFlag::O_RDONLY, 0, secrecy)
        .map_err(|e| TrustError {
            path: path.to_owned(),
            ..e
        })
}

/// The components of a path as names to open one by one (`.` dropped,
/// `..` kept for the walk to resolve against what it opened).
fn components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|component| match component {
            Component::Normal(name) => Some(name.to_owned()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}
