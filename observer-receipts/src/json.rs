//! Strict JSON reader for verifiers.
//!
//! A verifier must see exactly the document the signer meant, and two
//! conformant verifiers must never disagree about what a document says. The
//! ordinary reader (`serde_json::from_slice`) is lenient where that matters:
//! it keeps the last of two members with the same name, and it silently
//! rounds integer literals that have no exact IEEE-754 double. An attacker
//! can exploit either to make one verifier check a different value than
//! another (RFC 8785 section 3.1, I-JSON RFC 7493, the asqav-25 vectors).
//!
//! [`parse_strict`] is a small hand-written RFC 8259 parser that refuses:
//! - duplicate member names at any depth, compared after escape decoding;
//! - integer literals outside the I-JSON safe range ±(2^53−1), judged on the
//!   source digits, before any conversion could lose them;
//! - numbers that overflow to ±infinity;
//! - invalid UTF-8, lone surrogate escapes, raw control characters in
//!   strings, trailing data, and nesting deeper than [`MAX_DEPTH`].
//!
//! It is hand-written rather than a `serde` visitor over
//! `serde_json::Deserializer` because the visitor cannot tell an integer
//! literal too long for `u64` (which `serde_json` hands over as `f64`) from a
//! float literal, and it reports no byte offsets. The result is an ordinary
//! [`serde_json::Value`], so the rest of the code base keeps one value type.

mod error;

use serde_json::{map::Entry, Map, Number, Value};

use super::jcs::MAX_SAFE_INTEGER;
use error::PathSegment;
pub use error::{JsonError, Position};

/// Deepest nesting of arrays and objects accepted, the same limit as
/// `serde_json`'s default: receipts are shallow, and the limit keeps a hostile
/// document from exhausting the stack.
pub const MAX_DEPTH: usize = 128;

/// Parses one JSON document, refusing everything a verifier must not accept
/// (see the module documentation).
pub fn parse_strict(bytes: &[u8]) -> Result<Value, JsonError> {
    parse_strict_nested(bytes, 0)
}

/// [`parse_strict`] of a document that sits `depth` arrays or objects deep
/// inside another one: the nesting limit counts from the outer document's
/// top, so a member parsed on its own is refused exactly when the whole
/// document would be. Positions are relative to `bytes`.
pub fn parse_strict_nested(bytes: &[u8], depth: usize) -> Result<Value, JsonError> {
    let text = std::str::from_utf8(bytes).map_err(|e| JsonError::InvalidUtf8 {
        at: Position::locate(bytes, e.valid_up_to()),
    })?;
    let mut parser = Parser {
        text,
        bytes,
        pos: 0,
    };
    let value = parser.parse_value(depth)?;
    parser.skip_whitespace();
    if parser.pos != bytes.len() {
        return Err(JsonError::TrailingData {
            at: parser.position(parser.pos),
        });
    }
    Ok(value)
}

struct Parser<'a> {
    /// The input, already checked to be UTF-8. Every slice taken from it
    /// starts and ends next to an ASCII byte, hence on a char boundary.
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn position(&self, offset: usize) -> Position {
        Position::locate(self.bytes, offset)
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn unexpected(&self, expected: &'static str) -> JsonError {
        if self.pos >= self.bytes.len() {
            JsonError::UnexpectedEnd {
                expected,
                at: self.position(self.pos),
            }
        } else {
            JsonError::Syntax {
                expected,
                at: self.position(self.pos),
            }
        }
    }

    /// Slices the input; `start..end` always lies on char boundaries (see
    /// [`Parser::text`]), the fallback only keeps the code panic-free.
    fn slice(&self, start: usize, end: usize) -> Result<&'a str, JsonError> {
        self.text
            .get(start..end)
            .ok_or_else(|| JsonError::InvalidUtf8 {
                at: self.position(start),
            })
    }

    fn parse_value(&mut self, depth: usize) -> Result<Value, JsonError> {
        self.skip_whitespace();
        match self.peek() {
            Some(b'{') => self.parse_object(depth + 1),
            Some(b'[') => self.parse_array(depth + 1),
            Some(b'"') => self.parse_string().map(Value::String),
            Some(b't') => self.parse_literal("true", Value::Bool(true)),
            Some(b'f') => self.parse_literal("false", Value::Bool(false)),
            Some(b'n') => self.parse_literal("null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.parse_number().map(Value::Number),
            _ => Err(self.unexpected("a JSON value")),
        }
    }

    fn parse_literal(&mut self, word: &'static str, value: Value) -> Result<Value, JsonError> {
        if self.bytes[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(value)
        } else {
            Err(self.unexpected(word))
        }
    }

    fn enter(&self, depth: usize) -> Result<(), JsonError> {
        if depth > MAX_DEPTH {
            Err(JsonError::TooDeep {
                limit: MAX_DEPTH,
                at: self.position(self.pos),
            })
        } else {
            Ok(())
        }
    }

    fn parse_object(&mut self, depth: usize) -> Result<Value, JsonError> {
        self.enter(depth)?;
        self.pos += 1;
        let mut members = Map::new();
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Object(members));
        }
        loop {
            self.skip_whitespace();
            let name_at = self.pos;
            if self.peek() != Some(b'"') {
                return Err(self.unexpected("a member name"));
            }
            let name = self.parse_string()?;
            self.skip_whitespace();
            if self.peek() != Some(b':') {
                return Err(self.unexpected("':'"));
            }
            self.pos += 1;
            let value = self
                .parse_value(depth)
                .map_err(|e| e.nested_in(PathSegment::Member(&name)))?;
            match members.entry(name) {
                Entry::Vacant(slot) => {
                    slot.insert(value);
                }
                Entry::Occupied(existing) => {
                    let name = existing.key().clone();
                    let mut path = String::with_capacity(name.len() + 1);
                    PathSegment::Member(&name).push_pointer_token(&mut path);
                    return Err(JsonError::DuplicateMember {
                        name,
                        path,
                        at: self.position(name_at),
                    });
                }
            }
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Value::Object(members));
                }
                _ => return Err(self.unexpected("',' or '}'")),
            }
        }
    }

    fn parse_array(&mut self, depth: usize) -> Result<Value, JsonError> {
        self.enter(depth)?;
        self.pos += 1;
        let mut elements = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::Array(elements));
        }
        loop {
            let index = elements.len();
            let element = self
                .parse_value(depth)
                .map_err(|e| e.nested_in(PathSegment::Element(index)))?;
            elements.push(element);
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::Array(elements));
                }
                _ => return Err(self.unexpected("',' or ']'")),
            }
        }
    }

    /// Parses a string starting at its opening quote. Runs without escapes
    /// are copied as they are; the input is valid UTF-8 already.
    fn parse_string(&mut self) -> Result<String, JsonError> {
        self.pos += 1;
        let mut decoded = String::new();
        loop {
            let run_start = self.pos;
            self.skip_plain_string_words();
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            decoded.push_str(self.slice(run_start, self.pos)?);
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(decoded);
                }
                Some(b'\\') => self.parse_escape(&mut decoded)?,
                Some(_) => {
                    return Err(JsonError::ControlCharacter {
                        at: self.position(self.pos),
                    })
                }
                None => return Err(self.unexpected("'\"' closing the string")),
            }
        }
    }

    fn skip_plain_string_words(&mut self) {
        self.pos = skip_plain_string_words(self.bytes, self.pos);
    }

    fn parse_escape(&mut self, out: &mut String) -> Result<(), JsonError> {
        let escape_at = self.pos;
        self.pos += 1;
        let simple = match self.peek() {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                self.pos += 1;
                let unit = self.parse_hex4(escape_at)?;
                let c = match unit {
                    0xD800..=0xDBFF => {
                        if !self.bytes[self.pos..].starts_with(b"\\u") {
                            return Err(JsonError::LoneSurrogate {
                                at: self.position(escape_at),
                            });
                        }
                        self.pos += 2;
                        let low = self.parse_hex4(escape_at)?;
                        if !(0xDC00..=0xDFFF).contains(&low) {
                            return Err(JsonError::LoneSurrogate {
                                at: self.position(escape_at),
                            });
                        }
                        0x10000 + ((u32::from(unit) - 0xD800) << 10) + (u32::from(low) - 0xDC00)
                    }
                    0xDC00..=0xDFFF => {
                        return Err(JsonError::LoneSurrogate {
                            at: self.position(escape_at),
                        })
                    }
                    _ => u32::from(unit),
                };
                let c = char::from_u32(c).ok_or_else(|| JsonError::LoneSurrogate {
                    at: self.position(escape_at),
                })?;
                out.push(c);
                return Ok(());
            }
            Some(_) => {
                return Err(JsonError::InvalidEscape {
                    at: self.position(escape_at),
                })
            }
            None => return Err(self.unexpected("an escape sequence")),
        };
        self.pos += 1;
        out.push(simple);
        Ok(())
    }

    fn parse_hex4(&mut self, escape_at: usize) -> Result<u16, JsonError> {
        let mut unit: u16 = 0;
        for _ in 0..4 {
            let digit = match self.peek() {
                Some(b @ b'0'..=b'9') => b - b'0',
                Some(b @ b'a'..=b'f') => b - b'a' + 10,
                Some(b @ b'A'..=b'F') => b - b'A' + 10,
                Some(_) => {
                    return Err(JsonError::InvalidEscape {
                        at: self.position(escape_at),
                    })
                }
                None => return Err(self.unexpected("four hex digits")),
            };
            unit = (unit << 4) | u16::from(digit);
            self.pos += 1;
        }
        Ok(unit)
    }

    fn skip_digits(&mut self) -> usize {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        self.pos - start
    }

    /// Parses a number per the RFC 8259 grammar. Integer literals (no
    /// fraction, no exponent) are judged on their digits against the safe
    /// range, so `9007199254740993` is refused instead of being rounded.
    fn parse_number(&mut self) -> Result<Number, JsonError> {
        let start = self.pos;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        let integer_start = self.pos;
        match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                if let Some(b'0'..=b'9') = self.peek() {
                    return Err(JsonError::InvalidNumber {
                        reason: "leading zero",
                        at: self.position(start),
                    });
                }
            }
            Some(b'1'..=b'9') => {
                self.skip_digits();
            }
            _ => {
                return Err(JsonError::InvalidNumber {
                    reason: "expected a digit",
                    at: self.position(self.pos),
                })
            }
        }
        let integer_end = self.pos;
        let mut is_integer = true;
        if self.peek() == Some(b'.') {
            is_integer = false;
            self.pos += 1;
            if self.skip_digits() == 0 {
                return Err(JsonError::InvalidNumber {
                    reason: "expected a digit after '.'",
                    at: self.position(self.pos),
                });
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            is_integer = false;
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if self.skip_digits() == 0 {
                return Err(JsonError::InvalidNumber {
                    reason: "expected a digit in the exponent",
                    at: self.position(self.pos),
                });
            }
        }
        let literal = self.slice(start, self.pos)?;
        if is_integer {
            self.integer(
                literal,
                &self.bytes[integer_start..integer_end],
                negative,
                start,
            )
        } else {
            let value: f64 = literal.parse().map_err(|_| JsonError::InvalidNumber {
                reason: "not a decimal number",
                at: self.position(start),
            })?;
            Number::from_f64(value).ok_or_else(|| JsonError::NonFiniteNumber {
                literal: literal.to_owned(),
                path: String::new(),
                at: self.position(start),
            })
        }
    }

    fn integer(
        &self,
        literal: &str,
        digits: &[u8],
        negative: bool,
        start: usize,
    ) -> Result<Number, JsonError> {
        let unsafe_integer = || JsonError::UnsafeInteger {
            literal: literal.to_owned(),
            path: String::new(),
            at: self.position(start),
        };
        // 2^53-1 has 16 digits; longer literals (no leading zeros) are larger
        // and could overflow the accumulator below.
        if digits.len() > 16 {
            return Err(unsafe_integer());
        }
        let magnitude = digits
            .iter()
            .fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0'));
        if magnitude > MAX_SAFE_INTEGER {
            return Err(unsafe_integer());
        }
        if !negative {
            return Ok(Number::from(magnitude));
        }
        if magnitude == 0 {
            // `-0` is read as the double -0.0, exactly as serde_json reads
            // it; JCS writes it as `0`.
            return Number::from_f64(-0.0).ok_or_else(unsafe_integer);
        }
        // The magnitude is below 2^53, so the conversion cannot fail.
        i64::try_from(magnitude)
            .map(|m| Number::from(-m))
            .map_err(|_| unsafe_integer())
    }
}

/// The first position at or after `pos`, in steps of eight bytes, whose
/// word holds a quote, a backslash or a control character (or fewer than
/// eight bytes remain); long base64 signatures make up most of an
/// envelope. The tests are exact about whether such a byte is present, so
/// a byte loop from the result sees every one of them.
pub(crate) fn skip_plain_string_words(bytes: &[u8], mut pos: usize) -> usize {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH_BITS: u64 = u64::from_ne_bytes([0x80; 8]);
    let has_byte_below =
        |word: u64, limit: u8| word.wrapping_sub(ONES * u64::from(limit)) & !word & HIGH_BITS != 0;
    while let Some(chunk) = bytes.get(pos..pos + 8) {
        let mut word_bytes = [0u8; 8];
        word_bytes.copy_from_slice(chunk);
        let word = u64::from_ne_bytes(word_bytes);
        if has_byte_below(word ^ (ONES * u64::from(b'"')), 1)
            || has_byte_below(word ^ (ONES * u64::from(b'\\')), 1)
            || has_byte_below(word, 0x20)
        {
            return pos;
        }
        pos += 8;
    }
    pos
}

#[cfg(test)]
mod tests;
