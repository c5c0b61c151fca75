//! `observerd doctor` (and `observerctl doctor`, which runs it): can this
//! host run observerd? Checks privileges, BTF, tracefs and cgroup2, then
//! loads the eBPF object this binary embeds and loads and attaches each of
//! its programs (tracepoints to their tracepoints, the cgroup programs to a
//! scratch cgroup), then detaches. Needs no running daemon; runs beside one
//! without touching its programs.
use std::path::{Path, PathBuf};

use aya::{
    programs::{
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSockAddr, RawTracePoint, TracePoint,
    },
    EbpfLoader,
};
use serde_json::{json, Value};

use crate::{
    config::Config,
    kernel::kernel_config,
    kernel::loader::{self, programs as loader_programs, Hook, EBPF_OBJECT},
};

/// One check's outcome.
struct Check {
    name: String,
    ok: bool,
    detail: String,
    /// What does not work when the check fails.
    impact: &'static str,
    /// Passed, but with something to know (an agent whose TLS would not be
    /// visible): shown as `warn`, does not fail the report.
    warn: bool,
}

impl Check {
    fn new(name: impl Into<String>, result: Result<String, String>, impact: &'static str) -> Check {
        let (ok, detail) = match result {
            Ok(d) => (true, d),
            Err(d) => (false, d),
        };
        Check {
            name: name.into(),
            ok,
            detail,
            impact,
            warn: false,
        }
    }
}

/// Capabilities the daemon uses (systemd/observerd.service lists the same
/// set and why): (name, bit, what needs it).
const CAPABILITIES: &[(&str, u32, &str)] = &[
    ("CAP_BPF", 39, "the eBPF programs and maps cannot be loaded"),
    (
        "CAP_PERFMON",
        38,
        "the tracepoint probes cannot be attached",
    ),
    (
        "CAP_NET_ADMIN",
        12,
        "the cgroup socket programs (DNS answers, TLS SNI, [names]) cannot be attached",
    ),
    (
        "CAP_SYS_PTRACE",
        19,
        "/proc/<pid>/exe and environ of other users' processes cannot be read",
    ),
    (
        "CAP_DAC_READ_SEARCH",
        2,
        "executables and /proc entries of other users cannot be opened and hashed",
    ),
];

/// Runs every check; `{"ok": all passed, "checks": [...]}`.
pub fn run(config: &Config) -> Value {
    let mut checks = Vec::new();
    let root = nix::unistd::geteuid().is_root();
    checks.push(Check::new(
        "root",
        if root {
            Ok("effective uid 0".into())
        } else {
            Err(format!("effective uid {}", nix::unistd::geteuid()))
        },
        "observerd refuses to start: it must run as root",
    ));
    let effective = effective_capabilities();
    for (name, bit, impact) in CAPABILITIES {
        let result = match effective {
            Some(set) if set & (1u64 << bit) != 0 => Ok("in the effective set".to_string()),
            Some(_) => Err("not in the effective set".to_string()),
            None => Err("/proc/self/status has no CapEff line".to_string()),
        };
        checks.push(Check::new(name.to_lowercase(), result, impact));
    }
    checks.push(Check::new(
        "cap_sys_resource",
        memlock(effective),
        "eBPF maps cannot be created beyond the locked-memory limit",
    ));
    let kernel = kernel_config::kernel_config(
        &config.kernel.btf_path,
        &kernel_config::Tunables {
            wakeup_bytes: config.kernel.wakeup_bytes,
            open_dedup_ns: config.kernel.open_dedup_ms * 1_000_000,
            watch_enabled: true,
            tls_capture_bytes: config.plaintext.capture_bytes,
            io_capture_bytes: config.plaintext.io_capture_bytes(),
        },
    );
    checks.push(Check::new(
        "btf",
        kernel
            .as_ref()
            .map(|_| {
                format!(
                    "{}: every structure offset the probes need resolved",
                    config.kernel.btf_path.display()
                )
            })
            .map_err(|e| e.to_string()),
        "the probes cannot be loaded (they read kernel structures at offsets from BTF)",
    ));
    let tracefs = if root {
        loader::ensure_tracefs().map_err(|e| e.to_string())
    } else {
        ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.join("events").is_dir())
            .ok_or_else(|| "tracefs is not mounted (root would mount it)".to_string())
    };
    let tracefs_check = tracefs.clone().and_then(|t| {
        kernel_config::check_tracepoint_layout(&t)
            .map(|()| {
                format!(
                    "{}: the syscall tracepoints have the expected layout",
                    t.display()
                )
            })
            .map_err(|e| e.to_string())
    });
    checks.push(Check::new(
        "tracefs",
        tracefs_check,
        "no tracepoint probe can attach: no exec, exit, connect or open events",
    ));
    let cgroup = match &config.names.cgroup {
        Some(p) => Some(p.clone()),
        None => crate::enrich::cgroup::find_cgroup2_mount(),
    };
    checks.push(Check::new(
        "cgroup2",
        cgroup
            .as_ref()
            .map(|p| format!("mounted at {}", p.display()))
            .ok_or_else(|| "no cgroup2 mount in /proc/self/mountinfo".to_string()),
        "the names programs (DNS answers, TLS SNI) cannot attach; set names.enabled = false",
    ));
    match &kernel {
        Ok(k) if root => programs(k, cgroup.as_deref(), &mut checks),
        _ => {
            let why = if root {
                "skipped: BTF is needed to load the object"
            } else {
                "skipped: loading eBPF programs needs root"
            };
            for (program, hook) in loader_programs(true) {
                checks.push(Check::new(
                    format!("program:{program}"),
                    Err(why.into()),
                    impact_of(hook),
                ));
            }
        }
    }
    if config.receipts.enabled {
        checks.push(Check::new(
            "deployer_id",
            deployer_check(config),
            "receipts are signed under an issuer id that names no real deployer",
        ));
    }
    let policy = load_policy(config);
    checks.push(Check::new(
        "policies",
        policy
            .as_ref()
            .map(|(p, from)| {
                format!(
                    "{} {from}: {} agents, {} rules",
                    p.digest,
                    p.registry.len(),
                    p.rules.rules.len()
                )
            })
            .map_err(Clone::clone),
        "shadow-AI rules do not run as configured",
    ));
    if let Ok((p, _)) = &policy {
        tls_visibility(&p.registry, &mut checks);
    }
    let ok = checks.iter().all(|c| c.ok);
    json!({
        "ok": ok,
        "checks": checks.iter().map(|c| json!({
            "check": c.name,
            "ok": c.ok,
            "detail": c.detail,
            "impact": if c.ok { Value::Null } else { json!(c.impact) },
            "warn": c.warn,
        })).collect::<Vec<_>>(),
    })
}

/// The deployer id observerd would sign with; the placeholder fails.
fn deployer_check(config: &Config) -> Result<String, String> {
    let d = crate::deployer::DeployerId::resolve(
        config.receipts.deployer_id.as_deref(),
        std::path::Path::new(crate::deployer::MACHINE_ID),
    )?;
    match d.warning() {
        Some(w) => Err(w),
        None => Ok(format!("{} ({})", d.id, d.source.as_str())),
    }
}

/// Which policy set observerd would start with (and where from), valid.
fn load_policy(config: &Config) -> Result<(crate::policy::Policy, String), String> {
    use crate::policy::Policy;
    let (policy, from) = match &config.policies_dir {
        Some(dir) if dir.exists() => (
            Policy::load(dir, &config.agents),
            format!("from {}", dir.display()),
        ),
        Some(dir) => (
            Policy::builtin(&config.agents),
            format!("built-in ({} does not exist)", dir.display()),
        ),
        None => (Policy::builtin(&config.agents), "built-in".to_string()),
    };
    let (policy, from) = match (config.builtin_policies, from.starts_with("from ")) {
        (false, false) => (
            Ok(Policy::from_config(&config.agents)),
            "config-only (builtin_policies = false)".to_string(),
        ),
        _ => (policy, from),
    };
    Ok((policy.map_err(|e| e.to_string())?, from))
}

/// Per registered agent, each executable (exact path) on disk: would its
/// TLS plaintext be visible (it links libssl or defines SSL_write and
/// SSL_read), and why not. Informative: an agent observer cannot read is
/// a `warn`, not a failure.
fn tls_visibility(registry: &crate::policy::agents::Registry, checks: &mut Vec<Check>) {
    use crate::kernel::tls_static::{classify, StaticTls};
    for agent in registry.agents() {
        for path in agent.exact_paths.iter().map(Path::new) {
            if !path.exists() {
                continue;
            }
            let (warn, detail) = match classify(path) {
                StaticTls::Visible { through, how } => (
                    false,
                    format!(
                        "{}: TLS visible through {} ({how})",
                        path.display(),
                        through.display()
                    ),
                ),
                StaticTls::NotVisible(why) => {
                    (true, format!("{}: TLS NOT visible: {why}", path.display()))
                }
                StaticTls::Unknown(why) => (false, format!("{}: {why}", path.display())),
            };
            let mut c = Check::new(format!("tls_visible:{}", agent.id), Ok(detail), "");
            c.warn = warn;
            checks.push(c);
        }
    }
}

fn impact_of(hook: &Hook) -> &'static str {
    match hook {
        Hook::TracePoint(_) => "the events this tracepoint program reports are not observed",
        Hook::RawTracePoint(_) => "forks are not observed (process lineage and agent attribution)",
    }
}

/// CapEff of this process.
fn effective_capabilities() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// Since 5.11 the kernel charges eBPF memory to the memory cgroup, not
/// to RLIMIT_MEMLOCK: CAP_SYS_RESOURCE (or an unlimited limit) is only
/// needed before that.
fn memlock(effective: Option<u64>) -> Result<String, String> {
    if effective.is_some_and(|s| s & (1 << 24) != 0) {
        return Ok("in the effective set".into());
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|r| r.trim().to_string())
        .unwrap_or_default();
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    let version = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if version >= (5, 11) {
        return Ok(format!(
            "not in the effective set, not needed: kernel {release} charges eBPF memory to the memory cgroup"
        ));
    }
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let unlimited = limits
        .lines()
        .find(|l| l.starts_with("Max locked memory"))
        .is_some_and(|l| l.split_whitespace().nth(3) == Some("unlimited"));
    if unlimited {
        Ok("RLIMIT_MEMLOCK is unlimited".into())
    } else {
        Err(format!(
            "kernel {release} charges eBPF maps to RLIMIT_MEMLOCK and this process may not raise it"
        ))
    }
}

/// Removes the scratch cgroup when the check ends, however it ends.
struct ScratchCgroup(PathBuf);

impl Drop for ScratchCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Loads the embedded object and loads and attaches each program. The
/// cgroup programs attach to a fresh child cgroup (nothing runs in it), so
/// a running daemon's attachments are never disturbed.
fn programs(
    kernel: &observer_common::KernelConfig,
    cgroup: Option<&Path>,
    checks: &mut Vec<Check>,
) {
    let names = crate::names::config::NamesSection::default();
    let names_config = observer_common::NamesConfig {
        tls_capture_bytes: names.tls_capture_bytes,
        dns_capture_bytes: names.dns_capture_bytes,
    };
    let mut ebpf = match EbpfLoader::new()
        .override_global("CONFIG", kernel, true)
        .override_global("NAMES_CONFIG", &names_config, true)
        .load(EBPF_OBJECT)
    {
        Ok(e) => e,
        Err(e) => {
            checks.push(Check::new(
                "ebpf_object",
                Err(format!("loading the embedded eBPF object failed: {e}")),
                "observerd cannot start: its maps cannot be created",
            ));
            return;
        }
    };
    checks.push(Check::new(
        "ebpf_object",
        Ok("the embedded object's maps were created".into()),
        "",
    ));
    for (program, hook) in loader_programs(true) {
        let result = load_attach(&mut ebpf, program, hook);
        checks.push(Check::new(
            format!("program:{program}"),
            result,
            impact_of(hook),
        ));
    }
    let names_impact = "DNS answers and TLS SNI are not observed (set names.enabled = false)";
    let scratch =
        cgroup.map(|c| ScratchCgroup(c.join(format!("observer-doctor-{}", std::process::id()))));
    let dir = match &scratch {
        Some(s) => std::fs::create_dir(&s.0)
            .and_then(|()| std::fs::File::open(&s.0))
            .map_err(|e| format!("creating the scratch cgroup {}: {e}", s.0.display())),
        None => Err("no cgroup2 mount".to_string()),
    };
    for program in [
        "names_connect4",
        "names_connect6",
        "names_sendmsg4",
        "names_sendmsg6",
    ] {
        let result = dir.as_ref().map_err(Clone::clone).and_then(|dir| {
            let prog: &mut CgroupSockAddr = ebpf
                .program_mut(program)
                .ok_or_else(|| "missing from the object".to_string())?
                .try_into()
                .map_err(|e| format!("{e}"))?;
            prog.load().map_err(|e| format!("load: {e}"))?;
            prog.attach(dir, CgroupAttachMode::Single)
                .map_err(|e| format!("attach: {e}"))?;
            Ok("cgroup_sock_addr: loaded, attached to a scratch cgroup".to_string())
        });
        checks.push(Check::new(
            format!("program:{program}"),
            result,
            names_impact,
        ));
    }
    for (program, kind) in [
        ("names_egress", CgroupSkbAttachType::Egress),
        ("names_ingress", CgroupSkbAttachType::Ingress),
    ] {
        let result = dir.as_ref().map_err(Clone::clone).and_then(|dir| {
            let prog: &mut CgroupSkb = ebpf
                .program_mut(program)
                .ok_or_else(|| "missing from the object".to_string())?
                .try_into()
                .map_err(|e| format!("{e}"))?;
            prog.load().map_err(|e| format!("load: {e}"))?;
            prog.attach(dir, kind, CgroupAttachMode::Single)
                .map_err(|e| format!("attach: {e}"))?;
            Ok("cgroup_skb: loaded, attached to a scratch cgroup".to_string())
        });
        checks.push(Check::new(
            format!("program:{program}"),
            result,
            names_impact,
        ));
    }
    // Detach everything before the scratch cgroup goes.
    drop(dir);
    drop(ebpf);
    drop(scratch);
}

/// Loads one tracepoint program and attaches it to its real targets.
fn load_attach(ebpf: &mut aya::Ebpf, program: &str, hook: &Hook) -> Result<String, String> {
    let prog = ebpf
        .program_mut(program)
        .ok_or_else(|| "missing from the object".to_string())?;
    match hook {
        Hook::TracePoint(targets) => {
            let tp: &mut TracePoint = prog.try_into().map_err(|e| format!("{e}"))?;
            tp.load().map_err(|e| format!("load: {e}"))?;
            for (category, name) in *targets {
                tp.attach(category, name)
                    .map_err(|e| format!("attach to {category}/{name}: {e}"))?;
            }
            let list: Vec<String> = targets.iter().map(|(c, n)| format!("{c}/{n}")).collect();
            Ok(format!(
                "tracepoint: loaded, attached to {}",
                list.join(", ")
            ))
        }
        Hook::RawTracePoint(name) => {
            let rtp: &mut RawTracePoint = prog.try_into().map_err(|e| format!("{e}"))?;
            rtp.load().map_err(|e| format!("load: {e}"))?;
            rtp.attach(name)
                .map_err(|e| format!("attach to raw_tp/{name}: {e}"))?;
            Ok(format!("raw_tp: loaded, attached to {name}"))
        }
    }
}
