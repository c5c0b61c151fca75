//! `[control]` of observer.toml: a leaf the configuration file reads
//! without depending on the server.
use std::path::PathBuf;

use serde::Deserialize;

/// `[control]` in observer.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlSection {
    /// Serve the control socket. Default true.
    pub enabled: bool,
    /// Socket path. Default /run/observer/observer.sock.
    pub socket: PathBuf,
    /// Group allowed besides root: the socket is root:<group> 0660. When
    /// the group does not exist, the socket is root-only (0600). Default
    /// "observer".
    pub group: String,
    /// Connections served at once; more are refused with `busy`. Default 16.
    pub max_connections: usize,
    /// Longest request line in bytes. Default 65536.
    pub max_request_bytes: usize,
    /// A client must send its request and read the answer within this
    /// time; a streamed answer (`receipts`, `follow`) has no overall limit,
    /// but each of its writes must complete within it. Default 5000.
    pub timeout_ms: u64,
}

impl Default for ControlSection {
    fn default() -> Self {
        ControlSection {
            enabled: true,
            socket: PathBuf::from("/run/observer/observer.sock"),
            group: "observer".into(),
            max_connections: 16,
            max_request_bytes: 65536,
            timeout_ms: 5000,
        }
    }
}

impl ControlSection {
    /// Field and reason of the first invalid value.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.max_connections == 0 || self.max_request_bytes < 64 || self.timeout_ms == 0 {
            return Err((
                "control",
                "max_connections and timeout_ms must be > 0, max_request_bytes >= 64".into(),
            ));
        }
        if !self.socket.is_absolute() {
            return Err((
                "control.socket",
                format!("{} must be an absolute path", self.socket.display()),
            ));
        }
        // sockaddr_un.sun_path holds 108 bytes with its NUL.
        if self.socket.as_os_str().len() > 107 {
            return Err((
                "control.socket",
                format!("{} is longer than 107 bytes", self.socket.display()),
            ));
        }
        Ok(())
    }
}
