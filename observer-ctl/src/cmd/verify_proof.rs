//! `verify-proof`: a proof file checked offline with only the pinned
//! master public key.
use std::{io::Write, path::Path};

use observer_receipts::verify::proof::verify_proof;

use super::common::{print_verdict, read_file, verdict, Ctx};
use crate::{read_pubkey, CtlError};

/// The exit status: a proof that does not verify is
/// [`crate::cli::EXIT_VERIFY_FAILED`].
pub fn run(ctx: &Ctx, file: &Path, pubkey: &Path, out: &mut impl Write) -> Result<u8, CtlError> {
    let master = read_pubkey(pubkey)?;
    let text = String::from_utf8_lossy(&read_file(file)?).into_owned();
    let report = verify_proof(&text, &master);
    print_verdict(out, ctx.mode, &report.to_json(), "proof")?;
    Ok(verdict(report.ok))
}
