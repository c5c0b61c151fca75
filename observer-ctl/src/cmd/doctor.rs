//! `doctor`: the host's checks (no daemon needed).
use std::io::Write;

use super::common::Ctx;
use crate::{cli, doctor, CtlError};

/// The exit status: a failed check is [`cli::EXIT_DOCTOR_FAILED`].
pub fn run(ctx: &Ctx, out: &mut impl Write) -> Result<u8, CtlError> {
    let v = doctor::run(ctx.config_file.as_deref())?;
    doctor::print(out, ctx.mode, &v)?;
    Ok(if v["ok"] == true {
        cli::EXIT_OK
    } else {
        cli::EXIT_DOCTOR_FAILED
    })
}
