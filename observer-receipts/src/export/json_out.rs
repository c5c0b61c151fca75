//! Writing JSON text straight into a reusable byte buffer, for the
//! formats whose records are assembled as text instead of a
//! `serde_json::Value` tree (the tree costs an allocation per member, and
//! export throughput is dominated by that). Strings are escaped exactly as
//! serde_json escapes them, so the text is the bytes `serde_json::to_string`
//! would give for the same members written in the same order.
/// An open JSON object; `Drop` closes it, so a nested object cannot be left
/// open on an early return.
pub(crate) struct Obj<'o> {
    out: &'o mut Vec<u8>,
    first: bool,
}

impl<'o> Obj<'o> {
    pub(crate) fn open(out: &'o mut Vec<u8>) -> Obj<'o> {
        out.push(b'{');
        Obj { out, first: true }
    }

    /// Writes `"key":`. Keys are this crate's literals: plain ASCII that
    /// needs no escaping.
    pub(crate) fn key(&mut self, key: &str) -> &mut Vec<u8> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out
    }

    pub(crate) fn str(&mut self, key: &str, value: &str) {
        push_str(self.key(key), value);
    }

    pub(crate) fn u64(&mut self, key: &str, value: u64) {
        push_u64(self.key(key), value);
    }

    /// Writes JSON text that is already valid JSON (checked by the caller).
    pub(crate) fn raw(&mut self, key: &str, value: &str) {
        self.key(key).extend_from_slice(value.as_bytes());
    }

    pub(crate) fn obj(&mut self, key: &str) -> Obj<'_> {
        Obj::open(self.key(key))
    }

    pub(crate) fn arr(&mut self, key: &str) -> Arr<'_> {
        Arr::open(self.key(key))
    }
}

impl Drop for Obj<'_> {
    fn drop(&mut self) {
        self.out.push(b'}');
    }
}

/// An open JSON array; `Drop` closes it.
pub(crate) struct Arr<'o> {
    out: &'o mut Vec<u8>,
    first: bool,
}

impl<'o> Arr<'o> {
    fn open(out: &'o mut Vec<u8>) -> Arr<'o> {
        out.push(b'[');
        Arr { out, first: true }
    }

    /// Starts the next element and gives the buffer to write it into.
    pub(crate) fn next(&mut self) -> &mut Vec<u8> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out
    }

    pub(crate) fn str(&mut self, value: &str) {
        push_str(self.next(), value);
    }

    pub(crate) fn obj(&mut self) -> Obj<'_> {
        Obj::open(self.next())
    }
}

impl Drop for Arr<'_> {
    fn drop(&mut self) {
        self.out.push(b']');
    }
}

pub(crate) fn push_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Appends `s` as a JSON string literal, escaped as serde_json escapes:
/// `"` and `\` with a backslash, \b \t \n \f \r by name, other control
/// characters as `\u00xx`, everything else (also non-ASCII) as it is.
pub(crate) fn push_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    push_str_content(out, s);
    out.push(b'"');
}

/// [`push_str`] without the quotes: the escaped characters of `s`, for a
/// string written in pieces.
pub(crate) fn push_str_content(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Sixteen bytes at a time while none needs escaping: the 5 KB
        // envelopes OCSF embeds as a string are almost all base64.
        if let Some(chunk) = bytes.get(i..i + 16) {
            let (lo, hi) = chunk.split_at(8);
            let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
            if !needs_escape(word(lo)) && !needs_escape(word(hi)) {
                i += 16;
                continue;
            }
        }
        let b = bytes[i];
        let escape = ESCAPE[b as usize];
        if escape != 0 {
            out.extend_from_slice(&bytes[start..i]);
            push_escape(out, b, escape);
            start = i + 1;
        }
        i += 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Whether any byte of `word` is `"`, `\` or below 0x20 (Mycroft's
/// zero-byte test on the word XORed with each of them).
fn needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |w: u64| w.wrapping_sub(ONES) & !w & HIGH != 0;
    let below_0x20 = word.wrapping_sub(ONES * 0x20) & !word & HIGH != 0;
    below_0x20
        || has_zero(word ^ (ONES * u64::from(b'"')))
        || has_zero(word ^ (ONES * u64::from(b'\\')))
}

fn push_escape(out: &mut Vec<u8>, byte: u8, escape: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match escape {
        b'u' => out.extend_from_slice(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX[(byte >> 4) as usize],
            HEX[(byte & 0xf) as usize],
        ]),
        named => out.extend_from_slice(&[b'\\', named]),
    }
}

/// For each byte: 0 if written as it is, else the letter after the
/// backslash (`u` for `\u00xx`).
const ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_escape_as_serde_json_does() {
        let mut all: String = (0u8..0x80).map(char::from).collect();
        all.push_str("é€😀 and a long run of plain text \"quoted\" \\ end");
        let mut cases = vec![all, String::new(), "a".into(), "\u{1f}".into()];
        // An escape at every offset of the sixteen-byte steps.
        for at in 0..40 {
            for c in ['"', '\\', '\n', '\u{1}', '\u{7f}', 'é'] {
                let mut s = "b".repeat(40);
                s.insert(at, c);
                cases.push(s);
            }
        }
        for s in &cases {
            let mut out = Vec::new();
            push_str(&mut out, s);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(s).unwrap()
            );
        }
    }

    #[test]
    fn objects_and_arrays_close_themselves() {
        let mut out = Vec::new();
        {
            let mut o = Obj::open(&mut out);
            o.u64("a", 18_446_744_073_709_551_615);
            o.str("b", "x\ny");
            {
                let mut a = o.arr("c");
                a.str("d");
                a.obj().raw("e", "null");
            }
            o.obj("f");
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"a":18446744073709551615,"b":"x\ny","c":["d",{"e":null}],"f":{}}"#
        );
    }
}
