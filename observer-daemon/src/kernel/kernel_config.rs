//! What the eBPF programs need to know about the running kernel: structure
//! offsets from BTF, and a check that the tracepoint record layouts the
//! programs read at fixed offsets are the ones this kernel has.
use std::path::Path;

use observer_common::{KernelConfig, KernelOffsets};

use crate::kernel::btf::{BtfError, KernelBtf};

#[derive(Debug, thiserror::Error)]
pub enum KernelCheckError {
    #[error("kernel BTF is required to read task and socket fields: {0}")]
    Btf(#[from] BtfError),
    #[error("cannot read tracepoint format {path}: {source}")]
    Format {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "tracepoint {tracepoint} has `{field}` at offset {found:?}, the probes expect {expected}; \
         this kernel's record layout is not supported"
    )]
    Layout {
        tracepoint: String,
        field: String,
        expected: u32,
        found: Option<u32>,
    },
}

/// Resolves every offset in [`KernelOffsets`]. Fields the kernel lacks
/// (loginuid without CONFIG_AUDIT) become `UNAVAILABLE`; the core task
/// fields are required.
pub fn resolve_offsets(btf: &KernelBtf) -> Result<KernelOffsets, KernelCheckError> {
    let required = |s: &str, m: &str| btf.member_offset(s, m);
    let optional = |s: &str, m: &str| {
        btf.member_offset(s, m)
            .unwrap_or(KernelOffsets::UNAVAILABLE)
    };
    let sk = |m: &str| optional("sock", &format!("__sk_common.{m}"));
    // The inode's mtime: two integers since 6.11, a timespec64 before
    // (named `__i_mtime` from 6.7, `i_mtime` earlier).
    let mtime = |part: &str| {
        ["i_mtime_", "__i_mtime.tv_", "i_mtime.tv_"]
            .iter()
            .find_map(|prefix| btf.member_offset("inode", &format!("{prefix}{part}")).ok())
            .unwrap_or(KernelOffsets::UNAVAILABLE)
    };
    Ok(KernelOffsets {
        task_pid: required("task_struct", "pid")?,
        task_tgid: required("task_struct", "tgid")?,
        task_real_parent: required("task_struct", "real_parent")?,
        task_exit_code: required("task_struct", "exit_code")?,
        task_loginuid: optional("task_struct", "loginuid"),
        task_files: optional("task_struct", "files"),
        files_fdt: optional("files_struct", "fdt"),
        fdtable_fd: optional("fdtable", "fd"),
        fdtable_max_fds: optional("fdtable", "max_fds"),
        file_private_data: optional("file", "private_data"),
        socket_type: optional("socket", "type"),
        socket_sk: optional("socket", "sk"),
        sock_skc_family: sk("skc_family"),
        sock_skc_num: sk("skc_num"),
        sock_skc_dport: sk("skc_dport"),
        sock_skc_rcv_saddr: sk("skc_rcv_saddr"),
        sock_skc_daddr: sk("skc_daddr"),
        sock_skc_v6_rcv_saddr: sk("skc_v6_rcv_saddr"),
        sock_skc_v6_daddr: sk("skc_v6_daddr"),
        file_inode: optional("file", "f_inode"),
        inode_mode: optional("inode", "i_mode"),
        inode_ino: optional("inode", "i_ino"),
        task_mm: optional("task_struct", "mm"),
        mm_exe_file: optional("mm_struct", "exe_file"),
        inode_sb: optional("inode", "i_sb"),
        super_block_dev: optional("super_block", "s_dev"),
        inode_size: optional("inode", "i_size"),
        inode_mtime_sec: mtime("sec"),
        inode_mtime_nsec: mtime("nsec"),
        mm_arg_start: optional("mm_struct", "arg_start"),
        mm_arg_end: optional("mm_struct", "arg_end"),
        _pad: 0,
    })
}

/// Tunables written into the programs' read-only data at load.
pub struct Tunables {
    pub wakeup_bytes: u64,
    pub open_dedup_ns: u64,
    /// Some process may be watched (configured executables or agents).
    pub watch_enabled: bool,
    /// Plaintext bytes copied per TLS call (1..=`TLS_CAPTURE_MAX`).
    pub tls_capture_bytes: u32,
    /// Bytes copied per pipe or local socket read or write; 0: off.
    pub io_capture_bytes: u32,
}

pub fn kernel_config(btf_path: &Path, t: &Tunables) -> Result<KernelConfig, KernelCheckError> {
    let btf = KernelBtf::from_file(btf_path)?;
    Ok(KernelConfig {
        offsets: resolve_offsets(&btf)?,
        wakeup_bytes: t.wakeup_bytes,
        open_dedup_ns: t.open_dedup_ns,
        watch_enabled: u32::from(t.watch_enabled),
        tls_capture_bytes: t.tls_capture_bytes,
        io_capture_bytes: t.io_capture_bytes,
        _pad: 0,
    })
}

/// (tracepoint, field, offset) the programs read without BTF.
const EXPECTED_LAYOUT: &[(&str, &str, u32)] = &[
    ("sched/sched_process_exec", "filename", 8),
    ("sched/sched_process_exec", "old_pid", 16),
    ("sched/sched_process_exit", "group_dead", 32),
    ("syscalls/sys_exit_execve", "__syscall_nr", 8),
    ("syscalls/sys_exit_execve", "ret", 16),
    ("syscalls/sys_enter_execveat", "fd", 16),
    ("syscalls/sys_enter_openat", "dfd", 16),
    ("syscalls/sys_enter_openat2", "how", 32),
    ("syscalls/sys_enter_connect", "uservaddr", 24),
    ("syscalls/sys_exit_openat", "ret", 16),
];

/// Checks [`EXPECTED_LAYOUT`] against `<tracefs>/events/*/format`.
pub fn check_tracepoint_layout(tracefs: &Path) -> Result<(), KernelCheckError> {
    for (tracepoint, field, expected) in EXPECTED_LAYOUT {
        let path = tracefs.join("events").join(tracepoint).join("format");
        let text = std::fs::read_to_string(&path).map_err(|source| KernelCheckError::Format {
            path: path.display().to_string(),
            source,
        })?;
        let found = field_offset(&text, field);
        if found != Some(*expected) {
            return Err(KernelCheckError::Layout {
                tracepoint: tracepoint.to_string(),
                field: field.to_string(),
                expected: *expected,
                found,
            });
        }
    }
    Ok(())
}

/// Offset of `field` in a tracepoint format description, e.g.
/// `field:pid_t old_pid; offset:16; size:4; signed:1;`.
pub fn field_offset(format: &str, field: &str) -> Option<u32> {
    format.lines().find_map(|line| {
        let decl = line.trim().strip_prefix("field:")?;
        let (decl, rest) = decl.split_once(';')?;
        let name = decl.rsplit([' ', '*']).next()?.split('[').next()?;
        if name != field {
            return None;
        }
        rest.split(';')
            .find_map(|kv| kv.trim().strip_prefix("offset:")?.parse().ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXEC_FORMAT: &str = "name: sched_process_exec\nID: 300\nformat:\n\
        \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
        \tfield:__data_loc char[] filename;\toffset:8;\tsize:4;\tsigned:0;\n\
        \tfield:pid_t pid;\toffset:12;\tsize:4;\tsigned:1;\n\
        \tfield:pid_t old_pid;\toffset:16;\tsize:4;\tsigned:1;\n";

    #[test]
    fn parses_field_offsets() {
        assert_eq!(field_offset(EXEC_FORMAT, "filename"), Some(8));
        assert_eq!(field_offset(EXEC_FORMAT, "old_pid"), Some(16));
        assert_eq!(field_offset(EXEC_FORMAT, "pid"), Some(12));
        assert_eq!(field_offset(EXEC_FORMAT, "missing"), None);
        assert_eq!(
            field_offset(
                "\tfield:const char * filename;\toffset:24;\tsize:8;",
                "filename"
            ),
            Some(24)
        );
    }

    // The loader (which mounts tracefs) builds only with the eBPF object.
    #[cfg(feature = "ebpf")]
    #[test]
    fn running_kernel_matches_expected_layout() {
        let tracefs = crate::kernel::loader::ensure_tracefs().unwrap();
        check_tracepoint_layout(&tracefs).unwrap();
    }

    #[test]
    fn running_kernel_offsets_resolve() {
        let t = Tunables {
            wakeup_bytes: 0,
            open_dedup_ns: 0,
            watch_enabled: false,
            tls_capture_bytes: 512,
            io_capture_bytes: 256,
        };
        let cfg = kernel_config(Path::new("/sys/kernel/btf/vmlinux"), &t).unwrap();
        assert_eq!((cfg.tls_capture_bytes, cfg.io_capture_bytes), (512, 256));
        let o = cfg.offsets;
        assert_eq!(o.task_tgid, o.task_pid + 4);
        for off in [
            o.task_loginuid,
            o.task_files,
            o.socket_sk,
            o.sock_skc_num,
            o.sock_skc_v6_daddr,
            o.file_inode,
            o.inode_mode,
            o.inode_ino,
            o.task_mm,
            o.mm_exe_file,
            o.inode_sb,
            o.super_block_dev,
            o.inode_size,
            o.inode_mtime_sec,
            o.inode_mtime_nsec,
            o.mm_arg_start,
            o.mm_arg_end,
        ] {
            assert_ne!(off, KernelOffsets::UNAVAILABLE);
        }
        assert_ne!(o.inode_mtime_sec, o.inode_mtime_nsec);
    }
}
