//! What the daemon shares with the control socket's handlers, and how a
//! handler asks the writer thread. Its own file so the server and its
//! handlers (status, query, follow) use it without importing each other.
use std::{
    collections::VecDeque,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::{
    pipeline::inbox::{Ask, Msg, WriterQuestion},
    service::metrics::Sources,
};

/// What the daemon shares with the control socket.
pub struct State {
    pub started: SystemTime,
    pub started_at: Instant,
    pub probes: Vec<String>,
    /// The counters the metrics endpoint reports, reused as they are.
    pub sources: Arc<Sources>,
    /// The writer thread's channel, for [`Query`]; taken at shutdown so
    /// the writer sees its channel close once the daemon drops its own.
    pub writer: Mutex<Option<mpsc::Sender<Msg>>>,
    /// (when, kernel events emitted so far), one sample a second, the last
    /// ten seconds: events/s over that window.
    pub samples: Mutex<VecDeque<(Instant, u64)>>,
    /// The master seed file, when receipts are enabled (`keys_rotate`).
    pub master_seed: Option<PathBuf>,
    /// One rotation at a time.
    pub rotating: Arc<tokio::sync::Mutex<()>>,
    /// The deployer id in force and how it was chosen
    /// ([`crate::deployer::DeployerId::to_json`]); null without receipts.
    pub identity: Value,
    /// Streamed answers (`receipts`, `follow`): followers, drops, lags.
    pub streams: super::wire::StreamCounters,
    /// Whose TLS plaintext is read; None when `[plaintext]` is off.
    pub plaintext: Option<Arc<crate::stream::visibility::PlaintextVisibility>>,
}

impl State {
    /// Asks the writer thread, waiting at most `timeout` (it may be busy
    /// with a backlog of events).
    /// The outer error: no answer; the inner one: the writer's answer.
    pub async fn ask(&self, ask: Ask, timeout: Duration) -> Result<Result<Value, String>, String> {
        let (reply, answer) = oneshot::channel();
        let writer = self.writer.lock().ok().and_then(|w| w.clone());
        let Some(writer) = writer else {
            return Err("the daemon is shutting down".into());
        };
        let send = writer.send(Msg::Control(WriterQuestion { ask, reply }));
        match tokio::time::timeout(timeout, send).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err("the event writer has stopped".into()),
            Err(_) => return Err("the event writer is busy (its queue is full)".into()),
        }
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(a)) => Ok(a),
            Ok(Err(_)) => Err("the event writer has stopped".into()),
            Err(_) => Err("the event writer did not answer in time".into()),
        }
    }
}
