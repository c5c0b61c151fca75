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
            mtime_nsec: mtime_nsec as i64,
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
mod tests {
    use super::*;

    /// Little-endian record builder, independent of the Rust struct layout
    /// so the fixtures also pin the ABI.
    #[derive(Default)]
    struct Fixture(Vec<u8>);

    impl Fixture {
        fn u16(mut self, v: u16) -> Self {
            self.0.extend_from_slice(&v.to_le_bytes());
            self
        }
        fn u32(mut self, v: u32) -> Self {
            self.0.extend_from_slice(&v.to_le_bytes());
            self
        }
        fn u64(mut self, v: u64) -> Self {
            self.0.extend_from_slice(&v.to_le_bytes());
            self
        }
        fn bytes(mut self, v: &[u8], width: usize) -> Self {
            let mut padded = v.to_vec();
            padded.resize(width, 0);
            self.0.extend_from_slice(&padded);
            self
        }
        fn header(kind: u32) -> Self {
            Fixture::default()
                .u32(kind)
                .u32(1) // cpu
                .u64(42) // seq
                .u64(123_456_789) // boot_ns
                .u32(4000) // tgid
                .u32(4001) // tid
                .u32(1000) // uid
                .u32(1001) // gid
                .u64(77) // cgroup id
                .bytes(b"agent", 16)
        }
    }

    fn expected_header(kind: EventKind) -> Header {
        Header {
            kind,
            cpu: 1,
            seq: 42,
            boot_ns: 123_456_789,
            tgid: 4000,
            tid: 4001,
            uid: 1000,
            gid: 1001,
            cgroup_id: 77,
            comm: "agent".into(),
        }
    }

    fn exec_fixture(retval: i32, flags: u32, args: &[u8], argc: u32) -> Vec<u8> {
        Fixture::header(1)
            .u32(3999) // ppid
            .u32(u32::MAX) // loginuid unset
            .u32(retval as u32)
            .u32(argc)
            .u32(13) // filename_len
            .u32(args.len() as u32)
            .u32(flags)
            .u32(0)
            // exe identity: dev 259:300 as the kernel encodes it, mtime ns,
            // inode, size, mtime s; zero for a failed exec.
            .u32(if retval == 0 { (259 << 20) | 300 } else { 0 })
            .u32(if retval == 0 { 999 } else { 0 })
            .u64(if retval == 0 { 131_077 } else { 0 })
            .u64(if retval == 0 { 39_256 } else { 0 })
            .u64(if retval == 0 { 1_700_000_000 } else { 0 })
            .bytes(b"/usr/bin/true", PATH_LEN)
            .bytes(args, ARGS_LEN)
            .0
    }

    #[test]
    fn decodes_exec() {
        let bytes = exec_fixture(0, EXEC_FLAG_EXECVEAT, b"true\0--flag\0x y\0", 3);
        assert_eq!(bytes.len(), std::mem::size_of::<ExecEvent>());
        let ev = decode(&bytes).unwrap();
        assert_eq!(ev.header, expected_header(EventKind::Exec));
        let Body::Exec(e) = ev.body else {
            panic!("not exec")
        };
        assert_eq!(e.ppid, 3999);
        assert_eq!(e.loginuid, None);
        assert_eq!(e.retval, 0);
        assert_eq!(e.filename, "/usr/bin/true");
        assert_eq!(e.argv, vec!["true", "--flag", "x y"]);
        assert!(e.execveat && !e.args_truncated && !e.no_args);
        // st_dev of 259:300 as stat reports it: minor's low byte, major
        // shifted by 8, minor's high bits shifted by 12.
        assert_eq!(
            e.exe,
            Some(FileIdentity {
                dev: 0x11_032c,
                ino: 131_077,
                mtime_sec: 1_700_000_000,
                mtime_nsec: 999,
                size: 39_256,
            })
        );
    }

    #[test]
    fn decodes_failed_exec_error() {
        let ev = decode(&exec_fixture(-2, EXEC_FLAG_ARGS_TRUNCATED, b"nope\0", 1)).unwrap();
        let Body::Exec(e) = ev.body else {
            panic!("not exec")
        };
        assert_eq!(e.retval, -2);
        assert_eq!(e.exe, None);
        assert!(e.args_truncated);
        assert_eq!(e.argv, vec!["nope"]);
    }

    #[test]
    fn decodes_exec_record_cut_after_its_argv() {
        let args = b"sh\0-c\0\0echo hi\0";
        let full = exec_fixture(0, 0, args, 0);
        let short = &full[..EXEC_FIXED_LEN + args.len()];
        let Body::Exec(e) = decode(short).unwrap().body else {
            panic!("not exec")
        };
        assert_eq!(
            e.argv,
            vec!["sh", "-c", "", "echo hi"],
            "an empty argument is kept"
        );
        assert_eq!(e.filename, "/usr/bin/true");
        // A record that does not hold the bytes args_len claims is refused.
        assert_eq!(
            decode(&full[..EXEC_FIXED_LEN + 3]),
            Err(DecodeError::Length {
                kind: "exec",
                field: "args_len",
                value: args.len() as u32,
                max: 3
            })
        );
        assert_eq!(
            decode(&full[..EXEC_FIXED_LEN - 1]),
            Err(DecodeError::Short {
                kind: "exec",
                need: EXEC_FIXED_LEN,
                got: EXEC_FIXED_LEN - 1
            })
        );
    }

    #[test]
    fn decodes_argument_area_cut_at_the_buffer_end() {
        let full = exec_fixture(0, EXEC_FLAG_ARGS_TRUNCATED, b"prog\0very-long-argu", 0);
        let Body::Exec(e) = decode(&full).unwrap().body else {
            panic!("not exec")
        };
        assert_eq!(e.argv, vec!["prog", "very-long-argu"]);
        assert!(e.args_truncated);
        let none = exec_fixture(0, 0, b"", 0);
        let Body::Exec(e) = decode(&none[..EXEC_FIXED_LEN]).unwrap().body else {
            panic!("not exec")
        };
        assert!(e.argv.is_empty());
        let one_empty = exec_fixture(0, 0, b"\0", 0);
        let Body::Exec(e) = decode(&one_empty).unwrap().body else {
            panic!("not exec")
        };
        assert_eq!(e.argv, vec![""]);
    }

    #[test]
    fn rejects_exec_length_beyond_buffer() {
        let mut bytes = exec_fixture(0, 0, b"a\0", 1);
        bytes[64 + 20..64 + 24].copy_from_slice(&(ARGS_LEN as u32 + 1).to_le_bytes());
        assert_eq!(
            decode(&bytes),
            Err(DecodeError::Length {
                kind: "exec",
                field: "args_len",
                value: ARGS_LEN as u32 + 1,
                max: ARGS_LEN
            })
        );
    }

    #[test]
    fn decodes_fork_and_exit() {
        let fork = Fixture::header(2).u32(4000).u32(4100).0;
        assert_eq!(
            decode(&fork).unwrap().body,
            Body::Fork {
                parent_tgid: 4000,
                child_tgid: 4100
            }
        );
        let exit = Fixture::header(3).u32(3 << 8).u32(1).0;
        let ev = decode(&exit).unwrap();
        assert_eq!(ev.header.kind, EventKind::Exit);
        assert_eq!(
            ev.body,
            Body::Exit {
                exit_code: 0x300,
                ppid: 1
            }
        );
    }

    #[test]
    fn decodes_ipv4_connect() {
        let mut remote = [0u8; 16];
        remote[..4].copy_from_slice(&[127, 0, 0, 1]);
        let mut local = [0u8; 16];
        local[..4].copy_from_slice(&[127, 0, 0, 2]);
        let bytes = Fixture::header(4)
            .u32(5) // fd
            .u32(-111i32 as u32) // ECONNREFUSED
            .u16(2)
            .u16(1)
            .u16(40000)
            .u16(8080)
            .bytes(&local, 16)
            .bytes(&remote, 16)
            .0;
        let Body::Net(n) = decode(&bytes).unwrap().body else {
            panic!("not net")
        };
        assert_eq!(n.ret, -111);
        assert_eq!(n.remote_addr, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(n.local_addr, "127.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!((n.local_port, n.remote_port, n.sock_type), (40000, 8080, 1));
    }

    #[test]
    fn decodes_ipv6_listen() {
        let bytes = Fixture::header(7)
            .u32(3)
            .u32(0)
            .u16(10)
            .u16(1)
            .u16(11434)
            .u16(0)
            .bytes(&Ipv6Addr::LOCALHOST.octets(), 16)
            .bytes(&[0; 16], 16)
            .0;
        let ev = decode(&bytes).unwrap();
        assert_eq!(ev.header.kind, EventKind::Listen);
        let Body::Net(n) = ev.body else {
            panic!("not net")
        };
        assert_eq!(n.local_addr, IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(n.local_port, 11434);
    }

    #[test]
    fn decodes_file_open() {
        let path = b"/models/llama.gguf";
        let bytes = Fixture::header(8)
            .u32(7)
            .u32(0o2000000) // O_CLOEXEC
            .u32(0)
            .u32(-100i32 as u32)
            .u32(path.len() as u32)
            .u32(OPEN_REASON_SUFFIX)
            .u32(OPEN_SOURCE_OPENAT2)
            .u32(0)
            .bytes(path, PATH_LEN)
            .0;
        let Body::FileOpen(o) = decode(&bytes).unwrap().body else {
            panic!("not open")
        };
        assert_eq!(o.path, "/models/llama.gguf");
        assert_eq!(
            (o.ret, o.dfd, o.reason, o.openat2),
            (7, -100, OPEN_REASON_SUFFIX, true)
        );
    }

    fn packet_fixture(kind: u32, flags: u8, captured: u32, payload: &[u8]) -> Vec<u8> {
        let mut local = [0u8; 16];
        local[..4].copy_from_slice(&[10, 203, 0, 2]);
        let mut remote = [0u8; 16];
        remote[..4].copy_from_slice(&[10, 203, 0, 1]);
        Fixture::header(kind)
            .u64(0xc00c1e)
            .u16(2)
            .0
            .into_iter()
            .chain([6u8, flags])
            .chain(40000u16.to_le_bytes())
            .chain(443u16.to_le_bytes())
            .chain(local)
            .chain(remote)
            .chain(1500u32.to_le_bytes())
            .chain(captured.to_le_bytes())
            .chain({
                let mut p = payload.to_vec();
                p.resize(PACKET_PAYLOAD_LEN, 0);
                p
            })
            .collect()
    }

    #[test]
    fn decodes_tls_hello_packet() {
        let bytes = packet_fixture(9, 0, 3, b"\x16\x03\x01");
        assert_eq!(bytes.len(), std::mem::size_of::<PacketEvent>());
        let ev = decode(&bytes).unwrap();
        assert_eq!(ev.header, expected_header(EventKind::TlsHello));
        assert_eq!(
            ev.body,
            Body::Packet(Packet {
                cookie: 0xc00c1e,
                family: 2,
                protocol: 6,
                owner_unknown: false,
                local_addr: "10.203.0.2".parse().unwrap(),
                local_port: 40000,
                remote_addr: "10.203.0.1".parse().unwrap(),
                remote_port: 443,
                payload_len: 1500,
                payload: vec![0x16, 3, 1],
            })
        );
    }

    #[test]
    fn decodes_dns_packet_and_rejects_bad_capture_length() {
        let ev = decode(&packet_fixture(10, PACKET_FLAG_OWNER_UNKNOWN, 0, b"")).unwrap();
        let Body::Packet(p) = ev.body else {
            panic!("not a packet")
        };
        assert!(p.owner_unknown && p.payload.is_empty());
        assert_eq!(ev.header.kind, EventKind::DnsMessage);
        let bad = packet_fixture(10, 0, PACKET_PAYLOAD_LEN as u32 + 1, b"");
        assert_eq!(
            decode(&bad),
            Err(DecodeError::Length {
                kind: "dns_message",
                field: "captured_len",
                value: PACKET_PAYLOAD_LEN as u32 + 1,
                max: PACKET_PAYLOAD_LEN
            })
        );
    }

    #[test]
    fn rejects_short_and_unknown_records() {
        assert_eq!(decode(&[0u8; 10]), Err(DecodeError::ShortHeader(10)));
        assert_eq!(
            decode(&Fixture::header(99).0),
            Err(DecodeError::UnknownKind(99))
        );
        assert_eq!(
            decode(&Fixture::header(2).u32(1).0),
            Err(DecodeError::Short {
                kind: "fork",
                need: 72,
                got: 68
            })
        );
    }
}
