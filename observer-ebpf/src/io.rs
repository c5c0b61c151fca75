//! Bytes a watched process moves over a pipe, a Unix stream socket or a
//! loopback TCP socket: the exits of `write`, `read`, `sendto`,
//! `recvfrom`, `writev` and `readv`. This is how MCP servers on stdio (newline-delimited
//! JSON-RPC over pipes) and local inference servers (plain HTTP on
//! loopback) are seen; TLS traffic is read before encryption by the
//! uprobes instead (`tls.rs`), so remote TCP is never copied here.
//!
//! The filter runs cheapest first: the capture switch, the process flags
//! (one hash lookup, all an unwatched process pays), the descriptor's
//! type, then the streams the daemon muted because they carry nothing it
//! parses. Regular files, terminals and remote sockets are never copied.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::tracepoint,
    programs::TracePointContext,
};
use observer_common::*;

use crate::{
    emit::{fill_header, process_flags},
    kernel::{file_of_fd, offsets, read_at, AF_INET, AF_INET6},
    maps::{CONFIG, IO_MUTED, IO_SCRATCH, TLS_CALLS},
    pieces::{send_piece, send_pieces},
    syscall::{exit_ret, SyscallRegs},
};

const S_IFMT: u16 = 0o170000;
const S_IFIFO: u16 = 0o010000;
const S_IFSOCK: u16 = 0o140000;
const SOCK_STREAM: u16 = 1;
const AF_UNIX: u16 = 1;

/// sys_exit_write: write(fd, buf, count).
#[tracepoint]
pub fn write_exit(ctx: TracePointContext) -> u32 {
    on_io(exit_ret(&ctx), IO_OP_WRITE);
    0
}

/// sys_exit_read: read(fd, buf, count).
#[tracepoint]
pub fn read_exit(ctx: TracePointContext) -> u32 {
    on_io(exit_ret(&ctx), IO_OP_READ);
    0
}

/// sys_exit_sendto: sendto(fd, buf, len, flags, addr, addrlen); `send`
/// is this syscall in glibc.
#[tracepoint]
pub fn sendto_exit(ctx: TracePointContext) -> u32 {
    on_io(exit_ret(&ctx), IO_OP_SENDTO);
    0
}

/// sys_exit_recvfrom: recvfrom(fd, buf, len, flags, addr, addrlen);
/// `recv` is this syscall in glibc.
#[tracepoint]
pub fn recvfrom_exit(ctx: TracePointContext) -> u32 {
    on_io(exit_ret(&ctx), IO_OP_RECVFROM);
    0
}

/// sys_exit_writev: writev(fd, iov, iovcnt).
#[tracepoint]
pub fn writev_exit(ctx: TracePointContext) -> u32 {
    on_io(exit_ret(&ctx), IO_OP_WRITEV);
    0
}

/// sys_exit_readv: readv(fd, iov, iovcnt).
#[tracepoint]
pub fn readv_exit(ctx: TracePointContext) -> u32 {
    on_io(exit_ret(&ctx), IO_OP_READV);
    0
}

/// What the descriptor is, if its bytes may be copied.
struct Target {
    kind: u16,
    family: u16,
    local_port: u16,
    remote_port: u16,
    remote_addr: [u8; 16],
}

#[inline(always)]
fn on_io(ret: i64, op: u32) {
    if ret <= 0 {
        return;
    }
    let bound = CONFIG.load().io_capture_bytes as u64;
    if bound == 0 {
        return;
    }
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let flags = process_flags(tgid);
    if flags & PROCESS_WATCHED == 0 || flags & PROCESS_EXCLUDED != 0 {
        return;
    }
    let regs = SyscallRegs::current();
    let fd = regs.arg(0) as i32;
    let o = offsets();
    let Some(file) = file_of_fd(fd, &o) else {
        return;
    };
    let Some(inode) = read_at::<u64>(file, o.file_inode) else {
        return;
    };
    let Some(mode) = read_at::<u16>(inode, o.inode_mode) else {
        return;
    };
    if mode & S_IFMT == S_IFSOCK {
        note_tls_socket(fd, file, &o);
    }
    let ino = read_at::<u64>(inode, o.inode_ino).unwrap_or(0);
    let key = IoStreamKey { tgid, _pad: 0, ino };
    // SAFETY: a lookup; the value is not kept.
    if unsafe { IO_MUTED.get(key) }.is_some() {
        return;
    }
    let Some(target) = target(mode, file, &o) else {
        return;
    };
    let Some(ev) = IO_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: per-CPU scratch, exclusively ours for this invocation.
    let ev = unsafe { &mut *ev };
    let len = ret as u64;
    let total = if len < bound { len } else { bound };
    fill_header(&mut ev.header, EventKind::IoData);
    ev.conn = ino;
    ev.len = if len > u32::MAX as u64 {
        u32::MAX
    } else {
        len as u32
    };
    ev.op = op;
    ev.fd = fd;
    ev.fd_kind = target.kind;
    ev.family = target.family;
    ev.local_port = target.local_port;
    ev.remote_port = target.remote_port;
    ev._pad = 0;
    ev.remote_addr = target.remote_addr;
    if op == IO_OP_WRITEV || op == IO_OP_READV {
        send_iovecs(ev, regs.arg(1), regs.arg(2), total);
    } else {
        send_pieces(ev, EventKind::IoData, regs.arg(1), total);
    }
}

/// The bytes of a writev or readv: each iovec in turn as one piece (its
/// first `TLS_DATA_MAX` bytes; the rest of a longer one is a hole the
/// offsets show), offsets running on across them, until `total` (what
/// the call moved, within the bound). One piece per iovec keeps the
/// verifier's walk small.
#[inline(always)]
fn send_iovecs(ev: &mut PlaintextEvent, iov: u64, count: u64, total: u64) {
    let mut done: u64 = 0;
    for i in 0..IO_IOV_MAX as u64 {
        if i >= count || done >= total {
            break;
        }
        // struct iovec { void *iov_base; size_t iov_len; }
        // SAFETY: the helper validates the user pointer.
        let Ok([base, len]) = (unsafe { bpf_probe_read_user((iov + i * 16) as *const [u64; 2]) })
        else {
            return;
        };
        let left = total - done;
        let seg = if len < left { len } else { left };
        if seg > 0 && !send_piece(ev, EventKind::IoData, base, seg, done) {
            return;
        }
        done += seg;
    }
}

/// The first socket call inside a TLS call of this thread (the library
/// writing or reading its records) names the TLS connection's socket:
/// noted in the call's entry for its return to send.
#[inline(always)]
fn note_tls_socket(fd: i32, file: u64, o: &KernelOffsets) {
    let Some(call) = TLS_CALLS.get_ptr_mut(bpf_get_current_pid_tgid()) else {
        return;
    };
    // SAFETY: this thread's own entry, written only by this thread.
    let call = unsafe { &mut *call };
    if call.fd >= 0 {
        return;
    }
    let Some(t) = socket_peer(file, o) else {
        return;
    };
    call.fd = fd;
    call.fd_kind = t.kind;
    call.family = t.family;
    call.local_port = t.local_port;
    call.remote_port = t.remote_port;
    call.remote_addr = t.remote_addr;
}

/// A pipe, a Unix stream socket or a loopback TCP socket; None for
/// anything else.
#[inline(always)]
fn target(mode: u16, file: u64, o: &KernelOffsets) -> Option<Target> {
    match mode & S_IFMT {
        S_IFIFO => Some(Target {
            kind: FD_KIND_PIPE,
            family: 0,
            local_port: 0,
            remote_port: 0,
            remote_addr: [0; 16],
        }),
        S_IFSOCK => {
            let t = socket_peer(file, o)?;
            let loopback = match t.family {
                AF_UNIX => true,
                AF_INET => t.remote_addr[0] == 127,
                _ => loopback_v6(&t.remote_addr),
            };
            loopback.then_some(t)
        }
        _ => None,
    }
}

/// A stream socket's kind and peer: Unix, or TCP over IPv4 or IPv6 with
/// its ports and remote address; None for any other socket.
#[inline(always)]
fn socket_peer(file: u64, o: &KernelOffsets) -> Option<Target> {
    let mut t = Target {
        kind: FD_KIND_UNIX,
        family: 0,
        local_port: 0,
        remote_port: 0,
        remote_addr: [0; 16],
    };
    let socket = read_at::<u64>(file, o.file_private_data)?;
    if read_at::<u16>(socket, o.socket_type)? != SOCK_STREAM {
        return None;
    }
    let sk = read_at::<u64>(socket, o.socket_sk)?;
    t.family = read_at::<u16>(sk, o.sock_skc_family)?;
    if t.family == AF_UNIX {
        return Some(t);
    }
    t.kind = FD_KIND_TCP;
    t.local_port = read_at::<u16>(sk, o.sock_skc_num).unwrap_or(0);
    t.remote_port = u16::from_be(read_at::<u16>(sk, o.sock_skc_dport).unwrap_or(0));
    if t.family == AF_INET {
        let remote = read_at::<[u8; 4]>(sk, o.sock_skc_daddr)?;
        t.remote_addr[..4].copy_from_slice(&remote);
    } else if t.family == AF_INET6 {
        t.remote_addr = read_at::<[u8; 16]>(sk, o.sock_skc_v6_daddr)?;
    } else {
        return None;
    }
    Some(t)
}

/// `::1`, or `::ffff:127.x.y.z` (an IPv4 loopback peer of a dual-stack
/// socket).
#[inline(always)]
fn loopback_v6(a: &[u8; 16]) -> bool {
    let mut zeros = true;
    for b in &a[..10] {
        zeros &= *b == 0;
    }
    if !zeros {
        return false;
    }
    let mapped = a[10] == 0xff && a[11] == 0xff && a[12] == 127;
    let one = a[10..15].iter().all(|b| *b == 0) && a[15] == 1;
    mapped || one
}
