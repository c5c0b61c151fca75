//! File opens: in-kernel filtering by suffix and prefix, and watched
//! processes whose every open is reported.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use observer_testkit::*;

#[test]
fn suffix_match_is_recorded_and_uninteresting_open_is_not() {
    let suffix = format!(".{}-secret", unique("sfx"));
    // Created before the daemon starts, so only the reads below are seen.
    let dir = tempfile::tempdir().unwrap();
    let interesting = dir.path().join(format!("a{suffix}"));
    let plain = dir.path().join("plain.txt");
    let marker = dir.path().join(format!("marker{suffix}"));
    write_file(&interesting, "x");
    write_file(&plain, "x");
    write_file(&marker, "x");
    let mut d = Daemon::start(&config(&[&suffix], ""));
    std::fs::File::open(&interesting).expect("open interesting");
    std::fs::File::open(&plain).expect("open plain");
    std::fs::File::open(&marker).expect("open marker");
    let me = std::process::id();
    let path = interesting.display().to_string();
    let ev = d.wait_for(|r| is_event(r, "file_open") && r["file_open"]["path"] == path.as_str());
    let o = &ev["file_open"];
    assert_eq!(ev["process"]["pid"], me);
    assert_eq!(o["flags"], libc::O_RDONLY | libc::O_CLOEXEC);
    assert_eq!(o["flags_text"], "O_RDONLY|O_CLOEXEC");
    assert_eq!(o["reasons"], serde_json::json!(["suffix"]));
    assert!(o["result"].as_i64().unwrap() >= 0, "{o}");
    assert_eq!(o["openat2"], false);
    // The marker was opened last: once it is seen, an open of the plain
    // file would already have been written before it.
    let marker_path = marker.display().to_string();
    d.wait_for(|r| is_event(r, "file_open") && r["file_open"]["path"] == marker_path.as_str());
    let plain_path = plain.display().to_string();
    assert!(
        !d.records()
            .iter()
            .any(|r| r["file_open"]["path"] == plain_path.as_str()),
        "an uninteresting open by an unwatched process must not be reported"
    );
}

#[test]
fn prefix_match_and_failed_open_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("{}/", dir.path().display());
    let mut d = Daemon::start(&format!(
        "[files]\nprefixes = [{prefix:?}]\nsuffixes = []\n"
    ));
    let missing = dir.path().join("missing.cfg");
    std::fs::File::open(&missing).expect_err("does not exist");
    let path = missing.display().to_string();
    let ev = d.wait_for(|r| is_event(r, "file_open") && r["file_open"]["path"] == path.as_str());
    assert_eq!(ev["file_open"]["result"], -2);
    assert_eq!(ev["file_open"]["error"], "ENOENT");
    assert_eq!(ev["file_open"]["reasons"], serde_json::json!(["prefix"]));
}

#[test]
fn every_open_of_a_watched_process_and_its_children_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let sh = copy_executable("/bin/sh", dir.path(), &unique("agent"));
    let one = dir.path().join("one.txt");
    let two = dir.path().join("two.txt");
    write_file(&one, "1");
    write_file(&two, "2");
    let extra = format!("[watch]\nexecutables = [{:?}]\n", sh.display().to_string());
    let mut d = Daemon::start(&config(&[], &extra));
    // The pause lets the daemon see the exec and watch the shell before it
    // opens anything; the cat child is watched by the kernel at fork.
    let script = format!(
        "sleep 1; exec 3< {}; cat {} > /dev/null",
        one.display(),
        two.display()
    );
    let child = Command::new(&sh)
        .args(["-c", &script])
        .spawn()
        .expect("spawn");
    let pid = child.id();
    assert!(child.wait_with_output().unwrap().status.success());
    let one_path = one.display().to_string();
    let ev =
        d.wait_for(|r| is_event(r, "file_open") && r["file_open"]["path"] == one_path.as_str());
    assert_eq!(ev["process"]["pid"], pid);
    assert_eq!(ev["process"]["watched"], true);
    assert_eq!(ev["file_open"]["reasons"], serde_json::json!(["watched"]));
    let two_path = two.display().to_string();
    let ev =
        d.wait_for(|r| is_event(r, "file_open") && r["file_open"]["path"] == two_path.as_str());
    assert_eq!(ev["process"]["comm"], "cat");
    assert_eq!(ev["process"]["ppid"], pid, "the child of the watched shell");
    assert_eq!(ev["file_open"]["reasons"], serde_json::json!(["watched"]));
    // An unwatched process opening the same file is not reported.
    std::fs::File::open(&one).unwrap();
    let me = std::process::id();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(!d
        .records()
        .iter()
        .any(|r| is_event(r, "file_open") && r["process"]["pid"] == me));
}

/// `struct open_how` of openat2(2).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

#[test]
fn openat2_and_openat_record_flags_mode_and_dfd() {
    let suffix = format!(".{}-how", unique("o2"));
    let dir = tempfile::tempdir().unwrap();
    let via_openat2 = dir.path().join(format!("two{suffix}"));
    let created = format!("created{suffix}");
    let mut d = Daemon::start(&config(&[&suffix], ""));

    let c_path = std::ffi::CString::new(via_openat2.display().to_string()).unwrap();
    let how = OpenHow {
        flags: (libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC) as u64,
        mode: 0o640,
        resolve: 0,
    };
    // SAFETY: valid path and open_how of the size passed; the fd is closed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            c_path.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    } as i32;
    assert!(fd >= 0, "openat2: {}", std::io::Error::last_os_error());
    // SAFETY: our own fd.
    unsafe { libc::close(fd) };

    let dir_c = std::ffi::CString::new(dir.path().display().to_string()).unwrap();
    // SAFETY: valid path; the fd is closed below.
    let dfd = unsafe { libc::open(dir_c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY) };
    assert!(dfd >= 0);
    let rel = std::ffi::CString::new(created.clone()).unwrap();
    // SAFETY: valid relative path under an open directory fd.
    let fd = unsafe {
        libc::openat(
            dfd,
            rel.as_ptr(),
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL,
            0o604 as libc::c_uint,
        )
    };
    assert!(fd >= 0, "openat: {}", std::io::Error::last_os_error());
    // SAFETY: our own fds.
    unsafe {
        libc::close(fd);
        libc::close(dfd);
    }

    let me = std::process::id();
    let path = via_openat2.display().to_string();
    let ev = d.wait_for(|r| is_event(r, "file_open") && r["file_open"]["path"] == path.as_str());
    let o = &ev["file_open"];
    assert_eq!(ev["process"]["pid"], me);
    assert_eq!(o["openat2"], true);
    assert_eq!(o["flags"], libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC);
    assert_eq!(o["mode"], 0o640);
    assert_eq!(o["reasons"], serde_json::json!(["suffix"]));
    assert!(o["result"].as_i64().unwrap() >= 0, "{o}");

    let ev = d.wait_for(|r| is_event(r, "file_open") && r["file_open"]["path"] == created.as_str());
    let o = &ev["file_open"];
    assert_eq!(ev["process"]["pid"], me);
    assert_eq!(o["openat2"], false);
    assert_eq!(o["flags"], libc::O_RDWR | libc::O_CREAT | libc::O_EXCL);
    assert_eq!(o["mode"], 0o604);
    assert_eq!(o["dfd"], dfd);
    assert!(o["result"].as_i64().unwrap() >= 0, "{o}");
}
