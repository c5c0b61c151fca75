//! Policy reload: on SIGHUP and when the policy directory's files change,
//! load and compile it again, off the async runtime, and hand the outcome
//! (loaded or refused) to the processor, which applies and records it.
use std::{path::PathBuf, sync::Arc, time::Duration};

use tokio::sync::{mpsc, watch};

use crate::{
    pipeline::inbox::Msg,
    policy::{Policy, PolicyUpdate},
};

/// Reloads the policy directory on SIGHUP and when its files change
/// (modification time or size, polled every second). The outcome, loaded
/// or refused, goes to the processor, which applies and records it.
pub async fn reload_policies(
    dir: Option<PathBuf>,
    hup: std::io::Result<tokio::signal::unix::Signal>,
    config_agents: Vec<crate::config::AgentEntry>,
    tx: mpsc::Sender<Msg>,
    mut stop: watch::Receiver<bool>,
) {
    let mut hup = match hup {
        Ok(s) => s,
        Err(e) => {
            log::error!("cannot handle SIGHUP, policies reload on file change only: {e}");
            return;
        }
    };
    let Some(dir) = dir else {
        loop {
            tokio::select! {
                _ = hup.recv() => log::info!("SIGHUP: no policies_dir configured, nothing to reload"),
                _ = stop.changed() => return,
            }
        }
    };
    // Listing, reading and parsing the files block (a slow disk, a FIFO
    // named like a policy): they run on the blocking pool, never on the
    // runtime's threads that serve the reader, metrics and control socket.
    let dir = Arc::new(dir);
    let config_agents = Arc::new(config_agents);
    let fingerprint = |dir: &Arc<PathBuf>| {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || crate::policy::load::fingerprint(&dir))
    };
    let Ok(mut seen) = fingerprint(&dir).await else {
        return;
    };
    let mut poll = tokio::time::interval(Duration::from_secs(1));
    loop {
        let trigger = tokio::select! {
            _ = hup.recv() => "sighup",
            _ = poll.tick() => {
                match fingerprint(&dir).await {
                    Ok(now) if now == seen => continue,
                    Ok(_) => "file_change",
                    Err(_) => return,
                }
            }
            _ = stop.changed() => return,
        };
        // Files edited in place may still be being written: read them after
        // a short pause, and remember what was read.
        if trigger == "file_change" {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (d, agents) = (dir.clone(), config_agents.clone());
        let loaded = tokio::task::spawn_blocking(move || {
            (
                crate::policy::load::fingerprint(&d),
                Policy::load(&d, &agents),
            )
        });
        let loaded = tokio::select! {
            r = loaded => r,
            _ = stop.changed() => return,
        };
        let Ok((fingerprint_read, loaded)) = loaded else {
            return;
        };
        seen = fingerprint_read;
        let update = match loaded {
            Ok(policy) => PolicyUpdate::Loaded {
                policy: Arc::new(policy),
                trigger,
            },
            Err(e) => PolicyUpdate::Refused {
                error: e.to_string(),
                trigger,
            },
        };
        if tx.send(Msg::Policy(update)).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::Write,
        os::unix::fs::OpenOptionsExt,
        sync::{
            atomic::{AtomicBool, Ordering},
            Arc,
        },
        time::Duration,
    };

    use super::*;

    /// A policy file that blocks on read (a FIFO nobody writes) must not
    /// stall the runtime: on a single-threaded runtime, this test's own
    /// task keeps running while the reload waits, and is the one that
    /// finally writes the file.
    #[test]
    fn a_policy_read_that_blocks_does_not_stall_the_runtime() {
        let dir = tempfile::tempdir().unwrap();
        // The indicators folder exists, so the load reaches agents.toml.
        std::fs::create_dir(dir.path().join("indicators")).unwrap();
        let fifo = dir.path().join("agents.toml");
        let stalled = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicBool::new(false));
        // Unblocks a stalled runtime (the old behaviour) so that the test
        // fails instead of hanging.
        let rescue = {
            let (fifo, stalled, done) = (fifo.clone(), stalled.clone(), done.clone());
            std::thread::spawn(move || {
                for _ in 0..200 {
                    if done.load(Ordering::SeqCst) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                stalled.store(true, Ordering::SeqCst);
                // Every reload that waits on the FIFO gets its bytes.
                while !done.load(Ordering::SeqCst) {
                    if let Ok(mut f) = std::fs::OpenOptions::new()
                        .write(true)
                        .custom_flags(libc::O_NONBLOCK)
                        .open(&fifo)
                    {
                        let _ = f.write_all(b"not toml");
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let update = rt.block_on(async {
            let (tx, mut rx) = mpsc::channel(4);
            let (stop_tx, stop_rx) = watch::channel(false);
            let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
            let task = tokio::spawn(reload_policies(
                Some(dir.path().to_owned()),
                hup,
                vec![],
                tx,
                stop_rx,
            ));
            // The first fingerprint is taken without agents.toml; the
            // FIFO then appears as a change.
            tokio::time::sleep(Duration::from_millis(100)).await;
            nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
            // Opening for writing without blocking succeeds once the
            // reload has the FIFO open for reading.
            let mut writer = loop {
                match std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(&fifo)
                {
                    Ok(f) => break Some(f),
                    Err(_) if stalled.load(Ordering::SeqCst) => break None,
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            };
            if let Some(w) = writer.as_mut() {
                // The reload may already be done with the FIFO (read and
                // closed it): the write then finds no reader (EPIPE), and
                // what is checked is the update it sent and that the
                // runtime kept running, not these bytes.
                let _ = w.write_all(b"not toml");
            }
            drop(writer);
            let update = rx.recv().await;
            stop_tx.send(true).unwrap();
            task.await.unwrap();
            update
        });
        done.store(true, Ordering::SeqCst);
        rescue.join().unwrap();
        assert!(
            !stalled.load(Ordering::SeqCst),
            "the runtime stalled while the reload read a blocking file"
        );
        match update {
            Some(Msg::Policy(PolicyUpdate::Refused { error, trigger })) => {
                assert_eq!(trigger, "file_change");
                assert!(error.contains("agents.toml"), "{error}");
            }
            _ => panic!("no refused reload"),
        }
    }
}
