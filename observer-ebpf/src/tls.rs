//! TLS plaintext of watched processes: uprobes on the TLS library's
//! `SSL_write`, `SSL_write_ex`, `SSL_read` and `SSL_read_ex` note the
//! arguments, and one uretprobe on all four copies the bytes the call
//! moved into `TLS_EVENTS` (its own ring buffer).
//!
//! The daemon attaches these per process (a perf event with a pid), so an
//! unwatched process never hits the breakpoint; the flag test at entry is
//! a second line for processes that stopped being watched. The socket a
//! call used (descriptor and peer) is noted by the syscall exits of
//! `io.rs` while the call runs, when it touched one.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::{uprobe, uretprobe},
    programs::{ProbeContext, RetProbeContext},
};
use observer_common::*;

use crate::{
    emit::{count, fill_header, process_flags, Outcome},
    maps::{TlsCall, CONFIG, TLS_CALLS, TLS_SCRATCH},
    pieces::send_pieces,
};

/// `int SSL_write(SSL *ssl, const void *buf, int num)`.
#[uprobe]
pub fn ssl_write(ctx: ProbeContext) -> u32 {
    enter(&ctx, TLS_OP_WRITE);
    0
}

/// `int SSL_write_ex(SSL *s, const void *buf, size_t num, size_t *written)`.
#[uprobe]
pub fn ssl_write_ex(ctx: ProbeContext) -> u32 {
    enter(&ctx, TLS_OP_WRITE_EX);
    0
}

/// `int SSL_read(SSL *ssl, void *buf, int num)`.
#[uprobe]
pub fn ssl_read(ctx: ProbeContext) -> u32 {
    enter(&ctx, TLS_OP_READ);
    0
}

/// `int SSL_read_ex(SSL *ssl, void *buf, size_t num, size_t *readbytes)`.
#[uprobe]
pub fn ssl_read_ex(ctx: ProbeContext) -> u32 {
    enter(&ctx, TLS_OP_READ_EX);
    0
}

/// The return of any of the four: the stash says which call it was.
#[uretprobe]
pub fn ssl_return(ctx: RetProbeContext) -> u32 {
    leave(&ctx);
    0
}

#[inline(always)]
fn enter(ctx: &ProbeContext, op: u32) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let flags = process_flags((pid_tgid >> 32) as u32);
    if flags & PROCESS_WATCHED == 0 || flags & PROCESS_EXCLUDED != 0 {
        return;
    }
    let ex = op == TLS_OP_WRITE_EX || op == TLS_OP_READ_EX;
    let call = TlsCall {
        ssl: ctx.arg::<u64>(0).unwrap_or(0),
        buf: ctx.arg::<u64>(1).unwrap_or(0),
        moved: if ex {
            ctx.arg::<u64>(3).unwrap_or(0)
        } else {
            0
        },
        op,
        fd: -1,
        fd_kind: FD_KIND_NONE,
        family: 0,
        local_port: 0,
        remote_port: 0,
        remote_addr: [0; 16],
    };
    // A full map evicts the oldest entry (a thread that never returned).
    let _ = TLS_CALLS.insert(pid_tgid, call, 0);
}

#[inline(always)]
fn leave(ctx: &RetProbeContext) {
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: the value is copied out before the entry is removed.
    let Some(call) = (unsafe { TLS_CALLS.get(pid_tgid) }).copied() else {
        return;
    };
    let _ = TLS_CALLS.remove(pid_tgid);
    let ret = ctx.ret::<i64>() as i32;
    let len: u64 = if call.moved != 0 {
        // The _ex calls return 1 on success and store the count.
        if ret != 1 {
            return;
        }
        // SAFETY: the helper validates the user pointer.
        match unsafe { bpf_probe_read_user(call.moved as *const u64) } {
            Ok(n) => n,
            Err(_) => {
                count(EventKind::TlsData, Outcome::ReadError);
                return;
            }
        }
    } else if ret > 0 {
        ret as u64
    } else {
        // An error or a retry (SSL_ERROR_WANT_READ): nothing moved.
        return;
    };
    if len == 0 {
        return;
    }
    let Some(ev) = TLS_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: per-CPU scratch, exclusively ours for this invocation.
    let ev = unsafe { &mut *ev };
    let bound = CONFIG.load().tls_capture_bytes as u64;
    let total = if len < bound { len } else { bound };
    fill_header(&mut ev.header, EventKind::TlsData);
    ev.conn = call.ssl;
    ev.fd = call.fd;
    ev.fd_kind = call.fd_kind;
    ev.family = call.family;
    ev.local_port = call.local_port;
    ev.remote_port = call.remote_port;
    ev._pad = 0;
    ev.remote_addr = call.remote_addr;
    ev.len = if len > u32::MAX as u64 {
        u32::MAX
    } else {
        len as u32
    };
    ev.op = call.op;
    send_pieces(ev, EventKind::TlsData, call.buf, total);
}
