//! Idempotent installation of what building the eBPF object needs. The
//! versions are pinned: newer bpf-linker and aya releases need a newer
//! rustc than the hosts have.
use std::path::Path;
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
    // The real ClickHouse the clickhouse sink is tested against (18.16 on
    // Debian 12; observer-tests/tests/forwarding_clickhouse.rs starts its
    // own server), and clickhouse-client, with which docs/fleet.md loads
    // the shipped schema.
    "clickhouse-server",
    "clickhouse-client",
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
/// package test, the Debian packages the tests run for real, and the
/// pinned Python SDKs and MCP servers.
pub fn ensure_test_tools() -> anyhow::Result<()> {
    ensure_all()?;
    ensure_apt_packages(TEST_APT_PACKAGES)?;
    // The uv that fills the time server's cache is the venv's.
    ensure_llm_sdk_venv()?;
    ensure_mcp_time_server()?;
    ensure_mcp_filesystem_server()
}

/// The pinned Python LLM SDKs (openai, anthropic and their dependencies)
/// the SDK tests run as agents, the MCP SDK observer-tests/mcp/client.py
/// drives MCP servers with, and uv (whose uvx launches mcp-server-time).
pub const LLM_SDK_REQUIREMENTS: &str =
    include_str!("../../observer-tests/llm_sdks/requirements.txt");
/// Where they are installed; observer-tests/tests/llm_kit finds them here,
/// and the MCP tests run observer-tests/mcp/client.py with its bin/python.
pub const LLM_SDK_VENV: &str = "/var/cache/observer-tests/llm-sdks";
/// uvx from the venv: the MCP tests launch mcp-server-time with it, as
/// `UVX --offline --no-config --python /usr/bin/python3 --constraints
/// MCP_TIME_CONSTRAINTS MCP_TIME_SERVER` with UV_CACHE_DIR=MCP_TIME_UV_CACHE.
pub const UVX: &str = "/var/cache/observer-tests/llm-sdks/bin/uvx";
/// In each directory made here: what it was made from. Another content (or
/// none: an interrupted install) and the directory is made anew. The LLM
/// SDK tests compare the venv's with LLM_SDK_REQUIREMENTS.
const STAMP: &str = "observer-requirements.txt";

/// Every package of the real MCP server mcp-server-time's environment,
/// pinned (the server itself included).
pub const MCP_TIME_SERVER_CONSTRAINTS: &str =
    include_str!("../../observer-tests/mcp/time_server_constraints.txt");
/// The server as uvx is asked for it (pinned again in the constraints).
pub const MCP_TIME_SERVER: &str = "mcp-server-time==2026.10.19";
/// What ensure_mcp_time_server fills: the uv cache below and the
/// constraints; the MCP tests (observer-tests/tests/mcp_*.rs) run uvx
/// offline against them.
pub const MCP_TIME_DIR: &str = "/var/cache/observer-tests/mcp-time";
/// UV_CACHE_DIR for the MCP tests' `uvx --offline`.
pub const MCP_TIME_UV_CACHE: &str = "/var/cache/observer-tests/mcp-time/uv-cache";
/// MCP_TIME_SERVER_CONSTRAINTS as a file, for uvx's --constraints.
pub const MCP_TIME_CONSTRAINTS: &str = "/var/cache/observer-tests/mcp-time/constraints.txt";

/// The real npm MCP server the MCP tests (observer-tests/tests/mcp_*.rs)
/// launch with `npx --yes --offline --cache MCP_NPM_CACHE
/// MCP_FILESYSTEM_SERVER DIR`. Its own dependencies are those npm resolved
/// when the cache was filled (the package ships no lockfile).
pub const MCP_FILESYSTEM_SERVER: &str = "@modelcontextprotocol/server-filesystem@2026.8.31";
/// The npm cache ensure_mcp_filesystem_server fills.
pub const MCP_NPM_CACHE: &str = "/var/cache/observer-tests/npm";

/// Makes `dir` with `fill` unless its STAMP holds `made_from`. What a
/// previous fill left is removed first, so that nothing unpinned lingers.
fn ensure_stamped(
    dir: &str,
    made_from: &str,
    fill: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let path = Path::new(dir);
    let stamp = path.join(STAMP);
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(made_from) {
        return Ok(());
    }
    if path.exists() {
        std::fs::remove_dir_all(path).with_context(|| format!("removing {dir}"))?;
    }
    std::fs::create_dir_all(path).with_context(|| format!("creating {dir}"))?;
    fill(path)?;
    // Last: an interrupted fill leaves no stamp, and is redone.
    std::fs::write(&stamp, made_from).with_context(|| format!("writing {}", stamp.display()))
}

/// A venv of the system's python3 (the interpreter whose libssl the
/// probes hook) with exactly `LLM_SDK_REQUIREMENTS` from PyPI.
fn ensure_llm_sdk_venv() -> anyhow::Result<()> {
    ensure_stamped(LLM_SDK_VENV, LLM_SDK_REQUIREMENTS, |venv| {
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
        )
    })
}

/// Runs mcp-server-time once through uvx (`--help`: it exits at once),
/// which downloads its pinned environment into MCP_TIME_UV_CACHE. The
/// stamp holds the venv's requirements too: another uv may not read this
/// uv's cache.
fn ensure_mcp_time_server() -> anyhow::Result<()> {
    let made_from = format!("{LLM_SDK_REQUIREMENTS}{MCP_TIME_SERVER_CONSTRAINTS}");
    ensure_stamped(MCP_TIME_DIR, &made_from, |_| {
        std::fs::write(MCP_TIME_CONSTRAINTS, MCP_TIME_SERVER_CONSTRAINTS)?;
        // The second run is the proof the tests rely on: it starts again
        // with no network.
        for offline in [false, true] {
            let mut args = vec!["--quiet", "--no-config"];
            if offline {
                args.push("--offline");
            }
            args.extend([
                "--python",
                "/usr/bin/python3",
                "--constraints",
                MCP_TIME_CONSTRAINTS,
                MCP_TIME_SERVER,
                "--help",
            ]);
            run_env(
                UVX,
                &args,
                // Never a managed CPython download: the tests' server runs
                // on the system's interpreter, like the agents.
                &[
                    ("UV_CACHE_DIR", MCP_TIME_UV_CACHE),
                    ("UV_PYTHON_DOWNLOADS", "never"),
                ],
            )?;
        }
        Ok(())
    })
}

/// Runs the filesystem server once through npx, which installs it into
/// MCP_NPM_CACHE (its _npx directory); with stdin at EOF the server exits
/// as soon as it has started. Then once more with --offline.
fn ensure_mcp_filesystem_server() -> anyhow::Result<()> {
    ensure_stamped(MCP_NPM_CACHE, MCP_FILESYSTEM_SERVER, |_| {
        for offline in [false, true] {
            let mut args = vec!["--yes", "--cache", MCP_NPM_CACHE];
            if offline {
                args.push("--offline");
            }
            // The directory the server may serve: any that exists will do.
            args.extend([MCP_FILESYSTEM_SERVER, MCP_NPM_CACHE]);
            run_env(
                "/usr/bin/npx",
                &args,
                &[("npm_config_update_notifier", "false")],
            )?;
        }
        Ok(())
    })
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
    run_env(cmd, args, &[])
}

/// `run` with `env` added to the environment; stdin is /dev/null, so that
/// a server started to fill a cache exits at once.
fn run_env(cmd: &str, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<()> {
    eprintln!("setup: {cmd} {}", args.join(" "));
    let status = Command::new(cmd)
        .args(args)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
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
