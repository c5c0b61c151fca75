//! Numbers as RFC 8785 writes them: integers in decimal within the I-JSON
//! safe range, other doubles as ECMAScript's `Number.prototype.toString`.
use std::fmt::{self, Write as _};

use serde_json::Number;

use super::{JcsError, Sink, ES6_FIXED_NOTATION_LIMIT, MAX_SAFE_INTEGER};

/// Writes `f` as ECMAScript's `Number.prototype.toString` does (ES6
/// 7.1.12.1), the number form RFC 8785 §3.2.2.3 prescribes: the shortest
/// digits that read back as `f`, in fixed notation for magnitudes in
/// [1e-6, 1e21) and exponent notation otherwise. `-0` is written `0`.
///
/// This is the plain ECMAScript rule; [`super::canonicalize`] additionally refuses
/// integers beyond the safe range.
pub fn format_number(f: f64) -> Result<String, JcsError> {
    let mut out = Vec::with_capacity(24);
    write_es6_number(f, &mut out)?;
    // Only ASCII digits, '-', '.', 'e' and '+' were written.
    Ok(out.into_iter().map(char::from).collect())
}

pub(super) fn write_number(number: &Number, out: &mut impl Sink) -> Result<(), JcsError> {
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
