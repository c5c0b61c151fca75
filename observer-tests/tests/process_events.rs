//! Process lifecycle events from the real kernel, through the real daemon.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]

use std::{
    io::Write,
    process::{Command, Stdio},
};

use observer_testkit::*;

#[test]
fn exec_of_unique_binary_has_exact_fields_and_redacted_secrets() {
    let mut d = Daemon::start(&config(&[], ""));
    let name = unique("true");
    let exe = copy_executable("/bin/true", d.dir.path(), &name);
    let secret = "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789";
    let status = Command::new(&exe)
        .args(["--alpha", "two words", &format!("--api-key={secret}")])
        .status()
        .expect("run copy of true");
    assert!(status.success());
    let path = exe.display().to_string();
    let ev = d.wait_for(|r| is_event(r, "exec") && r["exec"]["filename"] == path.as_str());
    let p = &ev["process"];
    assert_eq!(p["ppid"], std::process::id(), "parent is this test process");
    assert_eq!(p["uid"], nix::unistd::getuid().as_raw());
    assert_eq!(p["gid"], nix::unistd::getgid().as_raw());
    assert_eq!(p["user"], "root");
    assert_eq!(
        p["comm"],
        name[..15].to_string(),
        "comm is the first 15 bytes of the file name"
    );
    assert_eq!(p["exe"], path.as_str());
    assert_eq!(p["exe_sha256"], sha256_file(&exe));
    let argv = serde_json::json!([path, "--alpha", "two words", "--api-key=[REDACTED]"]);
    assert_eq!(ev["exec"]["argv"], argv);
    assert_eq!(p["argv"], argv);
    assert_eq!(ev["exec"]["result"], 0);
    assert_eq!(ev["exec"]["error"], serde_json::Value::Null);
    assert_eq!(ev["exec"]["argv_missing"], false);
    assert_eq!(ev["exec"]["argv_truncated"], false);
    assert_eq!(ev["parents"][0]["pid"], std::process::id());
    let pid = p["pid"].as_u64().unwrap();
    let exit = d.wait_for(|r| is_event(r, "exit") && r["process"]["pid"] == pid);
    assert_eq!(exit["exit"]["exit_code"], 0);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&d.events).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the events file is private to root");
    let all = std::fs::read_to_string(&d.events).unwrap();
    assert!(!all.contains(secret), "the secret never reaches the output");
    assert!(
        !all.contains("AbCdEfGhIjKlMnOp"),
        "no fragment of the secret either"
    );
}

#[test]
fn failed_exec_is_recorded_with_its_error() {
    let mut d = Daemon::start(&config(&[], ""));
    let missing = format!("/nonexistent-{}/prog", unique("dir"));
    let err = Command::new(&missing)
        .arg("--flag")
        .spawn()
        .expect_err("exec must fail");
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    let ev = d.wait_for(|r| is_event(r, "exec") && r["exec"]["filename"] == missing.as_str());
    assert_eq!(ev["exec"]["result"], -2);
    assert_eq!(ev["exec"]["error"], "ENOENT");
    assert_eq!(ev["exec"]["argv"], serde_json::json!([missing, "--flag"]));
}

#[test]
fn fork_and_exit_code_are_recorded() {
    let mut d = Daemon::start(&config(&[], ""));
    let name = unique("sh");
    let sh = copy_executable("/bin/sh", d.dir.path(), &name);
    let child = Command::new(&sh)
        .args(["-c", "exit 7"])
        .spawn()
        .expect("spawn sh");
    let pid = child.id();
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(7));
    let fork = d.wait_for(|r| is_event(r, "fork") && r["fork"]["child_pid"] == pid);
    assert_eq!(fork["fork"]["parent_pid"], std::process::id());
    assert_eq!(fork["process"]["pid"], std::process::id());
    let exit = d.wait_for(|r| is_event(r, "exit") && r["process"]["pid"] == pid);
    assert_eq!(exit["exit"]["exit_code"], 7);
    assert_eq!(exit["exit"]["signal"], serde_json::Value::Null);
    assert_eq!(exit["exit"]["status"], 7 << 8);
    assert_eq!(exit["process"]["exe"], sh.display().to_string());
}

#[test]
fn killed_process_exit_names_the_signal() {
    let mut d = Daemon::start(&config(&[], ""));
    let name = unique("sleep");
    let sleep = copy_executable("/bin/sleep", d.dir.path(), &name);
    let mut child = Command::new(&sleep).arg("60").spawn().expect("spawn sleep");
    let pid = child.id();
    d.wait_for(|r| is_event(r, "exec") && r["process"]["pid"] == pid);
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    let exit = d.wait_for(|r| is_event(r, "exit") && r["process"]["pid"] == pid);
    assert_eq!(exit["exit"]["signal"], 9);
    assert_eq!(exit["exit"]["exit_code"], serde_json::Value::Null);
}

#[test]
fn process_running_before_the_daemon_is_in_the_process_table() {
    let dir = tempfile::tempdir().unwrap();
    let name = unique("pre");
    let sh = copy_executable("/bin/sh", dir.path(), &name);
    let true_copy = copy_executable("/bin/true", dir.path(), &unique("after"));
    let script = format!("read line; {}", true_copy.display());
    let mut pre = Command::new(&sh)
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pre_pid = pre.id();

    let mut d = Daemon::start(&config(&[], ""));
    pre.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    let status = pre.wait().unwrap();
    assert!(status.success());
    // The pre-existing shell forks a child that runs our copy of true.
    let fork = d.wait_for(|r| is_event(r, "fork") && r["process"]["pid"] == pre_pid);
    assert_eq!(fork["process"]["origin"], "proc_scan");
    assert_eq!(fork["process"]["exe"], sh.display().to_string());
    assert_eq!(
        fork["process"]["argv"],
        serde_json::json!([sh.display().to_string(), "-c", script])
    );
    assert_eq!(fork["process"]["exe_sha256"], sha256_file(&sh));
    let exec = d.wait_for(|r| {
        is_event(r, "exec") && r["exec"]["filename"] == true_copy.display().to_string()
    });
    assert_eq!(exec["parents"][0]["pid"], pre_pid);
    assert_eq!(exec["parents"][0]["exe"], sh.display().to_string());
}

/// The exec event carries the executable's identity (device, inode, size,
/// mtime) from the kernel: a process read after it is gone, whose file is
/// gone too, still gets the hash cached for that identity, and a path that
/// now holds another file gets no hash rather than the wrong one.
#[test]
fn exec_read_late_is_hashed_by_the_file_the_kernel_ran() {
    let mut d = Daemon::start(&config(&[], ""));
    let kept = copy_executable("/bin/true", d.dir.path(), &unique("kept"));
    let swapped = copy_executable("/bin/false", d.dir.path(), &unique("swap"));
    let kept_path = kept.display().to_string();
    let swapped_path = swapped.display().to_string();
    let true_hash = sha256_file(&kept);
    assert_ne!(true_hash, sha256_file(&swapped));
    let exec_of = |path: &str| {
        let path = path.to_string();
        move |r: &serde_json::Value| is_event(r, "exec") && r["exec"]["filename"] == path.as_str()
    };

    assert!(Command::new(&kept).status().unwrap().success());
    let first = d.wait_for(exec_of(&kept_path));
    assert_eq!(first["process"]["exe_sha256"], true_hash);

    // The daemon reads nothing while the workload runs and its files go.
    d.freeze();
    assert!(Command::new(&kept).status().unwrap().success());
    std::fs::remove_file(&kept).unwrap();
    assert!(!Command::new(&swapped).status().unwrap().success());
    let other = d.dir.path().join(unique("other"));
    std::fs::copy("/bin/true", &other).unwrap();
    std::fs::rename(&other, &swapped).unwrap();
    d.signal(nix::sys::signal::Signal::SIGCONT);

    let second =
        d.wait_for(|r| exec_of(&kept_path)(r) && r["process"]["pid"] != first["process"]["pid"]);
    assert_eq!(second["process"]["exe"], kept_path.as_str());
    assert_eq!(second["process"]["exe_sha256"], true_hash);
    let late = d.wait_for(exec_of(&swapped_path));
    assert_eq!(late["process"]["exe"], swapped_path.as_str());
    assert_eq!(
        late["process"]["exe_sha256"],
        serde_json::Value::Null,
        "the file now at the path is not the one that ran"
    );
}

/// fexecve(3) is execveat(2) with an empty path: the exec that runs and the
/// one that fails both say so, each with the argv it was given (the first
/// read from the new image, the second from the failed call). The exec
/// through a descriptor still names and hashes its file: the kernel's
/// identity of it finds the hash cached by the plain run before.
#[test]
fn execveat_is_flagged_with_its_argv_whether_it_runs_or_fails() {
    let mut d = Daemon::start(&config(&[], ""));
    let exe = copy_executable("/bin/true", d.dir.path(), &unique("viafd"));
    let path = exe.display().to_string();
    assert!(Command::new(&exe).status().unwrap().success());
    let plain = d.wait_for(|r| is_event(r, "exec") && r["exec"]["filename"] == path.as_str());
    assert_eq!(plain["exec"]["execveat"], false);
    assert_eq!(plain["process"]["exe_sha256"], sha256_file(&exe));

    let text = d.dir.path().join(unique("notexec"));
    std::fs::write(&text, "not a program\n").unwrap();
    let marker = unique("marker");
    let script = format!(
        "import os\n\
         try:\n    os.execve(os.open({text:?}, os.O_RDONLY), ['denied', '{marker}'], {{}})\n\
         except PermissionError:\n    pass\n\
         os.execve(os.open({path:?}, os.O_RDONLY), ['viafd', '{marker}', ''], {{}})\n",
        text = text.display().to_string(),
    );
    let status = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(&script)
        .status()
        .unwrap();
    assert!(status.success());
    let ran = d.wait_for(|r| {
        is_event(r, "exec") && r["exec"]["argv"] == serde_json::json!(["viafd", marker, ""])
    });
    assert_eq!(ran["exec"]["execveat"], true);
    assert_eq!(ran["exec"]["result"], 0);
    assert_eq!(ran["exec"]["argv_truncated"], false);
    assert!(ran["exec"]["filename"]
        .as_str()
        .unwrap()
        .starts_with("/dev/fd/"));
    assert_eq!(ran["process"]["exe"], path.as_str());
    assert_eq!(ran["process"]["exe_sha256"], sha256_file(&exe));
    let failed = d.wait_for(|r| {
        is_event(r, "exec") && r["exec"]["argv"] == serde_json::json!(["denied", marker])
    });
    assert_eq!(failed["exec"]["execveat"], true);
    assert_eq!(failed["exec"]["result"], -13);
    assert_eq!(failed["exec"]["error"], "EACCES");
}

/// A script's exec records argv as the new process holds it (what ps and
/// /proc/<pid>/cmdline show): the interpreter from its `#!` line first,
/// then the script's path, then the caller's arguments after argv[0].
#[test]
fn script_exec_records_the_interpreter_argv_the_kernel_built() {
    use std::os::unix::process::CommandExt;
    let mut d = Daemon::start(&config(&[], ""));
    let script = d.dir.path().join(unique("script"));
    write_executable(&script, "#!/bin/sh -e\nexit 0\n");
    let marker = unique("marker");
    let status = Command::new(&script)
        .arg0("disguised")
        .arg(&marker)
        .status()
        .unwrap();
    assert!(status.success());
    let path = script.display().to_string();
    let ev = d.wait_for(|r| is_event(r, "exec") && r["exec"]["filename"] == path.as_str());
    assert_eq!(
        ev["exec"]["argv"],
        serde_json::json!(["/bin/sh", "-e", path, marker]),
        "the caller's argv[0] is replaced by the script's path"
    );
    let sh = std::fs::canonicalize("/bin/sh").unwrap();
    assert_eq!(ev["process"]["exe"], sh.display().to_string().as_str());
    assert_eq!(ev["process"]["exe_sha256"], sha256_file(&sh));
}
