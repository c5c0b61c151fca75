//! One read or write of a watched process, decoded from the plaintext
//! ring buffer: TLS plaintext from the TLS library's calls, or the bytes
//! of a pipe, Unix stream socket or loopback TCP socket from the syscalls.
//! `decode` is pure and tested with byte fixtures.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use observer_common::{
    EventKind, FD_KIND_NONE, FD_KIND_PIPE, FD_KIND_TCP, FD_KIND_UNIX, IO_OP_READ, IO_OP_READV,
    IO_OP_RECVFROM, IO_OP_SENDTO, IO_OP_WRITE, IO_OP_WRITEV, TLS_DATA_HEADER_LEN, TLS_OP_READ,
    TLS_OP_READ_EX, TLS_OP_WRITE, TLS_OP_WRITE_EX,
};

use crate::event::{decode_header, DecodeError, Header};

/// Which way the bytes went, seen from the watched process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The process wrote them (a request, for a client).
    Sent,
    /// The process read them (a response, for a client).
    Received,
}

/// The call that moved the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    SslWrite,
    SslWriteEx,
    SslRead,
    SslReadEx,
    Write,
    Read,
    SendTo,
    RecvFrom,
    Writev,
    Readv,
}

impl Call {
    fn from_op(op: u32) -> Option<Call> {
        Some(match op {
            TLS_OP_WRITE => Call::SslWrite,
            TLS_OP_WRITE_EX => Call::SslWriteEx,
            TLS_OP_READ => Call::SslRead,
            TLS_OP_READ_EX => Call::SslReadEx,
            IO_OP_WRITE => Call::Write,
            IO_OP_READ => Call::Read,
            IO_OP_SENDTO => Call::SendTo,
            IO_OP_RECVFROM => Call::RecvFrom,
            IO_OP_WRITEV => Call::Writev,
            IO_OP_READV => Call::Readv,
            _ => return None,
        })
    }

    pub fn direction(self) -> Direction {
        match self {
            Call::SslWrite | Call::SslWriteEx | Call::Write | Call::SendTo | Call::Writev => {
                Direction::Sent
            }
            Call::SslRead | Call::SslReadEx | Call::Read | Call::RecvFrom | Call::Readv => {
                Direction::Received
            }
        }
    }

    /// A TLS library call (the bytes before encryption), not a syscall.
    pub fn is_tls(self) -> bool {
        matches!(
            self,
            Call::SslWrite | Call::SslWriteEx | Call::SslRead | Call::SslReadEx
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Call::SslWrite => "SSL_write",
            Call::SslWriteEx => "SSL_write_ex",
            Call::SslRead => "SSL_read",
            Call::SslReadEx => "SSL_read_ex",
            Call::Write => "write",
            Call::Read => "read",
            Call::SendTo => "sendto",
            Call::RecvFrom => "recvfrom",
            Call::Writev => "writev",
            Call::Readv => "readv",
        }
    }
}

/// With the tgid, what names a connection: TLS calls by the client's
/// `SSL *`, pipes and sockets by their inode number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnId {
    Tls(u64),
    Io(u64),
}

/// What a pipe or socket call went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Pipe,
    Unix,
    /// Loopback TCP: the peer's address and our port.
    Tcp {
        remote: SocketAddr,
        local_port: u16,
    },
}

impl Channel {
    /// `tcp`, `unix` or `pipe`.
    pub fn transport(&self) -> &'static str {
        match self {
            Channel::Pipe => "pipe",
            Channel::Unix => "unix",
            Channel::Tcp { .. } => "tcp",
        }
    }
}

/// The descriptor of a pipe or socket call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptor {
    pub fd: i32,
    pub channel: Channel,
}

/// Bytes of one call. They may hold secrets (API keys in headers): never
/// log or store `data` as it is. `Debug` prints only its length.
#[derive(Clone, PartialEq, Eq)]
pub struct Plaintext {
    pub header: Header,
    pub conn: ConnId,
    pub call: Call,
    /// The descriptor of a pipe or socket call, and of a TLS call that
    /// wrote or read its socket (None for one served from the library's
    /// buffer, or when the socket calls are not read).
    pub descriptor: Option<Descriptor>,
    /// Bytes the call moved.
    pub len: u32,
    /// Where `data` starts in them: a call longer than one record's room
    /// comes as several pieces, offsets ascending.
    pub offset: u32,
    /// This piece's bytes.
    pub data: Vec<u8>,
}

impl Plaintext {
    /// Bytes of the call after this piece (0 for its last byte). If no
    /// piece follows, the capture bound cut the call short by this much.
    pub fn remaining(&self) -> u32 {
        self.len - self.offset - self.data.len() as u32
    }

    /// Bytes the capture missed just before this piece. `slot` is where
    /// the last piece of this direction ended and what its call still
    /// owed; it moves past this piece. A call that began while the last
    /// one still owed bytes, or a piece not where the last one ended: a
    /// hole.
    pub fn missed_since(&self, slot: &mut (u32, u32)) -> u32 {
        let missed = if self.offset == 0 {
            slot.1
        } else {
            self.offset.saturating_sub(slot.0)
        };
        *slot = (self.offset + self.data.len() as u32, self.remaining());
        missed
    }
}

impl std::fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plaintext")
            .field("header", &self.header)
            .field("conn", &self.conn)
            .field("call", &self.call)
            .field("descriptor", &self.descriptor)
            .field("len", &self.len)
            .field("offset", &self.offset)
            .field("captured", &self.data.len())
            .finish()
    }
}

/// Decodes one plaintext ring record: the fixed part, then `captured`
/// bytes (the kernel sends no more than that).
pub fn decode(bytes: &[u8]) -> Result<Plaintext, DecodeError> {
    let header = decode_header(bytes)?;
    let kind = header.kind;
    if kind != EventKind::TlsData && kind != EventKind::IoData {
        return Err(DecodeError::UnknownKind(kind as u32));
    }
    let fixed = bytes.get(..TLS_DATA_HEADER_LEN).ok_or(DecodeError::Short {
        kind: kind.name(),
        need: TLS_DATA_HEADER_LEN,
        got: bytes.len(),
    })?;
    let at = TLS_DATA_HEADER_LEN - 56;
    let u16_at = |o: usize| u16::from_le_bytes(fixed[at + o..at + o + 2].try_into().expect("2"));
    let u32_at = |o: usize| u32::from_le_bytes(fixed[at + o..at + o + 4].try_into().expect("4"));
    let conn = u64::from_le_bytes(fixed[at..at + 8].try_into().expect("8"));
    let (len, captured, op, offset) = (u32_at(8), u32_at(12), u32_at(16), u32_at(20));
    let bad = |field: &'static str, value: u32, max: usize| DecodeError::Length {
        kind: kind.name(),
        field,
        value,
        max,
    };
    let call = Call::from_op(op).ok_or(bad("op", op, IO_OP_READV as usize))?;
    if call.is_tls() != (kind == EventKind::TlsData) {
        return Err(bad("op", op, IO_OP_READV as usize));
    }
    let fd = u32_at(24) as i32;
    let (fd_kind, family) = (u16_at(28), u16_at(30));
    // A TLS call names its socket when the call touched one.
    let (conn, descriptor) = if call.is_tls() && fd_kind == FD_KIND_NONE {
        (ConnId::Tls(conn), None)
    } else {
        let (local_port, remote_port) = (u16_at(32), u16_at(34));
        let addr: [u8; 16] = fixed[at + 40..at + 56].try_into().expect("16");
        let channel = match fd_kind {
            FD_KIND_PIPE => Channel::Pipe,
            FD_KIND_UNIX => Channel::Unix,
            FD_KIND_TCP => {
                let ip = if family == 10 {
                    IpAddr::V6(Ipv6Addr::from(addr))
                } else {
                    IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]))
                };
                Channel::Tcp {
                    remote: SocketAddr::new(ip, remote_port),
                    local_port,
                }
            }
            other => return Err(bad("fd_kind", u32::from(other), FD_KIND_TCP as usize)),
        };
        let id = if call.is_tls() {
            ConnId::Tls(conn)
        } else {
            ConnId::Io(conn)
        };
        (id, Some(Descriptor { fd, channel }))
    };
    let rest = &bytes[TLS_DATA_HEADER_LEN..];
    let room = (len.saturating_sub(offset) as usize)
        .min(rest.len())
        .min(observer_common::TLS_DATA_MAX);
    if offset > len || captured as usize > room {
        return Err(bad("captured", captured, room));
    }
    Ok(Plaintext {
        header,
        conn,
        call,
        descriptor,
        len,
        offset,
        data: rest[..captured as usize].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record laid out by hand, independent of the Rust struct, so the
    /// fixture also pins the ABI the eBPF side writes.
    fn record(kind: u32, ssl: u64, len: u32, captured: u32, op: u32, data: &[u8]) -> Vec<u8> {
        piece(kind, ssl, len, captured, op, 0, data)
    }

    fn piece(
        kind: u32,
        ssl: u64,
        len: u32,
        captured: u32,
        op: u32,
        offset: u32,
        data: &[u8],
    ) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&kind.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes()); // cpu
        b.extend_from_slice(&42u64.to_le_bytes()); // seq
        b.extend_from_slice(&123_456_789u64.to_le_bytes()); // boot_ns
        b.extend_from_slice(&4000u32.to_le_bytes()); // tgid
        b.extend_from_slice(&4001u32.to_le_bytes()); // tid
        b.extend_from_slice(&1000u32.to_le_bytes()); // uid
        b.extend_from_slice(&1001u32.to_le_bytes()); // gid
        b.extend_from_slice(&77u64.to_le_bytes()); // cgroup
        let mut comm = b"python3".to_vec();
        comm.resize(16, 0);
        b.extend_from_slice(&comm);
        b.extend_from_slice(&ssl.to_le_bytes());
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(&captured.to_le_bytes());
        b.extend_from_slice(&op.to_le_bytes());
        b.extend_from_slice(&offset.to_le_bytes());
        b.extend_from_slice(&(-1i32).to_le_bytes()); // fd
        b.extend_from_slice(&[0; 28]); // fd_kind .. remote_addr
        assert_eq!(b.len(), TLS_DATA_HEADER_LEN);
        b.extend_from_slice(data);
        b
    }

    /// A pipe or socket record: `fd_kind`, family, ports and address
    /// written where the kernel puts them.
    fn io_record(op: u32, fd_kind: u16, family: u16, addr: [u8; 16], data: &[u8]) -> Vec<u8> {
        let n = data.len() as u32;
        let mut b = piece(EventKind::IoData as u32, 9123, n, n, op, 0, &[]);
        b.truncate(TLS_DATA_HEADER_LEN - 32);
        b.extend_from_slice(&7i32.to_le_bytes()); // fd
        b.extend_from_slice(&fd_kind.to_le_bytes());
        b.extend_from_slice(&family.to_le_bytes());
        b.extend_from_slice(&40000u16.to_le_bytes()); // local port
        b.extend_from_slice(&11434u16.to_le_bytes()); // remote port
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&addr);
        assert_eq!(b.len(), TLS_DATA_HEADER_LEN);
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn decodes_pipe_and_socket_records() {
        let mut v4 = [0u8; 16];
        v4[..4].copy_from_slice(&[127, 0, 0, 1]);
        let p = decode(&io_record(
            observer_common::IO_OP_SENDTO,
            FD_KIND_TCP,
            2,
            v4,
            b"POST /api/chat HTTP/1.1\r\n",
        ))
        .unwrap();
        assert_eq!(p.header.kind, EventKind::IoData);
        assert_eq!((p.conn, p.call), (ConnId::Io(9123), Call::SendTo));
        assert_eq!(p.call.direction(), Direction::Sent);
        let want = Descriptor {
            fd: 7,
            channel: Channel::Tcp {
                remote: "127.0.0.1:11434".parse().unwrap(),
                local_port: 40000,
            },
        };
        assert_eq!(p.descriptor, Some(want));
        let v6 = std::net::Ipv6Addr::LOCALHOST.octets();
        let p = decode(&io_record(IO_OP_READ, FD_KIND_TCP, 10, v6, b"HTTP/1.1")).unwrap();
        assert_eq!(
            p.descriptor.unwrap().channel,
            Channel::Tcp {
                remote: "[::1]:11434".parse().unwrap(),
                local_port: 40000
            }
        );
        assert_eq!(p.call.direction(), Direction::Received);
        let p = decode(&io_record(IO_OP_WRITE, FD_KIND_PIPE, 0, [0; 16], b"{}\n")).unwrap();
        assert_eq!(p.descriptor.unwrap().channel.transport(), "pipe");
        let p = decode(&io_record(IO_OP_READ, FD_KIND_UNIX, 1, [0; 16], b"{}\n")).unwrap();
        assert_eq!(p.descriptor.unwrap().channel, Channel::Unix);
        let p = decode(&io_record(IO_OP_WRITEV, FD_KIND_PIPE, 0, [0; 16], b"{}")).unwrap();
        assert_eq!(
            (p.call, p.call.direction()),
            (Call::Writev, Direction::Sent)
        );
        let p = decode(&io_record(IO_OP_READV, FD_KIND_UNIX, 1, [0; 16], b"{}")).unwrap();
        assert_eq!(
            (p.call, p.call.direction()),
            (Call::Readv, Direction::Received)
        );
        assert_eq!(p.call.name(), "readv");
        // A descriptor kind the kernel never writes, and a TLS op on an
        // io record.
        let odd = io_record(IO_OP_READ, 9, 0, [0; 16], b"x");
        assert_eq!(decode(&odd).unwrap_err().reason(), "decode_bad_length");
        let tls_op = io_record(TLS_OP_READ, FD_KIND_PIPE, 0, [0; 16], b"x");
        assert_eq!(decode(&tls_op).unwrap_err().reason(), "decode_bad_length");
    }

    const TLS_DATA: u32 = EventKind::TlsData as u32;

    #[test]
    fn decodes_a_whole_write() {
        let body = b"POST /v1/messages HTTP/1.1\r\nHost: api.anthropic.com\r\n\r\n";
        let n = body.len() as u32;
        let p = decode(&record(
            TLS_DATA,
            0x5555_0000_1234,
            n,
            n,
            TLS_OP_WRITE,
            body,
        ))
        .unwrap();
        assert_eq!(p.header.kind, EventKind::TlsData);
        assert_eq!(
            (p.header.tgid, p.header.tid, p.header.seq),
            (4000, 4001, 42)
        );
        assert_eq!(p.header.comm, "python3");
        assert_eq!(p.conn, ConnId::Tls(0x5555_0000_1234));
        assert_eq!((p.call, p.descriptor), (Call::SslWrite, None));
        assert_eq!(p.call.direction(), Direction::Sent);
        assert_eq!(p.data, body);
        assert_eq!((p.offset, p.remaining()), (0, 0));
    }

    #[test]
    fn a_piece_knows_its_place_in_the_call() {
        let p = decode(&record(TLS_DATA, 1, 100_000, 4, TLS_OP_READ_EX, b"HTTP")).unwrap();
        assert_eq!(p.call, Call::SslReadEx);
        assert_eq!(p.call.direction(), Direction::Received);
        assert_eq!((p.len, p.data.as_slice()), (100_000, &b"HTTP"[..]));
        assert_eq!(p.remaining(), 99_996);
        let last = decode(&piece(
            TLS_DATA,
            1,
            100_000,
            4,
            TLS_OP_READ_EX,
            99_996,
            b"1.1 ",
        ))
        .unwrap();
        assert_eq!((last.offset, last.remaining()), (99_996, 0));
    }

    #[test]
    fn debug_never_prints_the_bytes() {
        let secret = b"x-api-key: sk-ant-secret";
        let n = secret.len() as u32;
        let p = decode(&record(TLS_DATA, 1, n, n, TLS_OP_WRITE_EX, secret)).unwrap();
        let shown = format!("{p:?}");
        assert!(!shown.contains("sk-ant"), "{shown}");
        assert!(shown.contains("captured: 24"), "{shown}");
    }

    #[test]
    fn rejects_bad_records() {
        // Fewer bytes than the capture claims.
        let short = record(TLS_DATA, 1, 10, 10, TLS_OP_WRITE, b"abc");
        assert_eq!(decode(&short).unwrap_err().reason(), "decode_bad_length");
        // More captured than the call moved.
        let over = record(TLS_DATA, 1, 2, 3, TLS_OP_WRITE, b"abc");
        assert_eq!(decode(&over).unwrap_err().reason(), "decode_bad_length");
        // A piece past the call's end.
        let past = piece(TLS_DATA, 1, 10, 3, TLS_OP_WRITE, 8, b"abc");
        assert_eq!(decode(&past).unwrap_err().reason(), "decode_bad_length");
        let beyond = piece(TLS_DATA, 1, 10, 3, TLS_OP_WRITE, 11, b"abc");
        assert_eq!(decode(&beyond).unwrap_err().reason(), "decode_bad_length");
        // An op no probe writes.
        let op = record(TLS_DATA, 1, 3, 3, 9, b"abc");
        assert_eq!(decode(&op).unwrap_err().reason(), "decode_bad_length");
        // Another kind on this ring.
        let exec = record(EventKind::Exec as u32, 1, 3, 3, TLS_OP_WRITE, b"abc");
        assert_eq!(decode(&exec).unwrap_err().reason(), "decode_unknown_kind");
        // Cut inside the fixed part.
        let cut = &record(TLS_DATA, 1, 3, 3, TLS_OP_WRITE, b"abc")[..100];
        assert_eq!(decode(cut).unwrap_err().reason(), "decode_short");
    }
}
