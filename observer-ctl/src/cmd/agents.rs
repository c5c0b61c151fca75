//! `agents`: the agent chains of the store; `agents tree PID` asks the
//! daemon for a process tree.
use std::io::Write;

use super::common::Ctx;
use crate::{agents, cli::AgentsCommand, daemon, open_store, CtlError};

pub fn run(ctx: &Ctx, tree: Option<AgentsCommand>, out: &mut impl Write) -> Result<(), CtlError> {
    match tree {
        Some(AgentsCommand::Tree { pid }) => {
            let v = daemon::tree(&ctx.socket, pid)?;
            daemon::print_tree(out, ctx.mode, &v)
        }
        None => {
            let store = open_store(&ctx.paths.db)?;
            agents::print_agents(out, ctx.mode, &agents::agents(&store)?)
        }
    }
}
