//! Reads of kernel structures at offsets resolved from the running kernel's
//! BTF by the daemon. A missing offset (`u32::MAX`) reads as `None`, so a
//! field the kernel lacks degrades one attribute instead of the program.
use aya_ebpf::helpers::{bpf_probe_read_kernel, generated::bpf_get_current_task};
use observer_common::{KernelOffsets, NetEvent};

use crate::maps::CONFIG;

pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

#[inline(always)]
pub fn offsets() -> KernelOffsets {
    CONFIG.load().offsets
}

/// Reads a `T` at `base + off`; `None` on a missing offset, null base or fault.
#[inline(always)]
pub fn read_at<T>(base: u64, off: u32) -> Option<T> {
    if base == 0 || off == KernelOffsets::UNAVAILABLE {
        return None;
    }
    // SAFETY: bpf_probe_read_kernel validates the address and fails cleanly.
    unsafe { bpf_probe_read_kernel((base + off as u64) as *const T).ok() }
}

#[inline(always)]
pub fn current_task() -> u64 {
    // SAFETY: no arguments; returns the current task_struct pointer.
    unsafe { bpf_get_current_task() }
}

/// tgid of the task's real parent.
#[inline(always)]
pub fn parent_tgid(task: u64, o: &KernelOffsets) -> u32 {
    read_at::<u64>(task, o.task_real_parent)
        .and_then(|parent| read_at::<u32>(parent, o.task_tgid))
        .unwrap_or(0)
}

/// `struct file *` behind file descriptor `fd` of the current task:
/// task->files->fdt->fd[fd].
#[inline(always)]
pub fn file_of_fd(fd: i32, o: &KernelOffsets) -> Option<u64> {
    if fd < 0 {
        return None;
    }
    let files = read_at::<u64>(current_task(), o.task_files)?;
    let fdt = read_at::<u64>(files, o.files_fdt)?;
    let max_fds = read_at::<u32>(fdt, o.fdtable_max_fds)?;
    if fd as u32 >= max_fds {
        return None;
    }
    let fd_array = read_at::<u64>(fdt, o.fdtable_fd)?;
    read_at::<u64>(fd_array, (fd as u32) * 8)
}

/// `struct sock *` and `struct socket *` behind file descriptor `fd` of the
/// current task: task->files->fdt->fd[fd]->private_data->sk.
#[inline(always)]
pub fn socket_of_fd(fd: i32, o: &KernelOffsets) -> Option<(u64, u64)> {
    let file = file_of_fd(fd, o)?;
    let socket = read_at::<u64>(file, o.file_private_data)?;
    let sk = read_at::<u64>(socket, o.socket_sk)?;
    Some((socket, sk))
}

/// Copies family, type, and local/remote endpoints of a socket into `ev`.
#[inline(always)]
pub fn fill_from_socket(ev: &mut NetEvent, socket: u64, sk: u64, o: &KernelOffsets) {
    ev.sock_type = read_at::<u16>(socket, o.socket_type).unwrap_or(0);
    let family = read_at::<u16>(sk, o.sock_skc_family).unwrap_or(0);
    if ev.family == 0 {
        ev.family = family;
    }
    ev.local_port = read_at::<u16>(sk, o.sock_skc_num).unwrap_or(0);
    ev.remote_port = u16::from_be(read_at::<u16>(sk, o.sock_skc_dport).unwrap_or(0));
    if family == AF_INET6 {
        ev.local_addr = read_at::<[u8; 16]>(sk, o.sock_skc_v6_rcv_saddr).unwrap_or([0; 16]);
        ev.remote_addr = read_at::<[u8; 16]>(sk, o.sock_skc_v6_daddr).unwrap_or([0; 16]);
    } else {
        let local = read_at::<[u8; 4]>(sk, o.sock_skc_rcv_saddr).unwrap_or([0; 4]);
        let remote = read_at::<[u8; 4]>(sk, o.sock_skc_daddr).unwrap_or([0; 4]);
        ev.local_addr[..4].copy_from_slice(&local);
        ev.remote_addr[..4].copy_from_slice(&remote);
    }
}
