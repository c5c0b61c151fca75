//! Whether an executable's TLS would be visible, judged from the file on
//! disk before it runs (`observerctl doctor`): the plaintext uprobes hook
//! a libssl the process maps or the executable's own SSL_write/SSL_read
//! ([`super::tls_symbols`]), so the file is visible when it links a libssl
//! that defines them (DT_NEEDED, also through its libraries) or defines
//! them itself. `observerctl status` shows the picture of running processes.
use std::{
    collections::VecDeque,
    path::{Path, PathBuf},
};

use super::tls_symbols::{dynamic_needs, find_tls_functions};

/// Why an executable's TLS is not visible, judged on disk.
pub const NOT_LINKED: &str = "links no libssl (DT_NEEDED, also through its libraries) and defines no SSL_write/SSL_read: TLS linked in statically without symbols (Go crypto/tls, rustls, a stripped static OpenSSL) or no TLS; a libssl it loads at run time (dlopen) would still be seen";

/// The verdict on one executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StaticTls {
    /// Visible: through which file, and how it gets there.
    Visible { through: PathBuf, how: String },
    /// Not visible, and why.
    NotVisible(String),
    /// Not judged from the file (a script: its interpreter's TLS is loaded
    /// at run time), or the file could not be read.
    Unknown(String),
}

/// The most libraries followed: a dependency closure is tens of files.
const MAX_LIBRARIES: usize = 256;

/// The directories the dynamic linker searches after RUNPATH.
fn system_dirs() -> Vec<PathBuf> {
    let multiarch = format!("{}-linux-gnu", std::env::consts::ARCH);
    [
        format!("/lib/{multiarch}"),
        format!("/usr/lib/{multiarch}"),
        "/lib64".into(),
        "/usr/lib64".into(),
        "/lib".into(),
        "/usr/lib".into(),
        "/usr/local/lib".into(),
    ]
    .into_iter()
    .map(PathBuf::from)
    .collect()
}

fn is_tls_library(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    name.starts_with("libssl") || name.starts_with("libboringssl")
}

fn defines_tls(bytes: &[u8]) -> bool {
    find_tls_functions(bytes).is_ok_and(|f| f.usable())
}

/// Finds a needed library: a name with a slash is a path; otherwise the
/// RUNPATH directories (`$ORIGIN` is the needing file's directory), then
/// the system's.
fn resolve(name: &str, runpath: &[String], origin: &Path) -> Option<PathBuf> {
    if name.contains('/') {
        return Some(PathBuf::from(name)).filter(|p| p.is_file());
    }
    let origin = origin.to_string_lossy();
    runpath
        .iter()
        .map(|d| PathBuf::from(d.replace("${ORIGIN}", &origin).replace("$ORIGIN", &origin)))
        .chain(system_dirs())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Judges the executable at `path`.
pub fn classify(path: &Path) -> StaticTls {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return StaticTls::Unknown(format!("cannot read it: {e}")),
    };
    if let Some(rest) = bytes.strip_prefix(b"#!") {
        let line = rest.split(|b| *b == b'\n').next().unwrap_or_default();
        return StaticTls::Unknown(format!(
            "a script (#!{}): its interpreter loads TLS at run time; `observerctl status` shows it once it runs",
            String::from_utf8_lossy(line).trim()
        ));
    }
    if defines_tls(&bytes) {
        return StaticTls::Visible {
            through: path.to_path_buf(),
            how: "defines SSL_write/SSL_read itself".into(),
        };
    }
    let needs = match dynamic_needs(&bytes) {
        Ok(n) => n,
        Err(e) => return StaticTls::Unknown(format!("not an ELF executable: {e}")),
    };
    // Breadth first through the dependency closure: (library, who needs it).
    let mut queue: VecDeque<(String, Vec<String>, PathBuf, Option<String>)> = needs
        .needed
        .into_iter()
        .map(|n| (n, needs.search.clone(), parent(path), None))
        .collect();
    let mut seen: Vec<PathBuf> = Vec::new();
    while let Some((name, runpath, origin, by)) = queue.pop_front() {
        let Some(lib) = resolve(&name, &runpath, &origin) else {
            continue;
        };
        let real = std::fs::canonicalize(&lib).unwrap_or_else(|_| lib.clone());
        if seen.contains(&real) || seen.len() >= MAX_LIBRARIES {
            continue;
        }
        seen.push(real);
        let Ok(bytes) = std::fs::read(&lib) else {
            continue;
        };
        if is_tls_library(&lib) && defines_tls(&bytes) {
            let how = match by {
                None => format!("links {name} dynamically (DT_NEEDED)"),
                Some(by) => format!("links {name} dynamically (DT_NEEDED of {by})"),
            };
            return StaticTls::Visible { through: lib, how };
        }
        if let Ok(n) = dynamic_needs(&bytes) {
            for next in n.needed {
                queue.push_back((next, n.search.clone(), parent(&lib), Some(name.clone())));
            }
        }
    }
    StaticTls::NotVisible(NOT_LINKED.into())
}

fn parent(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// curl needs libcurl, which needs libssl: visible through the system
    /// libssl.
    #[test]
    fn dynamic_curl_is_visible_through_libssl() {
        let StaticTls::Visible { through, how } = classify(Path::new("/usr/bin/curl")) else {
            panic!(
                "curl not visible: {:?}",
                classify(Path::new("/usr/bin/curl"))
            );
        };
        assert!(
            through.to_string_lossy().contains("libssl.so"),
            "{}",
            through.display()
        );
        assert!(how.contains("(DT_NEEDED of libcurl.so.4)"), "{how}");
    }

    #[test]
    fn libssl_itself_defines_the_functions() {
        let path = Path::new("/usr/lib/x86_64-linux-gnu/libssl.so.3");
        assert_eq!(
            classify(path),
            StaticTls::Visible {
                through: path.into(),
                how: "defines SSL_write/SSL_read itself".into()
            }
        );
    }

    /// A real static OpenSSL client, stripped: no libssl, no symbols.
    #[test]
    fn a_stripped_static_tls_client_is_not_visible() {
        let dir = tempfile::tempdir().unwrap();
        let exe = build_static_client(dir.path());
        assert_eq!(classify(&exe), StaticTls::NotVisible(NOT_LINKED.into()));
        let script = dir.path().join("agent.py");
        std::fs::write(&script, "#!/usr/bin/python3\nimport ssl\n").unwrap();
        assert!(
            matches!(classify(&script), StaticTls::Unknown(w) if w.contains("#!/usr/bin/python3"))
        );
        assert!(matches!(
            classify(&dir.path().join("missing")),
            StaticTls::Unknown(_)
        ));
    }

    /// `gcc -static` against Debian's libssl.a and libcrypto.a, then strip.
    fn build_static_client(dir: &Path) -> PathBuf {
        let src = dir.join("client.c");
        std::fs::write(
            &src,
            "#include <openssl/ssl.h>\nint main(void) { SSL_CTX *c = SSL_CTX_new(TLS_client_method()); SSL *s = SSL_new(c); char b[1]; return SSL_write(s, b, 0) + SSL_read(s, b, 1); }\n",
        )
        .unwrap();
        let exe = dir.join("client");
        let gcc = std::process::Command::new("gcc")
            .args(["-static", "-o"])
            .arg(&exe)
            .arg(&src)
            .args(["-lssl", "-lcrypto", "-lpthread"])
            .output()
            .expect("gcc runs (cargo xtask test installs gcc, libssl-dev)");
        assert!(
            gcc.status.success(),
            "{}",
            String::from_utf8_lossy(&gcc.stderr)
        );
        // Unstripped, its symbol table names SSL_write: visible.
        assert!(matches!(classify(&exe), StaticTls::Visible { .. }));
        assert!(std::process::Command::new("strip")
            .arg(&exe)
            .status()
            .unwrap()
            .success());
        exe
    }
}
