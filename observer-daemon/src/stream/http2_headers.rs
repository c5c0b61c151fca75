//! HTTP/2 header blocks: the fragment a HEADERS or PUSH_PROMISE frame
//! carries, and a whole block decoded with the direction's HPACK table
//! into the message head HTTP/1.1 would have given.
use std::borrow::Cow;

use loona_hpack::Decoder;

use super::{HEADERS, PADDED, PRIORITY};
use crate::stream::http1::Head;

/// Headers whose values are credentials. Nothing downstream reads them,
/// so they are dropped as they are decoded and never held in a message.
const CREDENTIALS: [&str; 7] = [
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "cookie",
    "set-cookie",
];

/// The header block fragment of a HEADERS or PUSH_PROMISE payload
/// (padding and priority fields removed); None if they do not fit.
pub(super) fn fragment(kind: u8, flags: u8, payload: &[u8]) -> Option<&[u8]> {
    let (pad, rest) = if flags & PADDED != 0 {
        let (&pad, rest) = payload.split_first()?;
        (usize::from(pad), rest)
    } else {
        (0, payload)
    };
    let rest = rest.get(..rest.len().checked_sub(pad)?)?;
    if kind == HEADERS && flags & PRIORITY != 0 {
        return rest.get(5..);
    }
    Some(rest)
}

/// A decoded header block as a message head: pseudo-headers to method,
/// path, status; `:authority` as the Host header HTTP/1.1 would carry;
/// credentials dropped. None if the block does not decode: the table is
/// then out of step with the encoder's.
pub(super) fn decode(hpack: &mut Decoder<'static>, block: &[u8]) -> Option<Head> {
    let mut head = Head {
        version: "2",
        ..Head::default()
    };
    let mut authority = None;
    hpack
        .decode_with_cb(block, |name: Cow<[u8]>, value: Cow<[u8]>| {
            let name = String::from_utf8_lossy(&name).to_ascii_lowercase();
            let text = || String::from_utf8_lossy(&value).into_owned();
            match name.as_str() {
                ":method" => head.method = text(),
                ":path" => head.target = text(),
                ":status" => head.status = text().parse().unwrap_or_default(),
                ":authority" => authority = Some(value.into_owned()),
                n if n.starts_with(':') || CREDENTIALS.contains(&n) => {}
                _ => head.headers.push((name, value.into_owned())),
            }
        })
        .ok()?;
    if let Some(a) = authority {
        if head.header("host").is_none() {
            head.headers.push(("host".into(), a));
        }
    }
    Some(head)
}
