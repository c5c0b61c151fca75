//! What the observerctl tests share: a store filled by a real daemon run
//! (read-only; a test that changes a store works on a copy), the receipt
//! times, and the byte flip that tampers with a proof or a pack.
// Each test binary of the topic compiles this module and uses part of it.
#![allow(dead_code)]

use std::{path::PathBuf, sync::OnceLock};

use observer_daemon::receipt::keys::{ChainKey, MasterSeed};
use observer_testkit::*;

/// A store filled by a real daemon run, shared by the tests (read-only;
/// tests that change a store work on a copy).
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub agent_exe: PathBuf,
    pub file: PathBuf,
    pub agent_pid: u64,
}

impl Fixture {
    pub fn db(&self) -> PathBuf {
        self.dir.path().join("observer.db")
    }
    pub fn seed(&self) -> PathBuf {
        self.dir.path().join("master.seed")
    }
    /// The pinned master public key as a JWK file, derived from the seed.
    pub fn pubkey(&self) -> PathBuf {
        let path = self.dir.path().join("master.jwk");
        if !path.exists() {
            let seed = MasterSeed::load_existing(&self.seed()).unwrap();
            let jwk = ChainKey::master_key(&seed).jwk();
            std::fs::write(&path, jwk.to_string()).unwrap();
        }
        path
    }
}

pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let run = run_reference_agent(dir.path(), "ctl-agent", "ctlagent", "");
        let (agent_exe, file, agent_pid) = (run.agent_exe, run.file, run.agent_pid);
        Fixture {
            dir,
            agent_exe,
            file,
            agent_pid,
        }
    })
}

pub fn issued_ns(r: &StoredReceipt) -> u64 {
    humantime::parse_rfc3339(r.payload["issued_at"].as_str().unwrap())
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

pub fn copy_store(f: &Fixture) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in ["observer.db", "master.seed"] {
        std::fs::copy(f.dir.path().join(name), dir.path().join(name)).unwrap();
    }
    dir
}

pub fn flip(text: &[u8], pos: usize) -> Vec<u8> {
    let mut b = text.to_vec();
    b[pos] = match b[pos] {
        b'A' => b'B',
        b'0' => b'1',
        b'1' => b'2',
        c if c.is_ascii_lowercase() => {
            if c == b'z' {
                b'y'
            } else {
                c + 1
            }
        }
        c if c.is_ascii_uppercase() => {
            if c == b'Z' {
                b'Y'
            } else {
                c + 1
            }
        }
        c if c.is_ascii_digit() => {
            if c == b'9' {
                b'8'
            } else {
                c + 1
            }
        }
        _ => b'x',
    };
    b
}
