//! `receipts` (the matching receipts, in time order) and `receipts show`
//! (one, with its context and verification).
use std::io::Write;

use super::common::{query_of, Ctx};
use crate::{
    cli::{Filter, ReceiptsCommand},
    follow, open_store, read_pubkey, receipts, resolve_receipt, CtlError,
};

pub fn run(
    ctx: &Ctx,
    show: Option<ReceiptsCommand>,
    filter: Filter,
    out: &mut impl Write,
) -> Result<(), CtlError> {
    match show {
        None => {
            let q = query_of(filter.selection, filter.limit)?;
            follow::receipts_command(&ctx.paths.db, &ctx.socket, &q, ctx.mode, out)
        }
        Some(ReceiptsCommand::Show { receipt, pubkey }) => {
            let pinned = pubkey.as_deref().map(read_pubkey).transpose()?;
            let store = open_store(&ctx.paths.db)?;
            let hash = resolve_receipt(&store, &receipt)?;
            let v = receipts::show(&store, &hash, pinned)?;
            receipts::print_show(out, ctx.mode, &v)
        }
    }
}
