//! Builds the eBPF object (observer-ebpf) with the pinned nightly toolchain
//! and bpf-linker; the daemon embeds it with `include_bytes_aligned!`.
fn main() -> anyhow::Result<()> {
    let ebpf = aya_build::Package {
        name: "observer-ebpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../observer-ebpf"),
        ..Default::default()
    };
    aya_build::build_ebpf([ebpf], aya_build::Toolchain::Nightly)
}
