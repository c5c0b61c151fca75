//! TLS plaintext captured by uprobes on the TLS library's read and write
//! functions (`SSL_write`, `SSL_write_ex`, `SSL_read`, `SSL_read_ex`) of
//! watched processes. It has its own ring buffer (`TLS_EVENTS`), sized on
//! its own, so a flood of LLM traffic never costs a process, network or
//! file event.
use core::mem::size_of;

use crate::EventHeader;

/// Most plaintext bytes one event carries: the per-CPU scratch holds one
/// event, and a per-CPU map value may not exceed 32 KiB;
/// the daemon's `tls.capture_bytes` picks a smaller bound.
pub const TLS_DATA_MAX: usize = 16384;
/// The default capture bound per call.
pub const TLS_CAPTURE_DEFAULT: u32 = 16384;
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

/// One successful TLS read or write of a watched process. Written to the
/// ring buffer as the fixed part ([`TLS_DATA_HEADER_LEN`] bytes) followed by
/// `captured` bytes of `data`: never the whole array.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TlsDataEvent {
    pub header: EventHeader,
    /// The `SSL *` of the call: with the tgid, it names the connection.
    pub ssl: u64,
    /// Bytes the call moved (its return value, or `*written` /
    /// `*readbytes` of the `_ex` calls).
    pub len: u32,
    /// Bytes copied to `data`: `min(len, capture bound)`. Less than `len`
    /// means the capture was cut short.
    pub captured: u32,
    /// `TLS_OP_*`.
    pub op: u32,
    pub _pad: u32,
    pub data: [u8; TLS_DATA_MAX],
}

/// Bytes of a [`TlsDataEvent`] before `data`.
pub const TLS_DATA_HEADER_LEN: usize = size_of::<EventHeader>() + 24;

const _: () = assert!(size_of::<TlsDataEvent>() == TLS_DATA_HEADER_LEN + TLS_DATA_MAX);
const _: () = assert!(TLS_DATA_HEADER_LEN == 88);
const _: () = assert!(TLS_DATA_MAX.is_power_of_two());
