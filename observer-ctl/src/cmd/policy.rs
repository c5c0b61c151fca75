//! `policy check DIR` (offline) and `policy show` (the daemon's set).
use std::io::Write;

use super::common::Ctx;
use crate::{cli::PolicyCommand, policy, CtlError};

pub fn run(ctx: &Ctx, command: PolicyCommand, out: &mut impl Write) -> Result<(), CtlError> {
    match command {
        PolicyCommand::Check { dir } => {
            let v = policy::check(&dir, &ctx.config)?;
            policy::print_check(out, ctx.mode, &v)
        }
        PolicyCommand::Show => {
            let v = policy::show(&ctx.socket, &ctx.config)?;
            policy::print_show(out, ctx.mode, &v)
        }
    }
}
