//! Kernel events decoded from ring-buffer bytes. `decode` is pure: it never
//! touches the system, so it is tested with byte fixtures.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use observer_common::*;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {0} bytes is shorter than an event header")]
    ShortHeader(usize),
    #[error("unknown event kind {0}")]
    UnknownKind(u32),
    #[error("{kind} record of {got} bytes, expected at least {need}")]
    Short {
        kind: &'static str,
        need: usize,
        got: usize,
    },
    #[error("{kind}: field {field} = {value} exceeds its buffer of {max} bytes")]
    Length {
        kind: &'static str,
        field: &'static str,
        value: u32,
        max: usize,
    },
}

impl DecodeError {
    /// Stable name used as the drop reason in loss records.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::ShortHeader(_) | DecodeError::Short { .. } => "decode_short",
            DecodeError::UnknownKind(_) => "decode_unknown_kind",
            DecodeError::Length { .. } => "decode_bad_length",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub kind: EventKind,
    pub cpu: u32,
    pub seq: u64,
    pub boot_ns: u64,
    pub tgid: u32,
    pub tid: u32,
    pub uid: u32,
    pub gid: u32,
    pub cgroup_id: u64,
    pub comm: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exec {
    pub ppid: u32,
    /// The executable the process runs after the exec, as the kernel knows
    /// it; `None` for a failed exec or when it could not be read.
    pub exe: Option<FileIdentity>,
    /// None when unset (`(uid_t)-1`) or not available on this kernel.
    pub loginuid: Option<u32>,
    /// 0, or `-errno` for a failed exec.
    pub retval: i32,
    pub filename: String,
    pub argv: Vec<String>,
    pub args_truncated: bool,
    pub filename_truncated: bool,
    pub execveat: bool,
    /// The exec did not come through execve(2) (no argv was captured).
    pub no_args: bool,
}

/// Identity of one version of a file's contents: what `stat` reports as
/// `st_dev` (user-space encoding), `st_ino`, mtime and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileIdentity {
    pub dev: u64,
    pub ino: u64,
    pub mtime_sec: i64,
    pub mtime_nsec: i64,
    pub size: u64,
}

impl FileIdentity {
    /// From the kernel's fields: its `dev_t` is `MAJOR << 20 | MINOR`,
    /// which `stat` reports re-encoded (glibc's `makedev`).
    pub fn from_kernel(dev: u32, ino: u64, mtime_sec: i64, mtime_nsec: u32, size: u64) -> Self {
        FileIdentity {
            dev: libc::makedev(dev >> 20, dev & 0xf_ffff),
            ino,
            mtime_sec,
            mtime_nsec: i64::from(mtime_nsec),
            size,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Net {
    pub fd: i32,
    pub ret: i32,
    pub family: u16,
    pub sock_type: u16,
    pub local_addr: IpAddr,
    pub local_port: u16,
    pub remote_addr: IpAddr,
    pub remote_port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOpen {
    pub ret: i32,
    pub flags: u32,
    pub mode: u32,
    pub dfd: i32,
    pub path: String,
    pub reason: u32,
    pub openat2: bool,
}

/// A packet payload from the names programs (TLS ClientHello or DNS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub cookie: u64,
    pub family: u16,
    /// 6 (TCP) or 17 (UDP).
    pub protocol: u8,
    /// The socket's owner was unknown; the header's process fields are 0.
    pub owner_unknown: bool,
    pub local_addr: IpAddr,
    pub local_port: u16,
    pub remote_addr: IpAddr,
    pub remote_port: u16,
    /// Payload bytes the packet held; `payload` may be a prefix of them.
    pub payload_len: u32,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Exec(Exec),
    Fork { parent_tgid: u32, child_tgid: u32 },
    Exit { exit_code: u32, ppid: u32 },
    Net(Net),
    FileOpen(FileOpen),
    Packet(Packet),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub header: Header,
    pub body: Body,
}

/// Decodes one ring-buffer record.
pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    let header = decode_header(bytes)?;
    let kind = header.kind;
    let body = match kind {
        EventKind::Exec => Body::Exec(decode_exec(exec_record(bytes)?)?),
        EventKind::Fork => {
            let f: ForkEvent = need(kind, bytes)?;
            Body::Fork {
                parent_tgid: f.parent_tgid,
                child_tgid: f.child_tgid,
            }
        }
        EventKind::Exit => {
            let e: ExitEvent = need(kind, bytes)?;
            Body::Exit {
                exit_code: e.exit_code,
                ppid: e.ppid,
            }
        }
        EventKind::Connect | EventKind::Accept | EventKind::Bind | EventKind::Listen => {
            Body::Net(decode_net(need(kind, bytes)?))
        }
        EventKind::FileOpen => Body::FileOpen(decode_open(need(kind, bytes)?)?),
        EventKind::TlsHello | EventKind::DnsMessage => {
            Body::Packet(decode_packet(kind, need(kind, bytes)?)?)
        }
        // Plaintext has its own ring buffer and decoder (stream::plaintext);
        // on this ring it can only be a corrupt record.
        EventKind::TlsData | EventKind::IoData => {
            return Err(DecodeError::UnknownKind(kind as u32))
        }
    };
    Ok(Event { header, body })
}

/// The common header of any ring-buffer record.
pub fn decode_header(bytes: &[u8]) -> Result<Header, DecodeError> {
    let raw: EventHeader = read_struct(bytes).ok_or(DecodeError::ShortHeader(bytes.len()))?;
    let kind = EventKind::from_u32(raw.kind).ok_or(DecodeError::UnknownKind(raw.kind))?;
    Ok(Header {
        kind,
        cpu: raw.cpu,
        seq: raw.seq,
        boot_ns: raw.boot_ns,
        tgid: raw.tgid,
        tid: raw.tid,
        uid: raw.uid,
        gid: raw.gid,
        cgroup_id: raw.cgroup_id,
        comm: c_string(&raw.comm),
    })
}

/// An exec record ends after its used argv bytes: at least the fixed part,
/// and every byte `args_len` claims.
fn exec_record(bytes: &[u8]) -> Result<ExecEvent, DecodeError> {
    if bytes.len() < EXEC_FIXED_LEN {
        return Err(DecodeError::Short {
            kind: "exec",
            need: EXEC_FIXED_LEN,
            got: bytes.len(),
        });
    }
    let mut full = [0u8; size_of::<ExecEvent>()];
    let n = bytes.len().min(full.len());
    full[..n].copy_from_slice(&bytes[..n]);
    let e: ExecEvent = read_struct(&full).expect("a whole ExecEvent");
    let present = n - EXEC_FIXED_LEN;
    if e.args_len as usize > present.min(ARGS_LEN) {
        return Err(DecodeError::Length {
            kind: "exec",
            field: "args_len",
            value: e.args_len,
            max: present.min(ARGS_LEN),
        });
    }
    Ok(e)
}

fn decode_exec(e: ExecEvent) -> Result<Exec, DecodeError> {
    let filename = bounded(&e.filename, e.filename_len, "exec", "filename_len")?;
    let args = bounded(&e.args, e.args_len, "exec", "args_len")?;
    // Every string ends in a NUL; the last one may not when the area was
    // cut at the buffer's end (then `args_truncated` is set).
    let argv = if args.is_empty() {
        Vec::new()
    } else {
        args.strip_suffix(&[0])
            .unwrap_or(args)
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect()
    };
    Ok(Exec {
        ppid: e.ppid,
        exe: (e.exe_ino != 0).then(|| {
            FileIdentity::from_kernel(
                e.exe_dev,
                e.exe_ino,
                e.exe_mtime_sec,
                e.exe_mtime_nsec,
                e.exe_size,
            )
        }),
        loginuid: (e.loginuid != u32::MAX).then_some(e.loginuid),
        retval: e.retval,
        filename: String::from_utf8_lossy(filename).into_owned(),
        argv,
        args_truncated: e.flags & EXEC_FLAG_ARGS_TRUNCATED != 0,
        filename_truncated: e.flags & EXEC_FLAG_FILENAME_TRUNCATED != 0,
        execveat: e.flags & EXEC_FLAG_EXECVEAT != 0,
        no_args: e.flags & EXEC_FLAG_NO_ARGS != 0,
    })
}

fn inet_addr(family: u16, bytes: [u8; 16]) -> IpAddr {
    if family == 10 {
        IpAddr::V6(Ipv6Addr::from(bytes))
    } else {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    }
}

fn decode_packet(kind: EventKind, p: PacketEvent) -> Result<Packet, DecodeError> {
    let payload = bounded(&p.payload, p.captured_len, kind.name(), "captured_len")?;
    Ok(Packet {
        cookie: p.cookie,
        family: p.family,
        protocol: p.protocol,
        owner_unknown: p.flags & PACKET_FLAG_OWNER_UNKNOWN != 0,
        local_addr: inet_addr(p.family, p.local_addr),
        local_port: p.local_port,
        remote_addr: inet_addr(p.family, p.remote_addr),
        remote_port: p.remote_port,
        payload_len: p.payload_len,
        payload: payload.to_vec(),
    })
}

fn decode_net(n: NetEvent) -> Net {
    let addr = |bytes: [u8; 16]| inet_addr(n.family, bytes);
    Net {
        fd: n.fd,
        ret: n.ret,
        family: n.family,
        sock_type: n.sock_type,
        local_addr: addr(n.local_addr),
        local_port: n.local_port,
        remote_addr: addr(n.remote_addr),
        remote_port: n.remote_port,
    }
}

fn decode_open(o: FileOpenEvent) -> Result<FileOpen, DecodeError> {
    let path = bounded(&o.path, o.path_len, "file_open", "path_len")?;
    Ok(FileOpen {
        ret: o.ret,
        flags: o.flags,
        mode: o.mode,
        dfd: o.dfd,
        path: String::from_utf8_lossy(path).into_owned(),
        reason: o.reason,
        openat2: o.source == OPEN_SOURCE_OPENAT2,
    })
}

fn need<T: Copy>(kind: EventKind, bytes: &[u8]) -> Result<T, DecodeError> {
    read_struct(bytes).ok_or(DecodeError::Short {
        kind: kind.name(),
        need: std::mem::size_of::<T>(),
        got: bytes.len(),
    })
}

/// Copies a `T` out of the front of `bytes` if it is long enough.
pub(crate) fn read_struct<T: Copy>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < std::mem::size_of::<T>() {
        return None;
    }
    // SAFETY: the length is checked, read_unaligned has no alignment
    // requirement, and T is one of the plain-integer repr(C) event types.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

fn bounded<'a>(
    buf: &'a [u8],
    len: u32,
    kind: &'static str,
    field: &'static str,
) -> Result<&'a [u8], DecodeError> {
    buf.get(..len as usize).ok_or(DecodeError::Length {
        kind,
        field,
        value: len,
        max: buf.len(),
    })
}

fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

#[cfg(test)]
mod tests;
