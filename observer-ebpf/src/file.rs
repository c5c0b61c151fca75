//! File opens (openat, openat2) with in-kernel filtering: only opens by a
//! watched process or of a path with an interesting prefix or suffix reach
//! the ring buffer, and repeats inside the dedup window are suppressed.
//!
//! The path is read at syscall exit: at entry the user page holding it is
//! sometimes not resident yet and the read comes back empty.
use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_probe_read_kernel_buf, bpf_probe_read_user,
        bpf_probe_read_user_str_bytes, generated::bpf_ktime_get_boot_ns,
    },
    macros::tracepoint,
    programs::TracePointContext,
    EbpfContext,
};
use observer_common::*;

use crate::{
    emit::{count, emit, fill_header, is_excluded, Outcome},
    maps::{
        SyscallArgs, CONFIG, OPEN_DEDUP, OPEN_SCRATCH, PATH_PREFIXES, PATH_SUFFIXES, SOCKADDR_LEN,
        SYSCALL_STASH, WATCHED_TGIDS,
    },
};

#[inline(always)]
fn arg(ctx: &TracePointContext, index: usize) -> u64 {
    // SAFETY: syscall enter records hold u64 arguments from offset 16.
    unsafe { *(ctx.as_ptr().add(16 + index * 8) as *const u64) }
}

#[inline(always)]
fn save(dfd: u64, filename: u64, flags: u64, mode: u64, source: u32) {
    let pid_tgid = bpf_get_current_pid_tgid();
    if is_excluded((pid_tgid >> 32) as u32) {
        return;
    }
    let saved = SyscallArgs {
        args: [dfd, filename, flags, mode],
        sockaddr_len: source,
        _pad: 0,
        sockaddr: [0; SOCKADDR_LEN],
    };
    let _ = SYSCALL_STASH.insert(&(pid_tgid as u32), &saved, 0);
}

#[tracepoint]
pub fn openat_enter(ctx: TracePointContext) -> u32 {
    save(arg(&ctx, 0), arg(&ctx, 1), arg(&ctx, 2), arg(&ctx, 3), OPEN_SOURCE_OPENAT);
    0
}

/// openat2(dfd, filename, struct open_how *how, size): flags and mode
/// are the first two u64 of `open_how`.
#[tracepoint]
pub fn openat2_enter(ctx: TracePointContext) -> u32 {
    let how = arg(&ctx, 2) as *const [u64; 2];
    // SAFETY: the helper validates the user pointer.
    let [flags, mode] = unsafe { bpf_probe_read_user(how) }.unwrap_or([0, 0]);
    save(arg(&ctx, 0), arg(&ctx, 1), flags, mode, OPEN_SOURCE_OPENAT2);
    0
}

/// Attached to sys_exit_openat and sys_exit_openat2.
#[tracepoint]
pub fn open_exit(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    // SAFETY: copied out before the entry is removed.
    let Some(saved) = (unsafe { SYSCALL_STASH.get(&tid).copied() }) else {
        return 0;
    };
    let _ = SYSCALL_STASH.remove(&tid);
    let Some(scratch) = OPEN_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: per-CPU scratch, exclusively ours for this invocation.
    let scratch = unsafe { &mut *scratch };
    let ev = &mut scratch.event;
    // SAFETY: the helper validates the user pointer.
    let len = match unsafe {
        bpf_probe_read_user_str_bytes(saved.args[1] as *const u8, &mut ev.path)
    } {
        Ok(path) => path.len(),
        Err(_) => {
            count(EventKind::FileOpen, Outcome::ReadError);
            return 0;
        }
    };
    let tgid = (pid_tgid >> 32) as u32;
    // SAFETY: presence test only.
    let mut reason = if unsafe { WATCHED_TGIDS.get(&tgid).is_some() } {
        OPEN_REASON_WATCHED_TGID
    } else {
        0
    };
    if reason == 0 {
        reason = match_filters(scratch, len);
    }
    if reason == 0 {
        return 0;
    }
    // SAFETY: reading the syscall exit record's `long ret` at offset 16.
    let ret = unsafe { *(ctx.as_ptr().add(16) as *const i64) };
    if is_repeat(tgid, &scratch.event.path, len, ret < 0) {
        count(EventKind::FileOpen, Outcome::Suppressed);
        return 0;
    }
    let ev = &mut scratch.event;
    ev.ret = ret as i32;
    ev.dfd = saved.args[0] as i32;
    ev.flags = saved.args[2] as u32;
    ev.mode = saved.args[3] as u32;
    ev.path_len = len as u32;
    ev.reason = reason;
    ev.source = saved.sockaddr_len;
    ev._pad = 0;
    fill_header(&mut ev.header, EventKind::FileOpen);
    emit(EventKind::FileOpen, ev);
    0
}

/// Longest-prefix lookups of the path and of its reversed tail.
#[inline(always)]
fn match_filters(scratch: &mut crate::maps::OpenScratch, len: usize) -> u32 {
    let mut reason = 0;
    let path = &scratch.event.path;
    let prefix = &mut scratch.prefix_key;
    // SAFETY: copying between two buffers of this per-CPU value.
    if unsafe { bpf_probe_read_kernel_buf(path.as_ptr(), &mut prefix.data) }.is_ok() {
        prefix.prefix_len = (len.min(PREFIX_KEY_LEN) * 8) as u32;
        if PATH_PREFIXES.get(&*prefix).is_some() {
            reason |= OPEN_REASON_PREFIX;
        }
    }
    let suffix = &mut scratch.suffix_key;
    let n = len.min(SUFFIX_KEY_LEN);
    for i in 0..SUFFIX_KEY_LEN {
        if i >= n {
            break;
        }
        suffix.data[i] = path[(len - 1 - i) & (PATH_LEN - 1)];
    }
    suffix.prefix_len = (n * 8) as u32;
    if PATH_SUFFIXES.get(&*suffix).is_some() {
        reason |= OPEN_REASON_SUFFIX;
    }
    reason
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
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325 ^ ((tgid as u64) << 1 | failed as u64);
    for i in 0..PATH_LEN {
        if i >= len {
            break;
        }
        hash = (hash ^ path[i] as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    // SAFETY: no arguments.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    // SAFETY: value copied out immediately.
    if let Some(last) = unsafe { OPEN_DEDUP.get(&hash).copied() } {
        if now.wrapping_sub(last) < window {
            return true;
        }
    }
    let _ = OPEN_DEDUP.insert(&hash, &now, 0);
    false
}
