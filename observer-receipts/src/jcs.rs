//! RFC 8785 JSON Canonicalization Scheme (JCS): the exact bytes that are
//! signed and hashed.
//!
//! A signature or a hash chain is only checkable if signer and verifier
//! derive the same bytes from the same value, in any language. JCS fixes
//! those bytes: no whitespace, member names sorted by their UTF-16 code
//! units, numbers written as ECMAScript writes them, strings with the
//! minimal escapes and otherwise literal UTF-8, no Unicode normalisation.
//!
//! The receipt profile adds the I-JSON rule (RFC 7493): a number whose
//! canonical text is an integer literal beyond ±(2^53−1) is refused, because
//! readers disagree on such literals (the asqav-25 vectors) and
//! [`super::json::parse_strict`] refuses them. Refusing them here too means
//! the signer can never produce bytes its own verifier rejects.
//!
//! Canonicalisation runs several times per receipt, so the writer streams
//! into a byte sink (a `Vec<u8>`, or straight into SHA-256), sorts member
//! names with a comparison that needs no decoding and no allocation, and
//! shares one scratch vector for the members of all objects.

use std::cmp::Ordering;
use std::fmt::Write as _;

use serde::ser::{self, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// 2^53 − 1, the largest integer every IEEE-754 double reader keeps exactly
/// and still tells apart from its neighbours (I-JSON, RFC 7493 §2.2).
pub const MAX_SAFE_INTEGER: u64 = 9_007_199_254_740_991;

/// The largest magnitude ECMAScript still writes without an exponent
/// (exclusive): from 10^21 on, numbers are written as `1e+21`.
const ES6_FIXED_NOTATION_LIMIT: f64 = 1e21;

/// Why a value has no canonical form under the receipt profile. Paths are
/// RFC 6901 JSON Pointers, `""` being the whole value.
#[derive(Debug, thiserror::Error)]
pub enum JcsError {
    /// An integer (or an integral double below 1e21) whose magnitude is
    /// above [`MAX_SAFE_INTEGER`]: readers would round it, so it must be
    /// carried as a string.
    #[error(
        "number {value} at pointer \"{path}\" is an integer outside the I-JSON safe range \
         ±(2^53-1); carry it as a string"
    )]
    UnsafeInteger {
        /// The number as written.
        value: String,
        /// Where it is in the value.
        path: String,
    },
    /// A NaN or infinite float, which JSON cannot write (found while
    /// serialising, where `serde_json` would write `null`).
    #[error("non-finite number {value} has no JSON form")]
    NonFiniteNumber {
        /// The float.
        value: f64,
    },
    /// A number held neither as a 64-bit integer nor as a double, or whose
    /// shortest decimal form could not be derived: a defensive case that
    /// serde_json's default number representation does not produce.
    #[error("number {value} at pointer \"{path}\" cannot be read as a double")]
    UnrepresentableNumber {
        /// The number as written.
        value: String,
        /// Where it is in the value.
        path: String,
    },
    /// serde could not turn the Rust value into JSON (e.g. a map with
    /// non-string keys).
    #[error("value cannot be serialized to JSON: {0}")]
    Serialize(#[from] serde_json::Error),
}

impl JcsError {
    /// Prefixes the pointer of a path-carrying error while it unwinds, so
    /// successful canonicalisation pays nothing for paths.
    fn nested_in_member(mut self, name: &str) -> Self {
        self.prefix_path(|out| {
            out.push('/');
            for c in name.chars() {
                match c {
                    '~' => out.push_str("~0"),
                    '/' => out.push_str("~1"),
                    _ => out.push(c),
                }
            }
        });
        self
    }

    fn nested_in_element(mut self, index: usize) -> Self {
        self.prefix_path(|out| {
            // Writing to a String cannot fail.
            let _ = write!(out, "/{index}");
        });
        self
    }

    fn prefix_path(&mut self, push_segment: impl FnOnce(&mut String)) {
        if let Self::UnsafeInteger { path, .. } | Self::UnrepresentableNumber { path, .. } = self {
            let mut prefixed = String::with_capacity(path.len() + 8);
            push_segment(&mut prefixed);
            prefixed.push_str(path);
            *path = prefixed;
        }
    }
}

/// Returns the canonical bytes of `value`.
pub fn canonicalize(value: &Value) -> Result<Vec<u8>, JcsError> {
    let mut out = Vec::with_capacity(256);
    canonicalize_into(value, &mut out)?;
    Ok(out)
}

/// Appends the canonical bytes of `value` to `out`, so a caller that
/// canonicalises many values can reuse one buffer. On error `out` holds a
/// partial write and must be discarded.
pub fn canonicalize_into(value: &Value, out: &mut Vec<u8>) -> Result<(), JcsError> {
    Canonicalizer::default().write_value(value, out)
}

/// Serializes `value` with serde (as `serde_json::to_value` does) and returns
/// its canonical bytes. Non-finite floats are an error here, where
/// `serde_json` would silently write them as `null`.
pub fn to_canonical<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, JcsError> {
    value.serialize(FiniteFloatProbe).map_err(|e| match e {
        ProbeError::NonFinite(value) => JcsError::NonFiniteNumber { value },
        ProbeError::Custom(message) => JcsError::Serialize(ser::Error::custom(message)),
    })?;
    canonicalize(&serde_json::to_value(value)?)
}

/// SHA-256 of the canonical bytes of `value`, hashed as they are produced
/// rather than collected first.
pub fn canonical_sha256(value: &Value) -> Result<[u8; 32], JcsError> {
    let mut hasher = Sha256::new();
    Canonicalizer::default().write_value(value, &mut hasher)?;
    Ok(hasher.finalize().into())
}

/// Where canonical bytes go: a buffer, or a hash that never needs them all
/// in memory.
trait Sink {
    fn put(&mut self, bytes: &[u8]);

    fn put_byte(&mut self, byte: u8) {
        self.put(&[byte]);
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }

    fn put_byte(&mut self, byte: u8) {
        self.push(byte);
    }
}

impl Sink for Sha256 {
    fn put(&mut self, bytes: &[u8]) {
        self.update(bytes);
    }
}

#[derive(Default)]
struct Canonicalizer<'v> {
    /// Members of the objects being written, innermost last. Each object
    /// sorts its own tail and truncates it when done, so one allocation
    /// serves the whole document.
    members: Vec<(&'v str, &'v Value)>,
}

impl<'v> Canonicalizer<'v> {
    fn write_value(&mut self, value: &'v Value, out: &mut impl Sink) -> Result<(), JcsError> {
        match value {
            Value::Null => out.put(b"null"),
            Value::Bool(true) => out.put(b"true"),
            Value::Bool(false) => out.put(b"false"),
            Value::Number(number) => write_number(number, out)?,
            Value::String(string) => write_string(string, out),
            Value::Array(elements) => {
                out.put_byte(b'[');
                for (index, element) in elements.iter().enumerate() {
                    if index > 0 {
                        out.put_byte(b',');
                    }
                    self.write_value(element, out)
                        .map_err(|e| e.nested_in_element(index))?;
                }
                out.put_byte(b']');
            }
            Value::Object(map) => {
                let first = self.members.len();
                self.members
                    .extend(map.iter().map(|(name, member)| (name.as_str(), member)));
                self.members[first..].sort_unstable_by(|a, b| compare_utf16(a.0, b.0));
                out.put_byte(b'{');
                for index in first..self.members.len() {
                    let (name, member) = self.members[index];
                    if index > first {
                        out.put_byte(b',');
                    }
                    write_string(name, out);
                    out.put_byte(b':');
                    self.write_value(member, out)
                        .map_err(|e| e.nested_in_member(name))?;
                }
                self.members.truncate(first);
                out.put_byte(b'}');
            }
        }
        Ok(())
    }
}

/// Orders two strings by their UTF-16 code units (RFC 8785 §3.2.3) without
/// transcoding them.
///
/// UTF-8 byte order is code point order, and UTF-16 order differs from code
/// point order in one case only: a character from U+10000 up (a surrogate
/// pair, 0xD800–0xDFFF) sorts before one in U+E000–U+FFFF. Both strings
/// share every byte before the first difference, so that byte is either a
/// continuation byte in both (same kind of character: byte order is right)
/// or the lead byte of a different character in each. Leads 0xEE and 0xEF
/// start U+E000–U+FFFF, leads 0xF0–0xF4 start U+10000 and up; only that
/// pairing reverses the byte order.
pub(crate) fn compare_utf16(a: &str, b: &str) -> Ordering {
    let first_difference = a
        .bytes()
        .zip(b.bytes())
        .find(|(byte_a, byte_b)| byte_a != byte_b);
    match first_difference {
        None => a.len().cmp(&b.len()),
        Some((byte_a, byte_b)) => {
            let starts_upper_bmp = |byte: u8| matches!(byte, 0xEE | 0xEF);
            let starts_supplementary = |byte: u8| byte >= 0xF0;
            if (starts_upper_bmp(byte_a) && starts_supplementary(byte_b))
                || (starts_supplementary(byte_a) && starts_upper_bmp(byte_b))
            {
                byte_b.cmp(&byte_a)
            } else {
                byte_a.cmp(&byte_b)
            }
        }
    }
}

/// For each byte, the escape RFC 8785 §3.2.2.2 requires, 0 for none: the
/// short forms where JSON has them, `\u00xx` for other control characters.
/// Everything else, including U+007F and U+2028, stays literal.
static ESCAPES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = b'u';
        byte += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0A] = b'n';
    table[0x0C] = b'f';
    table[0x0D] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

fn write_string(string: &str, out: &mut impl Sink) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = string.as_bytes();
    out.put_byte(b'"');
    let mut unescaped_from = 0;
    for (index, &byte) in bytes.iter().enumerate() {
        let escape = ESCAPES[usize::from(byte)];
        if escape == 0 {
            continue;
        }
        out.put(&bytes[unescaped_from..index]);
        if escape == b'u' {
            out.put(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xF)],
            ]);
        } else {
            out.put(&[b'\\', escape]);
        }
        unescaped_from = index + 1;
    }
    out.put(&bytes[unescaped_from..]);
    out.put_byte(b'"');
}

mod number;
mod probe;
#[cfg(test)]
mod tests;

pub use number::format_number;
use number::write_number;
use probe::{FiniteFloatProbe, ProbeError};
