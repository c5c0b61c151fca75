//! Inet socket activity: connect, accept/accept4, bind and listen. The
//! requested address comes from the user's sockaddr (saved at entry); the
//! socket's own view (type, local and peer endpoints) is read at exit.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, generated::bpf_probe_read_user},
    macros::tracepoint,
    programs::TracePointContext,
    EbpfContext,
};
use observer_common::*;

use crate::{
    emit::{current_tgid, emit, fill_header, is_excluded},
    kernel::{fill_from_socket, offsets, socket_of_fd, AF_INET, AF_INET6},
    maps::{SyscallArgs, SOCKADDR_LEN, SYSCALL_STASH},
    process::empty_header,
};

const EBADF: i64 = 9;
const ENOTSOCK: i64 = 88;

#[inline(always)]
fn arg(ctx: &TracePointContext, index: usize) -> u64 {
    // SAFETY: syscall enter records hold u64 arguments from offset 16.
    unsafe { *(ctx.as_ptr().add(16 + index * 8) as *const u64) }
}

#[inline(always)]
fn ret(ctx: &TracePointContext) -> i64 {
    // SAFETY: syscall exit records hold `long ret` at offset 16.
    unsafe { *(ctx.as_ptr().add(16) as *const i64) }
}

#[inline(always)]
fn tid() -> u32 {
    bpf_get_current_pid_tgid() as u32
}

/// Saves fd and (optionally) a copy of the user's sockaddr for the exit.
#[inline(always)]
fn stash(fd: u64, addr: u64, addr_len: u64) {
    if is_excluded(current_tgid()) {
        return;
    }
    let mut saved = SyscallArgs {
        args: [fd, 0, 0, 0],
        sockaddr_len: 0,
        _pad: 0,
        sockaddr: [0; SOCKADDR_LEN],
    };
    if addr != 0 {
        let len = (addr_len as usize).min(SOCKADDR_LEN) as u32;
        // SAFETY: the helper checks the user address; len <= SOCKADDR_LEN.
        let rc = unsafe {
            bpf_probe_read_user(saved.sockaddr.as_mut_ptr().cast(), len, addr as *const _)
        };
        if rc == 0 {
            saved.sockaddr_len = len;
        }
    }
    let _ = SYSCALL_STASH.insert(tid(), saved, 0);
}

#[inline(always)]
fn take_stash() -> Option<SyscallArgs> {
    let key = tid();
    // SAFETY: copied out before the entry is removed.
    let saved = unsafe { SYSCALL_STASH.get(key).copied() };
    if saved.is_some() {
        let _ = SYSCALL_STASH.remove(key);
    }
    saved
}

fn new_event(fd: i32, ret: i64) -> NetEvent {
    NetEvent {
        header: empty_header(),
        fd,
        ret: ret as i32,
        family: 0,
        sock_type: 0,
        local_port: 0,
        remote_port: 0,
        local_addr: [0; 16],
        remote_addr: [0; 16],
    }
}

/// Decodes a sockaddr_in / sockaddr_in6 into (family, port, address).
#[inline(always)]
fn parse_sockaddr(saved: &SyscallArgs) -> Option<(u16, u16, [u8; 16])> {
    if saved.sockaddr_len < 8 {
        return None;
    }
    let sa = &saved.sockaddr;
    let family = u16::from_ne_bytes([sa[0], sa[1]]);
    let port = u16::from_be_bytes([sa[2], sa[3]]);
    let mut addr = [0u8; 16];
    match family {
        AF_INET => addr[..4].copy_from_slice(&sa[4..8]),
        AF_INET6 if saved.sockaddr_len >= 24 => addr.copy_from_slice(&sa[8..24]),
        _ => return None,
    }
    Some((family, port, addr))
}

#[inline(always)]
fn socket_readable(ret: i64) -> bool {
    ret != -EBADF && ret != -ENOTSOCK
}

/// Attached to sys_enter_connect and sys_enter_bind, which share the
/// argument layout (fd, struct sockaddr *, addrlen).
#[tracepoint]
pub fn sockaddr_enter(ctx: TracePointContext) -> u32 {
    stash(arg(&ctx, 0), arg(&ctx, 1), arg(&ctx, 2));
    0
}

#[tracepoint]
pub fn connect_exit(ctx: TracePointContext) -> u32 {
    let Some(saved) = take_stash() else { return 0 };
    let Some((family, port, addr)) = parse_sockaddr(&saved) else {
        return 0;
    };
    let ret = ret(&ctx);
    let fd = saved.args[0] as i32;
    let mut ev = new_event(fd, ret);
    let o = offsets();
    if socket_readable(ret) {
        if let Some((socket, sk)) = socket_of_fd(fd, &o) {
            fill_from_socket(&mut ev, socket, sk, &o);
        }
    }
    // The requested destination is authoritative: a failed connect may
    // already have cleared the socket's peer fields.
    ev.family = family;
    ev.remote_port = port;
    ev.remote_addr = addr;
    fill_header(&mut ev.header, EventKind::Connect);
    emit(EventKind::Connect, &mut ev);
    0
}

#[tracepoint]
pub fn bind_exit(ctx: TracePointContext) -> u32 {
    let Some(saved) = take_stash() else { return 0 };
    let Some((family, port, addr)) = parse_sockaddr(&saved) else {
        return 0;
    };
    let ret = ret(&ctx);
    let fd = saved.args[0] as i32;
    let mut ev = new_event(fd, ret);
    let o = offsets();
    if socket_readable(ret) {
        if let Some((socket, _)) = socket_of_fd(fd, &o) {
            ev.sock_type = crate::kernel::read_at::<u16>(socket, o.socket_type).unwrap_or(0);
        }
    }
    ev.family = family;
    ev.local_port = port;
    ev.local_addr = addr;
    fill_header(&mut ev.header, EventKind::Bind);
    emit(EventKind::Bind, &mut ev);
    0
}

#[tracepoint]
pub fn listen_enter(ctx: TracePointContext) -> u32 {
    stash(arg(&ctx, 0), 0, 0);
    0
}

/// The listening address is read from the socket after listen(2), which
/// also covers sockets the kernel bound to an ephemeral port.
#[tracepoint]
pub fn listen_exit(ctx: TracePointContext) -> u32 {
    let Some(saved) = take_stash() else { return 0 };
    let ret = ret(&ctx);
    let fd = saved.args[0] as i32;
    emit_from_socket(EventKind::Listen, fd, fd, ret);
    0
}

/// Attached to sys_exit_accept and sys_exit_accept4: the peer is read from
/// the new socket, so a NULL sockaddr argument does not hide it.
#[tracepoint]
pub fn accept_exit(ctx: TracePointContext) -> u32 {
    let ret = ret(&ctx);
    if ret < 0 || is_excluded(current_tgid()) {
        return 0;
    }
    emit_from_socket(EventKind::Accept, ret as i32, ret as i32, ret);
    0
}

#[inline(always)]
fn emit_from_socket(kind: EventKind, fd: i32, socket_fd: i32, ret: i64) {
    let mut ev = new_event(fd, ret);
    let o = offsets();
    if socket_readable(ret) {
        if let Some((socket, sk)) = socket_of_fd(socket_fd, &o) {
            fill_from_socket(&mut ev, socket, sk, &o);
        }
    }
    if ev.family != AF_INET && ev.family != AF_INET6 {
        return;
    }
    fill_header(&mut ev.header, kind);
    emit(kind, &mut ev);
}
