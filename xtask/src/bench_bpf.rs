//! Empty eBPF programs loaded and attached with the bpf and perf_event_open
//! syscalls directly (no eBPF build needed), and the kernel's run-time
//! statistics of loaded programs by name: the benchmarks' yardstick for
//! what a hook costs before any work in the program.
use std::{
    ffi::CString,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::Path,
};

use anyhow::{bail, Context as _};

/// Names of the empty programs in bpf_stats.
pub(crate) const EMPTY_TP: &str = "floor_tp";
pub(crate) const EMPTY_RAW: &str = "floor_raw_tp";

/// An empty program attached to `sys_exit_openat` (program and link; it
/// runs until both are dropped), named [`EMPTY_TP`] in bpf_stats.
pub(crate) fn empty_openat_program() -> anyhow::Result<(OwnedFd, OwnedFd)> {
    let prog = load_empty(BPF_PROG_TYPE_TRACEPOINT, EMPTY_TP)?;
    let link = attach_tracepoint(&prog, "syscalls", "sys_exit_openat")?;
    Ok((prog, link))
}

/// (run time ns, run count) so far of the loaded programs named in `names`.
pub(crate) fn stats(names: &[&str]) -> anyhow::Result<(u64, u64)> {
    let (mut ns, mut runs) = (0, 0);
    for info in aya::programs::loaded_programs() {
        let info = info?;
        if info
            .name_as_str()
            .is_some_and(|n| names.iter().any(|w| w[..w.len().min(15)] == *n))
        {
            ns += info.run_time().as_nanos() as u64;
            runs += info.run_count();
        }
    }
    Ok((ns, runs))
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_RAW_TRACEPOINT_OPEN: libc::c_long = 17;
const BPF_PROG_TYPE_TRACEPOINT: u32 = 5;
pub(crate) const BPF_PROG_TYPE_RAW_TRACEPOINT: u32 = 17;

/// The BPF_PROG_LOAD members of `union bpf_attr` we set, zero-padded to
/// the size of the kernel's union.
#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    rest: [u8; 80],
}

/// `r0 = 0; exit`.
const EMPTY_PROGRAM: [u64; 2] = [0x0000_0000_0000_00b7, 0x0000_0000_0000_0095];

fn bpf(cmd: libc::c_long, attr: *const u8, size: usize) -> anyhow::Result<OwnedFd> {
    // SAFETY: attr points to `size` initialised bytes laid out as the
    // kernel's union bpf_attr for `cmd`.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr, size) };
    if fd < 0 {
        bail!("bpf({cmd}): {}", std::io::Error::last_os_error());
    }
    // SAFETY: a new descriptor the kernel just gave us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

pub(crate) fn load_empty(prog_type: u32, name: &str) -> anyhow::Result<OwnedFd> {
    let license = c"GPL";
    let mut prog_name = [0u8; 16];
    prog_name[..name.len().min(15)].copy_from_slice(&name.as_bytes()[..name.len().min(15)]);
    let attr = ProgLoadAttr {
        prog_type,
        insn_cnt: EMPTY_PROGRAM.len() as u32,
        insns: EMPTY_PROGRAM.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        prog_flags: 0,
        prog_name,
        rest: [0; 80],
    };
    bpf(
        BPF_PROG_LOAD,
        &attr as *const ProgLoadAttr as *const u8,
        std::mem::size_of::<ProgLoadAttr>(),
    )
    .with_context(|| format!("loading the empty program {name}"))
}

pub(crate) fn attach_raw_tracepoint(prog: &OwnedFd, tracepoint: &str) -> anyhow::Result<OwnedFd> {
    #[repr(C)]
    struct RawTpAttr {
        name: u64,
        prog_fd: u32,
        _pad: u32,
    }
    let name = CString::new(tracepoint)?;
    let attr = RawTpAttr {
        name: name.as_ptr() as u64,
        prog_fd: prog.as_raw_fd() as u32,
        _pad: 0,
    };
    bpf(
        BPF_RAW_TRACEPOINT_OPEN,
        &attr as *const RawTpAttr as *const u8,
        std::mem::size_of::<RawTpAttr>(),
    )
    .with_context(|| format!("attaching to raw tracepoint {tracepoint}"))
}

/// A perf event on the tracepoint (CPU 0, every process, as aya attaches)
/// running `prog`.
fn attach_tracepoint(prog: &OwnedFd, category: &str, name: &str) -> anyhow::Result<OwnedFd> {
    const PERF_TYPE_TRACEPOINT: u32 = 2;
    const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;
    const PERF_EVENT_IOC_ENABLE: libc::c_ulong = 0x2400;
    const PERF_EVENT_IOC_SET_BPF: libc::c_ulong = 0x4004_2408;
    let id_path = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
        .iter()
        .map(|t| format!("{t}/events/{category}/{name}/id"))
        .find(|p| Path::new(p).exists())
        .context("tracefs is not mounted (run the daemon once to mount it)")?;
    let id: u64 = std::fs::read_to_string(&id_path)?.trim().parse()?;
    // struct perf_event_attr (PERF_ATTR_SIZE_VER7 = 128 bytes): type, size,
    // config, sample_period; everything else zero.
    let mut attr = [0u64; 16];
    attr[0] = u64::from(PERF_TYPE_TRACEPOINT) | (128u64 << 32);
    attr[1] = id;
    attr[2] = 1;
    // SAFETY: attr is a valid 128-byte perf_event_attr.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr.as_ptr(),
            -1 as libc::pid_t,
            0 as libc::c_int,
            -1 as libc::c_int,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        bail!(
            "perf_event_open {category}/{name}: {}",
            std::io::Error::last_os_error()
        );
    }
    // SAFETY: a new descriptor the kernel just gave us.
    let link = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // SAFETY: ioctls on our perf event with a program descriptor argument.
    unsafe {
        if libc::ioctl(link.as_raw_fd(), PERF_EVENT_IOC_SET_BPF, prog.as_raw_fd()) != 0 {
            bail!(
                "PERF_EVENT_IOC_SET_BPF: {}",
                std::io::Error::last_os_error()
            );
        }
        if libc::ioctl(link.as_raw_fd(), PERF_EVENT_IOC_ENABLE, 0) != 0 {
            bail!("PERF_EVENT_IOC_ENABLE: {}", std::io::Error::last_os_error());
        }
    }
    Ok(link)
}
