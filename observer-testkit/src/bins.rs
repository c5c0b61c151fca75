//! The binaries the tests run. The integration tests live in their own
//! package (observer-tests), so cargo names none of them
//! (`CARGO_BIN_EXE_*` is only set for a package's own binaries): they are
//! found beside the test executable (`target/<profile>/deps/<test>` ->
//! `target/<profile>/<binary>`), built by `cargo build --bins` (which
//! `cargo xtask test` runs first). A binary that is missing, or older than
//! a source it is built from, is refused rather than tested: the sources
//! cargo's dep-info beside it lists (a `cargo build` writes it), else every
//! source of the workspace crates it links.
use std::path::{Path, PathBuf};

const REBUILD: &str = "run `cargo build --workspace --exclude observer-ebpf --bins` first \
                       (`cargo xtask test` does)";

/// observerd, checked once per test process.
pub fn observerd() -> &'static str {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| checked("observerd"))
}

/// observerctl, checked once per test process.
pub fn observerctl() -> &'static str {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| checked("observerctl"))
}

/// `target/<profile>`: the directory above the test executable's `deps`.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().expect("test executable's directory");
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().expect("target/<profile>").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

fn checked(name: &str) -> String {
    let bin = profile_dir().join(name);
    let built = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("{}: {e}: {REBUILD}", bin.display()));
    let sources = match std::fs::read_to_string(bin.with_extension("d")) {
        Ok(deps) => dep_info_sources(&deps),
        Err(_) => linked_crate_sources(name),
    };
    for source in sources {
        let changed = std::fs::metadata(&source).and_then(|m| m.modified());
        if changed.map_or(true, |t| t > built) {
            panic!(
                "{} is older than {} (or it is gone): {REBUILD}",
                bin.display(),
                source.display()
            );
        }
    }
    bin.to_string_lossy().into_owned()
}

/// The sources of the workspace crates binary `name` links (the other
/// binary's own `src/bin` aside), for a binary that no plain build left
/// dep-info for.
fn linked_crate_sources(name: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, skip: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path == skip {
                continue;
            }
            if path.is_dir() {
                walk(&path, skip, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let (crates, skip): (&[&str], _) = match name {
        "observerctl" => (
            &[
                "observer-ctl",
                "observer-daemon",
                "observer-receipts",
                "observer-common",
            ],
            root.join("observer-daemon/src/bin"),
        ),
        _ => (
            &["observer-daemon", "observer-receipts", "observer-common"],
            PathBuf::new(),
        ),
    };
    let mut out = Vec::new();
    for krate in crates {
        walk(&root.join(krate).join("src"), &skip, &mut out);
    }
    out
}

/// The prerequisites of a make-style dep-info file (`target: a b\ c`).
fn dep_info_sources(text: &str) -> Vec<PathBuf> {
    let line = text.lines().next().unwrap_or_default();
    let rest = line.split_once(": ").map_or("", |(_, r)| r);
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => cur.extend(chars.next()),
            ' ' if !cur.is_empty() => out.push(PathBuf::from(std::mem::take(&mut cur))),
            ' ' => {}
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(PathBuf::from(cur));
    }
    out
}
