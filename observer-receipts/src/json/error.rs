//! What the strict reader ([`super::parse_strict`]) reports when it refuses
//! a document: where ([`Position`]), why ([`JsonError`]), and for the
//! semantic refusals the RFC 6901 pointer of the member, built while the
//! error unwinds ([`PathSegment`]).
use std::fmt;

/// Where in the input an error was found. `line` and `column` are 1-based;
/// `column` counts bytes, as `serde_json` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// 0-based byte offset into the input.
    pub offset: usize,
    /// 1-based line (lines end at `\n`).
    pub line: usize,
    /// 1-based column, in bytes from the start of the line.
    pub column: usize,
}

impl Position {
    pub(super) fn locate(bytes: &[u8], offset: usize) -> Self {
        let before = &bytes[..offset.min(bytes.len())];
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |newline| newline + 1);
        Self {
            offset,
            line: 1 + before.iter().filter(|&&b| b == b'\n').count(),
            column: 1 + before.len() - line_start,
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {} (byte {})",
            self.line, self.column, self.offset
        )
    }
}

/// Why a document was refused. Every variant says where; the semantic ones
/// (duplicate member, unsafe or non-finite number) also carry the RFC 6901
/// JSON Pointer of the offending member, `""` being the whole document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// The input is not UTF-8; `at` is the first byte that is not.
    #[error("invalid UTF-8 at {at}")]
    InvalidUtf8 {
        /// The first invalid byte.
        at: Position,
    },
    /// The input ended inside a value.
    #[error("unexpected end of input at {at}: expected {expected}")]
    UnexpectedEnd {
        /// What the grammar needed next, e.g. `"four hex digits"`.
        expected: &'static str,
        /// The end of the input.
        at: Position,
    },
    /// A byte the grammar does not allow at that point.
    #[error("syntax error at {at}: expected {expected}")]
    Syntax {
        /// What the grammar needed instead.
        expected: &'static str,
        /// The offending byte.
        at: Position,
    },
    /// A byte below 0x20 inside a string, where RFC 8259 requires an escape.
    #[error("raw control character in a string at {at}: it must be escaped")]
    ControlCharacter {
        /// The control byte.
        at: Position,
    },
    /// A backslash escape RFC 8259 does not define, or `\u` without four
    /// hex digits.
    #[error("invalid escape sequence at {at}")]
    InvalidEscape {
        /// The escape's backslash.
        at: Position,
    },
    /// A `\uD800`-`\uDFFF` escape not part of a high-low surrogate pair.
    #[error("lone UTF-16 surrogate escape at {at}: it encodes no character")]
    LoneSurrogate {
        /// The escape's backslash.
        at: Position,
    },
    /// A number literal outside RFC 8259's grammar (leading zero, missing
    /// digits after `.` or in the exponent).
    #[error("invalid number at {at}: {reason}")]
    InvalidNumber {
        /// What is wrong, e.g. `"leading zero"`.
        reason: &'static str,
        /// Where the literal or its faulty part starts.
        at: Position,
    },
    /// An integer literal whose magnitude exceeds 2^53-1, judged on its
    /// digits before any conversion could round it.
    #[error(
        "integer {literal} at pointer \"{path}\" ({at}) is outside the I-JSON safe range \
         ±(2^53-1); such values must be carried as strings"
    )]
    UnsafeInteger {
        /// The literal as written.
        literal: String,
        /// JSON Pointer of the member or element holding it.
        path: String,
        /// The literal's first byte.
        at: Position,
    },
    /// A fraction or exponent literal that overflows to ±infinity (e.g.
    /// `1e400`).
    #[error("number {literal} at pointer \"{path}\" ({at}) is not a finite double")]
    NonFiniteNumber {
        /// The literal as written.
        literal: String,
        /// JSON Pointer of the member or element holding it.
        path: String,
        /// The literal's first byte.
        at: Position,
    },
    /// An object repeats a member name (compared after escape decoding),
    /// which a last-wins reader would resolve silently.
    #[error("duplicate member name \"{name}\" at pointer \"{path}\" ({at})")]
    DuplicateMember {
        /// The repeated name, decoded.
        name: String,
        /// JSON Pointer of the repeated member.
        path: String,
        /// The second occurrence of the name.
        at: Position,
    },
    /// Arrays and objects nested deeper than [`super::MAX_DEPTH`].
    #[error("nesting deeper than {limit} arrays or objects at {at}")]
    TooDeep {
        /// The limit, [`super::MAX_DEPTH`].
        limit: usize,
        /// The bracket that went one level too deep.
        at: Position,
    },
    /// Anything but whitespace after the top-level value.
    #[error("trailing data after the JSON value at {at}")]
    TrailingData {
        /// The first byte after the value and its whitespace.
        at: Position,
    },
}

impl JsonError {
    /// Prefixes the pointer of a path-carrying error with the member or
    /// element it was found in. Paths are built while the error unwinds, so
    /// a successful parse pays nothing for them.
    pub(super) fn nested_in(mut self, segment: PathSegment<'_>) -> Self {
        if let Self::UnsafeInteger { path, .. }
        | Self::NonFiniteNumber { path, .. }
        | Self::DuplicateMember { path, .. } = &mut self
        {
            let mut prefixed = String::with_capacity(path.len() + 8);
            segment.push_pointer_token(&mut prefixed);
            prefixed.push_str(path);
            *path = prefixed;
        }
        self
    }
}

#[derive(Clone, Copy)]
pub(super) enum PathSegment<'a> {
    Member(&'a str),
    Element(usize),
}

impl PathSegment<'_> {
    /// Appends `/token`, escaping `~` and `/` as RFC 6901 requires.
    pub(super) fn push_pointer_token(self, out: &mut String) {
        out.push('/');
        match self {
            Self::Member(name) => {
                for c in name.chars() {
                    match c {
                        '~' => out.push_str("~0"),
                        '/' => out.push_str("~1"),
                        _ => out.push(c),
                    }
                }
            }
            Self::Element(index) => out.push_str(&index.to_string()),
        }
    }
}
