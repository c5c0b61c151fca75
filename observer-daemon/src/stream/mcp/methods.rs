//! Which side of an MCP session sends a method: how a stream's first
//! message tells a client's end from a server's, and an HTTP POST of MCP
//! from other JSON-RPC.

/// Some(true) for a method only clients send, Some(false) for one only
/// servers send, None for those both send (ping, progress, cancel).
pub fn client_method(method: &str) -> Option<bool> {
    const CLIENT: [&str; 6] = [
        "initialize",
        "tools/",
        "resources/",
        "prompts/",
        "completion/",
        "logging/",
    ];
    const SERVER: [&str; 4] = [
        "sampling/",
        "roots/",
        "elicitation/",
        "notifications/message",
    ];
    if method == "notifications/initialized" || method == "notifications/roots/list_changed" {
        return Some(true);
    }
    if method.starts_with("notifications/") && method.ends_with("/list_changed") {
        return Some(false);
    }
    if CLIENT.iter().any(|p| method.starts_with(p)) {
        Some(true)
    } else if SERVER.iter().any(|p| method.starts_with(p)) {
        Some(false)
    } else {
        None
    }
}
