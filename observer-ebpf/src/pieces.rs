//! Copies the bytes of one read or write into the plaintext ring as
//! pieces of at most `TLS_DATA_MAX` bytes: shared by the TLS uprobes and
//! the pipe and socket tracepoints, so both write the same record.
use aya_ebpf::helpers::generated::bpf_probe_read_user as read_raw;
use observer_common::*;

use crate::{
    emit::{count, next_seq, ring_wakeup, Outcome},
    maps::TLS_EVENTS,
};

/// Sends `total` bytes from user address `buf` as pieces of `ev` (its
/// header and call fields already filled). A full ring stops the call:
/// the rest would be a stream with a hole.
#[inline(always)]
pub fn send_pieces(ev: &mut PlaintextEvent, kind: EventKind, buf: u64, total: u64) {
    send_pieces_at(ev, kind, buf, total, 0);
}

/// [`send_pieces`] for bytes that start `base` bytes into the call.
/// False when it stopped short (a read error, a full ring).
#[inline(always)]
fn send_pieces_at(
    ev: &mut PlaintextEvent,
    kind: EventKind,
    buf: u64,
    total: u64,
    base: u64,
) -> bool {
    let mut offset: u64 = 0;
    for _ in 0..TLS_PIECES_MAX {
        if offset >= total {
            break;
        }
        let mut piece = total - offset;
        if piece > TLS_DATA_MAX as u64 {
            piece = TLS_DATA_MAX as u64;
        }
        if !send_piece(ev, kind, buf + offset, piece, base + offset) {
            return false;
        }
        offset += piece;
    }
    true
}

/// One piece: `piece` (at most `TLS_DATA_MAX`) bytes from user address
/// `buf`, `at` bytes into the call. False on a read error or a full ring
/// (counted).
#[inline(always)]
pub fn send_piece(ev: &mut PlaintextEvent, kind: EventKind, buf: u64, piece: u64, at: u64) -> bool {
    let piece = if piece > TLS_DATA_MAX as u64 {
        TLS_DATA_MAX as u64
    } else {
        piece
    };
    // SAFETY: `piece` <= TLS_DATA_MAX, the size of `data`; the helper
    // validates the user pointer.
    let read = unsafe {
        read_raw(
            ev.data.as_mut_ptr().cast(),
            piece as u32,
            buf as *const core::ffi::c_void,
        )
    };
    if read != 0 {
        count(kind, Outcome::ReadError);
        return false;
    }
    ev.header.seq = next_seq();
    ev.captured = piece as u32;
    ev.offset = at as u32;
    let size = TLS_DATA_HEADER_LEN + piece as usize;
    // SAFETY: `size` <= size_of::<PlaintextEvent>(): only this piece's
    // bytes go to the ring, not the whole array.
    let bytes =
        unsafe { core::slice::from_raw_parts((ev as *const PlaintextEvent).cast::<u8>(), size) };
    match TLS_EVENTS.output::<[u8]>(bytes, ring_wakeup(&TLS_EVENTS)) {
        Ok(()) => {
            count(kind, Outcome::Emitted);
            true
        }
        Err(_) => {
            count(kind, Outcome::RingBufFull);
            false
        }
    }
}
