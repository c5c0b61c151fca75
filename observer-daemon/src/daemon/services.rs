//! The daemon's services around the pipeline: the control socket, the
//! sinks that forward the receipt store, and the metrics endpoint.
use std::{sync::Arc, time::SystemTime};

use tokio::sync::{mpsc, watch};

use super::receipts_setup::host_name;
use crate::{
    config::Config,
    pipeline::{inbox::Msg, loss::Snapshot, receipts::Receipts},
};

/// Serves the control socket. A socket that cannot be bound is logged,
/// not fatal: capture matters more than the control channel.
pub(super) fn start_control(
    cfg: &Config,
    probes: Vec<String>,
    sources: Arc<crate::service::metrics::Sources>,
    identity: serde_json::Value,
    plaintext: Option<Arc<crate::stream::visibility::PlaintextVisibility>>,
    writer: mpsc::Sender<Msg>,
    stop: &watch::Sender<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    if !cfg.control.enabled {
        return None;
    }
    let bound = crate::control::server::bind(&cfg.control)
        .map_err(|e| log::error!("{e}; observerctl status and friends will not work"))
        .ok()?;
    let state = crate::control::state::State {
        started: SystemTime::now(),
        started_at: std::time::Instant::now(),
        probes,
        sources,
        writer: std::sync::Mutex::new(Some(writer)),
        samples: Default::default(),
        master_seed: cfg
            .receipts
            .enabled
            .then(|| cfg.receipts.master_seed.clone()),
        rotating: Default::default(),
        identity,
        streams: Default::default(),
        plaintext,
    };
    Some(tokio::spawn(crate::control::server::serve(
        bound,
        Arc::new(state),
        cfg.control.clone(),
        stop.subscribe(),
    )))
}

/// Starts the sinks (which read the receipt store) and binds the metrics
/// endpoint. The counters go to the metrics endpoint and the control socket.
pub(super) async fn start_forwarding(
    cfg: &Config,
    receipts: Option<&Receipts>,
    counters: &Arc<std::sync::Mutex<Option<Snapshot>>>,
    names: &crate::names::SharedCounters,
) -> anyhow::Result<(
    Option<crate::forward::Sinks>,
    Arc<crate::service::metrics::Sources>,
    Option<tokio::net::TcpListener>,
)> {
    let sinks = match receipts {
        Some(r) if !cfg.sinks.is_empty() => Some(crate::forward::Sinks::start(
            &cfg.sinks,
            &cfg.forwarding,
            &crate::forward::Host {
                hostname: host_name(cfg)?,
                origin: r.pipeline.origin(),
                store: r.store_path.clone(),
            },
        )?),
        None if !cfg.sinks.is_empty() => {
            anyhow::bail!("sinks forward receipts: they need receipts.enabled = true")
        }
        _ => None,
    };
    let feed = Arc::new(crate::receipt::feed::CommitFeed::default());
    if let Some(r) = receipts {
        let publish = feed.clone();
        let _ = r
            .pipeline
            .metrics()
            .on_commit
            .set(Box::new(move |first, end| publish.publish(first, end)));
    }
    let sources = Arc::new(crate::service::metrics::Sources {
        writer: receipts.map(|r| r.pipeline.metrics().clone()),
        feed,
        store: receipts.map(|r| r.store_path.clone()),
        sinks: sinks
            .iter()
            .flat_map(|s| s.sinks.iter())
            .map(|h| (h.name.clone(), h.kind, h.counters.clone()))
            .collect(),
        counters: counters.clone(),
        names: names.clone(),
        endpoint: Default::default(),
    });
    let listener = match &cfg.metrics.listen {
        Some(listen) => {
            let addr = crate::service::metrics::config::parse_listen(listen)?;
            let listener = crate::service::metrics::bind(addr).await?;
            log::info!("metrics on http://{addr}/metrics");
            Some(listener)
        }
        None => None,
    };
    Ok((sinks, sources, listener))
}
