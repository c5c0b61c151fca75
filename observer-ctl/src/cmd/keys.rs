//! `keys show`, `keys export` (JWK Set, or the master JWK to pin) and
//! `keys rotate` (asks the running daemon).
use std::io::Write;

use super::common::Ctx;
use crate::{cli::KeysCommand, keys, open_store, output, CtlError, Output};

pub fn run(ctx: &Ctx, command: KeysCommand, out: &mut impl Write) -> Result<(), CtlError> {
    let mode = ctx.mode;
    match command {
        KeysCommand::Show => {
            let store = open_store(&ctx.paths.db)?;
            output::write_list(
                out,
                mode,
                "keys",
                &keys::show(&store)?,
                &[
                    ("KID", |r| output::s(r, &["kid"])),
                    ("AGENT", |r| output::s(r, &["agent_id"])),
                    ("MASTER", |r| output::s(r, &["master"])),
                    ("GEN", |r| output::s(r, &["generation"])),
                    ("STATUS", |r| output::s(r, &["status"])),
                    ("ISSUER_ID", |r| output::s(r, &["issuer_id"])),
                ],
            )
        }
        KeysCommand::Rotate { reason } => {
            let v = keys::rotate(&ctx.socket, reason.as_deref())?;
            keys::print_rotation(out, mode, &v)
        }
        KeysCommand::Export { master } => {
            let store = open_store(&ctx.paths.db)?;
            let v = if master {
                keys::master_jwk(&store)?
            } else {
                keys::jwks(&store)?
            };
            // A JWK (Set) is JSON whatever the output mode.
            output::write_json(
                out,
                if mode == Output::Jsonl {
                    mode
                } else {
                    Output::Json
                },
                &v,
            )
        }
    }
}
