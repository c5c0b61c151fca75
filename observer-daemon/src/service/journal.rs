//! Logging to the systemd journal in its native protocol, with structured
//! fields.
//!
//! Under systemd, stderr already reaches the journal, but as text lines that
//! all carry the unit's one default priority and no fields. When systemd says
//! stderr is the journal (`JOURNAL_STREAM` names stderr's device and inode),
//! observerd instead sends each record to journald's native socket with its
//! own `PRIORITY`, the source location (`CODE_FILE`, `CODE_LINE`,
//! `CODE_MODULE`), a `MESSAGE_ID` for the records an operator filters on
//! (`journalctl MESSAGE_ID=…`), and one `OBSERVER_<KEY>` field for each
//! key-value of the record (`log::warn!(sink = name; "…")` becomes
//! `OBSERVER_SINK=`). Anywhere else the logger is env_logger on stderr, as
//! before. `RUST_LOG` filters both the same way (default `info`).
//!
//! The protocol (systemd's "Native Journal Protocol"): one datagram per
//! record, each field `NAME=value\n`, or `NAME\n<u64 LE length><value>\n`
//! when the value holds a newline. A record too large for a datagram goes in
//! a sealed memfd passed with SCM_RIGHTS, as sd_journal_sendv does.

use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use log::kv::{Key, Value, VisitSource};

/// journald's native datagram socket.
pub const SOCKET: &str = "/run/systemd/journal/socket";

/// `MESSAGE_ID`s of the records an operator or a monitoring rule looks for.
/// Random 128-bit ids, as systemd's catalog uses; stable across releases.
pub mod message_id {
    /// Probes attached, process table scanned, receipts open: ready.
    pub const READY: &str = "5d1a4c1e8f3b4f0c9a2e7b6d3c8f1a02";
    /// A shutdown began (signal or a stopped task).
    pub const STOPPING: &str = "a83f2c6d1e9b47a5b0c4d7e2f61a9b53";
    /// The final counters at a clean stop.
    pub const STOPPED: &str = "0e7b9d3a5c1f4e2b8d6a4c9f3b7e1d60";
    /// Kernel events were lost (ring buffer full or enricher queue).
    pub const EVENTS_LOST: &str = "c4e1a7f93b2d4c68a5f0e3b9d7c2a184";
    /// A forwarding sink failed to deliver; it retries with backoff.
    pub const SINK_FAILED: &str = "7f2d9b4e6a1c4b3e9d8f5a2c1e7b6d39";
    /// The policy set was reloaded (or a reload was refused).
    pub const POLICY_RELOAD: &str = "b9c6e3f1a4d24e7b8c5a1f9e2d6b3c47";
    /// A peer was refused by the control socket.
    pub const CONTROL_REFUSED: &str = "2a8e5c7b1d9f4a6e9b3c7d1f5e8a2c64";
    /// observerd stopped on an error.
    pub const FAILED: &str = "e5b3d8a16c2f49e7a0d4b8c6f1e3a975";
}

/// Where log records go, as chosen by [`init`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTarget {
    Journal,
    Stderr,
}

/// Installs the process's logger: the journal when stderr is the journal
/// and its socket takes a connection, env_logger on stderr otherwise.
pub fn init(identifier: &str) -> LogTarget {
    let filter = filter_from_env();
    if stderr_is_journal() {
        if let Ok(journal) = Journal::open(Path::new(SOCKET)) {
            log::set_max_level(filter.filter());
            let logger = JournalLogger {
                journal,
                filter,
                identifier: identifier.to_string(),
            };
            if log::set_boxed_logger(Box::new(logger)).is_ok() {
                return LogTarget::Journal;
            }
        }
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    LogTarget::Stderr
}

fn filter_from_env() -> env_filter::Filter {
    let mut builder = env_filter::Builder::new();
    match std::env::var("RUST_LOG") {
        Ok(spec) => builder.parse(&spec),
        Err(_) => builder.filter_level(log::LevelFilter::Info),
    };
    builder.build()
}

/// systemd sets `JOURNAL_STREAM=<device>:<inode>` of the stream it connected
/// to stdout/stderr; it is inherited by children whose stderr is elsewhere,
/// so it counts only if it names our stderr.
pub fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(stat) = nix::sys::stat::fstat(io::stderr().as_raw_fd()) else {
        return false;
    };
    value.to_str().and_then(parse_stream) == Some((stat.st_dev, stat.st_ino))
}

fn parse_stream(value: &str) -> Option<(u64, u64)> {
    let (dev, ino) = value.split_once(':')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

/// The syslog priority of a log level: err, warning, info, debug.
pub fn priority(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

/// The journal field name of a record's key: `OBSERVER_` and the key in
/// upper case, anything but `A-Z0-9_` as `_` (journald drops fields with
/// other names). `message_id` is the journal's own `MESSAGE_ID`.
pub fn field_name(key: &str) -> String {
    if key == "message_id" {
        return "MESSAGE_ID".to_string();
    }
    let mut name = String::with_capacity(9 + key.len());
    name.push_str("OBSERVER_");
    name.extend(key.chars().map(|c| match c.to_ascii_uppercase() {
        c @ ('A'..='Z' | '0'..='9') => c,
        _ => '_',
    }));
    // journald's limit on field names.
    name.truncate(64);
    name
}

/// Appends one field in the native protocol's encoding.
pub fn encode_field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    if value.contains(&b'\n') {
        out.push(b'\n');
        out.extend_from_slice(&(value.len() as u64).to_le_bytes());
    } else {
        out.push(b'=');
    }
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// A datagram socket to journald.
pub struct Journal {
    socket: UnixDatagram,
    path: PathBuf,
}

impl Journal {
    /// An unbound socket that sends to `path`, as sd_journal does: not
    /// connected, so a restarted journald is reached at its new socket.
    /// Fails if `path` is not a socket, so a host without journald falls
    /// back to stderr at start.
    pub fn open(path: &Path) -> io::Result<Self> {
        use std::os::unix::fs::FileTypeExt;
        if !std::fs::metadata(path)?.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a socket", path.display()),
            ));
        }
        let socket = UnixDatagram::unbound()?;
        Ok(Journal {
            socket,
            path: path.to_path_buf(),
        })
    }

    /// Sends one encoded record: a datagram, or a sealed memfd when the
    /// record is larger than a datagram can be.
    pub fn send(&self, record: &[u8]) -> io::Result<()> {
        match self.socket.send_to(record, &self.path) {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EMSGSIZE | libc::ENOBUFS)) => {
                self.send_memfd(record)
            }
            Err(e) => Err(e),
        }
    }

    fn send_memfd(&self, record: &[u8]) -> io::Result<()> {
        use nix::fcntl::{fcntl, FcntlArg, SealFlag};
        use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
        use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};

        let memfd = memfd_create(
            c"observerd-journal",
            MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING,
        )?;
        let mut file = std::fs::File::from(memfd);
        file.write_all(record)?;
        // journald accepts only a memfd that can no longer change.
        fcntl(
            file.as_raw_fd(),
            FcntlArg::F_ADD_SEALS(
                SealFlag::F_SEAL_SHRINK
                    | SealFlag::F_SEAL_GROW
                    | SealFlag::F_SEAL_WRITE
                    | SealFlag::F_SEAL_SEAL,
            ),
        )?;
        let fds = [file.as_fd().as_raw_fd()];
        let addr = UnixAddr::new(&self.path)?;
        sendmsg(
            self.socket.as_raw_fd(),
            &[],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            Some(&addr),
        )?;
        Ok(())
    }
}

/// The `log` backend that writes to the journal.
struct JournalLogger {
    journal: Journal,
    filter: env_filter::Filter,
    identifier: String,
}

impl log::Log for JournalLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        self.filter.enabled(metadata)
    }

    fn log(&self, record: &log::Record) {
        if !self.filter.matches(record) {
            return;
        }
        let encoded = encode_record(record, &self.identifier);
        if let Err(e) = self.journal.send(&encoded) {
            // journald gone: the record still reaches stderr, which
            // systemd captures as text when it comes back.
            eprintln!(
                "{}: [{}] {} (journal: {e})",
                self.identifier,
                record.level(),
                record.args()
            );
        }
    }

    fn flush(&self) {}
}

/// One record in the native protocol: message, priority, identifier,
/// source location and the record's key-values.
pub fn encode_record(record: &log::Record, identifier: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    encode_field(&mut out, "MESSAGE", record.args().to_string().as_bytes());
    encode_field(
        &mut out,
        "PRIORITY",
        priority(record.level()).to_string().as_bytes(),
    );
    encode_field(&mut out, "SYSLOG_IDENTIFIER", identifier.as_bytes());
    if let Some(file) = record.file() {
        encode_field(&mut out, "CODE_FILE", file.as_bytes());
    }
    if let Some(line) = record.line() {
        encode_field(&mut out, "CODE_LINE", line.to_string().as_bytes());
    }
    if let Some(module) = record.module_path() {
        encode_field(&mut out, "CODE_MODULE", module.as_bytes());
    }
    let _ = record
        .key_values()
        .visit(&mut FieldWriter { out: &mut out });
    out
}

struct FieldWriter<'a> {
    out: &'a mut Vec<u8>,
}

impl<'kvs> VisitSource<'kvs> for FieldWriter<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        encode_field(
            self.out,
            &field_name(key.as_str()),
            value.to_string().as_bytes(),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_value_is_name_equals_value() {
        let mut out = Vec::new();
        encode_field(&mut out, "PRIORITY", b"6");
        assert_eq!(out, b"PRIORITY=6\n");
    }

    #[test]
    fn a_value_with_a_newline_is_length_prefixed() {
        let mut out = Vec::new();
        encode_field(&mut out, "MESSAGE", b"a\nb");
        assert_eq!(out, b"MESSAGE\n\x03\0\0\0\0\0\0\0a\nb\n");
    }

    #[test]
    fn keys_become_observer_fields() {
        assert_eq!(field_name("sink"), "OBSERVER_SINK");
        assert_eq!(field_name("policy.digest"), "OBSERVER_POLICY_DIGEST");
        assert_eq!(field_name("message_id"), "MESSAGE_ID");
        assert_eq!(field_name(&"k".repeat(100)).len(), 64);
    }

    #[test]
    fn a_record_carries_priority_location_and_key_values() {
        let kvs = [("sink", "siem"), ("message_id", message_id::SINK_FAILED)];
        let record = log::Record::builder()
            .args(format_args!("sink siem: refused"))
            .level(log::Level::Warn)
            .file(Some("src/forward/runner.rs"))
            .line(Some(83))
            .module_path(Some("observer_daemon::forward::runner"))
            .key_values(&kvs)
            .build();
        let encoded = String::from_utf8(encode_record(&record, "observerd")).unwrap();
        assert_eq!(
            encoded,
            format!(
                "MESSAGE=sink siem: refused\nPRIORITY=4\nSYSLOG_IDENTIFIER=observerd\n\
                 CODE_FILE=src/forward/runner.rs\nCODE_LINE=83\n\
                 CODE_MODULE=observer_daemon::forward::runner\nOBSERVER_SINK=siem\n\
                 MESSAGE_ID={}\n",
                message_id::SINK_FAILED
            )
        );
    }

    #[test]
    fn journal_stream_is_device_colon_inode() {
        assert_eq!(parse_stream("8:1234"), Some((8, 1234)));
        assert_eq!(parse_stream("8"), None);
        assert_eq!(parse_stream("x:1"), None);
    }
}
