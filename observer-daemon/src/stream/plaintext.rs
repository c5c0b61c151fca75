//! One TLS read or write of a watched process, decoded from the plaintext
//! ring buffer. `decode` is pure and tested with byte fixtures.
use observer_common::{
    EventKind, TLS_DATA_HEADER_LEN, TLS_OP_READ, TLS_OP_READ_EX, TLS_OP_WRITE, TLS_OP_WRITE_EX,
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

/// The TLS library call that moved the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsCall {
    Write,
    WriteEx,
    Read,
    ReadEx,
}

impl TlsCall {
    pub fn direction(self) -> Direction {
        match self {
            TlsCall::Write | TlsCall::WriteEx => Direction::Sent,
            TlsCall::Read | TlsCall::ReadEx => Direction::Received,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TlsCall::Write => "SSL_write",
            TlsCall::WriteEx => "SSL_write_ex",
            TlsCall::Read => "SSL_read",
            TlsCall::ReadEx => "SSL_read_ex",
        }
    }
}

/// Plaintext of one call. It may hold secrets (API keys in headers):
/// never log or store `data` as it is. `Debug` prints only its length.
#[derive(Clone, PartialEq, Eq)]
pub struct Plaintext {
    pub header: Header,
    /// The `SSL *`: with the tgid it names the connection.
    pub ssl: u64,
    pub call: TlsCall,
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
}

impl std::fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plaintext")
            .field("header", &self.header)
            .field("ssl", &format_args!("{:#x}", self.ssl))
            .field("call", &self.call)
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
    let kind = EventKind::TlsData;
    if header.kind != kind {
        return Err(DecodeError::UnknownKind(header.kind as u32));
    }
    let fixed = bytes.get(..TLS_DATA_HEADER_LEN).ok_or(DecodeError::Short {
        kind: kind.name(),
        need: TLS_DATA_HEADER_LEN,
        got: bytes.len(),
    })?;
    let at = TLS_DATA_HEADER_LEN - 24;
    let u32_at = |o: usize| u32::from_le_bytes(fixed[at + o..at + o + 4].try_into().expect("4"));
    let ssl = u64::from_le_bytes(fixed[at..at + 8].try_into().expect("8"));
    let (len, captured, op, offset) = (u32_at(8), u32_at(12), u32_at(16), u32_at(20));
    let call = match op {
        TLS_OP_WRITE => TlsCall::Write,
        TLS_OP_WRITE_EX => TlsCall::WriteEx,
        TLS_OP_READ => TlsCall::Read,
        TLS_OP_READ_EX => TlsCall::ReadEx,
        other => {
            return Err(DecodeError::Length {
                kind: kind.name(),
                field: "op",
                value: other,
                max: TLS_OP_READ_EX as usize,
            })
        }
    };
    let rest = &bytes[TLS_DATA_HEADER_LEN..];
    let room = (len.saturating_sub(offset) as usize)
        .min(rest.len())
        .min(observer_common::TLS_DATA_MAX);
    if offset > len || captured as usize > room {
        return Err(DecodeError::Length {
            kind: kind.name(),
            field: "captured",
            value: captured,
            max: room,
        });
    }
    Ok(Plaintext {
        header,
        ssl,
        call,
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
        assert_eq!(b.len(), TLS_DATA_HEADER_LEN);
        b.extend_from_slice(data);
        b
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
        assert_eq!(p.ssl, 0x5555_0000_1234);
        assert_eq!(p.call, TlsCall::Write);
        assert_eq!(p.call.direction(), Direction::Sent);
        assert_eq!(p.data, body);
        assert_eq!((p.offset, p.remaining()), (0, 0));
    }

    #[test]
    fn a_piece_knows_its_place_in_the_call() {
        let p = decode(&record(TLS_DATA, 1, 100_000, 4, TLS_OP_READ_EX, b"HTTP")).unwrap();
        assert_eq!(p.call, TlsCall::ReadEx);
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
        let cut = &record(TLS_DATA, 1, 3, 3, TLS_OP_WRITE, b"abc")[..70];
        assert_eq!(decode(cut).unwrap_err().reason(), "decode_short");
    }
}
