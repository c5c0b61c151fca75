//! Types shared by the eBPF programs and the daemon.
//!
//! Every type here is `#[repr(C)]`, has no implicit padding (explicit `_pad`
//! fields instead) and has a compile-time size assertion, so the kernel and
//! user space agree on the byte layout without any serialisation step.
#![no_std]

use core::mem::size_of;

mod plaintext;
pub use plaintext::*;

/// Length of `task_struct.comm`.
pub const COMM_LEN: usize = 16;
/// Bytes of a path captured for exec filenames and file opens.
pub const PATH_LEN: usize = 512;
/// Bytes of NUL-separated argv captured per exec.
pub const ARGS_LEN: usize = 2048;
/// Longest single argument copied; longer ones are truncated (and flagged).
pub const ARG_CHUNK: usize = 256;
/// Most arguments read from a single argv.
pub const MAX_ARGS: usize = 64;
/// Key bytes of the path-prefix LPM trie (the kernel's LPM maximum is 256).
pub const PREFIX_KEY_LEN: usize = 256;
/// Key bytes of the reversed path-suffix LPM trie.
pub const SUFFIX_KEY_LEN: usize = 64;

/// What an event is. The discriminant doubles as the index into the
/// per-kind counter map, so keep it dense and below [`EVENT_KIND_COUNT`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Exec = 1,
    Fork = 2,
    Exit = 3,
    Connect = 4,
    Accept = 5,
    Bind = 6,
    Listen = 7,
    FileOpen = 8,
    /// A TLS ClientHello at the start of a TCP payload (cgroup_skb egress).
    TlsHello = 9,
    /// A DNS message from source port 53 (cgroup_skb ingress).
    DnsMessage = 10,
    /// Plaintext of a TLS read or write (uprobes; its own ring buffer).
    TlsData = 11,
    /// Bytes a watched process moved over a pipe, a Unix stream socket or
    /// loopback TCP (syscall tracepoints; the plaintext ring buffer).
    IoData = 12,
}

/// Number of counter slots (index 0 is unused).
pub const EVENT_KIND_COUNT: u32 = 13;

impl EventKind {
    pub const ALL: [EventKind; 12] = [
        EventKind::Exec,
        EventKind::Fork,
        EventKind::Exit,
        EventKind::Connect,
        EventKind::Accept,
        EventKind::Bind,
        EventKind::Listen,
        EventKind::FileOpen,
        EventKind::TlsHello,
        EventKind::DnsMessage,
        EventKind::TlsData,
        EventKind::IoData,
    ];

    pub fn from_u32(value: u32) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| *k as u32 == value)
    }

    pub fn name(self) -> &'static str {
        match self {
            EventKind::Exec => "exec",
            EventKind::Fork => "fork",
            EventKind::Exit => "exit",
            EventKind::Connect => "connect",
            EventKind::Accept => "accept",
            EventKind::Bind => "bind",
            EventKind::Listen => "listen",
            EventKind::FileOpen => "file_open",
            EventKind::TlsHello => "tls_hello",
            EventKind::DnsMessage => "dns_message",
            EventKind::TlsData => "tls_data",
            EventKind::IoData => "io_data",
        }
    }
}

/// Common header of every event written to the ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EventHeader {
    pub kind: u32,
    /// CPU the event was produced on; `seq` is counted per CPU.
    pub cpu: u32,
    /// Per-CPU sequence number, incremented for every event the kernel
    /// tried to emit, so a gap in `seq` on one CPU is a dropped event.
    pub seq: u64,
    /// `bpf_ktime_get_boot_ns()`: nanoseconds since boot, including suspend.
    pub boot_ns: u64,
    pub tgid: u32,
    pub tid: u32,
    pub uid: u32,
    pub gid: u32,
    /// cgroup v2 id (the inode number of the cgroup directory).
    pub cgroup_id: u64,
    pub comm: [u8; COMM_LEN],
}

/// `ExecEvent.flags` bits.
pub const EXEC_FLAG_ARGS_TRUNCATED: u32 = 1;
pub const EXEC_FLAG_FILENAME_TRUNCATED: u32 = 2;
/// The exec came from execveat(2) rather than execve(2).
pub const EXEC_FLAG_EXECVEAT: u32 = 4;
/// argv could not be read (the new image's argument area, or the failed
/// call's argv array).
pub const EXEC_FLAG_NO_ARGS: u32 = 8;

/// A successful exec (emitted at `sched_process_exec`) or a failed one
/// (emitted at syscall exit with `retval < 0`). The record ends after the
/// first `args_len` bytes of `args` (at least [`EXEC_FIXED_LEN`] bytes):
/// the rest of the buffer is never copied.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ExecEvent {
    pub header: EventHeader,
    pub ppid: u32,
    /// `task_struct.loginuid`; `u32::MAX` when unset or unavailable.
    pub loginuid: u32,
    /// 0 on success, `-errno` for a failed exec.
    pub retval: i32,
    pub argc: u32,
    pub filename_len: u32,
    pub args_len: u32,
    pub flags: u32,
    pub _pad: u32,
    /// Identity of the executable the process runs after the exec
    /// (`task->mm->exe_file`), so the daemon can find a cached hash without
    /// opening anything in /proc: the kernel's `dev_t` of its file system
    /// (`MAJOR << 20 | MINOR`), inode number, size and mtime. All zero for a
    /// failed exec or when the kernel's structures could not be read.
    pub exe_dev: u32,
    pub exe_mtime_nsec: u32,
    pub exe_ino: u64,
    pub exe_size: u64,
    pub exe_mtime_sec: i64,
    pub filename: [u8; PATH_LEN],
    /// argv strings, each NUL-terminated, `args_len` bytes in all: for a
    /// successful exec the new image's argument area as the kernel laid it
    /// out (`mm->arg_start..arg_end`, read in one copy; cut at `ARGS_LEN`
    /// with `EXEC_FLAG_ARGS_TRUNCATED`), for a failed one the call's argv
    /// read string by string. `argc` is set for the latter only.
    pub args: [u8; ARGS_LEN],
}

/// Bytes of an [`ExecEvent`] before `args`: the shortest exec record.
pub const EXEC_FIXED_LEN: usize = core::mem::offset_of!(ExecEvent, args);

/// A new process (threads are filtered out in the kernel).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ForkEvent {
    pub header: EventHeader,
    pub parent_tgid: u32,
    pub child_tgid: u32,
}

/// The last thread of a process exited.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExitEvent {
    pub header: EventHeader,
    /// Raw `task_struct.exit_code` (wait(2) status layout).
    pub exit_code: u32,
    pub ppid: u32,
}

/// connect(2), accept(2)/accept4(2), bind(2) or listen(2) on an inet socket.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct NetEvent {
    pub header: EventHeader,
    pub fd: i32,
    /// Syscall result: 0 or a new fd on success, `-errno` on failure.
    pub ret: i32,
    /// `AF_INET` or `AF_INET6`.
    pub family: u16,
    /// `SOCK_STREAM`, `SOCK_DGRAM`, ...; 0 when the socket was not readable.
    pub sock_type: u16,
    /// Host byte order.
    pub local_port: u16,
    /// Host byte order.
    pub remote_port: u16,
    /// IPv4 addresses use the first 4 bytes.
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
}

/// `FileOpenEvent.reason` bits: why the kernel reported this open.
pub const OPEN_REASON_WATCHED_TGID: u32 = 1;
pub const OPEN_REASON_PREFIX: u32 = 2;
pub const OPEN_REASON_SUFFIX: u32 = 4;

/// `FileOpenEvent.source`.
pub const OPEN_SOURCE_OPENAT: u32 = 0;
pub const OPEN_SOURCE_OPENAT2: u32 = 1;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct FileOpenEvent {
    pub header: EventHeader,
    /// The new fd, or `-errno`.
    pub ret: i32,
    /// `open(2)` flags.
    pub flags: u32,
    pub mode: u32,
    /// Directory fd the path is relative to (`AT_FDCWD` = -100).
    pub dfd: i32,
    /// Bytes of `path` before the terminating NUL.
    pub path_len: u32,
    pub reason: u32,
    pub source: u32,
    pub _pad: u32,
    pub path: [u8; PATH_LEN],
}

/// Payload bytes a [`PacketEvent`] can carry.
pub const PACKET_PAYLOAD_LEN: usize = 1024;

/// `PacketEvent.flags`: the socket's owner was not in `SOCK_OWNERS` (it
/// connected before the probes were attached, or its entry was evicted);
/// the header's process fields are zero.
pub const PACKET_FLAG_OWNER_UNKNOWN: u8 = 1;

/// A packet payload the names programs (cgroup_skb) captured: a TLS
/// ClientHello leaving a TCP socket, or a DNS message arriving from port 53.
/// The header's process fields are those of the socket's owner, recorded
/// when it connected (packets are often handled in softirq context, where
/// the current task is unrelated).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PacketEvent {
    pub header: EventHeader,
    /// `bpf_get_socket_cookie`: stable for the socket's lifetime.
    pub cookie: u64,
    /// `AF_INET` or `AF_INET6`.
    pub family: u16,
    /// `IPPROTO_TCP` or `IPPROTO_UDP`.
    pub protocol: u8,
    pub flags: u8,
    /// Host byte order; local is this host's end of the socket.
    pub local_port: u16,
    pub remote_port: u16,
    /// IPv4 addresses use the first 4 bytes.
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
    /// Bytes of payload the packet held from the capture offset on.
    pub payload_len: u32,
    /// Bytes copied to `payload` (at most the configured capture size).
    pub captured_len: u32,
    pub payload: [u8; PACKET_PAYLOAD_LEN],
}

/// Who owns a socket: recorded by the cgroup connect4/connect6 programs in
/// `SOCK_OWNERS`, keyed by socket cookie.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SockOwner {
    pub tgid: u32,
    pub tid: u32,
    pub uid: u32,
    pub gid: u32,
    pub cgroup_id: u64,
    /// `SOCK_OWNER_*` bits.
    pub flags: u32,
    pub _pad: u32,
    pub comm: [u8; COMM_LEN],
}

/// The owner is a process the daemon excludes (itself): its packets are
/// never reported.
pub const SOCK_OWNER_EXCLUDED: u32 = 1;

/// Tunables of the names programs, a global set before load.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct NamesConfig {
    /// ClientHello bytes copied (1..=PACKET_PAYLOAD_LEN).
    pub tls_capture_bytes: u32,
    /// DNS message bytes copied (1..=PACKET_PAYLOAD_LEN).
    pub dns_capture_bytes: u32,
}

impl NamesConfig {
    pub const fn defaults() -> Self {
        NamesConfig {
            tls_capture_bytes: PACKET_PAYLOAD_LEN as u32,
            dns_capture_bytes: PACKET_PAYLOAD_LEN as u32,
        }
    }
}

/// Default size of the socket-owner LRU map (the daemon may override it).
pub const SOCK_OWNER_ENTRIES: u32 = 65536;

/// Per-kind kernel counters; one entry per [`EventKind`] in a per-CPU array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct KindCounters {
    /// Events written to the ring buffer.
    pub emitted: u64,
    /// Events lost because the ring buffer was full.
    pub dropped_ringbuf_full: u64,
    /// Events suppressed on purpose (repeat opens inside the dedup window).
    pub suppressed: u64,
    /// Events that could not be built (a kernel read failed).
    pub dropped_read_error: u64,
}

/// Kernel structure field offsets, resolved by the daemon from the running
/// kernel's BTF (Rust eBPF has no CO-RE relocations) and written into the
/// program's read-only data before load. An offset of `u32::MAX` means the
/// field does not exist on this kernel and the feature that needs it is off.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct KernelOffsets {
    pub task_pid: u32,
    pub task_tgid: u32,
    pub task_real_parent: u32,
    pub task_exit_code: u32,
    pub task_loginuid: u32,
    pub task_files: u32,
    pub files_fdt: u32,
    pub fdtable_fd: u32,
    pub fdtable_max_fds: u32,
    pub file_private_data: u32,
    pub socket_type: u32,
    pub socket_sk: u32,
    pub sock_skc_family: u32,
    pub sock_skc_num: u32,
    pub sock_skc_dport: u32,
    pub sock_skc_rcv_saddr: u32,
    pub sock_skc_daddr: u32,
    pub sock_skc_v6_rcv_saddr: u32,
    pub sock_skc_v6_daddr: u32,
    pub file_inode: u32,
    pub inode_mode: u32,
    pub inode_ino: u32,
    pub task_mm: u32,
    pub mm_exe_file: u32,
    pub inode_sb: u32,
    pub super_block_dev: u32,
    pub inode_size: u32,
    pub inode_mtime_sec: u32,
    pub inode_mtime_nsec: u32,
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
    /// Keeps the struct a multiple of 8 bytes.
    pub _pad: u32,
}

/// Tunables and offsets, set once as a global before the programs load.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct KernelConfig {
    pub offsets: KernelOffsets,
    /// Force a reader wakeup once this many bytes wait in the ring buffer;
    /// below it events are written with `BPF_RB_NO_WAKEUP` and the reader
    /// polls on a timer. 0 wakes on every event.
    pub wakeup_bytes: u64,
    /// Repeat opens of the same (tgid, path) inside this window are
    /// suppressed. 0 disables suppression.
    pub open_dedup_ns: u64,
    /// Nonzero when processes may be watched. When zero, an open whose path
    /// matches no filter is dropped without the per-process flags lookup.
    pub watch_enabled: u32,
    /// Plaintext bytes copied per TLS call (1..=`TLS_CAPTURE_MAX`).
    pub tls_capture_bytes: u32,
    /// Bytes copied per read or write of a pipe, Unix stream socket or
    /// loopback TCP socket of a watched process; 0 turns that capture off.
    pub io_capture_bytes: u32,
    pub _pad: u32,
}

impl KernelOffsets {
    pub const UNAVAILABLE: u32 = u32::MAX;

    pub const fn unavailable() -> Self {
        let u = Self::UNAVAILABLE;
        KernelOffsets {
            task_pid: u,
            task_tgid: u,
            task_real_parent: u,
            task_exit_code: u,
            task_loginuid: u,
            task_files: u,
            files_fdt: u,
            fdtable_fd: u,
            fdtable_max_fds: u,
            file_private_data: u,
            socket_type: u,
            socket_sk: u,
            sock_skc_family: u,
            sock_skc_num: u,
            sock_skc_dport: u,
            sock_skc_rcv_saddr: u,
            sock_skc_daddr: u,
            sock_skc_v6_rcv_saddr: u,
            sock_skc_v6_daddr: u,
            file_inode: u,
            inode_mode: u,
            inode_ino: u,
            task_mm: u,
            mm_exe_file: u,
            inode_sb: u,
            super_block_dev: u,
            inode_size: u,
            inode_mtime_sec: u,
            inode_mtime_nsec: u,
            mm_arg_start: u,
            mm_arg_end: u,
            _pad: 0,
        }
    }
}

impl KernelConfig {
    pub const fn empty() -> Self {
        KernelConfig {
            offsets: KernelOffsets::unavailable(),
            wakeup_bytes: 0,
            open_dedup_ns: 0,
            watch_enabled: 0,
            tls_capture_bytes: TLS_CAPTURE_DEFAULT,
            io_capture_bytes: 0,
            _pad: 0,
        }
    }
}

/// `PROCESS_FLAGS` values: every open of the process is reported (the flag
/// is inherited by children at fork, in the kernel).
pub const PROCESS_WATCHED: u8 = 1;
/// Nothing the process does is reported (the daemon itself).
pub const PROCESS_EXCLUDED: u8 = 2;

/// Map sizes shared by both sides.
/// Threads inside execveat(2), remembered from its entry to the exec.
pub const EXECVEAT_PENDING_ENTRIES: u32 = 1024;
pub const SYSCALL_STASH_ENTRIES: u32 = 16384;
/// `PROCESS_FLAGS` is an array with one byte per possible process id (the
/// kernel's PID_MAX_LIMIT on 64-bit, 4 MiB): its lookup on the hot paths
/// is a bounds check and a load the verifier inlines, where a hash map
/// lookup cost ~70 ns per file open; and it cannot fill up.
pub const PROCESS_FLAG_ENTRIES: u32 = 4 * 1024 * 1024;
pub const PATH_FILTER_ENTRIES: u32 = 1024;
pub const OPEN_DEDUP_ENTRIES: u32 = 8192;

const _: () = assert!(size_of::<EventHeader>() == 64);
const _: () = assert!(size_of::<ExecEvent>() == 64 + 32 + 32 + PATH_LEN + ARGS_LEN);
const _: () = assert!(size_of::<ForkEvent>() == 72);
const _: () = assert!(size_of::<ExitEvent>() == 72);
const _: () = assert!(size_of::<NetEvent>() == 112);
const _: () = assert!(size_of::<FileOpenEvent>() == 64 + 32 + PATH_LEN);
const _: () = assert!(size_of::<KindCounters>() == 32);
const _: () = assert!(size_of::<PacketEvent>() == 64 + 56 + PACKET_PAYLOAD_LEN);
const _: () = assert!(size_of::<SockOwner>() == 48);
const _: () = assert!(size_of::<NamesConfig>() == 8);
const _: () = assert!(PACKET_PAYLOAD_LEN.is_power_of_two());
const _: () = assert!(size_of::<KernelOffsets>() == 128);
const _: () = assert!(size_of::<KernelConfig>() == 160);
const _: () = assert!(PATH_LEN.is_power_of_two() && ARGS_LEN.is_power_of_two());

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are repr(C), contain only integers and byte
    // arrays, and have no padding (checked by the size assertions above).
    unsafe impl aya::Pod for super::KindCounters {}
    unsafe impl aya::Pod for super::KernelConfig {}
    unsafe impl aya::Pod for super::NamesConfig {}
    unsafe impl aya::Pod for super::SockOwner {}
    unsafe impl aya::Pod for super::IoStreamKey {}
}
