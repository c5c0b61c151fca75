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
use std::fmt::{self, Write as _};

use serde::ser::{self, Serialize};
use serde_json::{Number, Value};
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
    #[error(
        "number {value} at pointer \"{path}\" is an integer outside the I-JSON safe range \
         ±(2^53-1); carry it as a string"
    )]
    UnsafeInteger { value: String, path: String },
    #[error("non-finite number {value} has no JSON form")]
    NonFiniteNumber { value: f64 },
    #[error("number {value} at pointer \"{path}\" cannot be read as a double")]
    UnrepresentableNumber { value: String, path: String },
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

/// Writes `f` as ECMAScript's `Number.prototype.toString` does (ES6
/// 7.1.12.1), the number form RFC 8785 §3.2.2.3 prescribes: the shortest
/// digits that read back as `f`, in fixed notation for magnitudes in
/// [1e-6, 1e21) and exponent notation otherwise. `-0` is written `0`.
///
/// This is the plain ECMAScript rule; [`canonicalize`] additionally refuses
/// integers beyond the safe range.
pub fn format_number(f: f64) -> Result<String, JcsError> {
    let mut out = Vec::with_capacity(24);
    write_es6_number(f, &mut out)?;
    // Only ASCII digits, '-', '.', 'e' and '+' were written.
    Ok(out.into_iter().map(char::from).collect())
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

fn write_number(number: &Number, out: &mut impl Sink) -> Result<(), JcsError> {
    if let Some(unsigned) = number.as_u64() {
        check_safe(unsigned, number)?;
        write_decimal(unsigned, out);
    } else if let Some(signed) = number.as_i64() {
        check_safe(signed.unsigned_abs(), number)?;
        out.put_byte(b'-');
        write_decimal(signed.unsigned_abs(), out);
    } else if let Some(float) = number.as_f64() {
        // A double that ECMAScript writes as a bare integer above the safe
        // range reads back as an unsafe integer literal, which the strict
        // reader refuses; from 1e21 on it is written with an exponent.
        if float.fract() == 0.0
            && float.abs() > MAX_SAFE_INTEGER as f64
            && float.abs() < ES6_FIXED_NOTATION_LIMIT
        {
            return Err(JcsError::UnsafeInteger {
                value: format_number(float)?,
                path: String::new(),
            });
        }
        write_es6_number(float, out)?;
    } else {
        return Err(JcsError::UnrepresentableNumber {
            value: number.to_string(),
            path: String::new(),
        });
    }
    Ok(())
}

fn check_safe(magnitude: u64, number: &Number) -> Result<(), JcsError> {
    if magnitude > MAX_SAFE_INTEGER {
        Err(JcsError::UnsafeInteger {
            value: number.to_string(),
            path: String::new(),
        })
    } else {
        Ok(())
    }
}

fn write_decimal(mut value: u64, out: &mut impl Sink) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.put(&digits[start..]);
}

/// A fixed stack buffer for `{:e}` output, so formatting a double does not
/// allocate. The longest f64 in `{:e}` form is 23 bytes.
struct ExponentBuffer {
    bytes: [u8; 32],
    len: usize,
}

impl fmt::Write for ExponentBuffer {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let end = self.len + text.len();
        let slot = self.bytes.get_mut(self.len..end).ok_or(fmt::Error)?;
        slot.copy_from_slice(text.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// A positive double as ES6 7.1.12.1 describes it: significant digits `s`
/// (`k` of them) and the decimal point position `n`, the value being
/// `0.s × 10^n`.
struct Decimal {
    digits: [u8; 24],
    k: usize,
    n: i32,
}

impl Decimal {
    fn digits(&self) -> &[u8] {
        &self.digits[..self.k]
    }

    /// Formats `f` (positive, finite) with `{:e}`: the shortest round-trip
    /// digits without a precision, the exact value rounded half-to-even to
    /// `precision` fraction digits with one. Also returns the text, for
    /// reading it back.
    fn of(f: f64, precision: Option<usize>) -> Option<(Self, ExponentBuffer)> {
        let mut text = ExponentBuffer {
            bytes: [0; 32],
            len: 0,
        };
        match precision {
            None => write!(text, "{f:e}"),
            Some(precision) => write!(text, "{f:.precision$e}"),
        }
        .ok()?;
        let formatted = &text.bytes[..text.len];
        let split = formatted.iter().position(|&b| b == b'e')?;
        let (mantissa, exponent) = (&formatted[..split], &formatted[split + 1..]);
        let mut decimal = Self {
            digits: [0; 24],
            k: 0,
            n: 0,
        };
        for &digit in mantissa.iter().filter(|b| b.is_ascii_digit()) {
            *decimal.digits.get_mut(decimal.k)? = digit;
            decimal.k += 1;
        }
        while decimal.k > 1 && decimal.digits[decimal.k - 1] == b'0' {
            decimal.k -= 1;
        }
        let (negative, exponent_digits) = match exponent.split_first() {
            Some((b'-', rest)) => (true, rest),
            _ => (false, exponent),
        };
        let magnitude = exponent_digits.iter().try_fold(0i32, |acc, &d| {
            Some(acc * 10 + i32::from(d.checked_sub(b'0')?))
        })?;
        decimal.n = if negative {
            1 - magnitude
        } else {
            1 + magnitude
        };
        Some((decimal, text))
    }

    /// ES6 picks, among the shortest digit strings that read back as `f`,
    /// the one closest to `f`, and on a tie the one ending in an even digit.
    /// Rust's shortest mode breaks ties upwards (0x43143FF3C1CB0959 is
    /// exactly 1424953923781206.25; ES6 writes ...206.2, Rust ...206.3), so
    /// when its last digit is odd the exact value rounded half-to-even to the
    /// same length is tried, and taken if it reads back as `f`.
    fn es6(f: f64) -> Option<Self> {
        let (shortest, _) = Self::of(f, None)?;
        let last_is_odd = shortest.digits().last().is_some_and(|d| d % 2 == 1);
        if !last_is_odd {
            return Some(shortest);
        }
        let (nearest, text) = Self::of(f, Some(shortest.k - 1))?;
        let reads_back = std::str::from_utf8(&text.bytes[..text.len])
            .ok()
            .and_then(|t| t.parse::<f64>().ok())
            == Some(f);
        if reads_back && nearest.k == shortest.k {
            Some(nearest)
        } else {
            Some(shortest)
        }
    }
}

fn write_es6_number(f: f64, out: &mut impl Sink) -> Result<(), JcsError> {
    if !f.is_finite() {
        return Err(JcsError::NonFiniteNumber { value: f });
    }
    if f == 0.0 {
        out.put_byte(b'0');
        return Ok(());
    }
    let decimal = Decimal::es6(f.abs()).ok_or_else(|| JcsError::UnrepresentableNumber {
        value: f.to_string(),
        path: String::new(),
    })?;
    if f < 0.0 {
        out.put_byte(b'-');
    }
    let digits = decimal.digits();
    let (k, n) = (decimal.k as i32, decimal.n);
    if k <= n && n <= 21 {
        out.put(digits);
        for _ in 0..n - k {
            out.put_byte(b'0');
        }
    } else if 0 < n && n <= 21 {
        let (integral, fraction) = digits.split_at(n as usize);
        out.put(integral);
        out.put_byte(b'.');
        out.put(fraction);
    } else if -6 < n && n <= 0 {
        out.put(b"0.");
        for _ in 0..-n {
            out.put_byte(b'0');
        }
        out.put(digits);
    } else {
        let (first, rest) = digits.split_at(1);
        out.put(first);
        if !rest.is_empty() {
            out.put_byte(b'.');
            out.put(rest);
        }
        let e = n - 1;
        out.put(if e < 0 { b"e-" } else { b"e+" });
        write_decimal(u64::from(e.unsigned_abs()), out);
    }
    Ok(())
}

/// Walks a serializable value only to find non-finite floats, which
/// `serde_json::to_value` would turn into `null` without a word. It builds
/// nothing and allocates nothing.
struct FiniteFloatProbe;

#[derive(Debug)]
enum ProbeError {
    NonFinite(f64),
    Custom(String),
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NonFinite(value) => write!(f, "non-finite number {value}"),
            Self::Custom(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for ProbeError {}

impl ser::Error for ProbeError {
    fn custom<T: fmt::Display>(message: T) -> Self {
        Self::Custom(message.to_string())
    }
}

fn probe_float(value: f64) -> Result<(), ProbeError> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(ProbeError::NonFinite(value))
    }
}

macro_rules! probe_accepts {
    ($($method:ident($type:ty)),* $(,)?) => {
        $(fn $method(self, _: $type) -> Result<(), ProbeError> { Ok(()) })*
    };
}

impl ser::Serializer for FiniteFloatProbe {
    type Ok = ();
    type Error = ProbeError;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    probe_accepts!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_unit_struct(&'static str),
    );

    fn serialize_f32(self, value: f32) -> Result<(), ProbeError> {
        probe_float(f64::from(value))
    }

    fn serialize_f64(self, value: f64) -> Result<(), ProbeError> {
        probe_float(value)
    }

    fn serialize_none(self) -> Result<(), ProbeError> {
        Ok(())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), ProbeError> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), ProbeError> {
        Ok(())
    }

    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<(), ProbeError> {
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), ProbeError> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        value: &T,
    ) -> Result<(), ProbeError> {
        value.serialize(self)
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Self, ProbeError> {
        Ok(self)
    }

    fn serialize_tuple(self, _: usize) -> Result<Self, ProbeError> {
        Ok(self)
    }

    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, ProbeError> {
        Ok(self)
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, ProbeError> {
        Ok(self)
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Self, ProbeError> {
        Ok(self)
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, ProbeError> {
        Ok(self)
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, ProbeError> {
        Ok(self)
    }

    /// Display-only values (timestamps, addresses) become strings, which
    /// cannot hold a float; skip formatting them.
    fn collect_str<T: fmt::Display + ?Sized>(self, _: &T) -> Result<(), ProbeError> {
        Ok(())
    }
}

macro_rules! probe_compound {
    ($($trait:ident :: $method:ident),* $(,)?) => {
        $(impl ser::$trait for FiniteFloatProbe {
            type Ok = ();
            type Error = ProbeError;

            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ProbeError> {
                value.serialize(FiniteFloatProbe)
            }

            fn end(self) -> Result<(), ProbeError> {
                Ok(())
            }
        })*
    };
}

probe_compound!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field,
);

macro_rules! probe_fields {
    ($($trait:ident),* $(,)?) => {
        $(impl ser::$trait for FiniteFloatProbe {
            type Ok = ();
            type Error = ProbeError;

            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                _: &'static str,
                value: &T,
            ) -> Result<(), ProbeError> {
                value.serialize(FiniteFloatProbe)
            }

            fn end(self) -> Result<(), ProbeError> {
                Ok(())
            }
        })*
    };
}

probe_fields!(SerializeStruct, SerializeStructVariant);

impl ser::SerializeMap for FiniteFloatProbe {
    type Ok = ();
    type Error = ProbeError;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), ProbeError> {
        key.serialize(FiniteFloatProbe)
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ProbeError> {
        value.serialize(FiniteFloatProbe)
    }

    fn end(self) -> Result<(), ProbeError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
