//! The integration tests' kit (dev-only): the daemon guard, child reaping,
//! the observerctl runner, network namespaces, the test PKI, test
//! accounts, metrics scraping and the probe list, shared by observer-tests
//! and xtask's benchmarks. What reads receipt stores needs observer-daemon
//! (feature `daemon`); xtask builds without it, before the eBPF toolchain
//! exists.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]
use std::{
    io::Write,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use serde_json::Value;

pub mod account;
pub mod agent_run;
pub mod bins;
pub mod child;
pub mod ctl;
pub mod daemon;
pub mod netns;
pub mod pki;
pub mod policies;
pub mod probes;
pub mod scrape;
#[cfg(feature = "daemon")]
pub mod store;

pub use agent_run::run_reference_agent;
pub use bins::{observerctl, observerd};
pub use child::{terminate, ChildGuard};
pub use ctl::{ctl, receipt_summaries, run, CtlTarget, Run};
pub use daemon::{Daemon, StateDir};
pub use policies::{install_policies, shipped_policies};
#[cfg(feature = "daemon")]
pub use store::*;

/// How long a test waits for what the daemon should do.
pub const WAIT: Duration = Duration::from_secs(15);

/// A name no other test or process on the host will use.
pub fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("obs-{tag}-{}-{nanos:x}", std::process::id())
}

/// Copies an executable for a test to run. The copy is written by a `cp`
/// child, never through a descriptor of the test process: tests run on many
/// threads, and a fork on another thread between our open and close would
/// carry the writable descriptor into that child until it execs, making our
/// own exec of the copy fail with ETXTBSY ("Text file busy").
pub fn copy_executable(src: &str, dir: &Path, name: &str) -> PathBuf {
    let dst = dir.join(name);
    let status = Command::new("cp")
        .arg("--")
        .arg(src)
        .arg(&dst)
        .status()
        .expect("run cp");
    assert!(status.success(), "cp {src} {}: {status}", dst.display());
    dst
}

/// Writes an executable script, for the same reason as `copy_executable`
/// through a child: the text goes to a private staging file first, and `cp`
/// makes the executable inode.
pub fn write_executable(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    let staging = path.with_extension("staging");
    std::fs::write(&staging, text).expect("write script");
    std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o755))
        .expect("chmod script");
    let name = path.file_name().unwrap().to_str().unwrap();
    copy_executable(staging.to_str().unwrap(), path.parent().unwrap(), name);
    std::fs::remove_file(&staging).expect("remove staging file");
}

pub fn sha256_file(path: &Path) -> String {
    use sha2::Digest;
    let bytes = std::fs::read(path).expect("read file");
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)))
}

pub fn is_event(r: &Value, event: &str) -> bool {
    r["kind"] == "event" && r["event"] == event
}

/// A config with no default file filters and only the given suffixes.
pub fn config(suffixes: &[&str], extra: &str) -> String {
    let list = suffixes
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("[files]\nprefixes = []\nsuffixes = [{list}]\n{extra}\n")
}

pub fn write_file(path: &Path, text: &str) {
    std::fs::File::create(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .expect("write file");
}

/// What tells file opens apart when they are counted against receipts:
/// process, path, flags and the errno of a failure.
pub type OpenKey = (u64, String, u64, Option<i64>);

/// The [`OpenKey`] of the open `o` (an event's or a list entry's
/// `file_open`) by process `pid`.
pub fn open_key(pid: &Value, o: &Value) -> OpenKey {
    let result = o["result"].as_i64().unwrap();
    (
        pid.as_u64().unwrap(),
        o["path"].as_str().unwrap().to_string(),
        o["flags"].as_u64().unwrap(),
        (result < 0).then_some(result),
    )
}

/// A config registering `exe` as agent `id`.
pub fn agent_config(id: &str, exe: &Path, extra: &str) -> String {
    format!(
        "[files]\nprefixes = []\nsuffixes = []\n{extra}\n[[agents]]\nid = {id:?}\nexecutables = [{:?}]\n",
        exe.display().to_string()
    )
}
