//! Where `SSL_write` and `SSL_read` are in a Bun single-file executable
//! (Claude Code is one): Bun links BoringSSL in statically and keeps no
//! symbols for it, so the functions are found by code signature instead.
//!
//! The anchor is BoringSSL's own error reporting: the first thing both
//! functions do after resetting the error state is refuse a QUIC
//! connection with `OPENSSL_PUT_ERROR(SSL, ERR_R_SHOULD_NOT_HAVE_BEEN_CALLED)`,
//! which compiles (in Bun's non-PIE x86-64 build) to
//! `mov ecx, "…/ssl/ssl_lib.cc"; mov edi, ERR_LIB_SSL; xor esi, esi;
//! mov edx, 66; mov r8d, LINE; call ERR_put_error`. The source file's
//! address and the reason are found in the file itself; the line number is
//! the part that moves between BoringSSL revisions, so it is keyed per Bun
//! version (each Bun release pins one BoringSSL) and checked: exactly one
//! such site, inside a function that starts (int3 padding, then
//! `push rbp; mov rbp, rsp`) a few bytes before it. An unknown version or a
//! site that does not check out is "not visible", with the reason.
//! Pure functions over the file's bytes: tested on fixtures and on the
//! real package.
use memchr::memmem;
use object::{Object, ObjectSegment};

use crate::kernel::tls_symbols::TlsOffsets;

/// One Bun release's BoringSSL: the `__LINE__` of the QUIC refusal in
/// `SSL_write` and in `SSL_read` (where `SSL_peek` is inlined).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BunSignature {
    /// As Bun prints it (`Bun v1.4.6 (358d8293c) Linux x64`).
    pub bun: &'static str,
    pub write_line: u32,
    pub read_line: u32,
}

/// The Bun releases whose signature was checked against a real package
/// (disassembled, and a real Claude Code call read through the probes).
pub const KNOWN_BUN: &[BunSignature] = &[
    // Claude Code 2.1.332 (Bun 358d8293c) and 2.1.337 (Bun 1ed812db0),
    // @anthropic-ai/claude-code-linux-x64: same lines, other addresses.
    BunSignature {
        bun: "1.4.6",
        write_line: 955,
        read_line: 933,
    },
];

/// What the signature search says about one executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BunTls {
    /// Not a Bun executable (or no BoringSSL in it): nothing to say.
    NotBun,
    /// Found: the file offsets of `SSL_write` and `SSL_read`.
    Found { bun: String, offsets: TlsOffsets },
    /// A Bun executable whose TLS functions were not found, and why.
    NotFound { bun: String, reason: String },
}

/// BoringSSL's `ERR_LIB_SSL` and `ERR_R_SHOULD_NOT_HAVE_BEEN_CALLED`.
const ERR_LIB_SSL: u32 = 16;
const ERR_R_SHOULD_NOT_HAVE_BEEN_CALLED: u32 = 66;
/// The source file name BoringSSL passes as `__FILE__` (Bun builds it as
/// `../../vendor/boringssl/ssl/ssl_lib.cc`).
const SSL_LIB_FILE: &[u8] = b"boringssl/ssl/ssl_lib.cc\0";
/// How far before the error site a function may start: the prologue,
/// `ssl_reset_error_state` and the QUIC test (0x4f bytes in `SSL_write`).
const MAX_PROLOGUE: usize = 160;

/// Finds `SSL_write` and `SSL_read` in `elf` if it is a Bun executable.
pub fn find_bun_tls(elf: &[u8]) -> BunTls {
    let Some(bun) = bun_version(elf) else {
        return BunTls::NotBun;
    };
    let not_found = |reason: String| BunTls::NotFound {
        bun: bun.clone(),
        reason: format!("Bun executable (Bun v{bun}, BoringSSL linked in, no symbols): {reason}"),
    };
    let Some(sig) = KNOWN_BUN.iter().find(|s| s.bun == bun) else {
        return not_found("BoringSSL signature for this version not known".into());
    };
    let Ok(file) = object::File::parse(elf) else {
        return not_found("not readable ELF".into());
    };
    let Some(name_at) = string_address(&file, elf, SSL_LIB_FILE) else {
        return not_found("BoringSSL's ssl_lib.cc not found in it".into());
    };
    let Ok(name_at) = u32::try_from(name_at) else {
        return not_found("BoringSSL's ssl_lib.cc above 4 GiB (not the known build)".into());
    };
    let mut offsets = TlsOffsets::default();
    for (slot, line, what) in [
        (0, sig.write_line, "SSL_write"),
        (2, sig.read_line, "SSL_read"),
    ] {
        match function_at_error_site(elf, name_at, line) {
            Ok(off) => offsets.offsets[slot] = Some(off),
            Err(why) => {
                return not_found(format!("BoringSSL signature did not match ({what}: {why})"))
            }
        }
    }
    BunTls::Found { bun, offsets }
}

/// The Bun version the executable prints (`Bun v1.4.6 (…`): only Bun
/// executables carry that string next to a `.bun` section.
pub fn bun_version(elf: &[u8]) -> Option<String> {
    let file = object::File::parse(elf).ok()?;
    file.section_by_name(".bun")?;
    for at in memmem::find_iter(elf, b"Bun v") {
        let rest = &elf[at + 5..];
        let end = rest
            .iter()
            .position(|b| !(b.is_ascii_digit() || *b == b'.'))
            .unwrap_or(0);
        if end >= 5 && rest.get(end..end + 2) == Some(b" (") {
            return Some(String::from_utf8_lossy(&rest[..end]).into_owned());
        }
    }
    None
}

/// The virtual address of the NUL-terminated string ending in `tail`
/// (its start is the byte after the preceding NUL).
fn string_address(file: &object::File, elf: &[u8], tail: &[u8]) -> Option<u64> {
    let at = memmem::find(elf, tail)?;
    let start = elf[..at]
        .iter()
        .rposition(|b| *b == 0)
        .map_or(0, |nul| nul + 1);
    address_of(file, start as u64)
}

/// The virtual address a file offset is loaded at.
fn address_of(file: &object::File, offset: u64) -> Option<u64> {
    file.segments().find_map(|seg| {
        let (start, size) = seg.file_range();
        (offset >= start && offset < start + size).then(|| offset - start + seg.address())
    })
}

/// The file offset of the function holding the one QUIC-refusal error
/// site with `line`.
fn function_at_error_site(elf: &[u8], file_name: u32, line: u32) -> Result<u64, String> {
    let needle = error_site(file_name, ERR_R_SHOULD_NOT_HAVE_BEEN_CALLED, line);
    let mut sites = memmem::find_iter(elf, &needle);
    let Some(site) = sites.next() else {
        return Err(format!("no error site at ssl_lib.cc:{line}"));
    };
    if sites.next().is_some() {
        return Err(format!("more than one error site at ssl_lib.cc:{line}"));
    }
    function_start(elf, site)
        .map(|s| s as u64)
        .ok_or_else(|| format!("no function start within {MAX_PROLOGUE} bytes before the site"))
}

/// `mov ecx, file; mov edi, ERR_LIB_SSL; xor esi, esi; mov edx, reason;
/// mov r8d, line`: the argument set-up of `ERR_put_error`.
pub fn error_site(file_name: u32, reason: u32, line: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(22);
    b.push(0xb9);
    b.extend_from_slice(&file_name.to_le_bytes());
    b.push(0xbf);
    b.extend_from_slice(&ERR_LIB_SSL.to_le_bytes());
    b.extend_from_slice(&[0x31, 0xf6, 0xba]);
    b.extend_from_slice(&reason.to_le_bytes());
    b.extend_from_slice(&[0x41, 0xb8]);
    b.extend_from_slice(&line.to_le_bytes());
    b
}

/// The nearest function start before `site`: a 16-byte aligned
/// `push rbp; mov rbp, rsp` right after int3 padding (how Bun's clang
/// lays out functions). File offsets and addresses agree modulo the page
/// size, so the alignment test holds on either.
fn function_start(elf: &[u8], site: usize) -> Option<usize> {
    const PROLOGUE: [u8; 4] = [0x55, 0x48, 0x89, 0xe5];
    let lowest = site.saturating_sub(MAX_PROLOGUE);
    (lowest..site)
        .rev()
        .filter(|at| at % 16 == 0 && *at > 0)
        .find(|at| elf[*at - 1] == 0xcc && elf[*at..].starts_with(&PROLOGUE))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A function as Bun lays it out: int3 padding, the prologue, some
    /// body, then the error site for `line`.
    fn function(at: usize, file_name: u32, line: u32, buf: &mut [u8]) {
        buf[at - 4..at].fill(0xcc);
        buf[at..at + 4].copy_from_slice(&[0x55, 0x48, 0x89, 0xe5]);
        let site = error_site(file_name, ERR_R_SHOULD_NOT_HAVE_BEEN_CALLED, line);
        buf[at + 0x40..at + 0x40 + site.len()].copy_from_slice(&site);
    }

    #[test]
    fn the_error_site_is_the_instruction_bytes() {
        // From Claude Code 2.1.332's SSL_write, at 0x353134f.
        let want = "b97f7dd400bf1000000031f6ba4200000041b8bb030000";
        assert_eq!(hex::encode(error_site(0xd47d7f, 66, 955)), want);
    }

    #[test]
    fn the_function_holding_the_site_is_found() {
        let mut buf = vec![0x90u8; 0x1000];
        function(0x200, 0xd47d7f, 955, &mut buf);
        function(0x400, 0xd47d7f, 933, &mut buf);
        assert_eq!(function_at_error_site(&buf, 0xd47d7f, 955), Ok(0x200));
        assert_eq!(function_at_error_site(&buf, 0xd47d7f, 933), Ok(0x400));
        let err = function_at_error_site(&buf, 0xd47d7f, 960).unwrap_err();
        assert_eq!(err, "no error site at ssl_lib.cc:960");
        // Two sites with one line: not trusted.
        function(0x600, 0xd47d7f, 955, &mut buf);
        let err = function_at_error_site(&buf, 0xd47d7f, 955).unwrap_err();
        assert!(err.starts_with("more than one"), "{err}");
    }

    #[test]
    fn a_site_far_from_any_function_start_is_refused() {
        let mut buf = vec![0x90u8; 0x1000];
        let site = error_site(1, ERR_R_SHOULD_NOT_HAVE_BEEN_CALLED, 7);
        buf[0x800..0x800 + site.len()].copy_from_slice(&site);
        buf[0x600..0x604].copy_from_slice(&[0x55, 0x48, 0x89, 0xe5]);
        buf[0x5ff] = 0xcc;
        let err = function_at_error_site(&buf, 1, 7).unwrap_err();
        assert!(err.starts_with("no function start"), "{err}");
        // Unaligned or without the padding: not a start either.
        assert_eq!(function_start(&buf, 0x640), Some(0x600));
        buf[0x5ff] = 0x90;
        assert_eq!(function_start(&buf, 0x640), None);
    }

    #[test]
    fn not_bun_is_said_so() {
        let elf = std::fs::read("/usr/bin/curl").expect("curl is installed");
        assert_eq!(find_bun_tls(&elf), BunTls::NotBun);
        assert_eq!(bun_version(b"Bun v1.4.6 (358d8293c)"), None);
    }
}
