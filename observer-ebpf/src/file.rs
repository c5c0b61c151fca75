//! File opens (openat, openat2) with in-kernel filtering: only opens by a
//! watched process or of a path with an interesting prefix or suffix reach
//! the ring buffer, and repeats inside the dedup window are suppressed.
//!
//! Everything happens at syscall exit, in one program: the arguments come
//! from the registers the task saved on syscall entry, so no entry program
//! and no per-thread stash map sit on the hot path. Reading the path at
//! exit also avoids empty reads: at entry the user page holding it is
//! sometimes not resident yet.
use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_probe_read_kernel_buf, bpf_probe_read_user,
        bpf_probe_read_user_str_bytes, generated::bpf_ktime_get_boot_ns,
    },
    macros::tracepoint,
    programs::TracePointContext,
};
use observer_common::*;

use crate::{
    emit::{count, emit, fill_header, process_flags, Outcome},
    maps::{
        OpenScratch, CONFIG, OPEN_DEDUP, OPEN_SCRATCH, PATH_PREFIXES, PATH_SUFFIXES,
        PREFIX_FIRST_BYTES, SUFFIX_LAST_BYTES,
    },
    syscall::{exit_ret, SyscallRegs},
};

/// sys_exit_openat: openat(dfd, filename, flags, mode).
#[tracepoint]
pub fn openat_exit(ctx: TracePointContext) -> u32 {
    on_open(exit_ret(&ctx), OPEN_SOURCE_OPENAT);
    0
}

/// sys_exit_openat2: openat2(dfd, filename, struct open_how *how, size).
#[tracepoint]
pub fn openat2_exit(ctx: TracePointContext) -> u32 {
    on_open(exit_ret(&ctx), OPEN_SOURCE_OPENAT2);
    0
}

/// flags and mode: arguments of openat, the first two u64 of openat2's
/// `struct open_how`. Read only for opens that are reported.
#[inline(always)]
fn flags_and_mode(regs: SyscallRegs, source: u32) -> (u64, u64) {
    if source == OPEN_SOURCE_OPENAT2 {
        // SAFETY: the helper validates the user pointer.
        let [flags, mode] =
            unsafe { bpf_probe_read_user(regs.arg(2) as *const [u64; 2]) }.unwrap_or([0, 0]);
        (flags, mode)
    } else {
        (regs.arg(2), regs.arg(3))
    }
}

#[inline(always)]
fn on_open(ret: i64, source: u32) {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // The per-process flags cost a hash lookup; without watching they are
    // only needed once a path matched (to honour exclusion), which is rare.
    let watching = CONFIG.load().watch_enabled != 0;
    let mut process = if watching { process_flags(tgid) } else { 0 };
    if process & PROCESS_EXCLUDED != 0 {
        return;
    }
    let Some(scratch) = OPEN_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: per-CPU scratch, exclusively ours for this invocation.
    let scratch = unsafe { &mut *scratch };
    let regs = SyscallRegs::current();
    let filename = regs.arg(1);
    // SAFETY: the helper validates the user pointer.
    let len = match unsafe {
        bpf_probe_read_user_str_bytes(filename as *const u8, &mut scratch.prefix_key.data)
    } {
        Ok(path) => path.len(),
        Err(_) => {
            count(EventKind::FileOpen, Outcome::ReadError);
            return;
        }
    };
    // A path that filled the key was cut short: the suffix test and the
    // event need the whole path, so read it again into the event buffer.
    let truncated = len >= PREFIX_KEY_LEN - 1;
    let path_len = if truncated {
        // SAFETY: the helper validates the user pointer.
        match unsafe {
            bpf_probe_read_user_str_bytes(filename as *const u8, &mut scratch.event.path)
        } {
            Ok(path) => path.len(),
            Err(_) => {
                count(EventKind::FileOpen, Outcome::ReadError);
                return;
            }
        }
    } else {
        len
    };
    let mut reason = 0;
    if process & PROCESS_WATCHED != 0 {
        reason = OPEN_REASON_WATCHED_TGID;
    } else {
        if prefix_matches(scratch, len) {
            reason = OPEN_REASON_PREFIX;
        } else if suffix_matches(scratch, path_len, !truncated) {
            reason = OPEN_REASON_SUFFIX;
        }
    }
    if reason == 0 {
        return;
    }
    if !watching {
        process = process_flags(tgid);
        if process & PROCESS_EXCLUDED != 0 {
            return;
        }
    }
    if !truncated {
        // SAFETY: copying between two buffers of this per-CPU value.
        let copied = unsafe {
            bpf_probe_read_kernel_buf(
                scratch.prefix_key.data.as_ptr(),
                &mut scratch.event.path[..PREFIX_KEY_LEN],
            )
        };
        if copied.is_err() {
            return;
        }
    }
    let ev = &mut scratch.event;
    if is_repeat(tgid, &ev.path, path_len, ret < 0) {
        count(EventKind::FileOpen, Outcome::Suppressed);
        return;
    }
    let (flags, mode) = flags_and_mode(regs, source);
    ev.ret = ret as i32;
    ev.dfd = regs.arg(0) as i32;
    ev.flags = flags as u32;
    ev.mode = mode as u32;
    ev.path_len = path_len as u32;
    ev.reason = reason;
    ev.source = source;
    ev._pad = 0;
    fill_header(&mut ev.header, EventKind::FileOpen);
    emit(EventKind::FileOpen, ev);
}

/// Prefix test: an array lookup of the path's first two bytes, then the
/// prefix trie.
#[inline(always)]
fn prefix_matches(scratch: &mut OpenScratch, len: usize) -> bool {
    if len == 0 {
        return false;
    }
    if len >= 2 {
        let head = u16::from_le_bytes([scratch.prefix_key.data[0], scratch.prefix_key.data[1]]);
        if PREFIX_FIRST_BYTES.get(head as u32).copied().unwrap_or(0) == 0 {
            return false;
        }
    }
    scratch.prefix_key.prefix_len = (len * 8) as u32;
    PATH_PREFIXES.get(&scratch.prefix_key).is_some()
}

/// Suffix test on the path's tail: an array lookup of its last two bytes
/// first, then the reversed tail against the suffix trie.
#[inline(always)]
fn suffix_matches(scratch: &mut OpenScratch, len: usize, in_key: bool) -> bool {
    if len == 0 {
        return false;
    }
    let byte = |scratch: &OpenScratch, i: usize| {
        if in_key {
            scratch.prefix_key.data[i & (PREFIX_KEY_LEN - 1)]
        } else {
            scratch.event.path[i & (PATH_LEN - 1)]
        }
    };
    let last = byte(scratch, len - 1) as u32;
    let second_last = if len >= 2 {
        byte(scratch, len - 2) as u32
    } else {
        0
    };
    if SUFFIX_LAST_BYTES
        .get(last | second_last << 8)
        .copied()
        .unwrap_or(0)
        == 0
    {
        return false;
    }
    let n = len.min(SUFFIX_KEY_LEN);
    for i in 0..SUFFIX_KEY_LEN {
        if i >= n {
            break;
        }
        scratch.suffix_key.data[i] = if in_key {
            scratch.prefix_key.data[(len - 1 - i) & (PREFIX_KEY_LEN - 1)]
        } else {
            scratch.event.path[(len - 1 - i) & (PATH_LEN - 1)]
        };
    }
    scratch.suffix_key.prefix_len = (n * 8) as u32;
    PATH_SUFFIXES.get(&scratch.suffix_key).is_some()
}

/// True if this (tgid, path, failed?) was reported inside the dedup window;
/// otherwise records it as reported now.
#[inline(always)]
fn is_repeat(tgid: u32, path: &[u8; PATH_LEN], len: usize, failed: bool) -> bool {
    let window = CONFIG.load().open_dedup_ns;
    if window == 0 {
        return false;
    }
    // FNV-1a over the path, seeded with the tgid and the outcome.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325 ^ (((tgid as u64) << 1) | failed as u64);
    for (i, b) in path.iter().enumerate() {
        if i >= len {
            break;
        }
        hash = (hash ^ *b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    // SAFETY: no arguments.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    // SAFETY: value copied out immediately.
    if let Some(last) = unsafe { OPEN_DEDUP.get(hash).copied() } {
        if now.wrapping_sub(last) < window {
            return true;
        }
    }
    let _ = OPEN_DEDUP.insert(hash, now, 0);
    false
}
