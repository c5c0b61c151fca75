//! The eBPF programs observerd attaches, by name, in attach order (the
//! control tests compare `status` with it; xtask's benchmarks find the
//! loaded programs by it).
pub const PROGRAMS: &[&str] = &[
    "execveat_enter",
    "exec_exit",
    "process_exec",
    "process_exit",
    "process_fork",
    "sockaddr_enter",
    "connect_exit",
    "bind_exit",
    "listen_enter",
    "listen_exit",
    "accept_exit",
    "openat_exit",
    "openat2_exit",
    "write_exit",
    "read_exit",
    "sendto_exit",
    "recvfrom_exit",
    "writev_exit",
    "readv_exit",
    "names_connect4",
    "names_connect6",
    "names_sendmsg4",
    "names_sendmsg6",
    "names_egress",
    "names_ingress",
];

/// The programs that see processes, connections and file opens (the
/// syscall and scheduler probes, without the pipe and socket capture and
/// the name (cgroup) programs).
pub const SYSCALL_PROGRAMS: &[&str] = PROGRAMS.split_at(14).0;
