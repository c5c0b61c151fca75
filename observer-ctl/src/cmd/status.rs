//! `status`: the running daemon's state, over its control socket.
use std::io::Write;

use super::common::Ctx;
use crate::{daemon, CtlError};

pub fn run(ctx: &Ctx, out: &mut impl Write) -> Result<(), CtlError> {
    let v = daemon::status(&ctx.socket)?;
    daemon::print_status(out, ctx.mode, &v)
}
