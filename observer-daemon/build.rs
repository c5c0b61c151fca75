//! Builds the eBPF object (observer-ebpf) with the pinned nightly toolchain
//! and bpf-linker when the `ebpf` feature is on (the default); the daemon
//! embeds it with `include_bytes_aligned!`.
//! Also embeds the repository's `policies/` as the built-in policy set, so
//! shadow-AI detection works with no policy directory installed.
use std::{fmt::Write as _, path::Path};

fn main() -> anyhow::Result<()> {
    embed_policies()?;
    build_ebpf()
}

/// The eBPF object, with the `ebpf` feature only (the default; observerctl
/// builds the library without it, with stable Rust alone).
#[cfg(feature = "ebpf")]
fn build_ebpf() -> anyhow::Result<()> {
    let ebpf = aya_build::Package {
        name: "observer-ebpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../observer-ebpf"),
        ..Default::default()
    };
    aya_build::build_ebpf([ebpf], aya_build::Toolchain::Nightly)
}

#[cfg(not(feature = "ebpf"))]
fn build_ebpf() -> anyhow::Result<()> {
    Ok(())
}

/// Writes `$OUT_DIR/builtin_policies.rs`: every `.toml` file under
/// `policies/` as `(relative path, include_str!(absolute path))`, sorted, so
/// the loader reads the built-in set exactly as it would read the directory.
fn embed_policies() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let root = root.canonicalize()?;
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    collect_toml(&root, &root, &mut files)?;
    files.sort();
    let mut out = String::from("pub const FILES: &[(&str, &str)] = &[\n");
    for rel in &files {
        let abs = root.join(rel);
        println!("cargo:rerun-if-changed={}", abs.display());
        writeln!(
            out,
            "    ({rel:?}, include_str!({:?})),",
            abs.display().to_string()
        )?;
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR")?).join("builtin_policies.rs");
    std::fs::write(dest, out)?;
    Ok(())
}

fn collect_toml(root: &Path, dir: &Path, out: &mut Vec<String>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            collect_toml(root, &path, out)?;
        } else if path.extension().is_some_and(|e| e == "toml") {
            let rel = path.strip_prefix(root)?.to_string_lossy().into_owned();
            out.push(rel);
        }
    }
    Ok(())
}
