//! Events the kernel skipped before our programs ran: a tracing program
//! that fires while another one is already running on the same CPU is not
//! run, and the kernel only counts it, per program (`recursion_misses` in
//! `bpf_prog_info`). Reading that counter closes the last silent-loss path.
use std::os::fd::{AsFd, AsRawFd};

use aya::programs::ProgramFd;
use aya_obj::generated::{bpf_cmd, bpf_prog_info};

/// The `info` member of `union bpf_attr` for BPF_OBJ_GET_INFO_BY_FD.
#[repr(C)]
struct InfoByFd {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// The kernel's count of runs of this program it skipped.
pub fn recursion_misses(prog: &ProgramFd) -> std::io::Result<u64> {
    // SAFETY: bpf_prog_info is a plain C struct; all-zero is valid.
    let mut info: bpf_prog_info = unsafe { std::mem::zeroed() };
    let attr = InfoByFd {
        bpf_fd: prog.as_fd().as_raw_fd() as u32,
        info_len: std::mem::size_of::<bpf_prog_info>() as u32,
        info: &mut info as *mut bpf_prog_info as u64,
    };
    // SAFETY: attr points to a valid, fully initialised InfoByFd and
    // info_len bytes of writable memory.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            bpf_cmd::BPF_OBJ_GET_INFO_BY_FD as libc::c_long,
            &attr as *const InfoByFd,
            std::mem::size_of::<InfoByFd>(),
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(info.recursion_misses)
}
