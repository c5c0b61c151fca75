//! The control socket and the observerctl commands that use it, against a
//! real daemon on the real kernel: status, the peer check (root, group
//! members, everyone else), daemon down, doctor, agents tree, policy
//! check and show.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]

use std::{
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    process::{Child, Command},
    time::{Duration, Instant},
};

use observer_daemon::{config::AgentEntry, policy::Policy};
use observer_testkit::*;
use serde_json::Value;

/// Polls `status --json` until `pred` holds.
fn status_until(socket: &Path, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let r = ctl(CtlTarget::Socket(socket), &["status", "--json"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let v = r.json();
        if pred(&v) {
            return v;
        }
        assert!(start.elapsed() < WAIT, "{what}: {v:#}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn exec_count(v: &Value) -> u64 {
    v["events"]["by_kind"]["exec"].as_u64().unwrap()
}

#[test]
fn status_shows_the_real_probes_and_counters_moving() {
    let state = tempfile::tempdir().unwrap();
    let agent = copy_executable("/bin/sh", state.path(), &unique("statusagent"));
    let extra = "[[sinks]]\nname = \"archive\"\ntype = \"file\"\n[sinks.file]\npath = \"@DIR@/forwarded.jsonl\"\n";
    let d = Daemon::start_in(
        StateDir::Shared(state.path().to_owned()),
        &agent_config("status-agent", &agent, extra),
    );
    let socket = d.socket();
    // Root-only without an `observer` group, else root:observer 0660.
    let meta = std::fs::metadata(&socket).unwrap();
    match nix::unistd::Group::from_name("observer").unwrap() {
        Some(g) => {
            assert_eq!(meta.mode() & 0o777, 0o660);
            assert_eq!(meta.gid(), g.gid.as_raw());
        }
        None => {
            assert_eq!(meta.mode() & 0o777, 0o600);
            assert!(d.stderr_text().contains("root-only (0600)"));
        }
    }
    assert_eq!(meta.uid(), 0);

    let before = status_until(&socket, "first counters", |v| !v["events"].is_null());
    assert_eq!(before["daemon"]["pid"], d.pid());
    assert_eq!(before["daemon"]["version"], env!("CARGO_PKG_VERSION"));
    let programs: Vec<&str> = before["probes"]["programs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(programs, probes::PROGRAMS);
    assert!(before["probes"]["attachments"]
        .as_array()
        .unwrap()
        .contains(&Value::from("exec_exit -> syscalls/sys_exit_execveat")));
    // No policies_dir and (as tests/common sets) builtin_policies = false.
    let expected_policy = Policy::from_config(&[AgentEntry {
        id: "status-agent".into(),
        executables: vec![agent.display().to_string()],
    }]);
    assert_eq!(before["policy"]["digest"], expected_policy.digest.as_str());
    assert_eq!(before["policy"]["source"], "config");
    assert_eq!(before["identity"]["source"], "machine-id");
    assert_eq!(before["identity"]["warning"], Value::Null);
    assert_eq!(before["policy"]["agents"][0], "status-agent");

    // Real activity: the agent runs 20 programs.
    let status = Command::new(&agent)
        .args([
            "-c",
            "for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do /bin/true; done",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let n0 = exec_count(&before);
    let after = status_until(&socket, "20 more execs, receipts forwarded", |v| {
        exec_count(v) >= n0 + 21
            && v["events"]["per_second"].as_f64().is_some_and(|r| r > 0.0)
            && v["receipts"]["committed"].as_u64() > before["receipts"]["committed"].as_u64()
            && v["chains"]["heads"]
                .as_array()
                .unwrap()
                .iter()
                .any(|h| h["agent_id"] == "status-agent" && h["seq"].as_u64() >= Some(21))
            && !v["last_checkpoint"].is_null()
            && v["sinks"][0]["backlog"] == 0
            && v["sinks"][0]["delivered"].as_u64() > Some(21)
    });
    assert!(after["events"]["total"].as_u64() > before["events"]["total"].as_u64());
    assert!(after["daemon"]["uptime_seconds"].as_u64().is_some());
    for kind in ["exec", "fork", "exit", "connect", "file_open"] {
        let k = &after["drops"]["kernel"][kind];
        assert!(
            k["ringbuf_full"].is_u64() && k["read_error"].is_u64(),
            "{kind}: {k}"
        );
    }
    assert!(after["drops"]["total"].is_u64());
    let sink = &after["sinks"][0];
    assert_eq!(sink["name"], "archive");
    assert_eq!(sink["type"], "file");
    assert_eq!(sink["errors"], serde_json::json!({}));
    // The chains and the checkpoint are the store's.
    let store = observer_daemon::receipt::store::Store::open_read_only(&d.store()).unwrap();
    let heads = store.chain_heads().unwrap();
    let chains = &after["chains"];
    assert!(chains["count"].as_u64().unwrap() >= 2, "{chains}");
    assert!(chains["count"].as_u64().unwrap() as usize <= heads.len());
    let cp = &after["last_checkpoint"];
    assert!(cp["size"].as_u64().unwrap() <= store.log_size().unwrap());
    assert!(cp["size"].as_u64().unwrap() <= after["receipts"]["log_size"].as_u64().unwrap());
    assert!(store
        .checkpoints()
        .unwrap()
        .iter()
        .any(|c| c.size == cp["size"].as_u64().unwrap()
            && hex::encode(&c.root) == cp["root"].as_str().unwrap()
            && c.created_at == cp["created_at"].as_str().unwrap()));

    // The table for people.
    let table = ctl(CtlTarget::Socket(&socket), &["status"]);
    assert_eq!(table.code, 0, "{}", table.stderr);
    assert!(
        table.stdout.starts_with(&format!(
            "observerd {} running, pid {}",
            env!("CARGO_PKG_VERSION"),
            d.pid()
        )),
        "{}",
        table.stdout
    );
    assert!(
        table.stdout.contains("probes:      20 programs"),
        "{}",
        table.stdout
    );
    assert!(
        table.stdout.contains("sink archive      file    backlog 0"),
        "{}",
        table.stdout
    );

    // A request line over the limit is refused and the connection closed;
    // an unknown version is refused with the version this daemon speaks.
    use std::io::{BufRead, BufReader, Write};
    let mut s = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    s.write_all(b"{\"v\":2,\"cmd\":\"status\"}\n").unwrap();
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["error"]["kind"], "unsupported_version");
    assert_eq!(v["v"], 1);
    let big = format!("{{\"v\":1,\"cmd\":\"{}\"}}\n", "x".repeat(70_000));
    let _ = s.write_all(big.as_bytes());
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["error"]["kind"], "request_too_large");

    // Stopped: the socket is gone and status says the daemon is down.
    d.stop();
    assert!(!socket.exists());
    let down = ctl(CtlTarget::Socket(&socket), &["status", "--json"]);
    assert_eq!(down.code, 3, "{}", down.stdout);
    assert_eq!(down.json()["error"]["kind"], "daemon");
}

#[test]
fn daemon_down_is_exit_3_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("observer.sock");
    let r = ctl(CtlTarget::Socket(&missing), &["status"]);
    assert_eq!(r.code, 3);
    assert_eq!(
        r.stderr.trim_end(),
        format!(
            "observerctl: the observer daemon is not reachable at {}: no such socket (is observerd running? see control.socket in observer.toml)",
            missing.display()
        )
    );
    // A stale socket nobody accepts on.
    drop(std::os::unix::net::UnixListener::bind(&missing).unwrap());
    let r = ctl(CtlTarget::Socket(&missing), &["status", "--json"]);
    assert_eq!(r.code, 3);
    let v = r.json();
    assert_eq!(v["error"]["kind"], "daemon");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .ends_with("connection refused (observerd is not running)"),
        "{v}"
    );
    let r = ctl(CtlTarget::Socket(&missing), &["agents", "tree", "1"]);
    assert_eq!(r.code, 3);
}

/// observerctl run through setpriv as someone else.
fn ctl_as(bin: &Path, setpriv: &[&str], socket: &Path, args: &[&str]) -> Run {
    let mut c = Command::new("setpriv");
    c.args(setpriv)
        .arg(bin)
        .arg("--socket")
        .arg(socket)
        .args(args);
    run(c)
}

#[test]
fn the_socket_serves_root_and_its_group_and_refuses_everyone_else() {
    let account = account::Account::create("obsctl-member", "obsctl-grp");
    let state = tempfile::tempdir().unwrap();
    // Traversable, so only the socket's own mode and the peer check stand
    // in the way (the store and seed stay 0600).
    std::fs::set_permissions(state.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let bin = copy_executable(observerctl(), state.path(), "observerctl");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let d = Daemon::start_in(
        StateDir::Shared(state.path().to_owned()),
        &config(
            &[],
            &format!(
                "[control]\nsocket = \"@DIR@/ctl.sock\"\ngroup = \"{}\"\n",
                account.group
            ),
        ),
    );
    let socket = state.path().join("ctl.sock");
    let gid = nix::unistd::Group::from_name(account.group)
        .unwrap()
        .unwrap()
        .gid
        .as_raw();
    let meta = std::fs::metadata(&socket).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o777),
        (0, gid, 0o660)
    );

    let nobody = ["--reuid=nobody", "--regid=nogroup", "--clear-groups"];
    // The socket's mode stops nobody at connect.
    let r = ctl_as(&bin, &nobody, &socket, &["status", "--json"]);
    assert_eq!(r.code, 5, "{} {}", r.stdout, r.stderr);
    let v = r.json();
    assert_eq!(v["error"]["kind"], "permission_denied");
    assert_eq!(
        v["error"]["message"],
        format!(
            "permission denied connecting to the observer control socket {}: only root and members of its group (observer by default) may use it",
            socket.display()
        )
    );

    // A member through a supplementary group (primary group nogroup).
    let member = ["--reuid=obsctl-member", "--regid=nogroup", "--init-groups"];
    let r = ctl_as(&bin, &member, &socket, &["status", "--json"]);
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    assert_eq!(r.json()["daemon"]["pid"], d.pid());
    // A process whose effective group is the socket's group.
    let r = ctl_as(
        &bin,
        &["--reuid=nobody", "--regid=obsctl-grp", "--clear-groups"],
        &socket,
        &["status", "--json"],
    );
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);

    // Loosened by mistake: the file lets anyone connect, the daemon's
    // SO_PEERCRED check still refuses, answers why and closes.
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let r = ctl_as(&bin, &nobody, &socket, &["status"]);
    assert_eq!(r.code, 5, "{} {}", r.stdout, r.stderr);
    assert_eq!(
        r.stderr.trim_end(),
        format!(
            "observerctl: permission denied: uid 65534 is neither root nor a member of group obsctl-grp (gid {gid}); the observer control socket serves only those"
        )
    );
    assert!(d
        .stderr_text()
        .contains("control socket: refused uid 65534"));
    // The member is still served.
    let r = ctl_as(&bin, &member, &socket, &["status", "--json"]);
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    drop(d);
}

#[test]
fn doctor_reports_every_check_ok_here() {
    let r = run({
        let mut c = Command::new(observerctl());
        c.args(["doctor", "--json"]);
        c
    });
    assert_eq!(r.code, 0, "{}", r.stdout);
    let v = r.json();
    assert_eq!(v["ok"], true);
    let checks = v["checks"].as_array().unwrap();
    for c in checks {
        assert_eq!(c["ok"], true, "{c}");
        assert!(c["impact"].is_null(), "{c}");
    }
    let names: Vec<&str> = checks
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    let mut expected = vec![
        "root",
        "cap_bpf",
        "cap_perfmon",
        "cap_net_admin",
        "cap_sys_ptrace",
        "cap_dac_read_search",
        "cap_sys_resource",
        "btf",
        "tracefs",
        "cgroup2",
        "ebpf_object",
    ];
    let programs: Vec<String> = probes::PROGRAMS
        .iter()
        .map(|p| format!("program:{p}"))
        .collect();
    expected.extend(programs.iter().map(String::as_str));
    expected.extend(["deployer_id", "policies"]);
    assert_eq!(names, expected);
    let detail = |name: &str| {
        checks.iter().find(|c| c["check"] == name).unwrap()["detail"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        detail("program:sched_process_fork"),
        "raw_tp: loaded, attached to sched_process_fork"
    );
    assert_eq!(
        detail("program:names_egress"),
        "cgroup_skb: loaded, attached to a scratch cgroup"
    );
    assert_eq!(
        detail("program:names_connect4"),
        "cgroup_sock_addr: loaded, attached to a scratch cgroup"
    );
    // No configuration: the id derived from the machine id, and the
    // built-in policy set (the repository's, so the same digest).
    let machine_id = std::fs::read_to_string("/etc/machine-id").unwrap();
    assert_eq!(
        detail("deployer_id"),
        format!(
            "{} (machine-id)",
            observer_daemon::deployer::from_machine_id(machine_id.trim()).unwrap()
        )
    );
    let repo = Policy::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies"),
        &[],
    )
    .unwrap();
    assert_eq!(
        detail("policies"),
        format!(
            "{} built-in: 0 agents, {} rules",
            repo.digest,
            repo.rules.rules.len()
        )
    );
    // The scratch cgroup is gone.
    let cgroup = observer_daemon::enrich::cgroup::find_cgroup2_mount().unwrap();
    let left: Vec<PathBuf> = std::fs::read_dir(&cgroup)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("observer-doctor-")
        })
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // The table: one line per check, all ok.
    let mut c = Command::new(observerctl());
    c.arg("doctor");
    let t = run(c);
    assert_eq!(t.code, 0);
    let lines: Vec<&str> = t.stdout.lines().collect();
    assert_eq!(lines.len(), expected.len() + 1, "{}", t.stdout);
    assert!(lines[..expected.len()].iter().all(|l| l.starts_with("ok ")));
    assert_eq!(
        lines.last().unwrap(),
        &"every check passed: observerd can run here"
    );

    // Not root: every privilege check fails and says what will not work.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = copy_executable(observerctl(), dir.path(), "observerctl");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    // observerctl runs the observerd beside it, which does the checks.
    let daemon = copy_executable(observerd(), dir.path(), "observerd");
    std::fs::set_permissions(&daemon, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut c = Command::new("setpriv");
    c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(&bin)
        .args(["doctor", "--json"]);
    let r = run(c);
    assert_eq!(r.code, 6, "{}", r.stderr);
    let v = r.json();
    assert_eq!(v["ok"], false);
    let root = &v["checks"][0];
    assert_eq!(root["check"], "root");
    assert_eq!(root["ok"], false);
    assert_eq!(
        root["impact"],
        "observerd refuses to start: it must run as root"
    );
    let bpf = &v["checks"][1];
    assert_eq!(
        (bpf["check"].as_str(), bpf["ok"].as_bool()),
        (Some("cap_bpf"), Some(false))
    );
    let fork = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "program:sched_process_fork")
        .unwrap();
    assert_eq!(fork["detail"], "skipped: loading eBPF programs needs root");
}

/// Kills and reaps a child when dropped.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

#[test]
fn agents_tree_shows_an_agents_child_attributed() {
    let state = tempfile::tempdir().unwrap();
    let agent = copy_executable("/bin/sh", state.path(), &unique("treeagent"));
    let d = Daemon::start_in(
        StateDir::Shared(state.path().to_owned()),
        &agent_config("tree-agent", &agent, ""),
    );
    let socket = d.socket();
    let sh = Reap(
        Command::new(&agent)
            .args(["-c", "/bin/sleep 30; true"])
            .spawn()
            .unwrap(),
    );
    let agent_pid = sh.0.id();
    let start = Instant::now();
    let (sleep_pid, tree) = loop {
        let kids = children_of(agent_pid);
        if let Some(&pid) = kids.first() {
            let r = ctl(
                CtlTarget::Socket(&socket),
                &["agents", "tree", &pid.to_string(), "--json"],
            );
            if r.code == 0 {
                let v = r.json();
                if v["process"]["exe"]
                    .as_str()
                    .is_some_and(|e| e.ends_with("/sleep"))
                {
                    break (pid, v);
                }
            }
        }
        assert!(start.elapsed() < WAIT, "no tree for the agent's child");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(tree["pid"], sleep_pid);
    let me = &tree["process"];
    assert_eq!(me["pid"], sleep_pid);
    assert_eq!(me["ppid"], agent_pid);
    assert_eq!(me["agent"], "tree-agent");
    assert_eq!(me["argv"], serde_json::json!(["/bin/sleep", "30"]));
    assert_eq!(me["exited"], false);
    let ancestors = tree["ancestors"].as_array().unwrap();
    let parent = ancestors.last().unwrap();
    assert_eq!(parent["pid"], agent_pid);
    assert_eq!(parent["agent"], "tree-agent");
    assert_eq!(parent["exe"], agent.display().to_string());
    // Above the agent nothing is attributed: this test process and its own
    // ancestors up to the top.
    let test_pid = std::process::id();
    let above = &ancestors[ancestors.len() - 2];
    assert_eq!(above["pid"], test_pid);
    assert!(above["agent"].is_null());

    // From the agent down: its child, attributed.
    let r = ctl(
        CtlTarget::Socket(&socket),
        &["agents", "tree", &agent_pid.to_string(), "--json"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = r.json();
    assert_eq!(v["process"]["agent"], "tree-agent");
    let kids = v["process"]["children"].as_array().unwrap();
    assert_eq!(kids.len(), 1, "{v:#}");
    assert_eq!(kids[0]["pid"], sleep_pid);
    assert_eq!(kids[0]["agent"], "tree-agent");
    // The table marks the process asked about and names the agent.
    let t = ctl(
        CtlTarget::Socket(&socket),
        &["agents", "tree", &sleep_pid.to_string()],
    );
    assert_eq!(t.code, 0);
    assert!(
        t.stdout.contains(&format!(
            "{sleep_pid} /usr/bin/sleep uid 0  [agent tree-agent]  <=="
        )) || t.stdout.contains(&format!(
            "{sleep_pid} /bin/sleep uid 0  [agent tree-agent]  <=="
        )),
        "{}",
        t.stdout
    );
    // A pid the daemon never saw.
    let r = ctl(
        CtlTarget::Socket(&socket),
        &["agents", "tree", "4194305", "--json"],
    );
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("pid 4194305 is not in the daemon's process table"));
}

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

/// A copy of the shipped policies with `agents` appended to agents.toml.
fn policies_copy(dir: &Path, agents: &str) -> PathBuf {
    let out = dir.join("policies");
    std::fs::create_dir_all(out.join("indicators")).unwrap();
    for entry in std::fs::read_dir(shipped().join("indicators")).unwrap() {
        let e = entry.unwrap();
        std::fs::copy(e.path(), out.join("indicators").join(e.file_name())).unwrap();
    }
    std::fs::copy(shipped().join("rules.toml"), out.join("rules.toml")).unwrap();
    let text = std::fs::read_to_string(shipped().join("agents.toml")).unwrap();
    std::fs::write(out.join("agents.toml"), format!("{text}\n{agents}")).unwrap();
    out
}

#[test]
fn policy_check_and_show() {
    let state = tempfile::tempdir().unwrap();
    let shipped_digest = Policy::load(&shipped(), &[]).unwrap().digest;
    let shipped_arg = shipped().display().to_string();
    let r = ctl(
        CtlTarget::Socket(Path::new("/nonexistent.sock")),
        &["policy", "check", &shipped_arg, "--json"],
    );
    assert_eq!(r.code, 0, "{}", r.stdout);
    let v = r.json();
    assert_eq!(v["ok"], true);
    assert_eq!(v["policy_digest"], shipped_digest.as_str());
    let r = ctl(
        CtlTarget::Socket(Path::new("/nonexistent.sock")),
        &["policy", "check", &shipped_arg],
    );
    assert!(
        r.stdout
            .starts_with(&format!("policies ok: {shipped_digest} (")),
        "{}",
        r.stdout
    );

    // A misspelt key: file, line and column.
    let bad_dir = tempfile::tempdir().unwrap();
    let bad = policies_copy(
        bad_dir.path(),
        "[[agent]]\nid = \"x\"\nexecutable = [\"/usr/bin/x\"]\n",
    );
    let text = std::fs::read_to_string(bad.join("agents.toml")).unwrap();
    let line = text
        .lines()
        .position(|l| l.starts_with("executable ="))
        .unwrap()
        + 1;
    let r = ctl(
        CtlTarget::Socket(Path::new("/nonexistent.sock")),
        &["policy", "check", &bad.display().to_string()],
    );
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.starts_with(&format!(
            "observerctl: {}:{line}:1: unknown field `executable`",
            bad.join("agents.toml").display()
        )),
        "{}",
        r.stderr
    );
    let r = ctl(
        CtlTarget::Socket(Path::new("/nonexistent.sock")),
        &["policy", "check", &bad.display().to_string(), "--json"],
    );
    assert_eq!(r.code, 1);
    assert_eq!(r.json()["error"]["kind"], "policy_invalid");

    // show: from the running daemon, then from the directory once it stopped.
    let dir = policies_copy(state.path(), "");
    let d = Daemon::start_in(
        StateDir::Shared(state.path().to_owned()),
        &format!(
            "policies_dir = {:?}\n[files]\nprefixes = []\nsuffixes = []\n",
            dir.display().to_string()
        ),
    );
    let digest = Policy::load(&dir, &[]).unwrap().digest;
    let config = state.path().join("observer.toml");
    let show = |extra: &[&str]| {
        let mut c = Command::new(observerctl());
        c.arg("--config")
            .arg(&config)
            .args(["policy", "show"])
            .args(extra);
        run(c)
    };
    let r = show(&["--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = r.json();
    assert_eq!(v["source"], "daemon");
    assert_eq!(v["policy_digest"], digest.as_str());
    assert_eq!(v["policies_dir"], dir.display().to_string());
    let r = show(&[]);
    assert!(
        r.stdout
            .starts_with(&format!("policy {digest} in force in the running daemon\n")),
        "{}",
        r.stdout
    );
    d.stop();
    let r = show(&["--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = r.json();
    assert_eq!(v["source"], "policies_dir");
    assert_eq!(v["policy_digest"], digest.as_str());
    assert!(v["daemon_error"]
        .as_str()
        .unwrap()
        .starts_with("the observer daemon is not reachable at"));
}
