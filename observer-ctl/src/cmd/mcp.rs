//! `mcp`: MCP servers per agent, their tools and the calls made of them.
use std::io::Write;

use super::common::{window, Ctx};
use crate::{cli::Window, mcp, open_store, CtlError};

pub fn run(
    ctx: &Ctx,
    agent: Option<String>,
    w: Window,
    out: &mut impl Write,
) -> Result<(), CtlError> {
    let (since, until) = window(&w.since, &w.until)?;
    let store = open_store(&ctx.paths.db)?;
    let rows = mcp::tools(&store, since, until, agent.as_deref())?;
    mcp::print(out, ctx.mode, &rows)
}
