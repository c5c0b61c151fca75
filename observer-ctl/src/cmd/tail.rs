//! `tail [-f]`: the latest matching receipts, then (with -f) every new one
//! as the daemon commits it.
use std::io::Write;

use super::common::{query_of, Ctx};
use crate::{cli::Filter, follow, CtlError};

pub fn run(
    ctx: &Ctx,
    follow: bool,
    lines: u64,
    filter: Filter,
    out: &mut impl Write,
) -> Result<(), CtlError> {
    let q = query_of(filter.selection, None)?;
    let lines = filter.limit.unwrap_or(lines);
    follow::tail_command(&ctx.paths.db, &ctx.socket, &q, lines, follow, ctx.mode, out)
}
