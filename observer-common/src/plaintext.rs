//! Plaintext of watched processes, in its own ring buffer (`TLS_EVENTS`),
//! sized on its own, so a flood of LLM or tool traffic never costs a
//! process, network or file event. Two sources write the same record:
//! - uprobes on the TLS library's `SSL_write`, `SSL_write_ex`, `SSL_read`
//!   and `SSL_read_ex` (kind `TlsData`: the bytes before encryption);
//! - the exits of `write`, `read`, `sendto` and `recvfrom` on a pipe, a
//!   Unix stream socket or a loopback TCP socket (kind `IoData`: MCP
//!   servers on stdio, local inference servers over plain HTTP).
use core::mem::size_of;

use crate::EventHeader;

/// Most plaintext bytes one event carries: the per-CPU scratch holds one
/// event, and a per-CPU map value may not exceed 32 KiB. A longer call is
/// sent as several events (pieces), each with its offset in the call.
pub const TLS_DATA_MAX: usize = 16384;
/// Most pieces one call is sent as: a call's capture bound is at most
/// `TLS_DATA_MAX * TLS_PIECES_MAX` (256 KiB).
pub const TLS_PIECES_MAX: u32 = 16;
/// The largest capture bound per call.
pub const TLS_CAPTURE_MAX: u32 = TLS_DATA_MAX as u32 * TLS_PIECES_MAX;
/// The default capture bound per call: a whole LLM API request (a long
/// conversation is a few hundred KiB; the SDKs send it in one call).
pub const TLS_CAPTURE_DEFAULT: u32 = TLS_CAPTURE_MAX;
/// Threads between a TLS call's entry and its return (one entry each).
pub const TLS_CALL_ENTRIES: u32 = 16384;
/// Default byte size of `TLS_EVENTS` (the daemon overrides it).
pub const TLS_RINGBUF_DEFAULT: u32 = 8 * 1024 * 1024;
/// (tgid, inode) pairs the daemon found to carry nothing it parses; the
/// kernel stops copying them (least recently used first out).
pub const IO_MUTED_ENTRIES: u32 = 16384;

/// `PlaintextEvent.op`: which call moved the bytes. A write is what the
/// process sent; a read is what it received.
pub const TLS_OP_WRITE: u32 = 1;
pub const TLS_OP_WRITE_EX: u32 = 2;
pub const TLS_OP_READ: u32 = 3;
pub const TLS_OP_READ_EX: u32 = 4;
pub const IO_OP_WRITE: u32 = 5;
pub const IO_OP_READ: u32 = 6;
pub const IO_OP_SENDTO: u32 = 7;
pub const IO_OP_RECVFROM: u32 = 8;
/// writev(2): the iovecs' bytes as one call, offsets running across them.
pub const IO_OP_WRITEV: u32 = 9;
/// readv(2), likewise.
pub const IO_OP_READV: u32 = 10;
/// iovecs of one writev/readv copied at most (MCP and HTTP writers use one
/// to a few; bytes in later ones count in `len` and are missed).
pub const IO_IOV_MAX: u32 = 8;

/// `PlaintextEvent.fd_kind`: what the file descriptor of an `IoData`
/// record is (0 for TLS records, whose descriptor is not known).
pub const FD_KIND_NONE: u16 = 0;
pub const FD_KIND_PIPE: u16 = 1;
pub const FD_KIND_UNIX: u16 = 2;
pub const FD_KIND_TCP: u16 = 3;

/// One piece of a successful read or write of a watched process. Written
/// to the ring buffer as the fixed part ([`TLS_DATA_HEADER_LEN`] bytes)
/// followed by `captured` bytes of `data`: never the whole array. A call's
/// pieces follow each other in the ring, offsets ascending.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PlaintextEvent {
    pub header: EventHeader,
    /// With the tgid, names the connection: the `SSL *` of a TLS call, the
    /// inode number of a pipe or socket.
    pub conn: u64,
    /// Bytes the call moved (its return value, or `*written` /
    /// `*readbytes` of the `_ex` calls).
    pub len: u32,
    /// Bytes of this piece in `data` (at most `TLS_DATA_MAX`).
    pub captured: u32,
    /// `TLS_OP_*` or `IO_OP_*`.
    pub op: u32,
    /// Where this piece starts in the call's bytes. The call's capture
    /// ends at `min(len, capture bound)`; less than `len` means it was
    /// cut short.
    pub offset: u32,
    /// The file descriptor (-1 when not known).
    pub fd: i32,
    /// `FD_KIND_*`.
    pub fd_kind: u16,
    /// Address family of a socket (AF_UNIX 1, AF_INET 2, AF_INET6 10).
    pub family: u16,
    pub local_port: u16,
    pub remote_port: u16,
    pub _pad: u32,
    /// IPv4 in the first four bytes, or IPv6.
    pub remote_addr: [u8; 16],
    pub data: [u8; TLS_DATA_MAX],
}

/// Bytes of a [`PlaintextEvent`] before `data`.
pub const TLS_DATA_HEADER_LEN: usize = size_of::<EventHeader>() + 56;

/// Key of `IO_MUTED`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IoStreamKey {
    pub tgid: u32,
    pub _pad: u32,
    /// The inode number of the pipe or socket.
    pub ino: u64,
}

const _: () = assert!(size_of::<PlaintextEvent>() == TLS_DATA_HEADER_LEN + TLS_DATA_MAX);
const _: () = assert!(TLS_DATA_HEADER_LEN == 120);
const _: () = assert!(size_of::<IoStreamKey>() == 16);
const _: () = assert!(TLS_DATA_MAX.is_power_of_two());
