//! The client side of the control socket, for observerctl: one request,
//! one answer, blocking, with a deadline.
use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::Path,
    time::Duration,
};

use serde_json::{json, Value};

use super::protocol::PROTOCOL_VERSION;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing serves the socket (no file, nobody listening, timed out).
    #[error("the observer daemon is not reachable at {path}: {reason}")]
    Unreachable { path: String, reason: String },
    /// The socket's mode or the daemon's peer check refused us.
    #[error("{0}")]
    Denied(String),
    /// The daemon answered with an error.
    #[error("{message}")]
    Failed { kind: String, message: String },
}

/// Sends `{"v": 1, "cmd": cmd, ...args}` and returns the result.
pub fn request(
    socket: &Path,
    cmd: &str,
    args: Value,
    timeout: Duration,
) -> Result<Value, ClientError> {
    let (_connection, line) = send(socket, cmd, args, timeout)?;
    answer_of(socket, &line)
}

/// Connects, sends the request and reads the first answer line.
fn send(
    socket: &Path,
    cmd: &str,
    args: Value,
    timeout: Duration,
) -> Result<(BufReader<UnixStream>, String), ClientError> {
    let shown = socket.display().to_string();
    let unreachable = |reason: String| ClientError::Unreachable {
        path: shown.clone(),
        reason,
    };
    let stream = UnixStream::connect(socket).map_err(|e| match e.kind() {
        std::io::ErrorKind::PermissionDenied => ClientError::Denied(format!(
            "permission denied connecting to the observer control socket {shown}: \
             only root and members of its group (observer by default) may use it"
        )),
        std::io::ErrorKind::NotFound => unreachable(
            "no such socket (is observerd running? see control.socket in observer.toml)".into(),
        ),
        std::io::ErrorKind::ConnectionRefused => {
            unreachable("connection refused (observerd is not running)".into())
        }
        _ => unreachable(e.to_string()),
    })?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| unreachable(e.to_string()))?;
    let mut req = json!({"v": PROTOCOL_VERSION, "cmd": cmd});
    if let (Some(r), Value::Object(extra)) = (req.as_object_mut(), args) {
        r.extend(extra);
    }
    // A refused peer gets its answer before it writes: a failed write is
    // not the end, the answer may be waiting.
    let _ = (&stream).write_all(format!("{req}\n").as_bytes());
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .map_err(|e| unreachable(format!("no answer: {e}")))?;
    if line.is_empty() {
        return Err(unreachable(
            "the daemon closed the connection without answering".into(),
        ));
    }
    Ok((reader, line))
}

/// The result of an answer line, or the error it carries.
fn answer_of(socket: &Path, line: &str) -> Result<Value, ClientError> {
    let answer: Value = serde_json::from_str(line).map_err(|e| ClientError::Unreachable {
        path: socket.display().to_string(),
        reason: format!("unparseable answer: {e}"),
    })?;
    if answer["ok"] == true {
        return Ok(answer["result"].clone());
    }
    Err(failure(&answer))
}

/// The error of a `{"ok": false, "error": {...}}` line.
fn failure(answer: &Value) -> ClientError {
    let kind = answer["error"]["kind"]
        .as_str()
        .unwrap_or("unknown")
        .to_string();
    let message = answer["error"]["message"]
        .as_str()
        .unwrap_or("the daemon refused the request")
        .to_string();
    if kind == "permission_denied" {
        return ClientError::Denied(message);
    }
    ClientError::Failed { kind, message }
}

/// One line of a streamed answer (`receipts`, `follow`).
pub enum Item<'a> {
    /// A receipt row, exactly as `observerctl receipts --jsonl` prints it
    /// (with its newline).
    Row(&'a str),
    /// The follower missed commit notices; the rows from log index
    /// `from_leaf` on follow, read back from the store.
    Lagged { from_leaf: u64, missed_ranges: u64 },
}

/// Sends a request answered with a stream and calls `each` with every
/// line until the stream ends; `Ok` with the end line's detail. After the
/// first answer there is no read deadline: a follow waits for commits for
/// as long as it runs. `each` returning false stops reading.
pub fn stream(
    socket: &Path,
    cmd: &str,
    args: Value,
    timeout: Duration,
    mut each: impl FnMut(Item<'_>) -> bool,
) -> Result<Value, ClientError> {
    let (mut reader, first) = send(socket, cmd, args, timeout)?;
    answer_of(socket, &first)?;
    let broken = |reason: String| ClientError::Unreachable {
        path: socket.display().to_string(),
        reason,
    };
    reader
        .get_ref()
        .set_read_timeout(None)
        .map_err(|e| broken(e.to_string()))?;
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader
            .read_line(&mut line)
            .map_err(|e| broken(format!("the stream broke: {e}")))?;
        if n == 0 || !line.ends_with('\n') {
            return Err(broken("the daemon closed the stream before its end".into()));
        }
        if !line.starts_with(super::wire::PROTOCOL_PREFIX) {
            if !each(Item::Row(&line)) {
                return Ok(Value::Null);
            }
            continue;
        }
        let v: Value = serde_json::from_str(&line)
            .map_err(|e| broken(format!("unparseable line in the stream: {e}")))?;
        if v["ok"] == false {
            return Err(failure(&v));
        }
        if !v["end"].is_null() {
            return Ok(v["end"].clone());
        }
        if v["notice"] == "lagged" {
            let n = |k: &str| v[k].as_u64().unwrap_or(0);
            if !each(Item::Lagged {
                from_leaf: n("from_leaf"),
                missed_ranges: n("missed_ranges"),
            }) {
                return Ok(Value::Null);
            }
        }
    }
}
