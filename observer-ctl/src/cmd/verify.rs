//! `verify`: the whole store offline, under the pinned master key.
use std::io::Write;

use observer_daemon::receipt::{
    keys as receipt_keys, payload::now_unix_ns, rotation, verify::VerifyOptions,
};

use super::common::{read_file, verdict, window, Ctx};
use crate::{
    cli::VerifyArgs, load_master_seed, open_store, progress, read_pubkey, verify, CtlError,
};

/// The exit status: a failed verification is
/// [`crate::cli::EXIT_VERIFY_FAILED`].
pub fn run(ctx: &Ctx, args: VerifyArgs, out: &mut impl Write) -> Result<u8, CtlError> {
    let p = &ctx.paths;
    let (since_ns, _) = window(&args.since, &None)?;
    // Pinned: --pubkey; else the genesis master key the daemon wrote
    // beside the seed (after a rotation the seed derives a later master,
    // which cannot anchor the receipts before it); else the key the seed
    // derives (a store that never rotated).
    let genesis = match (&args.pubkey, &args.master_seed) {
        (None, None) => rotation::read_genesis_public(&p.master_seed)
            .map_err(|e| CtlError::Usage(format!("genesis master key: {e}")))?,
        _ => None,
    };
    let master_public_key = match (&args.pubkey, genesis, &args.master_seed) {
        (Some(path), ..) => read_pubkey(path)?,
        (None, Some(genesis), _) => genesis,
        (None, None, seed) => {
            let seed = load_master_seed(seed.as_ref().unwrap_or(&p.master_seed))?;
            receipt_keys::ChainKey::master_key(&seed)
                .public_key()
                .to_vec()
        }
    };
    let external_checkpoints = args
        .checkpoint
        .iter()
        .map(|c| {
            read_file(c).and_then(|b| {
                String::from_utf8(b)
                    .map_err(|_| CtlError::Usage(format!("checkpoint {}: not UTF-8", c.display())))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let store = open_store(&p.db)?;
    let (v, ok) = verify::run(
        &store,
        &VerifyOptions {
            master_public_key,
            now_unix_ns: now_unix_ns(),
            external_checkpoints,
            independent: args.independent,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        },
        &verify::Scope {
            since_ns,
            chain: args.chain,
        },
        progress::wanted(ctx.mode),
    )?;
    verify::print(out, ctx.mode, &p.db, &v)?;
    Ok(verdict(ok))
}
