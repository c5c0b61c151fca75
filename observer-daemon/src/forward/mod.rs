//! Forwarding: the receipt store is the spool. Each configured sink runs
//! on its own thread with its own read-only connection and durable cursor
//! (`<cursor_dir>/<name>.cursor`), so a slow or dead receiver never slows
//! capture, the receipt writer, or another sink.
use std::{
    path::{Path, PathBuf},
    sync::{atomic::AtomicU8, atomic::Ordering, Arc},
    thread::JoinHandle,
    time::{Duration, Instant},
};

pub mod backoff;
pub mod clickhouse;
pub mod config;
pub mod counters;
pub mod cursor;
pub mod file;
pub mod filter;
pub mod http;
pub mod pipeline;
pub mod runner;
pub mod sink;
pub mod spool;
pub mod supervise;
pub mod syslog;
pub mod tls;
pub mod transport;
pub mod validate;

use config::{ForwardingSection, SinkEntry, SinkType, SyslogTransport};
use counters::SinkCounters;
use runner::{Runner, DRAINING, STOP};
use sink::Sink;

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("sink {sink}: {message}")]
    Setup { sink: String, message: String },
    #[error("starting sink {sink}: {source}")]
    Spawn {
        sink: String,
        source: std::io::Error,
    },
}

/// A running sink, as metrics and the stop path see it.
pub struct SinkHandle {
    pub name: String,
    pub kind: SinkType,
    pub counters: Arc<SinkCounters>,
    thread: Option<JoinHandle<()>>,
}

pub struct Sinks {
    pub sinks: Vec<SinkHandle>,
    phase: Arc<AtomicU8>,
}

/// The cursor directory: configured, or `sinks/` beside the store.
pub fn cursor_dir(section: &ForwardingSection, store: &Path) -> PathBuf {
    section
        .cursor_dir
        .clone()
        .unwrap_or_else(|| store.parent().unwrap_or(Path::new(".")).join("sinks"))
}

/// What a sink is built with besides its `[[sinks]]` entry.
#[derive(Debug, Clone)]
pub struct Host {
    /// The host name syslog and HEC records carry.
    pub hostname: String,
    /// The log's origin (`<deployer_id>/host/<hostname>`, the first line
    /// of its checkpoints): the host of every ClickHouse row.
    pub origin: String,
    /// The receipt store (the clickhouse sink reads announced keys there).
    pub store: PathBuf,
}

fn build(entry: &SinkEntry, host: &Host) -> Result<Box<dyn Sink>, String> {
    let hostname = host.hostname.as_str();
    let tls_for = |t: &config::TlsConfig| tls::client_config(t).map_err(|e| e.to_string());
    Ok(match entry.kind {
        SinkType::Syslog => {
            let s = entry.syslog.clone().ok_or("missing [sinks.syslog]")?;
            let tls = match s.transport {
                SyslogTransport::Tls => Some(tls_for(&s.tls)?),
                _ => None,
            };
            let msg = syslog::MessageContext {
                facility: syslog::facility_code(&s.facility).ok_or("unknown facility")?,
                hostname: hostname.to_string(),
                app_name: s.app_name.clone(),
                procid: std::process::id().to_string(),
                format: entry.format,
            };
            Box::new(syslog::SyslogSink::new(s, msg, tls))
        }
        SinkType::Http => {
            let h = entry.http.clone().ok_or("missing [sinks.http]")?;
            let token = match &h.token_file {
                Some(p) => Some(read_secret("token_file", p)?),
                None => None,
            };
            let url = http::Url::parse(&h.url)?;
            let proxy = http::proxy::select(&url, h.proxy.as_deref(), |k| std::env::var(k).ok())?;
            let tls = if h.url.starts_with("https://") {
                Some(tls_for(&h.tls)?)
            } else {
                None
            };
            Box::new(http::HttpSink::new(
                h,
                entry.format,
                token,
                tls,
                hostname.to_string(),
                proxy,
            )?)
        }
        SinkType::File => {
            let f = entry.file.clone().ok_or("missing [sinks.file]")?;
            Box::new(file::FileSink::new(f, entry.format))
        }
        SinkType::Clickhouse => {
            let c = entry
                .clickhouse
                .clone()
                .ok_or("missing [sinks.clickhouse]")?;
            let password = match &c.password_file {
                Some(p) => Some(read_secret("password_file", p)?),
                None => None,
            };
            let url = http::Url::parse(&c.url)?;
            let proxy = http::proxy::select(&url, c.proxy.as_deref(), |k| std::env::var(k).ok())?;
            let tls = if url.https {
                Some(tls_for(&c.tls)?)
            } else {
                None
            };
            Box::new(clickhouse::ClickHouseSink::new(
                &c,
                host.origin.clone(),
                password,
                tls,
                proxy,
                host.store.clone(),
                clickhouse::Window {
                    batch_max: entry.batch_max(),
                    max_unconfirmed: entry.max_unconfirmed,
                },
            )?)
        }
    })
}

/// The secret (token or password) in `path`, the `key` naming it; refused
/// when group or others may read the file (anyone who can read it can
/// impersonate this host to the receiver). Errors never show the secret.
pub fn read_secret(key: &str, path: &Path) -> Result<String, String> {
    use std::os::unix::fs::MetadataExt;
    let file = std::fs::File::open(path).map_err(|e| format!("{key} {}: {e}", path.display()))?;
    let mode = file
        .metadata()
        .map_err(|e| format!("{key} {}: {e}", path.display()))?
        .mode();
    if mode & 0o044 != 0 {
        return Err(format!(
            "{key} {}: mode {:04o} lets group or others read it; chmod 600 it",
            path.display(),
            mode & 0o7777
        ));
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut &file, &mut text)
        .map_err(|e| format!("{key} {}: {e}", path.display()))?;
    Ok(text.trim().to_string())
}

impl Sinks {
    /// Starts every sink. Files they need (token, certificates) are read
    /// now, so a mistake stops the daemon at start with its name.
    pub fn start(
        entries: &[SinkEntry],
        section: &ForwardingSection,
        host: &Host,
    ) -> Result<Sinks, ForwardError> {
        let store = host.store.as_path();
        let phase = Arc::new(AtomicU8::new(runner::RUNNING));
        let dir = cursor_dir(section, store);
        let mut sinks = Vec::new();
        for entry in entries {
            let sink = build(entry, host).map_err(|message| ForwardError::Setup {
                sink: entry.name.clone(),
                message,
            })?;
            let counters = Arc::new(SinkCounters::default());
            let mut runner = Runner {
                name: entry.name.clone(),
                store: store.to_owned(),
                cursor: cursor::Cursor::new(&dir, &entry.name),
                filter: filter::Filter::new(entry.filter.clone()),
                batch_max: entry.batch_max(),
                max_unconfirmed: entry.max_unconfirmed,
                backoff: backoff::Backoff::new(
                    Duration::from_millis(entry.retry_initial_ms),
                    Duration::from_millis(entry.retry_max_ms),
                ),
                poll: Duration::from_millis(section.poll_interval_ms),
                counters: counters.clone(),
                phase: phase.clone(),
            };
            let supervisor = supervise::Supervised {
                name: entry.name.clone(),
                phase: phase.clone(),
                counters: counters.clone(),
                backoff: backoff::Backoff::new(
                    Duration::from_millis(entry.retry_initial_ms),
                    Duration::from_millis(entry.retry_max_ms),
                ),
                healthy_after: Duration::from_millis(entry.retry_max_ms),
            };
            let (rebuild_entry, rebuild_host) = (entry.clone(), host.clone());
            let thread = std::thread::Builder::new()
                .name(format!("sink-{}", entry.name))
                .spawn(move || {
                    supervisor.run(
                        sink,
                        |s| runner.run(s),
                        || build(&rebuild_entry, &rebuild_host),
                    );
                })
                .map_err(|source| ForwardError::Spawn {
                    sink: entry.name.clone(),
                    source,
                })?;
            sinks.push(SinkHandle {
                name: entry.name.clone(),
                kind: entry.kind,
                counters,
                thread: Some(thread),
            });
        }
        Ok(Sinks { sinks, phase })
    }

    /// After the final checkpoint is committed: every sink delivers what
    /// is in the store, for at most `timeout`, then stops.
    pub fn finish(mut self, timeout: Duration) {
        self.phase.store(DRAINING, Ordering::Relaxed);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline
            && self
                .sinks
                .iter()
                .any(|s| s.thread.as_ref().is_some_and(|t| !t.is_finished()))
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.phase.store(STOP, Ordering::Relaxed);
        for s in &mut self.sinks {
            if let Some(t) = s.thread.take() {
                let _ = t.join();
            }
            let c = &s.counters;
            log::info!(
                "sink {}: delivered {}, backlog {}, retries {}, re-sent {}, errors {:?}",
                s.name,
                SinkCounters::get(&c.delivered),
                SinkCounters::get(&c.backlog),
                SinkCounters::get(&c.retries),
                SinkCounters::get(&c.resent),
                c.errors()
            );
        }
    }
}

impl Drop for Sinks {
    fn drop(&mut self) {
        self.phase.store(STOP, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_token_file_readable_by_group_or_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hec.token");
        std::fs::write(&path, "s3cret-token\n").unwrap();
        for mode in [0o644, 0o640, 0o604] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = read_secret("token_file", &path).unwrap_err();
            assert_eq!(
                e,
                format!(
                    "token_file {}: mode {mode:04o} lets group or others read it; chmod 600 it",
                    path.display()
                )
            );
            assert!(!e.contains("s3cret"));
        }
        for mode in [0o600, 0o400] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(read_secret("token_file", &path).unwrap(), "s3cret-token");
        }
    }
}
