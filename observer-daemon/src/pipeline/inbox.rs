//! What the writer thread (the processor) receives: kernel events from the
//! reader, records, ticks, policy reloads, and the control socket's
//! questions and key rotations. Its own file so the reader, the control
//! socket and the processor share it without importing each other.
use serde_json::Value;
use tokio::sync::oneshot;

use crate::{
    enrich::process_table::ProcessTable,
    event::{Event, Header},
    policy::{Policy, PolicyUpdate},
    receipt::{chain::Rotation, keys::MasterSeed, merkle::Hash},
    record::{Detail, Record},
};

/// What flows from the reader and the control tasks to the writer.
pub enum Msg {
    Event(Event),
    /// What the stream layer made of a watched process's plaintext (an
    /// LLM API call): enriched and attributed like a kernel event of the
    /// process in `header`.
    Stream(StreamRecord),
    Record(Record),
    /// Time passes: lets the writer stage close time windows (folded file
    /// opens) while no events arrive.
    Tick,
    /// The outcome of a policy reload.
    Policy(PolicyUpdate),
    /// A control socket question about the writer's state.
    Control(WriterQuestion),
    /// `observerctl keys rotate`: rotate the master key, in order with the
    /// drafts before it.
    Rotate(RotateRequest),
}

/// What the writer thread answers: it owns the process table and the
/// policy in force.
pub enum Ask {
    ProcessTree { pid: u32 },
    Policy,
}

/// A question for the writer thread, sent through its channel.
pub struct WriterQuestion {
    pub ask: Ask,
    pub reply: oneshot::Sender<Result<Value, String>>,
}

impl WriterQuestion {
    /// Runs on the writer thread: cheap reads of its own state.
    pub fn answer(self, table: &ProcessTable, policy: &Policy) {
        let answer = match self.ask {
            Ask::ProcessTree { pid } => crate::control::tree::process_tree(table, pid),
            Ask::Policy => Ok(policy.summary()),
        };
        let _ = self.reply.send(answer);
    }
}

/// A master key rotation for the writer thread: the new seed (already in
/// `<seed>.next`) and the answer, the rotation's place and a receiver
/// told the rotation receipt's hash once it is committed.
pub struct RotateRequest {
    pub seed: MasterSeed,
    pub reason: Option<String>,
    #[allow(clippy::type_complexity)]
    pub reply: oneshot::Sender<Result<(Rotation, oneshot::Receiver<Hash>), String>>,
}

/// A record of the stream layer for the writer.
pub struct StreamRecord {
    pub header: Header,
    pub event: &'static str,
    pub detail: Detail,
}
