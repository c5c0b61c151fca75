//! Recognises text that is already canonical JSON (RFC 8785) without
//! building a value: the verifier's fast check that a stored context is
//! JCS, which it otherwise learns by parsing the context strictly and
//! canonicalising it again.
//!
//! The scanner accepts only a subset of canonical texts: the common shape
//! of observer contexts (integers in the safe range, strings whose only
//! escapes are the ones JCS writes, member names without escapes, nesting
//! at most [`MAX_SCAN_DEPTH`] deep). Whatever it accepts is strict JSON
//! (no duplicate member, no unsafe integer) and is its own JCS form, so
//! `parse_strict` followed by `canonicalize` would return the same bytes.
//! Anything else (floats, `-0`, escaped names, deep nesting, any deviation
//! from canonical form) makes it answer `None`, and the caller takes the
//! full parse-and-canonicalise path, which says exactly what is wrong.
use std::cmp::Ordering;

use super::jcs::{compare_utf16, MAX_SAFE_INTEGER};

/// Deeper nesting is left to the strict parser (whose limit is larger).
pub const MAX_SCAN_DEPTH: usize = 32;

/// What the scan learned about an accepted text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Canonical {
    /// The text is an object with a top-level member named `erased`.
    pub has_erased_member: bool,
}

/// `Some` when `text` is canonical JSON of the recognised shape.
pub fn scan(text: &str) -> Option<Canonical> {
    let mut scanner = Scanner {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        has_erased_member: false,
    };
    scanner.value(0)?;
    (scanner.pos == scanner.bytes.len()).then_some(Canonical {
        has_erased_member: scanner.has_erased_member,
    })
}

struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    has_erased_member: bool,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'{' => self.object(depth + 1),
            b'[' => self.array(depth + 1),
            b'"' => self.string().map(|_| ()),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.integer(),
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.bytes[self.pos..].starts_with(word).then(|| {
            self.pos += word.len();
        })
    }

    fn object(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_SCAN_DEPTH {
            return None;
        }
        self.pos += 1;
        if self.peek()? == b'}' {
            self.pos += 1;
            return Some(());
        }
        let mut previous: Option<&str> = None;
        loop {
            if self.peek()? != b'"' {
                return None;
            }
            let (start, end, escaped) = self.string()?;
            if escaped {
                return None;
            }
            // Between the quotes, which are ASCII: a char boundary.
            let name = self.text.get(start..end)?;
            // Strictly increasing in UTF-16 order: sorted and unique.
            if previous.is_some_and(|p| compare_utf16(p, name) != Ordering::Less) {
                return None;
            }
            previous = Some(name);
            if depth == 1 && name == "erased" {
                self.has_erased_member = true;
            }
            if self.peek()? != b':' {
                return None;
            }
            self.pos += 1;
            self.value(depth)?;
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn array(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_SCAN_DEPTH {
            return None;
        }
        self.pos += 1;
        if self.peek()? == b']' {
            self.pos += 1;
            return Some(());
        }
        loop {
            self.value(depth)?;
            match self.peek()? {
                b',' => self.pos += 1,
                b']' => {
                    self.pos += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// A string in the form JCS writes it: literal UTF-8 except `"`, `\`
    /// and control characters, which take the short escape where JSON has
    /// one and `\u00xx` (lowercase hex) otherwise. Returns the content's
    /// byte range and whether it had escapes.
    fn string(&mut self) -> Option<(usize, usize, bool)> {
        self.pos += 1;
        let start = self.pos;
        let mut escaped = false;
        loop {
            self.skip_plain_words();
            match self.peek()? {
                b'"' => {
                    self.pos += 1;
                    return Some((start, self.pos - 1, escaped));
                }
                b'\\' => {
                    escaped = true;
                    self.escape()?;
                }
                0x00..=0x1F => return None,
                _ => self.pos += 1,
            }
        }
    }

    /// Skips eight bytes at a time while none of them is a quote, a
    /// backslash or a control character (the byte loop sees every one).
    fn skip_plain_words(&mut self) {
        self.pos = super::json::skip_plain_string_words(self.bytes, self.pos);
    }

    fn escape(&mut self) -> Option<()> {
        match *self.bytes.get(self.pos + 1)? {
            b'"' | b'\\' | b'b' | b't' | b'n' | b'f' | b'r' => {
                self.pos += 2;
                Some(())
            }
            b'u' => {
                let hex = self.bytes.get(self.pos + 2..self.pos + 6)?;
                let digit = |b: u8| match b {
                    b'0'..=b'9' => Some(b - b'0'),
                    b'a'..=b'f' => Some(b - b'a' + 10),
                    _ => None,
                };
                if hex[0] != b'0' || hex[1] != b'0' {
                    return None;
                }
                let unit = (digit(hex[2])? << 4) | digit(hex[3])?;
                // Only control characters without a short form.
                if unit >= 0x20 || matches!(unit, 0x08 | 0x09 | 0x0A | 0x0C | 0x0D) {
                    return None;
                }
                self.pos += 6;
                Some(())
            }
            _ => None,
        }
    }

    /// An integer literal as JCS writes one: no leading zero, no `-0`,
    /// within the I-JSON safe range.
    fn integer(&mut self) -> Option<()> {
        let negative = self.peek()? == b'-';
        if negative {
            self.pos += 1;
        }
        let digits_start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        let digits = &self.bytes[digits_start..self.pos];
        if digits.is_empty() || digits.len() > 16 || matches!(self.peek(), Some(b'.' | b'e' | b'E'))
        {
            return None;
        }
        if digits[0] == b'0' && (digits.len() > 1 || negative) {
            return None;
        }
        let magnitude = digits
            .iter()
            .fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0'));
        (magnitude <= MAX_SAFE_INTEGER).then_some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{jcs, json};

    /// What the full path says: strict JSON whose JCS form is the text.
    fn canonical_by_parsing(text: &str) -> bool {
        json::parse_strict(text.as_bytes())
            .ok()
            .and_then(|v| jcs::canonicalize(&v).ok())
            .is_some_and(|c| c == text.as_bytes())
    }

    #[test]
    fn accepted_texts_are_their_own_jcs_form() {
        let accepted = [
            r#"{"argv":["sh","-c","echo \"hi\"\\n"],"cwd":"/tmp","pid":4242,"ppid":1}"#,
            r#"{"a":null,"b":true,"c":false,"d":-17,"e":0,"f":9007199254740991,"g":[],"h":{}}"#,
            r#"{"ctl":"\u0001\b\t\n\f\r\u001f","del":"","uni":"é€😀"}"#,
            r#"{"":1,"a":{"":[1,[2,[3]]]}}"#,
            r#"{"€":1,"😀":2}"#,
            r#"[1,"x",{"a":1}]"#,
            r#""plain""#,
            "7",
        ];
        for text in accepted {
            assert!(scan(text).is_some(), "{text}");
            assert!(canonical_by_parsing(text), "{text}");
        }
    }

    #[test]
    fn refused_texts_are_left_to_the_full_path() {
        let refused = [
            // Not canonical.
            r#"{"b":1,"a":2}"#,
            r#"{"a":1, "b":2}"#,
            r#"{"a":1,"a":1}"#,
            r#"{"😀":2,"€":1}"#,
            r#"{"a":"\/"}"#,
            r#"{"a":"\u0041"}"#,
            r#"{"a":"\u000a"}"#,
            r#"{"a":"\u001F"}"#,
            r#"{"a":1.0}"#,
            r#"{"a":1e2}"#,
            r#"{"a":-0}"#,
            r#"{"a":01}"#,
            " {}",
            "{} ",
            // Canonical, but outside the recognised shape.
            r#"{"a":1.5}"#,
            r#"{"\u0001":1}"#,
            // Not JSON or not strict.
            r#"{"a":9007199254740992}"#,
            r#"{"a":"x"#,
            r#"{"a":tru}"#,
            "{\"a\":\"\u{1}\"}",
            "",
            "{",
            r#"{"a":1,}"#,
            r#"[1,]"#,
        ];
        for text in refused {
            assert_eq!(scan(text), None, "{text}");
        }
        let deep = format!(
            "{}{}",
            "[".repeat(MAX_SCAN_DEPTH + 1),
            "]".repeat(MAX_SCAN_DEPTH + 1)
        );
        assert_eq!(scan(&deep), None);
        let ok = format!(
            "{}{}",
            "[".repeat(MAX_SCAN_DEPTH),
            "]".repeat(MAX_SCAN_DEPTH)
        );
        assert!(scan(&ok).is_some());
    }

    #[test]
    fn names_the_erased_member_at_the_top_only() {
        let erased = r#"{"by":"ab","erased":true}"#;
        assert_eq!(
            scan(erased),
            Some(Canonical {
                has_erased_member: true
            })
        );
        let nested = r#"{"x":{"erased":true}}"#;
        assert_eq!(
            scan(nested),
            Some(Canonical {
                has_erased_member: false
            })
        );
    }

    /// Every single-byte change of a canonical context: whenever the scan
    /// accepts the result, the full path agrees that it is canonical.
    #[test]
    fn never_accepts_what_the_full_path_refuses() {
        let base = r#"{"argv":["/bin/sh","-c","x=\"1\"\tz"],"cgroup":"/a/b","n":[0,-1,12345],"ok":true,"z":null}"#;
        assert!(scan(base).is_some());
        let replacements = b" \"\\,:{}[]01-.eEtfnu/a\x01\x7f";
        for i in 0..base.len() {
            for &r in replacements {
                let mut bytes = base.as_bytes().to_vec();
                bytes[i] = r;
                let Ok(text) = String::from_utf8(bytes) else {
                    continue;
                };
                if scan(&text).is_some() {
                    assert!(canonical_by_parsing(&text), "{text}");
                }
            }
            let mut removed = base.as_bytes().to_vec();
            removed.remove(i);
            if let Ok(text) = String::from_utf8(removed) {
                if scan(&text).is_some() {
                    assert!(canonical_by_parsing(&text), "{text}");
                }
            }
        }
    }
}
