//! Idempotent installation of what building the eBPF object needs. The
//! versions are pinned: newer bpf-linker and aya releases need a newer
//! rustc than the hosts have.
use std::process::Command;

use anyhow::{bail, Context as _};

pub const BPF_LINKER_VERSION: &str = "0.10.3";
/// `cargo xtask deb` (xtask/src/deb.rs).
pub const CARGO_DEB_VERSION: &str = "3.8.0";
/// The eBPF crate builds with this rustup toolchain (LLVM 22).
pub const EBPF_TOOLCHAIN: &str = "nightly";

/// Debian packages the integration tests run for real (receivers, servers,
/// clients). Installed only by `cargo xtask test`.
pub const TEST_APT_PACKAGES: &[&str] = &[
    // dpkg-shlibdeps, which cargo-deb runs for the package's Depends
    // (xtask/src/deb_package_test.rs).
    "dpkg-dev",
    // The DNS server of the names tests (observer-tests/tests/names.rs).
    "dnsmasq-base",
    // `npx` for the real MCP server (observer-tests/tests/shadow_ai_evidence.rs); on this Debian
    // build nodejs ships npx.
    "nodejs",
    // The interpreter the shadow-AI tests copy and run.
    "python3.11-minimal",
    // `python3 -m venv` for the pinned LLM SDKs (ensure_llm_sdk_venv).
    "python3-venv",
    // Syslog receivers over TCP, TLS and UDP (observer-tests/tests/forwarding_*.rs).
    "rsyslog",
    "rsyslog-gnutls",
    // `promtool check metrics` (observer-tests/tests/forwarding_recovery.rs).
    "prometheus",
    // systemd-journald and journalctl for the journal logging tests
    // (tests/journal.rs; also systemd-analyze for tests/service.rs), and
    // unshare/nsenter to give that journald its own namespaces.
    "systemd",
    "util-linux",
    // The TLS plaintext and LLM request tests (observer-tests/tests/
    // tls_plaintext.rs, llm_requests.rs): real curl and a test certificate
    // from the openssl CLI; `nm` cross-checks the symbol offsets read from
    // libssl (kernel/tls_symbols.rs).
    "curl",
    "openssl",
    "binutils",
    // A real statically linked TLS client (`gcc -static` against libssl.a
    // and libcrypto.a, then `strip`) whose TLS is not visible
    // (observer-tests/tests/tls_static_client.rs, kernel/tls_static.rs).
    "gcc",
    "libc6-dev",
    "libssl-dev",
    // libfaketime: the daemon alone sees its wall clock step
    // (tests/clock_step.rs); the host's clock is never touched.
    "faketime",
];

/// What building observer-daemon needs (its build.rs builds the eBPF
/// object): the nightly with rust-src, and bpf-linker. `run`, `bench` and
/// `install` need nothing more.
pub fn ensure_ebpf_build() -> anyhow::Result<()> {
    ensure_nightly()?;
    ensure_rust_src()?;
    ensure_bpf_linker()
}

/// `cargo xtask setup`: every tool any task uses.
pub fn ensure_all() -> anyhow::Result<()> {
    ensure_ebpf_build()?;
    ensure_cargo_deb()
}

/// What `cargo xtask test` needs: the build tools, cargo-deb for the
/// package test, and the Debian packages the tests run for real.
pub fn ensure_test_tools() -> anyhow::Result<()> {
    ensure_all()?;
    ensure_apt_packages(TEST_APT_PACKAGES)?;
    ensure_llm_sdk_venv()
}

/// The pinned Python LLM SDKs (openai, anthropic and their dependencies)
/// the SDK tests run as agents.
pub const LLM_SDK_REQUIREMENTS: &str =
    include_str!("../../observer-tests/llm_sdks/requirements.txt");
/// Where they are installed; observer-tests/tests/llm_kit finds them here.
pub const LLM_SDK_VENV: &str = "/var/cache/observer-tests/llm-sdks";
/// In the venv: the requirements it was made from. Another content (or
/// none: an interrupted install) and the venv is made anew.
const LLM_SDK_STAMP: &str = "observer-requirements.txt";

/// A venv of the system's python3 (the interpreter whose libssl the
/// probes hook) with exactly `LLM_SDK_REQUIREMENTS` from PyPI.
fn ensure_llm_sdk_venv() -> anyhow::Result<()> {
    let venv = std::path::Path::new(LLM_SDK_VENV);
    let stamp = venv.join(LLM_SDK_STAMP);
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(LLM_SDK_REQUIREMENTS) {
        return Ok(());
    }
    if venv.exists() {
        std::fs::remove_dir_all(venv).with_context(|| format!("removing {LLM_SDK_VENV}"))?;
    }
    run("/usr/bin/python3", &["-m", "venv", LLM_SDK_VENV])?;
    let requirements = venv.join("requirements.txt");
    std::fs::write(&requirements, LLM_SDK_REQUIREMENTS)?;
    let pip = venv.join("bin/pip");
    let requirements = requirements.display().to_string();
    run(
        &pip.display().to_string(),
        &[
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "-r",
            &requirements,
        ],
    )?;
    std::fs::write(&stamp, LLM_SDK_REQUIREMENTS)?;
    Ok(())
}

/// Installs the packages that `dpkg-query` does not report as installed.
fn ensure_apt_packages(packages: &[&str]) -> anyhow::Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| {
            !output("dpkg-query", &["-W", "-f=${Status}", p])
                .unwrap_or_default()
                .contains("install ok installed")
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let apt = |args: &[&str]| -> anyhow::Result<()> {
        eprintln!("setup: apt-get {}", args.join(" "));
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("running apt-get")?;
        if !status.success() {
            bail!("apt-get {} failed with {status}", args.join(" "));
        }
        Ok(())
    };
    apt(&["update", "-q"])?;
    apt(&[
        &["install", "-y", "-q", "--no-install-recommends"][..],
        &missing[..],
    ]
    .concat())
}

fn output(cmd: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .with_context(|| format!("running {cmd}"))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn run(cmd: &str, args: &[&str]) -> anyhow::Result<()> {
    eprintln!("setup: {cmd} {}", args.join(" "));
    let status = Command::new(cmd)
        .args(args)
        .status()
        .with_context(|| format!("running {cmd}"))?;
    if !status.success() {
        bail!("{cmd} {} failed with {status}", args.join(" "));
    }
    Ok(())
}

fn ensure_nightly() -> anyhow::Result<()> {
    let toolchains = output("rustup", &["toolchain", "list"])?;
    if !toolchains.lines().any(|l| l.starts_with(EBPF_TOOLCHAIN)) {
        run(
            "rustup",
            &[
                "toolchain",
                "install",
                EBPF_TOOLCHAIN,
                "--profile",
                "minimal",
            ],
        )?;
    }
    Ok(())
}

fn ensure_rust_src() -> anyhow::Result<()> {
    let installed = output(
        "rustup",
        &[
            "component",
            "list",
            "--toolchain",
            EBPF_TOOLCHAIN,
            "--installed",
        ],
    )?;
    if !installed.lines().any(|l| l.starts_with("rust-src")) {
        run(
            "rustup",
            &[
                "component",
                "add",
                "rust-src",
                "--toolchain",
                EBPF_TOOLCHAIN,
            ],
        )?;
    }
    Ok(())
}

fn ensure_bpf_linker() -> anyhow::Result<()> {
    let current = output("bpf-linker", &["--version"]).unwrap_or_default();
    if !current.contains(BPF_LINKER_VERSION) {
        run(
            "cargo",
            &[
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--locked",
                "--force",
            ],
        )?;
    }
    Ok(())
}

pub fn ensure_cargo_deb() -> anyhow::Result<()> {
    let current = output("cargo", &["deb", "--version"]).unwrap_or_default();
    if !current.contains(CARGO_DEB_VERSION) {
        run(
            "cargo",
            &[
                "install",
                "cargo-deb",
                "--version",
                CARGO_DEB_VERSION,
                "--locked",
                "--force",
            ],
        )?;
    }
    Ok(())
}
