//! `receipts` and `tail` through the daemon: `tail -f` always follows over
//! the control socket (the daemon streams each receipt as it is committed;
//! nothing polls the store), and a user who cannot open the root-only
//! store (a member of the socket's group, e.g. a SOC analyst) gets the
//! history from the daemon too. Root reads the store directly as before.
use std::{io::Write, path::Path, time::Duration};

use serde_json::{json, Value};

use super::{
    open_store,
    output::{self, Output},
    receipts::{self, Query},
    CtlError,
};
use observer_daemon::{
    control::{
        client::{self, Item},
        query::RemoteFilter,
    },
    live_view::{self, Style},
    receipt::store::Store,
};

/// Deadline for connecting and for the daemon's first answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The store opened directly, or None when this user cannot open it and
/// must ask the daemon. Root always reads the store itself (and gets its
/// errors as before).
fn direct_store(db: &Path) -> Result<Option<Store>, CtlError> {
    if nix::unistd::geteuid().is_root() || std::fs::File::open(db).is_ok() {
        return open_store(db).map(Some);
    }
    Ok(None)
}

/// Says which store could not be read when the daemon cannot help either:
/// refused by the socket stays a refusal (exit 5); a daemon that is not
/// running (or cannot answer) leaves the store's own error (exit 4), with
/// what the daemon said.
fn via_daemon(db: &Path, e: CtlError) -> CtlError {
    match e {
        CtlError::Denied(m) => CtlError::Denied(format!(
            "cannot open the receipt store {} (root-only), so asked the daemon: {m}",
            db.display()
        )),
        CtlError::Daemon(m) => match open_store(db) {
            Err(CtlError::Store(store)) => CtlError::Store(format!(
                "{store}; nor could the daemon answer instead (members of its control socket's \
                 group are served through it): {m}"
            )),
            _ => CtlError::Daemon(m),
        },
        other => other,
    }
}

/// `observerctl receipts` (without `show`).
pub fn receipts_command(
    db: &Path,
    socket: &Path,
    q: &Query,
    mode: Output,
    out: &mut impl Write,
) -> Result<(), CtlError> {
    if let Some(store) = direct_store(db)? {
        return receipts::print_query(out, mode, &store, q);
    }
    let mut rows = Vec::new();
    let mut printer = ListPrinter::new(mode);
    let mut failed = None;
    let asked = remote(
        socket,
        "receipts",
        json!({"filter": RemoteFilter::of(q)}),
        |item| {
            if let Item::Row(line) = item {
                if let Err(e) = printer.row(out, line, &mut rows) {
                    failed = Some(e);
                    return false;
                }
            }
            true
        },
    );
    asked.map_err(|e| via_daemon(db, e))?;
    if let Some(e) = failed {
        return Err(e);
    }
    printer.finish(out, &rows)
}

/// `observerctl tail`: the latest `lines` matches; with `follow`, then
/// every new match as the daemon commits it, until interrupted or stdout
/// closes.
pub fn tail_command(
    db: &Path,
    socket: &Path,
    q: &Query,
    lines: u64,
    follow: bool,
    mode: Output,
    out: &mut impl Write,
) -> Result<(), CtlError> {
    let mut printer = TailPrinter::new(mode);
    if !follow {
        if let Some(store) = direct_store(db)? {
            for row in receipts::tail(&store, q, lines)? {
                let line = serde_json::to_string(&row)
                    .map_err(|e| CtlError::Io(format!("encoding JSON: {e}")))?;
                if printer.row(out, &line).is_err() {
                    return Ok(());
                }
            }
            return Ok(());
        }
    }
    let (cmd, args) = if follow {
        (
            "follow",
            json!({"filter": RemoteFilter::of(q), "lines": lines}),
        )
    } else {
        let filter = RemoteFilter::of(&Query {
            limit: Some(lines),
            ..q.clone()
        });
        ("receipts", json!({"filter": filter}))
    };
    let end = remote(socket, cmd, args, |item| match item {
        // A closed stdout ends the command quietly, as `tail` does.
        Item::Row(line) => printer.row(out, line).is_ok(),
        Item::Lagged {
            from_leaf,
            missed_ranges,
        } => {
            eprintln!(
                "observerctl: lagged from log index {from_leaf} ({missed_ranges} commit notices \
                 missed); the daemon resends every receipt from there out of the store"
            );
            true
        }
    });
    let end = match end {
        Ok(end) => end,
        Err(e) if follow => return Err(e),
        Err(e) => return Err(via_daemon(db, e)),
    };
    if let Some(reason) = end["reason"].as_str() {
        eprintln!("observerctl: the follow ended: {reason}");
    }
    Ok(())
}

fn remote(
    socket: &Path,
    cmd: &str,
    args: Value,
    each: impl FnMut(Item<'_>) -> bool,
) -> Result<Value, CtlError> {
    Ok(client::stream(socket, cmd, args, CONNECT_TIMEOUT, each)?)
}

/// `tail` output: JSON lines as they come in JSON modes (the row exactly
/// as `receipts --jsonl` prints it), else the live view (colour on a
/// terminal unless NO_COLOR is set).
struct TailPrinter {
    mode: Output,
    style: Style,
}

impl TailPrinter {
    fn new(mode: Output) -> TailPrinter {
        TailPrinter {
            mode,
            style: Style::local(live_view::colour_wanted(std::io::IsTerminal::is_terminal(
                &std::io::stdout(),
            ))),
        }
    }

    /// `line` with or without its newline.
    fn row(&mut self, out: &mut impl Write, line: &str) -> std::io::Result<()> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        if self.mode.is_json() {
            writeln!(out, "{line}")?;
        } else {
            let v: Value = serde_json::from_str(line).unwrap_or(Value::Null);
            writeln!(out, "{}", live_view::render_receipt(&v, &self.style))?;
        }
        out.flush()
    }
}

/// `receipts` output from streamed rows: `--jsonl` passes each row on as
/// it comes, `--json` writes the same document the store path writes,
/// the table waits for all rows (it is sized to its widest cell).
struct ListPrinter {
    mode: Output,
    first: bool,
}

impl ListPrinter {
    fn new(mode: Output) -> ListPrinter {
        ListPrinter { mode, first: true }
    }

    fn row(
        &mut self,
        out: &mut impl Write,
        line: &str,
        rows: &mut Vec<Value>,
    ) -> Result<(), CtlError> {
        let parse = || {
            serde_json::from_str::<Value>(line).map_err(|e| {
                CtlError::Daemon(format!("the daemon sent a row that is not JSON: {e}"))
            })
        };
        match self.mode {
            Output::Jsonl => out.write_all(line.as_bytes())?,
            Output::Json => {
                let text = serde_json::to_string_pretty(&parse()?)
                    .map_err(|e| CtlError::Io(format!("encoding JSON: {e}")))?;
                if self.first {
                    write!(out, "{{\n  \"receipts\": [")?;
                }
                out.write_all(if self.first { b"\n" } else { b",\n" })?;
                for (i, l) in text.lines().enumerate() {
                    if i > 0 {
                        out.write_all(b"\n")?;
                    }
                    write!(out, "    {l}")?;
                }
            }
            Output::Table => rows.push(parse()?),
        }
        self.first = false;
        Ok(())
    }

    fn finish(self, out: &mut impl Write, rows: &[Value]) -> Result<(), CtlError> {
        match self.mode {
            Output::Jsonl => Ok(()),
            Output::Json if self.first => Ok(output::write_json(
                out,
                Output::Json,
                &json!({"receipts": []}),
            )?),
            Output::Json => {
                writeln!(out, "\n  ]\n}}")?;
                Ok(())
            }
            Output::Table => receipts::print_list(out, self.mode, rows),
        }
    }
}
