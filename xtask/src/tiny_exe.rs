//! The exec storms' workload: the smallest static x86-64 executable that
//! runs, written byte by byte (no compiler needed). It only calls
//! `exit(0)`: no dynamic loader, no library, no file open, so an exec storm
//! of it measures the exec itself and whatever the probes and the daemon
//! add, not a loader's work.
use std::{os::unix::fs::PermissionsExt, path::Path};

use anyhow::bail;

const LOAD_ADDR: u64 = 0x40_0000;
const EHDR_LEN: u16 = 64;
const PHDR_LEN: u16 = 56;
/// mov eax, 60 (exit); xor edi, edi; syscall
const CODE: [u8; 9] = [0xb8, 0x3c, 0, 0, 0, 0x31, 0xff, 0x0f, 0x05];

/// The executable's bytes: an ELF header, one PT_LOAD segment mapping the
/// whole file, and the code right after the headers.
pub fn tiny_exit_elf() -> Vec<u8> {
    let total = u64::from(EHDR_LEN + PHDR_LEN) + CODE.len() as u64;
    let mut b = Vec::with_capacity(total as usize);
    b.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    b.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    b.extend_from_slice(&0x3eu16.to_le_bytes()); // EM_X86_64
    b.extend_from_slice(&1u32.to_le_bytes()); // EV_CURRENT
    b.extend_from_slice(&(LOAD_ADDR + u64::from(EHDR_LEN + PHDR_LEN)).to_le_bytes()); // entry
    b.extend_from_slice(&u64::from(EHDR_LEN).to_le_bytes()); // program headers
    b.extend_from_slice(&0u64.to_le_bytes()); // no section headers
    b.extend_from_slice(&0u32.to_le_bytes()); // flags
    for half in [EHDR_LEN, PHDR_LEN, 1, 64, 0, 0] {
        b.extend_from_slice(&half.to_le_bytes());
    }
    b.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    b.extend_from_slice(&5u32.to_le_bytes()); // R+X
    for word in [0, LOAD_ADDR, LOAD_ADDR, total, total, 0x1000] {
        b.extend_from_slice(&word.to_le_bytes());
    }
    b.extend_from_slice(&CODE);
    b
}

/// Writes the executable to `path` (mode 0755).
pub fn write_tiny_exit(path: &Path) -> anyhow::Result<()> {
    if std::env::consts::ARCH != "x86_64" {
        bail!(
            "the exec storm's static workload is x86-64 code; this host is {}",
            std::env::consts::ARCH
        );
    }
    std::fs::write(path, tiny_exit_elf())?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_and_exits_zero() {
        let path = std::env::temp_dir().join(format!("observer-tiny-exit-{}", std::process::id()));
        write_tiny_exit(&path).unwrap();
        assert_eq!(tiny_exit_elf().len(), 129);
        let status = std::process::Command::new(&path).status().unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(status.code(), Some(0));
    }
}
