//! Maps shared by the programs. The daemon fills the filter maps and reads
//! `EVENTS` and `COUNTERS`.
use aya_ebpf::{
    macros::map,
    maps::{Array, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
    Global,
};
use observer_common::*;

/// Default ring buffer size; the daemon overrides it from its config.
const DEFAULT_RINGBUF_BYTES: u32 = 8 * 1024 * 1024;

#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RINGBUF_BYTES, 0);

/// Indexed by `EventKind as u32`.
#[map]
pub static COUNTERS: PerCpuArray<KindCounters> = PerCpuArray::with_max_entries(EVENT_KIND_COUNT, 0);

/// Per-CPU event sequence number (index 0).
#[map]
pub static SEQ: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Thread ids inside execveat(2), set at its entry and read at the exec,
/// which cannot tell the two exec calls apart otherwise.
#[map]
pub static EXECVEAT_PENDING: LruHashMap<u32, u8> =
    LruHashMap::with_max_entries(EXECVEAT_PENDING_ENTRIES, 0);

/// Per-CPU room to build an exec event (too big for the 512-byte stack).
#[map]
pub static EXEC_SCRATCH: PerCpuArray<ExecEvent> = PerCpuArray::with_max_entries(1, 0);

/// Syscall arguments saved at entry for use at exit, keyed by thread id.
/// A thread is in one syscall at a time, so one map serves all syscalls.
#[map]
pub static SYSCALL_STASH: LruHashMap<u32, SyscallArgs> =
    LruHashMap::with_max_entries(SYSCALL_STASH_ENTRIES, 0);

/// Per-CPU room for an open event and the LPM lookup keys.
#[map]
pub static OPEN_SCRATCH: PerCpuArray<OpenScratch> = PerCpuArray::with_max_entries(1, 0);

/// Per-process flags (`PROCESS_WATCHED`, `PROCESS_EXCLUDED`) indexed by
/// tgid, one lookup on every hot path. Each process has a byte of its own,
/// so a write for one process (by a program or by the daemon) never
/// touches another's flags: no read-modify-write to race.
#[map]
pub static PROCESS_FLAGS: Array<u8> = Array::with_max_entries(PROCESS_FLAG_ENTRIES, 0);

/// Executables whose processes are watched from their exec on, set in
/// the kernel so no open slips through before the daemon could mark them
/// (key data: the path and its NUL, matched exactly).
#[map]
pub static WATCHED_EXES: LpmTrie<[u8; PREFIX_KEY_LEN], u32> =
    LpmTrie::with_max_entries(PATH_FILTER_ENTRIES, 0);

/// Per-CPU room for the exec'd path as a `WATCHED_EXES` key.
#[map]
pub static EXEC_WATCH_KEY: PerCpuArray<aya_ebpf::maps::lpm_trie::Key<[u8; PREFIX_KEY_LEN]>> =
    PerCpuArray::with_max_entries(1, 0);

/// Path prefixes of interest (key data: the prefix bytes).
#[map]
pub static PATH_PREFIXES: LpmTrie<[u8; PREFIX_KEY_LEN], u32> =
    LpmTrie::with_max_entries(PATH_FILTER_ENTRIES, 0);

/// Nonzero at index `b0 | b1 << 8` if some prefix starts with bytes b0 b1
/// (a one-byte prefix sets all 256 entries for its byte).
#[map]
pub static PREFIX_FIRST_BYTES: Array<u8> = Array::with_max_entries(65536, 0);

/// Nonzero at index `last | second_last << 8` if some suffix ends with
/// those two bytes (a one-byte suffix sets all 256 entries for its byte):
/// nearly every path is rejected by this one array lookup before the
/// reversed copy and the suffix trie (a last byte alone let every `.txt`
/// through for `.ckpt`).
#[map]
pub static SUFFIX_LAST_BYTES: Array<u8> = Array::with_max_entries(65536, 0);

/// Path suffixes of interest, stored reversed so a longest-prefix match on
/// the reversed path is a suffix match.
#[map]
pub static PATH_SUFFIXES: LpmTrie<[u8; SUFFIX_KEY_LEN], u32> =
    LpmTrie::with_max_entries(PATH_FILTER_ENTRIES, 0);

/// Last report time of a (tgid, path) hash, for repeat suppression.
#[map]
pub static OPEN_DEDUP: LruHashMap<u64, u64> = LruHashMap::with_max_entries(OPEN_DEDUP_ENTRIES, 0);

/// Plaintext (`PlaintextEvent`s of TLS calls and of pipe and socket
/// reads and writes), apart from `EVENTS` so a flood of it never costs a
/// process, network or file event; sized by the daemon.
#[map]
pub static TLS_EVENTS: RingBuf = RingBuf::with_byte_size(TLS_RINGBUF_DEFAULT, 0);

/// A TLS call's arguments from its entry to its return, keyed by thread.
#[map]
pub static TLS_CALLS: LruHashMap<u64, TlsCall> = LruHashMap::with_max_entries(TLS_CALL_ENTRIES, 0);

/// Per-CPU room to build a plaintext event (far beyond the stack).
#[map]
pub static TLS_SCRATCH: PerCpuArray<PlaintextEvent> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU room for a pipe or socket read or write: its own, so a TLS
/// return never shares a buffer with a syscall exit.
#[map]
pub static IO_SCRATCH: PerCpuArray<PlaintextEvent> = PerCpuArray::with_max_entries(1, 0);

/// Streams the daemon found to carry nothing it parses, by (tgid, inode):
/// their bytes are no longer copied.
#[map]
pub static IO_MUTED: LruHashMap<IoStreamKey, u8> =
    LruHashMap::with_max_entries(IO_MUTED_ENTRIES, 0);

/// Offsets and tunables, written by the loader before the programs load.
#[unsafe(no_mangle)]
pub static CONFIG: Global<KernelConfig> = Global::new(KernelConfig::empty());

/// Up to four raw syscall arguments plus a copy of a user sockaddr.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SyscallArgs {
    pub args: [u64; 4],
    pub sockaddr_len: u32,
    pub _pad: u32,
    pub sockaddr: [u8; SOCKADDR_LEN],
}

/// What a TLS call's return needs from its entry.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TlsCall {
    pub ssl: u64,
    pub buf: u64,
    /// `size_t *written` / `*readbytes` of the `_ex` calls; 0 otherwise.
    pub moved: u64,
    /// `TLS_OP_*`.
    pub op: u32,
    /// The socket the call wrote to or read from, noted by the syscall
    /// exits (`io.rs`) while the call runs; -1 until then (a read served
    /// from the library's buffer touches no socket).
    pub fd: i32,
    /// `FD_KIND_*` and the peer, as in `PlaintextEvent`.
    pub fd_kind: u16,
    pub family: u16,
    pub local_port: u16,
    pub remote_port: u16,
    pub remote_addr: [u8; 16],
}

/// `sizeof(struct sockaddr_in6)` rounded up to 8.
pub const SOCKADDR_LEN: usize = 32;

/// The path is read straight into `prefix_key.data`, so an open that
/// matches nothing costs no copy; only a match fills `event`.
#[repr(C)]
pub struct OpenScratch {
    pub prefix_key: aya_ebpf::maps::lpm_trie::Key<[u8; PREFIX_KEY_LEN]>,
    pub suffix_key: aya_ebpf::maps::lpm_trie::Key<[u8; SUFFIX_KEY_LEN]>,
    pub event: FileOpenEvent,
}
