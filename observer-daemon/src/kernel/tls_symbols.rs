//! Where a binary's TLS functions are, and which files of a process may
//! hold them: pure functions over ELF bytes and /proc/PID/maps text, so
//! they are tested without a process or a probe.
use std::path::PathBuf;

use object::{Object, ObjectSegment, ObjectSymbol};

/// The functions the plaintext uprobes hook, in the order of
/// [`TlsOffsets::offsets`]. OpenSSL 3 and BoringSSL (node) export them.
pub const TLS_FUNCTIONS: [&str; 4] = ["SSL_write", "SSL_write_ex", "SSL_read", "SSL_read_ex"];

/// File offsets (what a uprobe attaches at) of [`TLS_FUNCTIONS`] in one
/// file; `None` where the file does not define the function.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TlsOffsets {
    pub offsets: [Option<u64>; 4],
}

impl TlsOffsets {
    /// The file defines at least one write and one read function: its
    /// traffic can be seen both ways.
    pub fn usable(&self) -> bool {
        let [w, wx, r, rx] = self.offsets;
        (w.is_some() || wx.is_some()) && (r.is_some() || rx.is_some())
    }
}

/// The TLS functions an ELF file defines. Imports (curl's undefined
/// `SSL_write`, resolved in libssl) are not definitions and are skipped.
pub fn find_tls_functions(elf: &[u8]) -> Result<TlsOffsets, object::Error> {
    let file = object::File::parse(elf)?;
    let mut found = TlsOffsets::default();
    for sym in file.dynamic_symbols().chain(file.symbols()) {
        if !sym.is_definition() || sym.address() == 0 {
            continue;
        }
        let Ok(name) = sym.name() else { continue };
        let Some(i) = TLS_FUNCTIONS.iter().position(|f| *f == name) else {
            continue;
        };
        if found.offsets[i].is_none() {
            found.offsets[i] = file_offset(&file, sym.address());
        }
    }
    Ok(found)
}

/// What an ELF file asks of the dynamic linker: its `DT_NEEDED` library
/// names and its `DT_RUNPATH`/`DT_RPATH` directories (`$ORIGIN` left as
/// is). A static executable has neither.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DynamicNeeds {
    pub needed: Vec<String>,
    pub search: Vec<String>,
}

/// The dynamic section of an ELF file: what [`DynamicNeeds`] lists.
pub fn dynamic_needs(elf: &[u8]) -> Result<DynamicNeeds, object::Error> {
    match object::File::parse(elf)? {
        object::File::Elf32(f) => needs_of(&f),
        object::File::Elf64(f) => needs_of(&f),
        // Only ELF is compiled in; another format needs nothing of ld.so.
        #[allow(unreachable_patterns)]
        _ => Ok(DynamicNeeds::default()),
    }
}

fn needs_of<'a, E: object::read::elf::FileHeader>(
    f: &object::read::elf::ElfFile<'a, E>,
) -> Result<DynamicNeeds, object::Error> {
    let table = f.elf_section_table().dynamic_table(f.endian(), f.data())?;
    let mut out = DynamicNeeds::default();
    for d in &table {
        let text = || {
            table
                .string(d)
                .map(|t| String::from_utf8_lossy(t).into_owned())
        };
        match d.tag {
            object::elf::DT_NEEDED => out.needed.push(text()?),
            object::elf::DT_RUNPATH | object::elf::DT_RPATH => out.search.extend(
                text()?
                    .split(':')
                    .filter(|p| !p.is_empty())
                    .map(String::from),
            ),
            _ => {}
        }
    }
    Ok(out)
}

/// The file offset of a virtual address: through the loadable segment
/// that maps it.
fn file_offset(file: &object::File, address: u64) -> Option<u64> {
    file.segments().find_map(|seg| {
        let start = seg.address();
        let (offset, size) = seg.file_range();
        (address >= start && address < start + size).then(|| address - start + offset)
    })
}

/// A file mapped executable into a process.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MappedFile {
    pub path: PathBuf,
    /// The device as /proc shows it (`major:minor`, hex) and the inode: the
    /// same file mapped by many processes is examined once.
    pub dev_major: u32,
    pub dev_minor: u32,
    pub inode: u64,
}

/// The distinct files mapped with execute permission in `maps` (the text
/// of /proc/PID/maps). Deleted files and anonymous mappings are left out.
pub fn executable_files(maps: &str) -> Vec<MappedFile> {
    let mut out: Vec<MappedFile> = Vec::new();
    for line in maps.lines() {
        let mut cols = line.splitn(6, ' ');
        let (Some(_range), Some(perms), Some(_off), Some(dev), Some(inode), Some(path)) = (
            cols.next(),
            cols.next(),
            cols.next(),
            cols.next(),
            cols.next(),
            cols.next(),
        ) else {
            continue;
        };
        let path = path.trim_start();
        if perms.as_bytes().get(2) != Some(&b'x')
            || !path.starts_with('/')
            || path.ends_with(" (deleted)")
        {
            continue;
        }
        let Some((major, minor)) = dev.split_once(':') else {
            continue;
        };
        let (Ok(dev_major), Ok(dev_minor), Ok(inode)) = (
            u32::from_str_radix(major, 16),
            u32::from_str_radix(minor, 16),
            inode.parse::<u64>(),
        ) else {
            continue;
        };
        let file = MappedFile {
            path: PathBuf::from(path),
            dev_major,
            dev_minor,
            inode,
        };
        if !out.contains(&file) {
            out.push(file);
        }
    }
    out
}

/// Whether a mapped file may carry TLS functions worth reading: a TLS
/// library by name, or the executable itself (node and other bundles link
/// OpenSSL or BoringSSL in).
pub fn may_hold_tls(file: &MappedFile, exe: Option<&std::path::Path>) -> bool {
    let name = file
        .path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    name.starts_with("libssl")
        || name.starts_with("libboringssl")
        || Some(file.path.as_path()) == exe
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d0c0a00000-55d0c0a02000 r--p 00000000 fd:01 131090                     /usr/bin/curl
55d0c0a02000-55d0c0a0f000 r-xp 00002000 fd:01 131090                     /usr/bin/curl
7f1c2a000000-7f1c2a05a000 r--p 00000000 fd:01 262201                     /usr/lib/x86_64-linux-gnu/libssl.so.3
7f1c2a05a000-7f1c2a0e0000 r-xp 0005a000 fd:01 262201                     /usr/lib/x86_64-linux-gnu/libssl.so.3
7f1c2a200000-7f1c2a210000 r-xp 00010000 00:2a 99                         /tmp/venv/lib/libssl.so.3 (deleted)
7f1c2a300000-7f1c2a321000 rw-p 00000000 00:00 0                          [heap]
7ffd5e9d2000-7ffd5e9d4000 r-xp 00000000 00:00 0                          [vdso]
7f1c2a400000-7f1c2a500000 r-xp 00010000 103:02 7777 /opt/my app/libssl.so.3
";

    #[test]
    fn lists_each_executable_file_once() {
        let files = executable_files(MAPS);
        let paths: Vec<&str> = files.iter().map(|f| f.path.to_str().unwrap()).collect();
        assert_eq!(
            paths,
            [
                "/usr/bin/curl",
                "/usr/lib/x86_64-linux-gnu/libssl.so.3",
                "/opt/my app/libssl.so.3"
            ]
        );
        assert_eq!(
            (files[1].dev_major, files[1].dev_minor, files[1].inode),
            (0xfd, 1, 262201)
        );
        assert_eq!(
            (files[2].dev_major, files[2].dev_minor, files[2].inode),
            (0x103, 2, 7777)
        );
    }

    #[test]
    fn picks_tls_libraries_and_the_executable() {
        let files = executable_files(MAPS);
        let exe = std::path::Path::new("/usr/bin/curl");
        let picked: Vec<bool> = files.iter().map(|f| may_hold_tls(f, Some(exe))).collect();
        assert_eq!(picked, [true, true, true]);
        assert!(!may_hold_tls(&files[0], None));
    }

    /// The system libssl defines all four, at the addresses `nm -D` lists
    /// (its text segment's file offsets equal its addresses).
    #[test]
    fn finds_the_four_functions_in_the_system_libssl() {
        let path = "/usr/lib/x86_64-linux-gnu/libssl.so.3";
        let elf = std::fs::read(path).expect("libssl.so.3 is installed (openssl)");
        let found = find_tls_functions(&elf).unwrap();
        assert!(found.usable());
        let nm = std::process::Command::new("nm")
            .args(["-D", "--defined-only", path])
            .output()
            .expect("nm (binutils) runs");
        let listing = String::from_utf8(nm.stdout).unwrap();
        for (name, off) in TLS_FUNCTIONS.iter().zip(found.offsets) {
            let want = listing
                .lines()
                .find_map(|l| {
                    let mut cols = l.split_whitespace();
                    let (addr, _, sym) = (cols.next()?, cols.next()?, cols.next()?);
                    (sym.split('@').next() == Some(*name)).then(|| u64::from_str_radix(addr, 16))
                })
                .unwrap_or_else(|| panic!("nm lists no {name}"))
                .unwrap();
            assert_eq!(off, Some(want), "{name}");
        }
    }

    /// curl imports SSL_write from libssl: an import is not a definition.
    #[test]
    fn an_importer_defines_none() {
        let elf = std::fs::read("/usr/bin/curl").expect("curl is installed");
        assert_eq!(find_tls_functions(&elf).unwrap(), TlsOffsets::default());
        assert!(find_tls_functions(b"not an elf").is_err());
    }

    /// curl's dynamic section: its libraries, no libssl directly.
    #[test]
    fn lists_what_curl_needs() {
        let elf = std::fs::read("/usr/bin/curl").expect("curl is installed");
        let needs = dynamic_needs(&elf).unwrap();
        assert!(
            needs.needed.contains(&"libcurl.so.4".to_string()),
            "{needs:?}"
        );
        assert!(needs.needed.contains(&"libc.so.6".to_string()), "{needs:?}");
        assert!(dynamic_needs(b"not an elf").is_err());
    }
}
