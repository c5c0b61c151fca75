//! The receipt side of the daemon's start: who issues (the deployer id and
//! the host name), the state directory, an interrupted key rotation
//! settled, the master seed, the store opened and the signing pipeline
//! started, and what `observer.policy` records at start.
use std::{
    os::unix::fs::DirBuilderExt,
    time::{Duration, SystemTime},
};

use anyhow::Context as _;

use crate::{
    config::Config,
    deployer::{self, DeployerId},
    enrich::ExeHashCache,
    format::rfc3339,
    pipeline::{
        lifecycle::{AgentListed, FileOpenSettings, PathSearchSettings, PolicyAtStart},
        receipts::Receipts,
    },
    policy::Policy,
    receipt::{
        chain::Identity,
        keys::MasterSeed,
        open_fold, path_search,
        pipeline::{Pipeline, PipelineConfig},
        rotation,
        select::{Folding, Selector},
        store::RunKind,
    },
};

/// The deployer id that issuer ids derive from, when receipts are on.
pub(super) fn resolve_deployer(cfg: &Config) -> anyhow::Result<Option<DeployerId>> {
    if !cfg.receipts.enabled {
        return Ok(None);
    }
    let d = DeployerId::resolve(
        cfg.receipts.deployer_id.as_deref(),
        std::path::Path::new(deployer::MACHINE_ID),
    )
    .map_err(anyhow::Error::msg)?;
    match (d.warning(), d.source) {
        (Some(w), _) => log::warn!("{w}"),
        (None, deployer::Source::MachineId) => log::info!(
            "receipts.deployer_id not set: issuer ids use {}, derived from {}",
            d.id,
            deployer::MACHINE_ID
        ),
        (None, _) => {}
    }
    Ok(Some(d))
}

/// `receipts.hostname`, else the kernel's host name.
pub(super) fn host_name(cfg: &Config) -> anyhow::Result<String> {
    Ok(match &cfg.receipts.hostname {
        Some(h) => h.clone(),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .context("reading the host name")?
            .trim()
            .to_string(),
    })
}

/// Opens the store and the master seed and starts the receipt pipeline.
pub(super) fn start_receipts(
    cfg: &Config,
    policy: &Policy,
    deployer: &DeployerId,
) -> anyhow::Result<Receipts> {
    let r = &cfg.receipts;
    // The state directory (systemd's StateDirectory in production) holds
    // the seed and the store: private to root.
    for path in [&r.master_seed, &r.store] {
        if let Some(dir) = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty() && !d.exists())
        {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("creating {}", dir.display()))?;
        }
    }
    match rotation::recover(&r.master_seed, &r.store)
        .context("settling an interrupted master key rotation")?
    {
        rotation::Recovery::Clean => {}
        rotation::Recovery::Completed { kid } => log::warn!(
            "master key rotation to {kid} was committed before the last stop: its seed now replaces {}",
            r.master_seed.display()
        ),
        rotation::Recovery::Discarded { kid } => log::warn!(
            "master key rotation to {kid:?} was never committed: its seed file was deleted"
        ),
    }
    let (master, created) = MasterSeed::load_or_create(&r.master_seed)?;
    if created {
        log::warn!(
            "created a new master seed at {}: back it up; its public key anchors every receipt",
            r.master_seed.display()
        );
    }
    let hostname = host_name(cfg)?;
    let observer_executable_hash = std::env::current_exe()
        .map_err(anyhow::Error::from)
        .and_then(|exe| Ok(ExeHashCache::new(1, u64::MAX).hash_path(&exe)?))
        .context("hashing the observerd executable")?;
    let identity = Identity {
        deployer_id: deployer.id.clone(),
        hostname,
        mode: r.mode,
        observer_executable_hash: observer_executable_hash.clone(),
    };
    let (mut pipeline, resumed) = Pipeline::start(
        &PipelineConfig {
            store: r.store.clone(),
            signing_threads: r.signing_threads,
            queue_capacity: r.queue_capacity,
            checkpoint_interval: Duration::from_millis(r.checkpoint_interval_ms),
            batch_max: r.batch_max,
            waiting_for_room: Some(crate::service::notify::waiting_for_room),
        },
        identity,
        master,
        RunKind::Daemon,
        &rfc3339(SystemTime::now()),
    )
    .with_context(|| format!("opening the receipt store {}", r.store.display()))?;
    pipeline.set_full_hold_max(r.full_hold_max);
    // The genesis master's public key, for `observerctl verify` to pin
    // after a rotation (the seed then no longer derives it).
    if pipeline.generation() == 1 {
        rotation::write_genesis_public(&r.master_seed, &pipeline.master_key())
            .context("writing the genesis master public key")?;
    }
    log::info!(
        "receipt store {}: {} receipts, run {}",
        r.store.display(),
        resumed.log_size,
        resumed.run_id
    );
    let policy = PolicyAtStart {
        event: "policy_loaded",
        config: cfg.source.as_ref().map(|p| p.display().to_string()),
        mode: r.mode.as_str(),
        agents: cfg
            .agents
            .iter()
            .map(|a| AgentListed {
                id: a.id.clone(),
                executables: a.executables.clone(),
            })
            .collect(),
        file_open_window_ms: r.file_open_window_ms,
        path_search: PathSearchSettings {
            fold: r.path_search_fold,
            window_ms: path_search::WINDOW_NS / 1_000_000,
            per_process_cap: path_search::PER_PROCESS_CAP,
            global_cap: path_search::GLOBAL_CAP,
        },
        file_open: FileOpenSettings {
            fold: r.file_open_fold.as_str(),
            window_ms: r.file_open_window_ms,
            paths_cap: open_fold::PATHS_CAP,
            list_bytes_cap: open_fold::LIST_BYTES_CAP,
            held_cap: open_fold::HELD_CAP,
            own_receipt: crate::policy::indicators::SENSITIVE_LISTS,
        },
        retention: r.retention.clone(),
        policy: policy.summary(),
        policy_digest: policy.digest.clone(),
    };
    Ok(Receipts {
        pipeline,
        resumed,
        selector: Selector::new(Folding {
            file_open_window_ns: r.file_open_window_ms * 1_000_000,
            file_open: r.file_open_fold,
            path_search: r.path_search_fold,
        }),
        observer_executable_hash,
        policy,
        master_seed_created: created,
        retention: r
            .retention
            .as_deref()
            .map(humantime::parse_duration)
            .transpose()
            .context("receipts.retention")?,
        store_path: r.store.clone(),
        last_prune_check: None,
    })
}
