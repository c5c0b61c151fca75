//! Event headers, the ring buffer write, and the per-kind counters that make
//! every lost event visible to the daemon.
use aya_ebpf::maps::RingBuf;
use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        generated::{bpf_get_current_cgroup_id, bpf_get_smp_processor_id, bpf_ktime_get_boot_ns},
    },
};
use observer_common::{EventHeader, EventKind, PROCESS_EXCLUDED};

use crate::maps::{CONFIG, COUNTERS, EVENTS, PROCESS_FLAGS, SEQ};

/// Which counter of a kind to bump.
#[derive(Clone, Copy)]
pub enum Outcome {
    Emitted,
    RingBufFull,
    Suppressed,
    ReadError,
}

#[inline(always)]
pub fn count(kind: EventKind, outcome: Outcome) {
    let Some(c) = COUNTERS.get_ptr_mut(kind as u32) else {
        return;
    };
    // SAFETY: a valid per-CPU map value. Plain increments are enough: the
    // kernel never runs two tracing programs on one CPU at once (its
    // bpf_prog_active guard), so nothing else writes this CPU's slot.
    unsafe {
        let field: *mut u64 = match outcome {
            Outcome::Emitted => &raw mut (*c).emitted,
            Outcome::RingBufFull => &raw mut (*c).dropped_ringbuf_full,
            Outcome::Suppressed => &raw mut (*c).suppressed,
            Outcome::ReadError => &raw mut (*c).dropped_read_error,
        };
        *field += 1;
    }
}

/// `PROCESS_*` flags of a process (0 when it has none).
#[inline(always)]
pub fn process_flags(tgid: u32) -> u8 {
    PROCESS_FLAGS.get(tgid).copied().unwrap_or(0)
}

/// Sets the `PROCESS_*` flags of a process (0 clears them).
#[inline(always)]
pub fn set_process_flags(tgid: u32, flags: u8) {
    if let Some(slot) = PROCESS_FLAGS.get_ptr_mut(tgid) {
        // SAFETY: this process's own byte of the array.
        unsafe { *slot = flags };
    }
}

/// True for processes the daemon asked never to report (itself).
#[inline(always)]
pub fn is_excluded(tgid: u32) -> bool {
    process_flags(tgid) & PROCESS_EXCLUDED != 0
}

#[inline(always)]
pub fn current_tgid() -> u32 {
    (bpf_get_current_pid_tgid() >> 32) as u32
}

/// Fills everything but `seq`, which `emit` assigns.
#[inline(always)]
pub fn fill_header(h: &mut EventHeader, kind: EventKind) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    h.kind = kind as u32;
    h.tgid = (pid_tgid >> 32) as u32;
    h.tid = pid_tgid as u32;
    h.uid = uid_gid as u32;
    h.gid = (uid_gid >> 32) as u32;
    // SAFETY: these helpers take no arguments and cannot fail.
    unsafe {
        h.cpu = bpf_get_smp_processor_id();
        h.boot_ns = bpf_ktime_get_boot_ns();
        h.cgroup_id = bpf_get_current_cgroup_id();
    }
    h.comm = bpf_get_current_comm().unwrap_or([0; 16]);
}

/// Writes `event` (whose first field is an `EventHeader`) to the ring buffer
/// and counts the outcome. The sequence number is taken even when the write
/// fails, so the daemon sees the gap as well as the counter.
#[inline(always)]
pub fn emit<T>(kind: EventKind, event: &mut T) {
    let header = event as *mut T as *mut EventHeader;
    // SAFETY: every event type is repr(C) with the header first.
    unsafe { (*header).seq = next_seq() };
    match EVENTS.output::<T>(&*event, wakeup_flags()) {
        Ok(()) => count(kind, Outcome::Emitted),
        Err(_) => count(kind, Outcome::RingBufFull),
    }
}

/// [`emit`] of the first `len` bytes of `event` only (`len` is clamped to
/// its size): a record whose tail buffer is partly used.
#[inline(always)]
pub fn emit_prefix<T>(kind: EventKind, event: &mut T, len: usize) {
    let header = event as *mut T as *mut EventHeader;
    // SAFETY: every event type is repr(C) with the header first.
    unsafe { (*header).seq = next_seq() };
    let len = if len > size_of::<T>() {
        size_of::<T>()
    } else {
        len
    };
    // SAFETY: `len` bytes of `event`, which is at least that long.
    let bytes = unsafe { core::slice::from_raw_parts(event as *const T as *const u8, len) };
    match EVENTS.output::<[u8]>(bytes, wakeup_flags()) {
        Ok(()) => count(kind, Outcome::Emitted),
        Err(_) => count(kind, Outcome::RingBufFull),
    }
}

/// The next per-CPU sequence number (shared by both ring buffers, so a gap
/// on one CPU is a lost event of either).
#[inline(always)]
pub fn next_seq() -> u64 {
    match SEQ.get_ptr_mut(0) {
        // SAFETY: valid per-CPU map value, written only from this CPU (see count).
        Some(p) => unsafe {
            *p += 1;
            *p
        },
        None => 0,
    }
}

/// Waking the reader costs several microseconds per event, so events are
/// written without a wakeup until `wakeup_bytes` have accumulated; the
/// daemon also polls on a short timer so a quiet system is not starved.
#[inline(always)]
pub fn wakeup_flags() -> u64 {
    ring_wakeup(&EVENTS)
}

/// [`wakeup_flags`] for any ring buffer.
#[inline(always)]
pub fn ring_wakeup(ring: &RingBuf) -> u64 {
    let threshold = CONFIG.load().wakeup_bytes;
    if threshold == 0 || ring.query(BPF_RB_AVAIL_DATA as u64) >= threshold {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}
