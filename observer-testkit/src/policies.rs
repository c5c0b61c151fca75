//! The shipped policy set (`policies/` at the repository's root) and
//! copies of it for a test daemon.
use std::path::{Path, PathBuf};

/// The shipped policy directory.
pub fn shipped_policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

/// Copies the shipped policies to `dir/policies`, appending `agents` to
/// agents.toml; returns that directory.
pub fn install_policies(dir: &Path, agents: &str) -> PathBuf {
    let shipped = shipped_policies();
    let out = dir.join("policies");
    std::fs::create_dir_all(out.join("indicators")).unwrap();
    for entry in std::fs::read_dir(shipped.join("indicators")).unwrap() {
        let e = entry.unwrap();
        std::fs::copy(e.path(), out.join("indicators").join(e.file_name())).unwrap();
    }
    std::fs::copy(shipped.join("rules.toml"), out.join("rules.toml")).unwrap();
    let text = std::fs::read_to_string(shipped.join("agents.toml")).unwrap();
    std::fs::write(out.join("agents.toml"), format!("{text}\n{agents}")).unwrap();
    out
}
