//! The client side of the control socket, for observerctl: one request,
//! one answer, blocking, with a deadline.
use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::Path,
    time::Duration,
};

use serde_json::{json, Value};

use super::PROTOCOL_VERSION;

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
        .and_then(|_| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| unreachable(e.to_string()))?;
    let mut req = json!({"v": PROTOCOL_VERSION, "cmd": cmd});
    if let (Some(r), Value::Object(extra)) = (req.as_object_mut(), args) {
        r.extend(extra);
    }
    // A refused peer gets its answer before it writes: a failed write is
    // not the end, the answer may be waiting.
    let _ = (&stream).write_all(format!("{req}\n").as_bytes());
    let mut line = String::new();
    BufReader::new(&stream)
        .read_line(&mut line)
        .map_err(|e| unreachable(format!("no answer: {e}")))?;
    if line.is_empty() {
        return Err(unreachable(
            "the daemon closed the connection without answering".into(),
        ));
    }
    let answer: Value =
        serde_json::from_str(&line).map_err(|e| unreachable(format!("unparseable answer: {e}")))?;
    if answer["ok"] == true {
        return Ok(answer["result"].clone());
    }
    let kind = answer["error"]["kind"]
        .as_str()
        .unwrap_or("unknown")
        .to_string();
    let message = answer["error"]["message"]
        .as_str()
        .unwrap_or("the daemon refused the request")
        .to_string();
    if kind == "permission_denied" {
        return Err(ClientError::Denied(message));
    }
    Err(ClientError::Failed { kind, message })
}
