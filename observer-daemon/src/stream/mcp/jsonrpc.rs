//! JSON-RPC 2.0 messages (what MCP speaks) from frames: requests,
//! notifications, results and errors, single or batched. A frame cut
//! short (past the bound or by a capture gap) is not JSON any more; the
//! members that name the call (`id`, `method`, `params.name`) are still
//! read from what is left when they came before the cut.
use serde_json::Value;

use crate::stream::mcp::framing::Frame;

/// What a message is.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// A request (`id` set) or a notification (no `id`).
    Call {
        method: String,
        /// None when the frame was cut.
        params: Option<Value>,
    },
    Result(Value),
    Error {
        code: i64,
    },
    /// A cut frame whose kind could not be told (no `method` before the
    /// cut): an answer, most likely.
    Unknown,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The id as compact JSON (`5`, `"abc"`), the key requests and
    /// answers are matched on.
    pub id: Option<String>,
    pub body: Body,
    /// `params.name` (tools/call, prompts/get) or `params.uri`
    /// (resources/read), read even from a cut frame.
    pub name: Option<String>,
    /// The frame was cut: `params` or the result are not whole.
    pub truncated: bool,
    /// Bytes of the frame it came in.
    pub len: u64,
}

impl Message {
    pub fn method(&self) -> Option<&str> {
        match &self.body {
            Body::Call { method, .. } => Some(method),
            _ => None,
        }
    }

    pub fn is_request(&self) -> bool {
        self.id.is_some() && matches!(self.body, Body::Call { .. })
    }
}

/// Why a frame is not JSON-RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotRpc {
    /// Complete, but not JSON.
    NotJson,
    /// JSON without `"jsonrpc": "2.0"`.
    NotJsonRpc,
}

/// The messages of one frame (a batch gives several).
pub fn parse(frame: &Frame) -> Result<Vec<Message>, NotRpc> {
    if frame.truncated {
        let mut m = from_prefix(&frame.bytes);
        m.len = frame.len;
        return Ok(vec![m]);
    }
    parse_json(&frame.bytes, frame.len)
}

/// The messages of one whole JSON text (a frame, an HTTP body, the data
/// of an event of a stream) of `len` bytes.
pub fn parse_json(bytes: &[u8], len: u64) -> Result<Vec<Message>, NotRpc> {
    let value: Value = serde_json::from_slice(bytes).map_err(|_| NotRpc::NotJson)?;
    let mut msgs = match value {
        Value::Array(items) if !items.is_empty() => items
            .into_iter()
            .map(from_value)
            .collect::<Result<Vec<_>, _>>()?,
        v => vec![from_value(v)?],
    };
    for m in &mut msgs {
        m.len = len;
    }
    Ok(msgs)
}

fn from_value(v: Value) -> Result<Message, NotRpc> {
    let Value::Object(mut o) = v else {
        return Err(NotRpc::NotJsonRpc);
    };
    if o.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(NotRpc::NotJsonRpc);
    }
    let id = o.get("id").filter(|v| !v.is_null()).map(Value::to_string);
    let body = if let Some(Value::String(method)) = o.remove("method") {
        Body::Call {
            method,
            params: o.remove("params"),
        }
    } else if let Some(err) = o.get("error") {
        Body::Error {
            code: err.get("code").and_then(Value::as_i64).unwrap_or(0),
        }
    } else if let Some(result) = o.remove("result") {
        Body::Result(result)
    } else {
        return Err(NotRpc::NotJsonRpc);
    };
    let name = match &body {
        Body::Call {
            params: Some(p), ..
        } => p
            .get("name")
            .or_else(|| p.get("uri"))
            .and_then(Value::as_str)
            .map(str::to_string),
        _ => None,
    };
    Ok(Message {
        id,
        body,
        name,
        truncated: false,
        len: 0,
    })
}

/// What a cut frame still says: top-level `id` and `method`, and `name`
/// or `uri` inside `params`. A scan that follows strings and nesting, so
/// an `"id"` inside the arguments is not taken for the message's.
fn from_prefix(b: &[u8]) -> Message {
    let mut id = None;
    let mut method = None;
    let mut name = None;
    let mut has_error = false;
    let mut depth = 0usize;
    // The key whose value comes next, and whether depth 2 is `params`.
    let mut key: Option<String> = None;
    let mut in_params = false;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                let Some(end) = string_end(b, i) else { break };
                let text: Option<String> = serde_json::from_slice(&b[i..=end]).ok();
                let after = skip_blanks(b, end + 1);
                if b.get(after) == Some(&b':') {
                    key = text;
                    i = after + 1;
                    continue;
                }
                match (depth, key.take().as_deref(), text) {
                    (1, Some("id"), Some(t)) => id = Some(Value::String(t).to_string()),
                    (1, Some("method"), Some(t)) => method = Some(t),
                    (2, Some("name" | "uri"), Some(t)) if in_params && name.is_none() => {
                        name = Some(t);
                    }
                    _ => {}
                }
                i = end + 1;
                continue;
            }
            b'{' | b'[' => {
                if depth == 1 {
                    in_params = key.as_deref() == Some("params") && b[i] == b'{';
                    has_error |= key.as_deref() == Some("error");
                }
                depth += 1;
                key = None;
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                key = None;
            }
            b'-' | b'0'..=b'9' => {
                let end = (i..b.len())
                    .find(|&j| !matches!(b[j], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'));
                let Some(end) = end else { break }; // the cut may be inside it
                if depth == 1 && key.as_deref() == Some("id") {
                    id = std::str::from_utf8(&b[i..end]).ok().map(str::to_string);
                }
                key = None;
                i = end;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    let body = match method {
        Some(method) => Body::Call {
            method,
            params: None,
        },
        None if has_error => Body::Error { code: 0 },
        None => Body::Unknown,
    };
    Message {
        id,
        body,
        name,
        truncated: true,
        len: 0,
    }
}

/// The index of the quote that closes the string opened at `start`.
fn string_end(b: &[u8], start: usize) -> Option<usize> {
    let mut j = start + 1;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 2,
            b'"' => return Some(j),
            _ => j += 1,
        }
    }
    None
}

fn skip_blanks(b: &[u8], mut j: usize) -> usize {
    while j < b.len() && b[j].is_ascii_whitespace() {
        j += 1;
    }
    j
}

#[cfg(test)]
#[path = "jsonrpc_tests.rs"]
mod tests;
