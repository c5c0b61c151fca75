//! observer's kernel probes. Only program types that load on the target
//! hosts are used: tracepoints, raw tracepoints, cgroup programs and
//! uprobes (no kprobes, fentry or LSM). Kernel structures are read with
//! offsets the daemon resolves from BTF at load time (see `kernel.rs`).
#![no_std]
#![no_main]

mod emit;
mod file;
mod io;
mod kernel;
mod maps;
mod names;
mod net;
mod pieces;
mod process;
mod syscall;
mod tls;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
