//! `[metrics]` of observer.toml and its address check: a leaf the
//! configuration file reads without depending on the endpoint.
use std::net::SocketAddr;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// Loopback address of the Prometheus text endpoint (`GET /metrics`),
    /// e.g. "127.0.0.1:9464". Default: off.
    pub listen: Option<String>,
    /// Connections served at once; one more is closed at accept and
    /// counted (a slow client must not take the daemon's descriptors).
    pub max_connections: usize,
    /// From accept to the last byte written: a request still open then is
    /// closed and counted.
    pub request_timeout_ms: u64,
}

impl Default for MetricsSection {
    fn default() -> Self {
        MetricsSection {
            listen: None,
            max_connections: 64,
            request_timeout_ms: 5000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metrics.listen {0:?}: {1}")]
    Address(String, String),
    #[error("metrics.listen {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
}

/// Parses `metrics.listen`; only loopback addresses are accepted (the
/// endpoint has no authentication).
pub fn parse_listen(text: &str) -> Result<SocketAddr, MetricsError> {
    let addr: SocketAddr = text
        .parse()
        .map_err(|e| MetricsError::Address(text.into(), format!("{e}")))?;
    if !addr.ip().is_loopback() {
        return Err(MetricsError::Address(
            text.into(),
            "must be a loopback address (127.0.0.0/8 or ::1)".into(),
        ));
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_only() {
        assert!(parse_listen("127.0.0.1:9464").is_ok());
        assert!(parse_listen("[::1]:9464").is_ok());
        let e = parse_listen("0.0.0.0:9464").unwrap_err().to_string();
        assert!(e.contains("loopback"), "{e}");
    }
}
