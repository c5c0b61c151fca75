//! One file per command: each turns its arguments into calls of the
//! libraries (this crate's command modules over observer-receipts and the
//! daemon's library) and writes the result; [`run`] dispatches the parsed
//! command line to it. `common` holds what they share.
mod agents;
mod audit_pack;
mod common;
mod doctor;
mod erase;
mod export;
mod fleet;
mod fleet_query;
mod keys;
mod mcp;
mod policy;
mod proof;
mod receipts;
mod shadow;
mod stats;
mod status;
mod tail;
mod usage;
mod verify;
mod verify_proof;

use std::io::Write;

use crate::{
    cli::{Cli, Command, EXIT_OK},
    CtlError,
};
use common::Ctx;

/// Runs the command `cli` names, writing to `out`; returns the exit status.
pub fn run(cli: Cli, out: &mut impl Write) -> Result<u8, CtlError> {
    let ctx = Ctx::new(&cli)?;
    let ok = |()| EXIT_OK;
    match cli.command {
        Command::Status => status::run(&ctx, out).map(ok),
        Command::Agents { tree } => agents::run(&ctx, tree, out).map(ok),
        Command::Doctor => doctor::run(&ctx, out),
        Command::Policy(command) => policy::run(&ctx, command, out).map(ok),
        Command::Receipts { show, filter } => receipts::run(&ctx, show, filter, out).map(ok),
        Command::Tail {
            follow,
            lines,
            filter,
        } => tail::run(&ctx, follow, lines, filter, out).map(ok),
        Command::Shadow { window } => shadow::run(&ctx, window, out).map(ok),
        Command::Usage { agent, window } => usage::run(&ctx, agent, window, out).map(ok),
        Command::Mcp { agent, window } => mcp::run(&ctx, agent, window, out).map(ok),
        Command::Stats { selection, top } => stats::run(&ctx, selection, top, out).map(ok),
        Command::Verify(args) => verify::run(&ctx, args, out),
        Command::Proof {
            receipt,
            out: file,
            mode,
        } => proof::run(&ctx, &receipt, file, mode, out).map(ok),
        Command::VerifyProof { file, pubkey } => verify_proof::run(&ctx, &file, &pubkey, out),
        Command::AuditPack(command) => audit_pack::run(&ctx, command, out),
        Command::Keys(command) => keys::run(&ctx, command, out).map(ok),
        Command::Export(args) => export::run(&ctx, args, out).map(ok),
        Command::Erase {
            receipt,
            reason,
            master_seed,
        } => erase::run(&ctx, &receipt, &reason, master_seed.as_deref(), out).map(ok),
        Command::Fleet(command) => fleet::run(&ctx, command, out),
    }
}
