//! `erase`: a receipt's context erased, recorded by an observer.policy
//! receipt (offline only).
use std::io::Write;

use super::common::Ctx;
use crate::{erase, load_master_seed, open_store, output, resolve_receipt, CtlError};

pub fn run(
    ctx: &Ctx,
    receipt: &str,
    reason: &str,
    master_seed: Option<&std::path::Path>,
    out: &mut impl Write,
) -> Result<(), CtlError> {
    let p = &ctx.paths;
    let hash = resolve_receipt(&open_store(&p.db)?, receipt)?;
    let seed = load_master_seed(master_seed.unwrap_or(&p.master_seed))?;
    let v = erase::erase(&p.db, &hash, seed, reason)?;
    if ctx.mode.is_json() {
        output::write_json(out, ctx.mode, &v)?;
    } else {
        writeln!(
            out,
            "erased the context of {}; recorded by observer.policy receipt {}",
            v["erased"].as_str().unwrap_or_default(),
            v["erasure_receipt"].as_str().unwrap_or_default()
        )?;
    }
    Ok(())
}
