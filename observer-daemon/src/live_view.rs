//! The live view people read: one line per event or receipt with the
//! local time, the agent (or `unregistered:<exe>`), the action, a one-line
//! summary (argv of an exec, destination names and address of a connect,
//! path of an open) and the risk; findings in bold red. One renderer for
//! `observerd --events-jsonl -` on a terminal (through [`LiveWriter`]) and
//! for `observerctl tail`. Programs keep the JSON lines: the view is only
//! chosen for a terminal, or when asked for.
use std::io::Write;

use serde_json::Value;

/// Longest summary shown; the JSON keeps the whole text.
const MAX_SUMMARY_CHARS: usize = 200;
/// Width of the agent column (longer ids push the line, never cut).
const AGENT_WIDTH: usize = 24;
/// Width of the action column.
const ACTION_WIDTH: usize = 17;

const BOLD_RED: &str = "\x1b[1;31m";
const RED: &str = "\x1b[31m";
const YELLOW: &str = "\x1b[33m";
const RESET: &str = "\x1b[0m";

/// How lines are drawn: with or without colour, times in the local zone
/// (or a fixed offset, for tests).
pub struct Style {
    colour: bool,
    offset: Offset,
}

enum Offset {
    Local,
    Fixed(i64),
}

impl Style {
    /// Times in the local time zone.
    pub fn local(colour: bool) -> Style {
        Style {
            colour,
            offset: Offset::Local,
        }
    }

    /// Times at a fixed offset from UTC, in seconds.
    pub fn fixed(colour: bool, utc_offset_secs: i64) -> Style {
        Style {
            colour,
            offset: Offset::Fixed(utc_offset_secs),
        }
    }

    fn offset_at(&self, unix_secs: i64) -> i64 {
        match self.offset {
            Offset::Fixed(o) => o,
            Offset::Local => local_offset(unix_secs),
        }
    }
}

/// Colour only on a terminal, and never when NO_COLOR is set to anything
/// (https://no-color.org).
pub fn colour_wanted(is_terminal: bool) -> bool {
    is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The local zone's offset from UTC at `unix_secs` (daylight saving
/// included); 0 if the C library cannot tell.
fn local_offset(unix_secs: i64) -> i64 {
    let t = unix_secs as libc::time_t;
    // SAFETY: an all-zero tm is valid; localtime_r writes only into it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call.
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return 0;
    }
    tm.tm_gmtoff as i64
}

/// One line before it is drawn.
struct Line {
    unix_ns: Option<u64>,
    agent: String,
    action: String,
    summary: String,
    risk: Option<String>,
    /// A policy finding: the whole line stands out.
    finding: bool,
    /// Lost events: shown in yellow.
    warning: bool,
}

impl Line {
    fn draw(&self, style: &Style) -> String {
        let time = match self.unix_ns {
            Some(ns) => {
                let secs = (ns / 1_000_000_000) as i64;
                let local = (secs + style.offset_at(secs)).rem_euclid(86_400);
                format!(
                    "{:02}:{:02}:{:02}.{:03}",
                    local / 3600,
                    local / 60 % 60,
                    local % 60,
                    ns / 1_000_000 % 1000
                )
            }
            None => "--:--:--.---".into(),
        };
        let mut summary = clean(&self.summary);
        if summary.chars().count() > MAX_SUMMARY_CHARS {
            summary = summary.chars().take(MAX_SUMMARY_CHARS).collect::<String>() + "...";
        }
        let risk = match &self.risk {
            Some(r) if style.colour && !self.finding && r == "high" => {
                format!("  risk={RED}{r}{RESET}")
            }
            Some(r) => format!("  risk={r}"),
            None => String::new(),
        };
        let text = format!(
            "{time} {:<AGENT_WIDTH$} {:<ACTION_WIDTH$} {summary}{risk}",
            clean(&self.agent),
            clean(&self.action)
        );
        let text = text.trim_end().to_string();
        match (style.colour, self.finding, self.warning) {
            (true, true, _) => format!("{BOLD_RED}{text}{RESET}"),
            (true, false, true) => format!("{YELLOW}{text}{RESET}"),
            _ => text,
        }
    }
}

/// Control characters (newlines in argv, terminal escapes in a file name)
/// shown escaped: one event stays one line and cannot drive the terminal.
fn clean(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `addr:port`, IPv6 in brackets.
fn endpoint(addr: &Value, port: &Value) -> String {
    let addr = text(addr);
    if addr.contains(':') {
        format!("[{addr}]:{}", text(port))
    } else {
        format!("{addr}:{}", text(port))
    }
}

/// What an event (or the event a receipt records) did, in one line. The
/// receipt's context is the event as observerd writes it, so one function
/// reads both.
fn event_summary(ev: &Value) -> Option<String> {
    let failed = |d: &Value, line: String| match d["error"].as_str() {
        Some(e) => format!("{line} ({e})"),
        None => line,
    };
    if let Some(e) = ev.get("exec") {
        let argv: Vec<String> = e["argv"].as_array()?.iter().map(text).collect();
        let line = if argv.is_empty() {
            text(&e["filename"])
        } else {
            argv.join(" ")
        };
        // The failed execs of a PATH search folded into this one.
        return Some(match e["path_search"].as_array().map(Vec::len) {
            Some(n) if n > 0 => format!("{line} (found after {n} failed in path search)"),
            _ => failed(e, line),
        });
    }
    if let Some(c) = ev.get("connect") {
        let mut names: Vec<String> = Vec::new();
        for n in c["dst_names"].as_array().into_iter().flatten() {
            let name = text(&n["name"]);
            if !names.contains(&name) {
                names.push(name);
            }
        }
        let to = endpoint(&c["remote_addr"], &c["remote_port"]);
        let line = if names.is_empty() {
            to
        } else {
            format!("{} ({to})", names.join(", "))
        };
        return Some(failed(c, line));
    }
    if let Some(a) = ev.get("accept") {
        let from = endpoint(&a["remote_addr"], &a["remote_port"]);
        return Some(failed(a, format!("from {from}")));
    }
    for kind in ["listen", "bind"] {
        if let Some(n) = ev.get(kind) {
            let on = endpoint(&n["local_addr"], &n["local_port"]);
            return Some(failed(n, format!("{kind} {on}")));
        }
    }
    if let Some(o) = ev.get("file_open") {
        let mut line = text(&o["path"]);
        if let Some(n) = o["count"].as_u64().filter(|n| *n > 1) {
            line.push_str(&format!(" x{n}"));
        }
        line.push_str(&crate::receipt::query::more_paths(o));
        return Some(failed(o, line));
    }
    if let Some(x) = ev.get("exit") {
        return Some(match (x["exit_code"].as_i64(), x["signal"].as_i64()) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            _ => format!("exit status {}", text(&x["status"])),
        });
    }
    if let Some(f) = ev.get("fork") {
        return Some(format!("fork child {}", text(&f["child_pid"])));
    }
    if let Some(call) = ev.get("llm_request") {
        return Some(crate::receipt::query::llm_summary(call));
    }
    if let Some(line) = crate::receipt::query::mcp_summary(ev) {
        return Some(line);
    }
    if let Some(d) = ev.get("dns_answer") {
        let addresses: Vec<String> = d["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .map(text)
            .collect();
        return Some(format!(
            "{} -> {}",
            text(&d["question"]["name"]),
            if addresses.is_empty() {
                text(&d["rcode"])
            } else {
                addresses.join(", ")
            }
        ));
    }
    None
}

/// The process's agent, or `unregistered:<exe>` (its command name when
/// the executable is unknown).
fn agent_of(process: &Value) -> String {
    match process["agent"].as_str() {
        Some(a) => a.to_string(),
        None => {
            let exe = process["exe"].as_str().or(process["comm"].as_str());
            format!("unregistered:{}", exe.unwrap_or("?"))
        }
    }
}

/// The receipt action of an event kind (as the receipt selector names
/// them), so the view reads the same for events and receipts.
fn action_of(event: &str) -> String {
    match event {
        "exec" | "exit" | "fork" => format!("process.{event}"),
        "connect" | "accept" | "bind" | "listen" => format!("network.{event}"),
        "file_open" => "file.open".into(),
        "dns_answer" => "dns.resolve".into(),
        "llm_request" => "llm.request".into(),
        "mcp_session" => "mcp.session".into(),
        "mcp_tool_call" => "mcp.tool_call".into(),
        "mcp_request" => "mcp.request".into(),
        "mcp_tool_definition" => "mcp.tool_definition".into(),
        other => other.into(),
    }
}

/// One line for a receipt row as `observerctl receipts --jsonl` prints it.
pub fn render_receipt(row: &Value, style: &Style) -> String {
    let ctx = &row["context"];
    let action = text(&row["action_type"]);
    let finding = action == "shadow_ai.finding";
    let mut agent = text(&row["agent_id"]);
    if agent.starts_with("unregistered:") {
        if let Some(exe) = ctx["process"]["exe"].as_str() {
            agent = format!("unregistered:{exe}");
        }
    }
    let summary = if finding {
        format!(
            "FINDING {}: {}",
            text(&ctx["rule_id"]),
            text(&ctx["reason"])
        )
    } else {
        event_summary(ctx).unwrap_or_else(|| text(&row["summary"]))
    };
    Line {
        unix_ns: row["issued_ns"].as_u64(),
        agent,
        action,
        summary,
        risk: row["risk_class"].as_str().map(str::to_string),
        finding,
        warning: false,
    }
    .draw(style)
}

/// One line for a record of `observerd --events-jsonl`; None for a record
/// this view does not know (shown as its JSON by the caller).
pub fn render_record(rec: &Value, style: &Style) -> Option<String> {
    let unix_ns = rec["time"]
        .as_str()
        .and_then(|t| humantime::parse_rfc3339(t).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as u64);
    let observer = |action: &str, summary: String, warning: bool| Line {
        unix_ns,
        agent: "observer".into(),
        action: action.into(),
        summary,
        risk: None,
        finding: false,
        warning,
    };
    let line = match rec["kind"].as_str()? {
        "event" => Line {
            unix_ns,
            agent: agent_of(&rec["process"]),
            action: action_of(rec["event"].as_str()?),
            summary: event_summary(rec)?,
            risk: None,
            finding: false,
            warning: false,
        },
        "observer_start" => observer(
            "observer.start",
            format!(
                "{} probes attached, {} processes scanned",
                rec["probes"].as_array().map_or(0, Vec::len),
                text(&rec["processes_scanned"])
            ),
            false,
        ),
        "loss" => observer(
            "observer.loss",
            format!("{} events lost", text(&rec["total"])),
            true,
        ),
        "observer_stop" => observer(
            "observer.stop",
            format!("{} events written", text(&rec["events_written"])),
            false,
        ),
        _ => return None,
    };
    Some(line.draw(style))
}

/// Draws the JSON lines written through it as the live view: observerd
/// writes its records into this instead of straight to a terminal. A line
/// that is not a known record passes through as it is.
pub struct LiveWriter<W: Write> {
    inner: W,
    style: Style,
    pending: Vec<u8>,
}

impl<W: Write> LiveWriter<W> {
    pub fn new(inner: W, style: Style) -> LiveWriter<W> {
        LiveWriter {
            inner,
            style,
            pending: Vec::new(),
        }
    }
}

impl<W: Write> Write for LiveWriter<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(bytes);
        while let Some(n) = memchr::memchr(b'\n', &self.pending) {
            let rest = self.pending.split_off(n + 1);
            let line = std::mem::replace(&mut self.pending, rest);
            let drawn = serde_json::from_slice::<Value>(&line)
                .ok()
                .and_then(|v| render_record(&v, &self.style));
            match drawn {
                Some(text) => writeln!(self.inner, "{text}")?,
                None => self.inner.write_all(&line)?,
            }
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// 2026-11-22T18:00:00.123456789Z
    const NS: u64 = 1_795_370_400_123_456_789;

    fn receipt(action: &str, agent: &str, risk: &str, context: Value) -> Value {
        json!({"issued_ns": NS, "agent_id": agent, "action_type": action,
               "risk_class": risk, "context": context, "summary": "fallback"})
    }

    #[test]
    fn an_exec_receipt_shows_time_agent_argv_and_risk() {
        let row = receipt(
            "process.exec",
            "claude-code",
            "low",
            json!({"process": {"exe": "/usr/bin/curl"},
                   "exec": {"argv": ["curl", "-s", "a\nb"], "filename": "/usr/bin/curl"}}),
        );
        assert_eq!(
            render_receipt(&row, &Style::fixed(false, 0)),
            "18:00:00.123 claude-code              process.exec      curl -s a\\nb  risk=low"
        );
        // One hour east of UTC, and the day wraps.
        assert!(render_receipt(&row, &Style::fixed(false, 7 * 3600))
            .starts_with("01:00:00.123 claude-code"));
    }

    #[test]
    fn an_exec_says_its_path_search_and_a_failed_one_its_error() {
        let searched = receipt(
            "process.exec",
            "a",
            "low",
            json!({"exec": {"argv": ["prog"], "filename": "/c/prog", "error": null,
                            "path_search": [{"filename": "/a/prog", "error": "ENOENT"}]}}),
        );
        assert!(render_receipt(&searched, &Style::fixed(false, 0))
            .ends_with("process.exec      prog (found after 1 failed in path search)  risk=low"));
        let failed = receipt(
            "process.exec",
            "a",
            "low",
            json!({"exec": {"argv": ["nope"], "filename": "/a/nope", "error": "ENOENT"}}),
        );
        assert!(render_receipt(&failed, &Style::fixed(false, 0))
            .ends_with("process.exec      nope (ENOENT)  risk=low"));
    }

    #[test]
    fn a_connect_shows_destination_names_and_address_of_an_unregistered_exe() {
        let row = receipt(
            "network.connect",
            "unregistered:0123456789abcdef",
            "medium",
            json!({"process": {"exe": "/opt/tool/bin/tool"},
                   "connect": {"remote_addr": "2606:4700::6810:1", "remote_port": 443,
                               "dst_names": [{"name": "api.openai.com", "source": "dns"},
                                             {"name": "api.openai.com", "source": "sni"}]}}),
        );
        assert_eq!(
            render_receipt(&row, &Style::fixed(false, 0)),
            "18:00:00.123 unregistered:/opt/tool/bin/tool network.connect   \
             api.openai.com ([2606:4700::6810:1]:443)  risk=medium"
        );
    }

    #[test]
    fn a_finding_is_bold_red_on_a_terminal_and_plain_without_colour() {
        let row = receipt(
            "shadow_ai.finding",
            "unregistered:0123456789abcdef",
            "high",
            json!({"rule_id": "llm-api-call", "reason": "connect to api.openai.com",
                   "process": {"exe": "/usr/bin/python3"}}),
        );
        let plain = "18:00:00.123 unregistered:/usr/bin/python3 shadow_ai.finding \
                     FINDING llm-api-call: connect to api.openai.com  risk=high";
        assert_eq!(render_receipt(&row, &Style::fixed(false, 0)), plain);
        assert_eq!(
            render_receipt(&row, &Style::fixed(true, 0)),
            format!("\x1b[1;31m{plain}\x1b[0m")
        );
    }

    #[test]
    fn an_open_and_an_observer_receipt_fall_back_to_the_stored_summary() {
        let open = receipt(
            "file.open",
            "agent",
            "low",
            json!({"file_open": {"path": "/home/u/.ssh/id_ed25519", "count": 3}}),
        );
        assert_eq!(
            render_receipt(&open, &Style::fixed(false, 0)),
            "18:00:00.123 agent                    file.open         /home/u/.ssh/id_ed25519 x3  risk=low"
        );
        let folded = receipt(
            "file.open",
            "agent",
            "low",
            json!({"file_open": {"path": "/etc/ld.so.cache", "count": 1,
                   "paths": [{"path": "/etc/ld.so.cache"}, {"path": "/etc/hostname"},
                             {"path": "/usr/lib/libc.so.6"}]}}),
        );
        assert_eq!(
            render_receipt(&folded, &Style::fixed(false, 0)),
            "18:00:00.123 agent                    file.open         /etc/ld.so.cache (+2 more paths)  risk=low"
        );
        let key = receipt("observer.key", "observer", "low", json!({"kid": "k1"}));
        assert_eq!(
            render_receipt(&key, &Style::fixed(false, 0)),
            "18:00:00.123 observer                 observer.key      fallback  risk=low"
        );
    }

    #[test]
    fn observerd_records_are_drawn_and_unknown_lines_pass_through() {
        let exec = json!({"kind": "event", "event": "exec", "time": "2026-11-22T18:00:00.123456789Z",
                          "process": {"agent": null, "exe": "/usr/bin/ls", "comm": "ls"},
                          "exec": {"argv": ["ls", "\u{1b}[2J"], "filename": "/usr/bin/ls", "error": null}});
        let loss = json!({"kind": "loss", "time": "2026-11-22T18:00:01Z", "total": 7});
        let mut out = LiveWriter::new(Vec::new(), Style::fixed(true, 0));
        let text = format!("{exec}\n{loss}\nnot json\n");
        // Written in two pieces split inside a line.
        out.write_all(&text.as_bytes()[..10]).unwrap();
        out.write_all(&text.as_bytes()[10..]).unwrap();
        assert_eq!(
            String::from_utf8(out.inner).unwrap(),
            "18:00:00.123 unregistered:/usr/bin/ls process.exec      ls \\u{1b}[2J\n\
             \x1b[33m18:00:01.000 observer                 observer.loss     7 events lost\x1b[0m\n\
             not json\n"
        );
    }

    #[test]
    fn no_colour_off_a_terminal() {
        assert!(!colour_wanted(false));
    }
}
