//! The observerctl runner: one command line, its exit code and output.
use std::{path::Path, process::Command};

use serde_json::Value;

use crate::bins::observerctl;

/// What an observerctl (or other) command did.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// stdout as JSON, or a panic that shows both streams.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.stdout, self.stderr))
    }
}

/// Runs `c` to completion.
pub fn run(mut c: Command) -> Run {
    let out = c.output().expect("run command");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Where observerctl reads from.
#[derive(Clone, Copy)]
pub enum CtlTarget<'a> {
    /// `--db`: a receipt store, read directly.
    Db(&'a Path),
    /// `--socket`: a running daemon's control socket.
    Socket(&'a Path),
    /// A daemon's state directory: `--config <dir>/observer.toml` and
    /// `--socket <dir>/observer.sock`.
    Dir(&'a Path),
}

/// observerctl (as this process's user) against `target` with `args`.
pub fn ctl(target: CtlTarget, args: &[&str]) -> Run {
    let mut c = Command::new(observerctl());
    match target {
        CtlTarget::Db(db) => {
            c.arg("--db").arg(db);
        }
        CtlTarget::Socket(socket) => {
            c.arg("--socket").arg(socket);
        }
        CtlTarget::Dir(dir) => {
            c.arg("--config")
                .arg(dir.join("observer.toml"))
                .arg("--socket")
                .arg(dir.join("observer.sock"));
        }
    }
    c.args(args);
    run(c)
}

/// `observerctl receipts --json` with `args`: (receipt hash, summary).
pub fn receipt_summaries(db: &Path, args: &[&str]) -> Vec<(String, String)> {
    let out = Command::new(observerctl())
        .arg("--db")
        .arg(db)
        .args(["receipts", "--json"])
        .args(args)
        .output()
        .expect("run observerctl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).expect("observerctl JSON");
    doc["receipts"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r["receipt_hash"].as_str().unwrap().to_string(),
                r["summary"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}
