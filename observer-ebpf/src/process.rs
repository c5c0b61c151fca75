//! Process lifecycle: exec (argv read from the new image in one copy, or
//! from a failed call's arguments), fork and exit.
use aya_ebpf::{
    helpers::{
        bpf_probe_read_kernel_str_bytes, bpf_probe_read_user, bpf_probe_read_user_buf,
        bpf_probe_read_user_str_bytes,
    },
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
    EbpfContext,
};
use observer_common::*;

use crate::{
    emit::{
        count, current_tgid, emit, emit_prefix, fill_header, is_excluded, process_flags,
        set_process_flags, Outcome,
    },
    kernel::{current_task, offsets, parent_tgid, read_at},
    maps::{CONFIG, EXECVEAT_PENDING, EXEC_SCRATCH, EXEC_WATCH_KEY, WATCHED_EXES},
    syscall::SyscallRegs,
};

/// Offsets in the syscall tracepoint records (see
/// /sys/kernel/tracing/events/syscalls/*/format; the daemon checks them).
const SYSCALL_NR: usize = 8;
const SYSCALL_RET: usize = 16;
/// execveat's syscall number.
#[cfg(bpf_target_arch = "x86_64")]
const SYS_EXECVEAT: i32 = 322;
#[cfg(bpf_target_arch = "aarch64")]
const SYS_EXECVEAT: i32 = 281;
/// `sched_process_exec`: `__data_loc char[] filename` and `old_pid`.
const EXEC_FILENAME_LOC: usize = 8;
const EXEC_OLD_PID: usize = 16;
/// `sched_process_exit`: `bool group_dead`.
const EXIT_GROUP_DEAD: usize = 32;

#[inline(always)]
fn ctx_ret(ctx: &TracePointContext) -> i64 {
    // SAFETY: syscall exit records hold `long ret` at offset 16.
    unsafe { *(ctx.as_ptr().add(SYSCALL_RET) as *const i64) }
}

/// Marks the thread as inside execveat(2): `sched_process_exec` cannot tell
/// the two calls apart. (execve(2) needs no entry program: a successful
/// exec reads argv from the new image, a failed one from the registers.)
#[tracepoint]
pub fn execveat_enter(_ctx: TracePointContext) -> u32 {
    if !is_excluded(current_tgid()) {
        let tid = aya_ebpf::helpers::bpf_get_current_pid_tgid() as u32;
        let _ = EXECVEAT_PENDING.insert(tid, 1, 0);
    }
    0
}

/// argv of a failed call as NUL-terminated strings, each read with at most
/// `ARG_CHUNK` bytes so the verifier can bound every write inside `args`.
#[inline(always)]
fn read_argv(ev: &mut ExecEvent, argv: u64) {
    let mut off: usize = 0;
    let mut argc: u32 = 0;
    for i in 0..MAX_ARGS {
        // SAFETY: reading a user pointer array through the checked helper.
        let arg: u64 = match unsafe { bpf_probe_read_user((argv as *const u64).wrapping_add(i)) } {
            Ok(p) => p,
            Err(_) => break,
        };
        if arg == 0 {
            break;
        }
        if off > ARGS_LEN - ARG_CHUNK {
            ev.flags |= EXEC_FLAG_ARGS_TRUNCATED;
            break;
        }
        let dst = &mut ev.args[off..off + ARG_CHUNK];
        // SAFETY: as above; dst is inside the event buffer.
        let n = match unsafe { bpf_probe_read_user_str_bytes(arg as *const u8, dst) } {
            Ok(s) => s.len(),
            Err(_) => break,
        };
        if n >= ARG_CHUNK - 1 {
            ev.flags |= EXEC_FLAG_ARGS_TRUNCATED;
        }
        off += n + 1;
        argc += 1;
    }
    ev.args_len = off as u32;
    ev.argc = argc;
}

/// argv of the new image: the argument area exec laid out on its stack
/// (`mm->arg_start..arg_end`, every string NUL-terminated), in one copy.
/// Nothing of the new image has run yet, so it is exactly what was passed.
#[inline(always)]
fn read_image_args(ev: &mut ExecEvent, task: u64, o: &KernelOffsets) {
    ev.argc = 0;
    ev.args_len = 0;
    let Some(mm) = read_at::<u64>(task, o.task_mm) else {
        ev.flags |= EXEC_FLAG_NO_ARGS;
        return;
    };
    let (Some(start), Some(end)) = (
        read_at::<u64>(mm, o.mm_arg_start),
        read_at::<u64>(mm, o.mm_arg_end),
    ) else {
        ev.flags |= EXEC_FLAG_NO_ARGS;
        return;
    };
    let total = end.saturating_sub(start) as usize;
    let n = if total > ARGS_LEN {
        ev.flags |= EXEC_FLAG_ARGS_TRUNCATED;
        ARGS_LEN
    } else {
        total
    };
    if n == 0 {
        return;
    }
    // SAFETY: the helper validates the user range; `n <= ARGS_LEN`.
    match unsafe { bpf_probe_read_user_buf(start as *const u8, &mut ev.args[..n]) } {
        Ok(()) => ev.args_len = n as u32,
        Err(_) => ev.flags |= EXEC_FLAG_NO_ARGS,
    }
}

/// Sends the exec event up to the end of its used argv bytes.
#[inline(always)]
fn emit_exec(ev: &mut ExecEvent) {
    let args = ev.args_len as usize;
    let args = if args > ARGS_LEN { ARGS_LEN } else { args };
    emit_prefix(EventKind::Exec, ev, EXEC_FIXED_LEN + args);
}

/// Fills the exec event fields known only in the kernel's exec context.
#[inline(always)]
fn finish_exec(ev: &mut ExecEvent, retval: i32) {
    let o = offsets();
    let task = current_task();
    fill_header(&mut ev.header, EventKind::Exec);
    ev.retval = retval;
    ev.ppid = parent_tgid(task, &o);
    ev.loginuid = read_at::<u32>(task, o.task_loginuid).unwrap_or(u32::MAX);
    ev._pad = 0;
    ev.exe_dev = 0;
    ev.exe_mtime_nsec = 0;
    ev.exe_ino = 0;
    ev.exe_size = 0;
    ev.exe_mtime_sec = 0;
    if retval == 0 {
        fill_exe_identity(ev, task, &o);
    }
}

/// The identity of the file the new image was loaded from
/// (task->mm->exe_file->f_inode): with it the daemon finds the executable's
/// hash in its cache without opening /proc/PID/exe of a process that has
/// often exited by the time the event is read.
#[inline(always)]
fn fill_exe_identity(ev: &mut ExecEvent, task: u64, o: &KernelOffsets) {
    let Some(inode) = read_at::<u64>(task, o.task_mm)
        .and_then(|mm| read_at::<u64>(mm, o.mm_exe_file))
        .and_then(|file| read_at::<u64>(file, o.file_inode))
    else {
        return;
    };
    let Some(ino) = read_at::<u64>(inode, o.inode_ino) else {
        return;
    };
    let Some(dev) =
        read_at::<u64>(inode, o.inode_sb).and_then(|sb| read_at::<u32>(sb, o.super_block_dev))
    else {
        return;
    };
    ev.exe_ino = ino;
    ev.exe_dev = dev;
    ev.exe_size = read_at::<u64>(inode, o.inode_size).unwrap_or(0);
    ev.exe_mtime_sec = read_at::<i64>(inode, o.inode_mtime_sec).unwrap_or(0);
    ev.exe_mtime_nsec = read_at::<u32>(inode, o.inode_mtime_nsec).unwrap_or(0);
}

#[tracepoint]
pub fn process_exec(ctx: TracePointContext) -> u32 {
    if is_excluded(current_tgid()) {
        return 0;
    }
    // SAFETY: fixed fields of the sched_process_exec record.
    let (loc, old_pid) = unsafe {
        (
            *(ctx.as_ptr().add(EXEC_FILENAME_LOC) as *const u32),
            *(ctx.as_ptr().add(EXEC_OLD_PID) as *const u32),
        )
    };
    let Some(ev) = EXEC_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: this CPU's scratch value, exclusively ours for this invocation.
    let ev = unsafe { &mut *ev };
    ev.flags = 0;
    // SAFETY: the value is not kept.
    if unsafe { EXECVEAT_PENDING.get(old_pid) }.is_some() {
        ev.flags |= EXEC_FLAG_EXECVEAT;
        let _ = EXECVEAT_PENDING.remove(old_pid);
    }
    // The kernel's copy of the filename is always resident, unlike the
    // user pointer the call passed.
    let name_ptr = (ctx.as_ptr() as usize + (loc & 0xffff) as usize) as *const u8;
    ev.filename_len = 0;
    // SAFETY: the __data_loc offset points inside the tracepoint record.
    if let Ok(name) = unsafe { bpf_probe_read_kernel_str_bytes(name_ptr, &mut ev.filename) } {
        ev.filename_len = name.len() as u32;
    }
    read_image_args(ev, current_task(), &offsets());
    finish_exec(ev, 0);
    emit_exec(ev);
    if CONFIG.load().watch_enabled != 0 {
        watch_if_listed(name_ptr);
    }
    0
}

/// Marks the current process watched if it exec'd a listed executable.
#[inline(always)]
fn watch_if_listed(name_ptr: *const u8) {
    let tgid = current_tgid();
    if process_flags(tgid) & PROCESS_WATCHED != 0 {
        return;
    }
    let Some(key) = EXEC_WATCH_KEY.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's scratch key, used only within this invocation.
    let key = unsafe { &mut *key };
    // SAFETY: the same in-record kernel string read above.
    let len = match unsafe { bpf_probe_read_kernel_str_bytes(name_ptr, &mut key.data) } {
        Ok(name) => name.len(),
        Err(_) => return,
    };
    if len + 1 >= PREFIX_KEY_LEN {
        return;
    }
    // The terminating NUL is part of the key: only the exact path matches.
    key.prefix_len = ((len + 1) * 8) as u32;
    if WATCHED_EXES.get(key).is_some() {
        set_process_flags(tgid, PROCESS_WATCHED);
    }
}

/// Attached to sys_exit_execve and sys_exit_execveat: a failed exec is
/// reported here with its error, its filename and argv read from the
/// call's arguments (the old image is still there); a successful one was
/// reported at `sched_process_exec`.
#[tracepoint]
pub fn exec_exit(ctx: TracePointContext) -> u32 {
    let ret = ctx_ret(&ctx);
    if ret >= 0 {
        return 0;
    }
    let tid = aya_ebpf::helpers::bpf_get_current_pid_tgid() as u32;
    let _ = EXECVEAT_PENDING.remove(tid);
    if is_excluded(current_tgid()) {
        return 0;
    }
    let Some(ev) = EXEC_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: this CPU's scratch value, exclusively ours for this invocation.
    let ev = unsafe { &mut *ev };
    // SAFETY: `int __syscall_nr` of the syscall exit record.
    let nr = unsafe { *(ctx.as_ptr().add(SYSCALL_NR) as *const i32) };
    let regs = SyscallRegs::current();
    // execve(filename, argv, envp); execveat(dfd, filename, argv, envp, flags)
    let (filename, argv, flags) = if nr == SYS_EXECVEAT {
        (regs.arg(1), regs.arg(2), EXEC_FLAG_EXECVEAT)
    } else {
        (regs.arg(0), regs.arg(1), 0)
    };
    ev.flags = flags;
    ev.filename_len = 0;
    // SAFETY: user pointers are read through the checked helpers.
    if let Ok(name) =
        unsafe { bpf_probe_read_user_str_bytes(filename as *const u8, &mut ev.filename) }
    {
        ev.filename_len = name.len() as u32;
    }
    read_argv(ev, argv);
    finish_exec(ev, ret as i32);
    emit_exec(ev);
    0
}

/// raw_tp sched_process_fork(struct task_struct *parent, struct task_struct *child).
/// Threads share the parent's tgid and are not processes: skip them.
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn process_fork(ctx: RawTracePointContext) -> i32 {
    let parent_tgid = current_tgid();
    let parent_flags = process_flags(parent_tgid);
    let child: u64 = ctx.arg(1);
    let o = offsets();
    let (Some(child_pid), Some(child_tgid)) = (
        read_at::<u32>(child, o.task_pid),
        read_at::<u32>(child, o.task_tgid),
    ) else {
        count(EventKind::Fork, Outcome::ReadError);
        return 0;
    };
    if child_pid != child_tgid {
        return 0;
    }
    // A new process's flags are written here, in the kernel, before it
    // runs: watching is inherited (a watched process's child is watched
    // rather than when the daemon catches up), and anything else is
    // cleared. The daemon marks a process watched after reading its exec,
    // which may be after the process exited and the exit program cleared
    // its byte; without this write the next process to get that pid would
    // start watched, its pipes and TLS read as an agent's.
    set_process_flags(child_tgid, parent_flags & PROCESS_WATCHED);
    if parent_flags & PROCESS_EXCLUDED != 0 {
        return 0;
    }
    let mut ev = ForkEvent {
        header: empty_header(),
        parent_tgid,
        child_tgid,
    };
    fill_header(&mut ev.header, EventKind::Fork);
    emit(EventKind::Fork, &mut ev);
    0
}

/// Reported once per process, when its last thread exits (`group_dead`).
#[tracepoint]
pub fn process_exit(ctx: TracePointContext) -> u32 {
    // SAFETY: fixed field of the sched_process_exit record.
    let group_dead = unsafe { *(ctx.as_ptr().add(EXIT_GROUP_DEAD) as *const u8) };
    let tgid = current_tgid();
    if group_dead == 0 || is_excluded(tgid) {
        return 0;
    }
    set_process_flags(tgid, 0);
    let o = offsets();
    let task = current_task();
    let mut ev = ExitEvent {
        header: empty_header(),
        exit_code: read_at::<u32>(task, o.task_exit_code).unwrap_or(u32::MAX),
        ppid: parent_tgid(task, &o),
    };
    fill_header(&mut ev.header, EventKind::Exit);
    emit(EventKind::Exit, &mut ev);
    0
}

#[inline(always)]
pub fn empty_header() -> EventHeader {
    EventHeader {
        kind: 0,
        cpu: 0,
        seq: 0,
        boot_ns: 0,
        tgid: 0,
        tid: 0,
        uid: 0,
        gid: 0,
        cgroup_id: 0,
        comm: [0; COMM_LEN],
    }
}
