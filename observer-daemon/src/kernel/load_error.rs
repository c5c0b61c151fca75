//! Why loading or attaching the probes failed, naming the program, map or
//! target. Its own file so the loader and the names programs' attach code
//! (names_attach.rs) both use it without importing each other.
use aya::programs::ProgramError;

/// What the loader reports; observerd refuses to start with it.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("observerd must run as root (it loads eBPF programs and reads other processes' /proc entries)")]
    NotRoot,
    #[error("tracefs is not mounted and mounting it at /sys/kernel/tracing failed: {0}")]
    Tracefs(std::io::Error),
    #[error("loading the eBPF object failed: {0}")]
    Object(#[from] aya::EbpfError),
    #[error("eBPF program `{program}` is missing from the object")]
    MissingProgram { program: &'static str },
    #[error("eBPF map `{map}` is missing or has the wrong type")]
    Map { map: &'static str },
    #[error("eBPF program `{program}` failed to load: {source}")]
    Load {
        program: &'static str,
        source: ProgramError,
    },
    #[error("eBPF program `{program}` failed to attach to {target}: {source}")]
    Attach {
        program: &'static str,
        target: String,
        source: ProgramError,
    },
    #[error("a path filter entry is empty or longer than the kernel's keys (prefix < 255, suffix <= 64 bytes)")]
    Filter,
    #[error("filling map `{map}` failed: {source}")]
    Fill {
        map: &'static str,
        source: aya::maps::MapError,
    },
}
