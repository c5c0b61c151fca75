//! `usage`: LLM API requests and tokens per agent, provider and model.
use std::io::Write;

use super::common::{window, Ctx};
use crate::{cli::Window, open_store, usage, CtlError};

pub fn run(
    ctx: &Ctx,
    agent: Option<String>,
    w: Window,
    out: &mut impl Write,
) -> Result<(), CtlError> {
    let (since, until) = window(&w.since, &w.until)?;
    let store = open_store(&ctx.paths.db)?;
    let rows = usage::usage(&store, since, until, agent.as_deref())?;
    usage::print(out, ctx.mode, &rows)
}
