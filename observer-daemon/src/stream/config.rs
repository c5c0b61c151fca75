//! The `[plaintext]` section of observer.toml: TLS plaintext capture.
use std::path::PathBuf;

use serde::Deserialize;

/// Where a distribution keeps OpenSSL 3's libssl; those that exist are
/// attached for every watched process before it maps them (Python loads
/// its `_ssl` module, and with it libssl, only on first use).
pub const DEFAULT_LIBRARIES: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/libssl.so.3",
    "/usr/lib/aarch64-linux-gnu/libssl.so.3",
    "/usr/lib64/libssl.so.3",
    "/usr/lib/libssl.so.3",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlaintextSection {
    /// Attach uprobes on the TLS library of watched processes and read
    /// what they send and receive. Default true: per-process attach costs
    /// a watched exec about a tenth of a millisecond of daemon CPU and
    /// unwatched processes nothing (`cargo xtask bench plaintext`).
    pub enabled: bool,
    /// Plaintext bytes copied per TLS call (1..=262144), sent in pieces of
    /// up to 16 KiB; the call's full length is recorded too. Default
    /// 262144: a whole LLM API request (the OpenAI SDKs put `model` after
    /// the conversation, so a cut request loses it).
    pub capture_bytes: u32,
    /// Bytes of the plaintext ring buffer, apart from the event ring
    /// (a power of two >= 4096). Default 8 MiB.
    pub ring_buffer_bytes: u32,
    /// TLS libraries attached for every watched process, mapped yet or
    /// not. Default: the system's libssl.so.3. Copies a process maps from
    /// elsewhere (virtualenvs, bundles) are found in /proc/PID/maps.
    pub libraries: Option<Vec<PathBuf>>,
    /// How often the TLS libraries a watched process mapped since its
    /// exec are looked for again. Default 1000.
    pub rescan_interval_ms: u64,
    /// Plaintext chunks waiting for the stream layer; beyond this they are
    /// dropped and counted. Default 4096.
    pub channel_capacity: usize,
    /// Also read what watched processes write to and read from pipes,
    /// Unix stream sockets and loopback TCP (`write`, `read`, `sendto`,
    /// `recvfrom`, `writev`, `readv`; of a vectored call the first 8
    /// iovecs, 16 KiB of each): MCP servers on stdio, local inference servers over
    /// plain HTTP. Bounded by `capture_bytes` per call; a stream that
    /// turns out to carry nothing parsed is muted in the kernel. Default
    /// true (needs `enabled`).
    pub local_streams: bool,
    /// Bytes kept per MCP (JSON-RPC) message for parsing (1..=64 MiB).
    /// A longer message is still a call, flagged `truncated`, its
    /// arguments digest missing. Default 1 MiB.
    pub mcp_message_bytes: u32,
}

impl Default for PlaintextSection {
    fn default() -> Self {
        PlaintextSection {
            enabled: true,
            capture_bytes: observer_common::TLS_CAPTURE_DEFAULT,
            ring_buffer_bytes: observer_common::TLS_RINGBUF_DEFAULT,
            libraries: None,
            rescan_interval_ms: 1000,
            channel_capacity: 4096,
            local_streams: true,
            mcp_message_bytes: 1 << 20,
        }
    }
}

impl PlaintextSection {
    /// The offending field and why, for `ConfigError::Invalid`.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let max = observer_common::TLS_CAPTURE_MAX;
        if self.capture_bytes == 0 || self.capture_bytes > max {
            return Err((
                "plaintext.capture_bytes",
                format!("{} is not in 1..={max}", self.capture_bytes),
            ));
        }
        let rb = self.ring_buffer_bytes;
        if !rb.is_power_of_two() || rb < 4096 {
            return Err((
                "plaintext.ring_buffer_bytes",
                format!("{rb} is not a power of two >= 4096"),
            ));
        }
        if self.rescan_interval_ms == 0 {
            return Err(("plaintext.rescan_interval_ms", "must be > 0".into()));
        }
        if self.mcp_message_bytes == 0 || self.mcp_message_bytes > 64 << 20 {
            return Err((
                "plaintext.mcp_message_bytes",
                format!("{} is not in 1..={}", self.mcp_message_bytes, 64 << 20),
            ));
        }
        if self.channel_capacity == 0 {
            return Err(("plaintext.channel_capacity", "must be > 0".into()));
        }
        for lib in self.libraries.iter().flatten() {
            if !lib.is_absolute() {
                return Err((
                    "plaintext.libraries",
                    format!("{} is not an absolute path", lib.display()),
                ));
            }
        }
        Ok(())
    }

    /// Bytes the kernel copies per pipe or local socket call (0: off).
    pub fn io_capture_bytes(&self) -> u32 {
        if self.enabled && self.local_streams {
            self.capture_bytes
        } else {
            0
        }
    }

    /// The libraries to attach eagerly: those configured, or the default
    /// paths that exist on this host.
    pub fn eager_libraries(&self) -> Vec<PathBuf> {
        match &self.libraries {
            Some(list) => list.clone(),
            None => DEFAULT_LIBRARIES
                .iter()
                .map(PathBuf::from)
                .filter(|p| p.exists())
                .collect(),
        }
    }
}
