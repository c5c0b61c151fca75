//! `stats`: what happened on this host, over the selected receipts.
use std::io::Write;

use super::common::{query_of, Ctx};
use crate::{cli::Selection, open_store, stats, CtlError};

pub fn run(
    ctx: &Ctx,
    selection: Selection,
    top: usize,
    out: &mut impl Write,
) -> Result<(), CtlError> {
    let q = query_of(selection, None)?;
    let store = open_store(&ctx.paths.db)?;
    stats::print(out, ctx.mode, &stats::stats(&store, &q, top)?)
}
