//! The envelope every control message shares: the protocol version and
//! the shape of a response. The server, its handlers and the client all
//! use it, so it imports none of them.
use serde_json::{json, Value};

/// The protocol version: requests carry it as `"v"`, responses echo it. A
/// request of another version is refused with `unsupported_version`.
pub const PROTOCOL_VERSION: u64 = 1;

/// A successful response.
pub fn ok(result: Value) -> Value {
    json!({"v": PROTOCOL_VERSION, "ok": true, "result": result})
}

/// A refusal or failure: `kind` is stable, `message` is for people.
pub fn error(kind: &str, message: &str) -> Value {
    json!({"v": PROTOCOL_VERSION, "ok": false, "error": {"kind": kind, "message": message}})
}
