//! `shadow`: shadow_ai.finding receipts grouped.
use std::io::Write;

use super::common::{window, Ctx};
use crate::{agents, cli::Window, open_store, CtlError};

pub fn run(ctx: &Ctx, w: Window, out: &mut impl Write) -> Result<(), CtlError> {
    let (since, until) = window(&w.since, &w.until)?;
    let store = open_store(&ctx.paths.db)?;
    agents::print_shadow(out, ctx.mode, &agents::shadow(&store, since, until)?)
}
