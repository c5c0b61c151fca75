//! TLS plaintext captured by uprobes on the TLS library's read and write
//! functions (`SSL_write`, `SSL_write_ex`, `SSL_read`, `SSL_read_ex`) of
//! watched processes. It has its own ring buffer (`TLS_EVENTS`), sized on
//! its own, so a flood of LLM traffic never costs a process, network or
//! file event.
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

/// `TlsDataEvent.op`: which call moved the bytes. A write is plaintext the
/// process sent; a read is plaintext it received.
pub const TLS_OP_WRITE: u32 = 1;
pub const TLS_OP_WRITE_EX: u32 = 2;
pub const TLS_OP_READ: u32 = 3;
pub const TLS_OP_READ_EX: u32 = 4;

/// One piece of a successful TLS read or write of a watched process.
/// Written to the ring buffer as the fixed part ([`TLS_DATA_HEADER_LEN`]
/// bytes) followed by `captured` bytes of `data`: never the whole array.
/// A call's pieces follow each other in the ring, offsets ascending.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TlsDataEvent {
    pub header: EventHeader,
    /// The `SSL *` of the call: with the tgid, it names the connection.
    pub ssl: u64,
    /// Bytes the call moved (its return value, or `*written` /
    /// `*readbytes` of the `_ex` calls).
    pub len: u32,
    /// Bytes of this piece in `data` (at most `TLS_DATA_MAX`).
    pub captured: u32,
    /// `TLS_OP_*`.
    pub op: u32,
    /// Where this piece starts in the call's bytes. The call's capture
    /// ends at `min(len, capture bound)`; less than `len` means it was
    /// cut short.
    pub offset: u32,
    pub data: [u8; TLS_DATA_MAX],
}

/// Bytes of a [`TlsDataEvent`] before `data`.
pub const TLS_DATA_HEADER_LEN: usize = size_of::<EventHeader>() + 24;

const _: () = assert!(size_of::<TlsDataEvent>() == TLS_DATA_HEADER_LEN + TLS_DATA_MAX);
const _: () = assert!(TLS_DATA_HEADER_LEN == 88);
const _: () = assert!(TLS_DATA_MAX.is_power_of_two());
