//! `proof`: a receipt's inclusion proof against the latest checkpoint.
use std::{io::Write, path::PathBuf};

use serde_json::json;

use super::common::Ctx;
use crate::{export, open_store, output, proof, resolve_receipt, CtlError};

pub fn run(
    ctx: &Ctx,
    receipt: &str,
    file: Option<PathBuf>,
    file_mode: u32,
    out: &mut impl Write,
) -> Result<(), CtlError> {
    let store = open_store(&ctx.paths.db)?;
    let hash = resolve_receipt(&store, receipt)?;
    let text = proof::make_proof(&store, &hash)?;
    match file {
        Some(f) => {
            export::write_bytes(&f, text.as_bytes(), file_mode)?;
            if ctx.mode.is_json() {
                output::write_json(
                    out,
                    ctx.mode,
                    &json!({"receipt_hash": hex::encode(&hash), "out": f}),
                )?;
            }
        }
        None => out.write_all(text.as_bytes())?,
    }
    Ok(())
}
