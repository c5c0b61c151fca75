//! `export`: the receipts matching the filters, in log order, one JSON
//! object per line in a forwarding format of `observer_daemon::export` (`ocsf`,
//! `cloudevents`, or `jsonl` = the `receipt` format: signed envelope and
//! context). Rows stream from one read transaction (a consistent snapshot
//! that never blocks the daemon's writer) straight to the output: memory
//! does not grow with the store. Without content filters (agent, action,
//! risk, chain, pid, exe) the signed checkpoints go with the receipts, each
//! right after the receipt that completes it, as the forwarding stream
//! places them: a receiver holding them detects a truncated log. Records
//! are formatted on every core and written in order (`export_order`).
use std::{
    io::{BufWriter, Write},
    path::{Path, PathBuf},
};

use serde_json::{json, Value};

use super::{direct_file::DirectFile, export_order, progress::Progress, receipts::Query, CtlError};
use observer_receipts::{
    export::{stored, Format, Item, ReceiptItem},
    store::Store,
};

/// What one export wrote.
#[derive(Debug, Default)]
pub struct Summary {
    pub receipts: u64,
    pub checkpoints: u64,
}

impl Summary {
    pub fn to_json(&self, format: Format, out: Option<&Path>) -> Value {
        json!({
            "format": format_name(format),
            "receipts": self.receipts,
            "checkpoints": self.checkpoints,
            "out": out,
        })
    }
}

/// The name `--format` takes for `format`.
pub fn format_name(format: Format) -> &'static str {
    match format {
        Format::Receipt => "jsonl",
        other => other.as_str(),
    }
}

/// How many receipts `q` matches (the progress bar's total).
pub fn count(store: &Store, q: &Query) -> Result<u64, CtlError> {
    Ok(stored::count(store, q)?)
}

/// Writes the export of `q` in `format` to `out`, one record per line.
pub fn write(
    store: &Store,
    q: &Query,
    format: Format,
    out: &mut impl Write,
    progress: &mut Progress,
) -> Result<Summary, CtlError> {
    let mut summary = Summary::default();
    export_order::run(out, format, progress, |sink| {
        stored::read_export(
            store,
            q,
            &mut CountingSink {
                sink,
                summary: &mut summary,
            },
        )
    })?;
    out.flush()?;
    Ok(summary)
}

/// The formatting pipeline's input, counting what goes through it.
struct CountingSink<'a, 's, W: Write> {
    sink: &'a mut export_order::Sink<'s, W>,
    summary: &'a mut Summary,
}

impl<W: Write> stored::ExportSink for CountingSink<'_, '_, W> {
    type Error = CtlError;

    fn spare_receipt(&mut self) -> ReceiptItem {
        self.sink.spent_receipt().unwrap_or_default()
    }

    fn push(&mut self, item: Item) -> Result<(), CtlError> {
        match item {
            Item::Receipt(_) => self.summary.receipts += 1,
            Item::Checkpoint(_) => self.summary.checkpoints += 1,
        }
        self.sink.push(item)
    }
}

/// Grows the pipe on stdout, when it is one, to 1 MiB (the default limit
/// for an unprivileged process). A pipe holds 64 KiB by default, so the
/// export's 1 MiB writes stopped every 64 KiB until the reader had caught
/// up, a pair of context switches each time; with room for a whole write
/// both sides run at once. Anything else on stdout refuses the call and is
/// left as it is.
pub fn widen_stdout_pipe() {
    let _ = nix::fcntl::fcntl(
        libc::STDOUT_FILENO,
        nix::fcntl::FcntlArg::F_SETPIPE_SZ(1 << 20),
    );
}

/// Writes the export to `path` atomically: into `<path>.tmp` (around the
/// page cache where the file system allows, `direct_file`), fsynced,
/// renamed over `path`, the directory fsynced. A failed export leaves no
/// partial file under `path` (and removes the temporary one). The file gets
/// exactly `mode` (0600 unless `--mode` says otherwise: an export is a copy
/// of the 0600 store), and the temporary is created anew, never through a
/// link planted at its name.
pub fn write_file(
    store: &Store,
    q: &Query,
    format: Format,
    path: &Path,
    mode: u32,
    progress: &mut Progress,
) -> Result<Summary, CtlError> {
    let tmp = temporary_name(path);
    let result = write_tmp(store, q, format, path, &tmp, mode, progress);
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `<path>.tmp`, where an output is written before it is renamed into place.
fn temporary_name(path: &Path) -> PathBuf {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    PathBuf::from(tmp_name)
}

/// Writes `bytes` (a proof, an audit pack) to `path` the way an export is
/// written: a new temporary of exactly `mode`, fsynced, renamed into place.
pub fn write_bytes(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CtlError> {
    let tmp = temporary_name(path);
    let result = (|| {
        let mut file =
            observer_daemon::trust::create_output_file(&tmp, mode, nix::fcntl::OFlag::empty())
                .map_err(|e| CtlError::Io(e.to_string()))?;
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| io_err("writing", &tmp, e))?;
        rename_into_place(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn rename_into_place(tmp: &Path, path: &Path) -> Result<(), CtlError> {
    std::fs::rename(tmp, path).map_err(|e| io_err("renaming to", path, e))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err("syncing directory", dir, e))
}

fn io_err(what: &str, p: &Path, e: std::io::Error) -> CtlError {
    CtlError::Io(format!("{what} {}: {e}", p.display()))
}

/// Writes and syncs `tmp`, renames it to `path`, syncs the directory.
fn write_tmp(
    store: &Store,
    q: &Query,
    format: Format,
    path: &Path,
    tmp: &Path,
    mode: u32,
    progress: &mut Progress,
) -> Result<Summary, CtlError> {
    let direct = DirectFile::create(tmp, mode)?;
    let (summary, file) = match direct {
        Some(mut direct) => {
            let summary = write(store, q, format, &mut direct, progress)?;
            let file = direct.finish().map_err(|e| io_err("writing", tmp, e))?;
            (summary, file)
        }
        None => {
            let file =
                observer_daemon::trust::create_output_file(tmp, mode, nix::fcntl::OFlag::empty())
                    .map_err(|e| CtlError::Io(e.to_string()))?;
            let mut w = BufWriter::with_capacity(1 << 20, file);
            let summary = write(store, q, format, &mut w, progress)?;
            let file = w
                .into_inner()
                .map_err(|e| io_err("writing", tmp, e.into_error()))?;
            (summary, file)
        }
    };
    file.sync_all().map_err(|e| io_err("syncing", tmp, e))?;
    rename_into_place(tmp, path)?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use observer_receipts::store::NewReceipt;

    /// Rows whose contexts and strings differ in length and presence from
    /// one row to the next: read into recycled records, each must come
    /// out as stored, with no byte of an earlier row (an erased context
    /// must stay erased).
    #[test]
    fn recycled_records_carry_only_their_own_row() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("observer.db")).unwrap();
        let rows = 3000u64;
        let hash = |i: u64| {
            let mut h = [0xa5u8; 32];
            h[..8].copy_from_slice(&i.to_le_bytes());
            h
        };
        let envelope = |i: u64| {
            format!(
                r#"{{"payload":{{"seq":{i},"pad":"{}"}}}}"#,
                "p".repeat((i % 7 * 300) as usize)
            )
        };
        let context = |i: u64| {
            (!i.is_multiple_of(3)).then(|| {
                format!(
                    r#"{{"n":{i},"pad":"{}"}}"#,
                    "c".repeat((i % 5 * 400) as usize)
                )
            })
        };
        store
            .transaction(|batch| {
                for i in 0..rows {
                    let context = context(i);
                    batch.insert_receipt(&NewReceipt {
                        leaf_index: i,
                        receipt_hash: &hash(i),
                        issuer_id: &format!("issuer-{}", "i".repeat((i % 4) as usize)),
                        seq: i,
                        agent_id: &format!("agent-{}", i % 11),
                        action_type: if i % 2 == 0 {
                            "process.exec"
                        } else {
                            "file.open"
                        },
                        unix_ns: i,
                        risk_class: ["low", "medium", "high"][(i % 3) as usize],
                        envelope: envelope(i).as_bytes(),
                        context: context.as_deref().map(str::as_bytes),
                    })?;
                }
                Ok(())
            })
            .unwrap();
        let mut out = Vec::new();
        let mut progress = Progress::new("export", rows, false);
        let summary = write(
            &store,
            &Query::default(),
            Format::Receipt,
            &mut out,
            &mut progress,
        )
        .unwrap();
        assert_eq!(summary.receipts, rows);
        let lines: Vec<Value> = out
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(lines.len() as u64, rows);
        for (i, line) in (0..rows).zip(&lines) {
            assert_eq!(line["log_index"], i, "{line}");
            assert_eq!(line["receipt_hash"], hex::encode(hash(i)), "row {i}");
            let stored: Value = serde_json::from_str(&envelope(i)).unwrap();
            assert_eq!(line["receipt"], stored, "row {i}");
            let stored_context =
                context(i).map_or(Value::Null, |c| serde_json::from_str(&c).unwrap());
            assert_eq!(line["context"], stored_context, "row {i}");
        }
    }
}
