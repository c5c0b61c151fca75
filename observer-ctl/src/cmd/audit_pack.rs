//! `audit-pack export` (the signed pack of a time window) and `audit-pack
//! verify` (offline, with only the pinned master public key).
use std::io::Write;

use observer_daemon::receipt::{keys as receipt_keys, payload::now_unix_ns};
use observer_receipts::verify::audit_pack::verify_audit_pack;

use super::common::{print_verdict, read_file, verdict, Ctx};
use crate::{
    audit_pack, cli, cli::AuditPackCommand, export, load_master_seed, open_store, output,
    read_pubkey, time::parse_time, CtlError,
};

/// The exit status: a pack that does not verify is
/// [`cli::EXIT_VERIFY_FAILED`].
pub fn run(ctx: &Ctx, command: AuditPackCommand, out: &mut impl Write) -> Result<u8, CtlError> {
    match command {
        AuditPackCommand::Export {
            start,
            end,
            out: file,
            mode: file_mode,
            master_seed,
        } => {
            let now = now_unix_ns();
            let start = parse_time("--start", &start, now)?;
            let end = parse_time("--end", &end, now)?;
            let seed = load_master_seed(master_seed.as_ref().unwrap_or(&ctx.paths.master_seed))?;
            let master = receipt_keys::ChainKey::master_key(&seed);
            let store = open_store(&ctx.paths.db)?;
            let (bytes, summary) = audit_pack::export(&store, start, end, &master)?;
            export::write_bytes(&file, &bytes, file_mode)?;
            if ctx.mode.is_json() {
                output::write_json(out, ctx.mode, &summary)?;
            } else {
                writeln!(
                    out,
                    "{}: {} receipts in {} chains, {} checkpoints, {}",
                    file.display(),
                    summary["receipts"],
                    summary["chains"],
                    summary["checkpoints"],
                    summary["bundle_digest"].as_str().unwrap_or_default()
                )?;
            }
            Ok(cli::EXIT_OK)
        }
        AuditPackCommand::Verify { bundle, pubkey } => {
            let master = read_pubkey(&pubkey)?;
            let bytes = read_file(&bundle)?;
            let report = verify_audit_pack(&bytes, &master);
            print_verdict(out, ctx.mode, &report.to_json(), "audit pack")?;
            Ok(verdict(report.ok))
        }
    }
}
