//! `export`: the matching receipts (and, without content filters, the
//! signed checkpoints) in log order, to stdout or atomically to a file.
use std::io::Write;

use observer_receipts::export::Format;

use super::common::{query_of, Ctx};
use crate::{
    cli::{ExportArgs, ExportFormat},
    export, open_store, output, progress, CtlError,
};

pub fn run(ctx: &Ctx, args: ExportArgs, out: &mut impl Write) -> Result<(), CtlError> {
    let format = match args.format {
        ExportFormat::Ocsf => Format::Ocsf,
        ExportFormat::Cloudevents => Format::Cloudevents,
        ExportFormat::Jsonl => Format::Receipt,
    };
    let q = query_of(args.selection, None)?;
    let store = open_store(&ctx.paths.db)?;
    let show = progress::wanted(ctx.mode);
    let total = if show { export::count(&store, &q)? } else { 0 };
    let mut bar = progress::Progress::new("receipts exported", total, show);
    match &args.out {
        Some(file) => {
            let summary = export::write_file(&store, &q, format, file, args.mode, &mut bar)?;
            bar.finish();
            let v = summary.to_json(format, Some(file.as_path()));
            if ctx.mode.is_json() {
                output::write_json(out, ctx.mode, &v)?;
            } else {
                writeln!(
                    out,
                    "{}: {} receipts and {} checkpoints ({})",
                    file.display(),
                    summary.receipts,
                    summary.checkpoints,
                    export::format_name(format)
                )?;
            }
        }
        // The records are the output, whatever the output mode.
        None => {
            export::widen_stdout_pipe();
            // No BufWriter: the export writes whole batches of lines, which
            // the locked stdout passes to write(2) as they are; a buffer
            // would only copy them once more.
            export::write(&store, &q, format, &mut *out, &mut bar)?;
        }
    }
    Ok(())
}
