//! The control socket's peer check (root, group members, everyone else)
//! and `observerctl doctor`, against a real daemon on the real kernel.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]

use std::{
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    process::Command,
};

use observer_daemon::policy::Policy;
use observer_testkit::*;

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
        detail("program:process_fork"),
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
    let repo = Policy::load(&shipped_policies(), &[]).unwrap();
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
        .find(|c| c["check"] == "program:process_fork")
        .unwrap();
    assert_eq!(fork["detail"], "skipped: loading eBPF programs needs root");
}
