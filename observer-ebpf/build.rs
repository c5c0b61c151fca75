//! aya-build passes `--cfg bpf_target_arch="..."` when it builds the
//! programs; other builds (lints) get the host's architecture here.
fn main() {
    println!(
        "cargo::rustc-check-cfg=cfg(bpf_target_arch, values(\"x86_64\", \"aarch64\", \"arm\", \"riscv64\", \"powerpc64\", \"s390x\", \"mips\", \"loongarch64\"))"
    );
    println!("cargo::rerun-if-env-changed=CARGO_CFG_BPF_TARGET_ARCH");
    if std::env::var_os("CARGO_CFG_BPF_TARGET_ARCH").is_none() {
        let host = std::env::var("HOST").unwrap_or_default();
        let arch = host.split('-').next().unwrap_or_default();
        println!("cargo::rustc-cfg=bpf_target_arch=\"{arch}\"");
    }
}
