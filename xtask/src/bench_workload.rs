//! `cargo xtask bench workload`: what one small task of a coding agent
//! costs in evidence, the layout before folding against today's, in the
//! same run. The workload is observer-tests/tests/workloads/
//! reference_agent.sh (the evidence_volume integration test runs the same
//! script and proves that folding loses no fact of it): python -c, node -e,
//! git status, grep over a tree, cat, ls and a command that exists nowhere,
//! each reached through a `#!/usr/bin/env bash` wrapper on a long PATH, and
//! one TCP connect, run by a registered agent (a copy of sh).
//!
//! A middle line lists opens per process (`file_open_fold = "process"`)
//! instead of per agent, to show what each fold is worth.
//!
//! "Before folding" is the same release daemon configured as the store was
//! written before folding landed: a `file.open` receipt per process, path
//! and window (`file_open_fold = "path"`), a receipt per failed exec
//! (`path_search_fold = false`), and, once it stopped, every signature put
//! back into the envelope text as schema 2 kept it (`sig` NULL). Both stores
//! are then vacuumed, so store bytes compare pages in use, not free lists.
use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{bail, Context as _};

use crate::bench_kit::{state_in, unpinned, with_receipts_keys, Daemon};

#[derive(clap::Args)]
pub struct WorkloadArgs {
    /// Runs of the reference agent workload per layout.
    #[arg(long, default_value_t = 5)]
    workload_runs: u32,
}

const AGENT_ID: &str = "bench-workload-agent";
/// The targets: at least 10x fewer receipts and 5x fewer bytes.
const TARGET_RECEIPTS: f64 = 10.0;
const TARGET_BYTES: f64 = 5.0;

/// What one layout's daemon left behind.
struct Layout {
    receipts: u64,
    exec: u64,
    open: u64,
    connect: u64,
    store_bytes: u64,
}

pub fn run(root: &Path, work: &Path, args: &WorkloadArgs) -> anyhow::Result<()> {
    crate::bench_kit::warn_if_other_observers()?;
    let script = root.join("observer-tests/tests/workloads/reference_agent.sh");
    let tree = work.join("workload");
    let status = Command::new("/bin/sh")
        .arg(&script)
        .arg("setup")
        .arg(&tree)
        .status()
        .context("preparing the reference workload")?;
    if !status.success() {
        bail!("{}: setup failed with {status}", script.display());
    }
    let base_config = std::fs::read_to_string(root.join("observer.toml"))?;
    // The layouts, in the order printed: before folding, opens listed per
    // process, the default.
    let layouts: [&[(&str, String)]; 3] = [
        &[
            ("file_open_fold", "\"path\"".into()),
            ("path_search_fold", "false".into()),
        ],
        &[("file_open_fold", "\"process\"".into())],
        &[],
    ];
    let mut measured = Vec::new();
    for keys in layouts {
        let layout = measure(
            root,
            work,
            &base_config,
            &script,
            &tree,
            args.workload_runs,
            keys,
        )?;
        measured.push(layout);
    }
    let [before, per_process, folded] = <[Layout; 3]>::try_from(measured)
        .map_err(|_| anyhow::anyhow!("three layouts were measured"))?;
    let runs = f64::from(args.workload_runs);
    let per_run = |v: u64| v as f64 / runs;
    let receipts_ratio = before.receipts as f64 / folded.receipts.max(1) as f64;
    let bytes_ratio = before.store_bytes as f64 / folded.store_bytes.max(1) as f64;
    println!(
        "evidence volume, reference agent workload ({} runs per layout; \
         observer-tests/tests/workloads/reference_agent.sh):",
        args.workload_runs
    );
    for (name, l) in [
        ("before folding", &before),
        ("opens per process", &per_process),
        ("folded (default)", &folded),
    ] {
        println!(
            "  {name:>17}: {:.1} agent receipts per run (each one ML-DSA-65 signature): \
             process.exec {:.1}, file.open {:.1}, network.connect {:.1}; store {:.0} KB per run \
             (vacuumed, whole store / runs)",
            per_run(l.receipts),
            per_run(l.exec),
            per_run(l.open),
            per_run(l.connect),
            per_run(l.store_bytes) / 1000.0,
        );
    }
    println!(
        "  receipts and signatures: {receipts_ratio:.1}x fewer (target >= {TARGET_RECEIPTS}); \
         store bytes: {bytes_ratio:.1}x fewer (target >= {TARGET_BYTES})"
    );
    Ok(())
}

/// Runs the workload `runs` times under a daemon with `keys` set in
/// `[receipts]`, and measures what it stored.
fn measure(
    root: &Path,
    work: &Path,
    base_config: &str,
    script: &Path,
    tree: &Path,
    runs: u32,
    keys: &[(&str, String)],
) -> anyhow::Result<Layout> {
    let before_folding = keys.iter().any(|(k, _)| *k == "path_search_fold");
    let dir = work.join("workload-layout");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let agent = dir.join("bench-workload-sh");
    std::fs::copy("/bin/sh", &agent)?;
    let mut all_keys = state_in(&dir);
    all_keys.extend(keys.iter().cloned());
    let mut config = with_receipts_keys(base_config, &all_keys);
    config.push_str(&format!(
        "\n[[agents]]\nid = {AGENT_ID:?}\nexecutables = [{:?}]\n",
        agent.display().to_string()
    ));
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    // Accepts the workload's connects until the process ends.
    std::thread::spawn(move || for _ in listener.incoming() {});

    let daemon = Daemon::start_with(root, &dir, &config, false)?;
    for _ in 0..runs {
        let status = unpinned(
            Command::new(&agent)
                .arg(script)
                .args(["run".as_ref(), tree.as_os_str(), port.to_string().as_ref()])
                // A clean environment: cargo's variables (LD_LIBRARY_PATH
                // among them) change what the tools open.
                .env_clear()
                .env("HOME", tree)
                .env("PATH", "/usr/bin:/bin")
                .stdout(Stdio::null()),
        )
        .status()
        .context("running the reference workload")?;
        if !status.success() {
            bail!("the reference workload failed: {status}");
        }
    }
    // Folded opens and held failed execs are issued when their 1 s window
    // ends (checked every 200 ms); the stop issues the rest anyway.
    std::thread::sleep(Duration::from_millis(1500));
    let stats = daemon.stop()?;
    if stats.kernel_drops() + stats.all_user_drops() > 0 {
        bail!(
            "events were lost (kernel {}, user space {}): the comparison would be unfair",
            stats.kernel_drops(),
            stats.all_user_drops()
        );
    }
    let store = dir.join("observer.db");
    let layout = count(&store, before_folding)?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(layout)
}

/// The agent's receipts by action, and the store's size once vacuumed;
/// `signature_in_text`: first store every signature in the envelope text,
/// as schema 2 did.
fn count(store: &PathBuf, signature_in_text: bool) -> anyhow::Result<Layout> {
    let mut c = rusqlite::Connection::open(store)
        .with_context(|| format!("opening {}", store.display()))?;
    if signature_in_text {
        let tx = c.transaction()?;
        let rows: Vec<(i64, String, Option<Vec<u8>>)> = tx
            .prepare("SELECT leaf_index, envelope_text, sig FROM receipts WHERE sig IS NOT NULL")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        for (leaf, text, sig) in rows {
            let whole = observer_receipts::stored_envelope::join(&text, sig.as_deref())?;
            tx.execute(
                "UPDATE receipts SET envelope_text = ?1, sig = NULL WHERE leaf_index = ?2",
                rusqlite::params![whole, leaf],
            )?;
        }
        tx.commit()?;
    }
    let by_action = |action: &str| -> anyhow::Result<u64> {
        Ok(c.query_row(
            "SELECT COUNT(*) FROM receipts WHERE agent_id = ?1 AND action_type = ?2",
            rusqlite::params![AGENT_ID, action],
            |r| r.get::<_, i64>(0),
        )? as u64)
    };
    let (exec, open, connect) = (
        by_action("process.exec")?,
        by_action("file.open")?,
        by_action("network.connect")?,
    );
    let receipts = c.query_row(
        "SELECT COUNT(*) FROM receipts WHERE agent_id = ?1",
        [AGENT_ID],
        |r| r.get::<_, i64>(0),
    )? as u64;
    if exec == 0 || open == 0 || connect == 0 {
        bail!(
            "{}: the workload left {exec} exec, {open} open and {connect} connect receipts",
            store.display()
        );
    }
    c.execute_batch("PRAGMA journal_mode = DELETE; VACUUM;")?;
    drop(c);
    let store_bytes = std::fs::metadata(store)?.len();
    Ok(Layout {
        receipts,
        exec,
        open,
        connect,
        store_bytes,
    })
}
