//! Runs the observer: load and attach the probes, scan /proc, then run the
//! reader, loss-accounting and writer stages joined by a bounded channel
//! until SIGINT or SIGTERM, and shut down without losing what was read.
use std::{
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime},
};

use anyhow::Context as _;
use aya::maps::{Array, MapData};
use tokio::sync::{mpsc, watch};

use crate::{
    config::Config,
    enrich::{
        enricher::{Enricher, EnricherOptions, WatchControl},
        environ::{default_env_patterns, EnvPattern},
    },
    format::rfc3339,
    kernel::{
        kernel_config,
        loader::{self, FilterSet, LoadOptions, PathFilters},
        tls_attach::{TlsRequest, TlsRequests},
    },
    pipeline::{
        inbox::Msg,
        processor::{KernelPush, Processor},
        reader::{self, UserDrops},
    },
    policy::{KernelInterest, Policy},
    record::{Record, StartRecord, StatsRecord},
    service::notify::Notifier,
};

mod background;
mod plaintext;
mod receipts_setup;
mod services;
mod stream_intake;

/// Where enriched events go until the receipt store lands.
pub enum EventsOutput {
    None,
    Stdout,
    /// Stdout drawn as the live view for a person (crate::live_view).
    Live {
        colour: bool,
    },
    File(PathBuf),
}

pub struct RunOptions {
    pub config: Config,
    pub events: EventsOutput,
}

/// Marks tgids watched in the kernel's per-process flags, and has their
/// TLS libraries hooked when plaintext capture is on.
struct KernelWatch {
    flags: Array<MapData, u8>,
    tls: Option<TlsRequests>,
}

impl WatchControl for KernelWatch {
    fn watch(&mut self, tgid: u32, agent: Option<&Arc<str>>) {
        if let Err(e) = self.flags.set(tgid, observer_common::PROCESS_WATCHED, 0) {
            log::warn!("cannot watch pid {tgid}: {e}");
        }
        self.image(tgid, agent);
    }

    fn image(&mut self, tgid: u32, agent: Option<&Arc<str>>) {
        if let Some(tls) = &self.tls {
            tls.send(TlsRequest::Watch(tgid, agent.cloned()));
        }
    }

    fn exited(&mut self, tgid: u32) {
        if let Some(tls) = &self.tls {
            tls.send(TlsRequest::Exited(tgid));
        }
    }
}

pub async fn run(opts: RunOptions) -> anyhow::Result<()> {
    let cfg = &opts.config;
    // Caught from the first moment: a stop or reload that arrives while the
    // probes attach and the store opens (systemd stopping a starting unit)
    // must not meet the default action, which kills the daemon before its
    // final checkpoint. Signals arriving early wait in these streams.
    let shutdown = ShutdownSignals::install().context("catching SIGTERM and SIGINT")?;
    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
    if !nix::unistd::geteuid().is_root() {
        return Err(loader::LoadError::NotRoot.into());
    }
    raise_fd_limit();
    let tracefs = loader::ensure_tracefs()?;
    kernel_config::check_tracepoint_layout(&tracefs)?;
    let kernel = kernel_config::kernel_config(
        &cfg.kernel.btf_path,
        &kernel_config::Tunables {
            wakeup_bytes: cfg.kernel.wakeup_bytes,
            open_dedup_ns: cfg.kernel.open_dedup_ms * 1_000_000,
            // With a policy directory a reload may register agents later.
            watch_enabled: !cfg.watch.executables.is_empty()
                || !cfg.agents.is_empty()
                || cfg.policies_dir.is_some(),
            tls_capture_bytes: cfg.plaintext.capture_bytes,
            io_capture_bytes: cfg.plaintext.io_capture_bytes(),
        },
    )?;
    let policy = Arc::new(load_policy(cfg)?);
    log::info!(
        policy_digest = policy.digest.as_str();
        "policy {} ({}{}): {} agents, {} rules",
        policy.digest,
        policy.source.as_str(),
        policy.dir.as_ref().map(|d| format!(" {}", d.display())).unwrap_or_default(),
        policy.registry.len(),
        policy.rules.rules.len()
    );
    let wanted = kernel_filters(cfg, &policy.kernel);
    let names_cgroup = if cfg.names.enabled {
        Some(match &cfg.names.cgroup {
            Some(p) => p.clone(),
            None => crate::enrich::cgroup::find_cgroup2_mount().context(
                "names: no cgroup2 mount found; set names.cgroup or names.enabled = false",
            )?,
        })
    } else {
        None
    };
    let probes = loader::load(&LoadOptions {
        kernel,
        ring_buffer_bytes: cfg.kernel.ring_buffer_bytes,
        prefixes: &wanted.prefixes,
        suffixes: &wanted.suffixes,
        watched_executables: &wanted.watched_executables,
        names: names_cgroup.as_deref().map(|cgroup| loader::NamesLoad {
            cgroup,
            config: observer_common::NamesConfig {
                tls_capture_bytes: cfg.names.tls_capture_bytes,
                dns_capture_bytes: cfg.names.dns_capture_bytes,
            },
            owner_entries: cfg.names.socket_owner_entries,
        }),
        plaintext_ring_bytes: cfg
            .plaintext
            .enabled
            .then_some(cfg.plaintext.ring_buffer_bytes),
    })?;
    log::info!(probes = probes.attached.len(); "attached {} probes", probes.attached.len());
    let loader::Probes {
        ebpf,
        events,
        plaintext: plaintext_ring,
        io_muted,
        counters,
        process_flags,
        filters,
        attached,
        programs,
    } = probes;

    let drops = Arc::new(UserDrops::default());
    let (kernel_object, tls_requests, tls_visibility) =
        plaintext::start_attacher(&cfg.plaintext, ebpf, drops.clone())?;
    let env_patterns = match &cfg.enrich.env_names {
        Some(names) => names
            .iter()
            .map(|n| EnvPattern::parse(n).with_context(|| format!("enrich.env_names: {n:?}")))
            .collect::<anyhow::Result<Vec<_>>>()?,
        None => default_env_patterns(),
    };
    let mut enricher = Enricher::new(
        EnricherOptions {
            process_table_capacity: cfg.enrich.process_table_capacity,
            hash_max_bytes: cfg.enrich.hash_max_bytes,
            env_patterns,
            watch_executables: cfg.watch.executables.clone(),
            policy: policy.clone(),
        },
        Box::new(KernelWatch {
            flags: process_flags,
            tls: tls_requests,
        }),
    );
    // Scanned after attaching, so no process falls between scan and probes.
    let scanned = enricher.scan_proc();
    log::info!("process table: {scanned} running processes");

    let (tx, rx) = mpsc::channel::<Msg>(cfg.pipeline.channel_capacity);
    tx.send(Msg::Record(Record::ObserverStart(StartRecord {
        time: rfc3339(SystemTime::now()),
        pid: std::process::id(),
        probes: attached.clone(),
        processes_scanned: scanned,
        config: cfg.source.as_ref().map(|p| p.display().to_string()),
    })))
    .await?;
    let out = open_output(&opts.events)?;
    let deployer = receipts_setup::resolve_deployer(cfg)?;
    let receipts = match &deployer {
        Some(d) => Some(receipts_setup::start_receipts(cfg, &policy, d)?),
        None => None,
    };
    let counters_shared = Arc::new(std::sync::Mutex::new(None));
    let names_shared = crate::names::SharedCounters::default();
    let (sinks, sources, metrics_listener) =
        services::start_forwarding(cfg, receipts.as_ref(), &counters_shared, &names_shared).await?;
    let kernel_push = KernelFilters {
        filters,
        files_prefixes: cfg.files.prefixes.clone(),
        files_suffixes: cfg.files.suffixes.clone(),
        watched: cfg.watch.executables.clone(),
    };
    let names = cfg
        .names
        .enabled
        .then(|| crate::names::Names::new(&cfg.names).with_shared(names_shared));
    let processor = Processor::new(
        enricher,
        names,
        out,
        receipts,
        policy.clone(),
        Some(Box::new(kernel_push)),
    );
    let (writer_done_tx, writer_done) = tokio::sync::oneshot::channel::<()>();
    let writer = std::thread::Builder::new()
        .name("observer-writer".into())
        .spawn(move || {
            let result = processor.run(rx);
            let _ = writer_done_tx.send(());
            result
        })?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_rx_tick = stop_rx.clone();
    let stop_rx_watchdog = stop_rx.clone();
    let reader = tokio::spawn(reader::run(
        events,
        tx.clone(),
        drops.clone(),
        Duration::from_millis(cfg.kernel.poll_interval_ms),
        stop_rx.clone(),
    ));
    let plaintext_reader = plaintext::start_reader(
        &cfg.plaintext,
        plaintext_ring,
        io_muted,
        tx.clone(),
        drops.clone(),
        Duration::from_millis(cfg.kernel.poll_interval_ms),
        stop_rx.clone(),
    );
    let accounting = tokio::spawn(background::account_losses(
        background::Counters {
            kernel: counters,
            programs,
            user: drops.clone(),
        },
        counters_shared.clone(),
        tx.clone(),
        Duration::from_millis(cfg.kernel.counters_interval_ms),
        stop_rx,
    ));
    let ticker = tokio::spawn(background::tick(tx.clone(), stop_rx_tick));
    let clock_watch = tokio::spawn(crate::enrich::clock::wake_on_set(
        tx.clone(),
        stop_tx.subscribe(),
    ));
    let reloader = tokio::spawn(crate::policy::reload::reload_policies(
        cfg.policies_dir.clone(),
        hup,
        cfg.agents.clone(),
        tx.clone(),
        stop_tx.subscribe(),
    ));
    let metrics = metrics_listener.map(|listener| {
        tokio::spawn(crate::service::metrics::serve(
            listener,
            sources.clone(),
            crate::service::metrics::Limits::from_config(&cfg.metrics),
            stop_tx.subscribe(),
        ))
    });
    let identity = deployer
        .as_ref()
        .map_or(serde_json::Value::Null, |d| d.to_json());
    let control = services::start_control(
        cfg,
        attached,
        sources,
        identity,
        tls_visibility,
        tx.clone(),
        &stop_tx,
    );
    let notifier = Notifier::from_env().context("NOTIFY_SOCKET")?;
    if let Some(n) = &notifier {
        n.notify(&format!(
            "READY=1\nMAINPID={}\nSTATUS=observing",
            std::process::id()
        ))
        .context("telling systemd we are ready")?;
    }
    let watchdog = match (Notifier::watchdog_interval(), Notifier::from_env()?) {
        (Some(every), Some(n)) => Some(tokio::spawn(background::keep_watchdog_fed(
            n,
            every,
            stop_rx_watchdog,
        ))),
        _ => None,
    };
    log::info!(
        message_id = crate::service::journal::message_id::READY;
        "observerd ready (pid {})",
        std::process::id()
    );

    tokio::select! {
        () = shutdown.wait() => {}
        // The writer only stops early on an output error: stop capturing
        // too, and report that error below.
        _ = writer_done => log::error!("the event writer stopped"),
    }
    log::info!(message_id = crate::service::journal::message_id::STOPPING; "shutting down");
    if let Some(n) = &notifier {
        let _ = n.notify("STOPPING=1\nSTATUS=draining, signing the final checkpoint");
    }
    // Detach first: the final drain below then sees every event the kernel
    // will ever emit, and the final counters match what was delivered.
    kernel_object.detach();
    stop_tx.send(true)?;
    let read = reader.await??;
    if let Some((ring, intake)) = plaintext_reader {
        let chunks = ring.await??;
        let intake = intake.await?;
        log::info!(
            "plaintext: read {chunks} records, took in TLS {} chunks of {} bytes ({} cut short), local {} chunks of {} bytes ({} cut short); {} HTTP requests, {} LLM API calls, {} HTTP/2 connections, {} streams given up, {} connections not HTTP, {} local streams muted; {} MCP sessions, {} MCP tool calls, {} JSON streams not JSON-RPC or not MCP, {} MCP answers unmatched, {} pipes and sockets over the MCP limit",
            intake.tls.chunks,
            intake.tls.bytes,
            intake.tls.truncated,
            intake.local.chunks,
            intake.local.bytes,
            intake.local.truncated,
            intake.exchanges,
            intake.llm_calls,
            intake.http2,
            intake.abandoned,
            intake.not_http,
            intake.muted,
            intake.mcp.sessions,
            intake.mcp.tool_calls,
            intake.mcp.not_rpc,
            intake.mcp.unmatched,
            intake.mcp.over_limit
        );
    }
    ticker.await?;
    clock_watch.await?;
    reloader.await?;
    if let Some(c) = control {
        c.await?;
    }
    if let Some(w) = watchdog {
        w.await?;
    }
    let (counters, mut tracker) = accounting.await?;
    // Final accounting after the last drain, so the totals are complete.
    let now = counters.snapshot();
    if let Some(loss) = tracker.update(now.clone(), rfc3339(SystemTime::now())) {
        let _ = tx.send(Msg::Record(Record::Loss(loss))).await;
    }
    let stats = StatsRecord {
        time: rfc3339(SystemTime::now()),
        kernel: now.kernel,
        user_drops: now.user,
        kernel_skipped: now.skipped,
        events_written: 0,
        names: Default::default(),
    };
    log::info!("final counters: {}", serde_json::to_string(&stats)?);
    // If the writer is gone these sends fail; its own error is returned below.
    let _ = tx.send(Msg::Record(Record::ObserverStop(stats))).await;
    drop(tx);
    let written = writer
        .join()
        .map_err(|_| anyhow::anyhow!("writer thread panicked"));
    // The final checkpoint is committed: sinks get a bounded time to
    // deliver everything, then stop.
    if let Some(sinks) = sinks {
        let flush = Duration::from_millis(cfg.forwarding.flush_timeout_ms);
        tokio::task::spawn_blocking(move || sinks.finish(flush)).await?;
    }
    if let Some(m) = metrics {
        m.abort();
    }
    let written = written??;
    log::info!(
        message_id = crate::service::journal::message_id::STOPPED,
        kernel_records = read,
        records_written = written;
        "read {read} kernel records, wrote {written} records"
    );
    Ok(())
}

/// Raises the soft limit on open files to the hard one: the store, the
/// probes' maps and links, sinks, the control socket and the metrics
/// endpoint all hold descriptors, and the soft default (often 1024) is
/// the first to run out. A failure is logged: the daemon runs either way.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid resource and a valid out pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        log::warn!("reading RLIMIT_NOFILE: {}", std::io::Error::last_os_error());
        return;
    }
    if lim.rlim_cur >= lim.rlim_max {
        return;
    }
    let soft = lim.rlim_cur;
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: a valid resource and a valid rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        log::warn!(
            "raising RLIMIT_NOFILE from {soft} to {}: {}",
            lim.rlim_max,
            std::io::Error::last_os_error()
        );
    } else {
        log::info!("open files limit raised from {soft} to {}", lim.rlim_max);
    }
}

/// The policy set at start: the policy directory if configured and present
/// (an error in it stops the start), else the built-in set, so shadow-AI
/// detection is on without any setup. A configured directory that appears
/// later is loaded by the reloader.
fn load_policy(cfg: &Config) -> anyhow::Result<Policy> {
    let fallback = || {
        if cfg.builtin_policies {
            Policy::builtin(&cfg.agents).context("loading the built-in policy set")
        } else {
            Ok(Policy::from_config(&cfg.agents))
        }
    };
    match &cfg.policies_dir {
        Some(dir) if dir.exists() => Policy::load(dir, &cfg.agents)
            .with_context(|| format!("loading policies from {}", dir.display())),
        Some(dir) => {
            log::warn!(
                "policies_dir {} does not exist: the {} policy set is in force until it appears",
                dir.display(),
                if cfg.builtin_policies {
                    "built-in"
                } else {
                    "config-only"
                }
            );
            fallback()
        }
        None => fallback(),
    }
}

/// What the kernel filters must hold: observer.toml's `[files]` and
/// `[watch]` lists plus the policy's interest.
fn kernel_filters(cfg: &Config, interest: &KernelInterest) -> FilterSet {
    let m = interest.merged(
        &cfg.files.prefixes,
        &cfg.files.suffixes,
        &cfg.watch.executables,
    );
    FilterSet {
        prefixes: m.prefixes,
        suffixes: m.suffixes,
        watched_executables: m.watched_executables,
    }
}

/// The kernel's path filters, updated on every accepted reload.
struct KernelFilters {
    filters: PathFilters,
    files_prefixes: Vec<String>,
    files_suffixes: Vec<String>,
    watched: Vec<String>,
}

impl KernelPush for KernelFilters {
    fn push(&mut self, interest: &KernelInterest) -> Result<(), String> {
        let m = interest.merged(&self.files_prefixes, &self.files_suffixes, &self.watched);
        self.filters
            .apply(&FilterSet {
                prefixes: m.prefixes,
                suffixes: m.suffixes,
                watched_executables: m.watched_executables,
            })
            .map_err(|e| e.to_string())
    }
}

/// SIGTERM and SIGINT, caught from when `install` ran.
struct ShutdownSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn install() -> std::io::Result<ShutdownSignals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(ShutdownSignals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Returns at the first of them, including one that came before.
    async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

fn open_output(events: &EventsOutput) -> anyhow::Result<Option<Box<dyn Write + Send>>> {
    Ok(match events {
        EventsOutput::None => None,
        EventsOutput::Stdout => Some(Box::new(std::io::stdout())),
        EventsOutput::Live { colour } => Some(Box::new(crate::live_view::LiveWriter::new(
            std::io::stdout(),
            crate::live_view::Style::local(*colour),
        ))),
        // 0600: the records hold every user's command lines and paths.
        EventsOutput::File(path) => Some(Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("opening events output {}", path.display()))?,
        )),
    })
}
