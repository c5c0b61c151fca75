//! Output: aligned tables for people, `--json` (one document) and
//! `--jsonl` (one object per row) for programs. No colour is ever written:
//! the tables are plain text whether or not stdout is a terminal, so a pipe
//! gets exactly what a terminal shows.
use std::io::Write;

use serde_json::{json, Value};

use super::CtlError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
    Jsonl,
}

impl Output {
    pub fn from_flags(json: bool, jsonl: bool) -> Output {
        match (json, jsonl) {
            (_, true) => Output::Jsonl,
            (true, false) => Output::Json,
            _ => Output::Table,
        }
    }

    pub fn is_json(self) -> bool {
        self != Output::Table
    }
}

/// Writes one JSON document (pretty with --json, one line with --jsonl).
pub fn write_json(out: &mut impl Write, mode: Output, value: &Value) -> Result<(), CtlError> {
    let text = match mode {
        Output::Jsonl => serde_json::to_string(value),
        _ => serde_json::to_string_pretty(value),
    }
    .map_err(|e| CtlError::Io(format!("encoding JSON: {e}")))?;
    writeln!(out, "{text}")?;
    Ok(())
}

/// A table column: its header and how to render a row's cell.
pub type Column<'a> = (&'a str, fn(&Value) -> String);

/// Rows of a query (serialisable structs) as JSON values for
/// [`write_list`].
pub fn json_rows<T: serde::Serialize>(rows: &[T]) -> Result<Vec<Value>, CtlError> {
    rows.iter()
        .map(|r| serde_json::to_value(r).map_err(|e| CtlError::Io(format!("encoding JSON: {e}"))))
        .collect()
}

/// A table cell: the member `key` of a row as text, `absent` for null.
pub fn cell(r: &Value, key: &str, absent: &str) -> String {
    match &r[key] {
        Value::Null => absent.into(),
        Value::String(t) => t.clone(),
        v => v.to_string(),
    }
}

/// A list: `--json` writes `{"<key>": [rows]}`, `--jsonl` one row per
/// line, the table the given columns (header, then one line per row).
pub fn write_list(
    out: &mut impl Write,
    mode: Output,
    key: &str,
    rows: &[Value],
    columns: &[Column],
) -> Result<(), CtlError> {
    match mode {
        Output::Json => write_json(out, mode, &json!({ key: rows })),
        Output::Jsonl => {
            for row in rows {
                write_json(out, mode, row)?;
            }
            Ok(())
        }
        Output::Table => {
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| columns.iter().map(|(_, f)| f(r)).collect())
                .collect();
            let header: Vec<String> = columns.iter().map(|(h, _)| h.to_string()).collect();
            write_table(out, &header, &cells)
        }
    }
}

pub fn write_table(
    out: &mut impl Write,
    header: &[String],
    rows: &[Vec<String>],
) -> Result<(), CtlError> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(cell);
                s.push_str(&" ".repeat(w - cell.chars().count() + 2));
            }
        }
        s.trim_end().to_string()
    };
    writeln!(out, "{}", line(header))?;
    for row in rows {
        writeln!(out, "{}", line(row))?;
    }
    Ok(())
}

/// The sanitised error object of JSON mode: a kind and a one-line message,
/// never a backtrace.
pub fn error_object(e: &CtlError) -> Value {
    json!({ "error": { "kind": e.kind(), "message": sanitise(&e.to_string()) } })
}

/// One line, printable characters only, bounded length.
pub fn sanitise(message: &str) -> String {
    let one_line: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    one_line.chars().take(1000).collect()
}

/// A string member of `v` at `path`, or "-" (the summaries' helper).
pub use observer_daemon::receipt::query::text_at as s;
