//! What the strict reader ([`super::parse_strict`]) reports when it refuses
//! a document: where ([`Position`]), why ([`JsonError`]), and for the
//! semantic refusals the RFC 6901 pointer of the member, built while the
//! error unwinds ([`PathSegment`]).
use std::fmt;

/// Where in the input an error was found. `line` and `column` are 1-based;
/// `column` counts bytes, as `serde_json` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub offset: usize,
    pub line: usize,
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
    #[error("invalid UTF-8 at {at}")]
    InvalidUtf8 { at: Position },
    #[error("unexpected end of input at {at}: expected {expected}")]
    UnexpectedEnd {
        expected: &'static str,
        at: Position,
    },
    #[error("syntax error at {at}: expected {expected}")]
    Syntax {
        expected: &'static str,
        at: Position,
    },
    #[error("raw control character in a string at {at}: it must be escaped")]
    ControlCharacter { at: Position },
    #[error("invalid escape sequence at {at}")]
    InvalidEscape { at: Position },
    #[error("lone UTF-16 surrogate escape at {at}: it encodes no character")]
    LoneSurrogate { at: Position },
    #[error("invalid number at {at}: {reason}")]
    InvalidNumber { reason: &'static str, at: Position },
    #[error(
        "integer {literal} at pointer \"{path}\" ({at}) is outside the I-JSON safe range \
         ±(2^53-1); such values must be carried as strings"
    )]
    UnsafeInteger {
        literal: String,
        path: String,
        at: Position,
    },
    #[error("number {literal} at pointer \"{path}\" ({at}) is not a finite double")]
    NonFiniteNumber {
        literal: String,
        path: String,
        at: Position,
    },
    #[error("duplicate member name \"{name}\" at pointer \"{path}\" ({at})")]
    DuplicateMember {
        name: String,
        path: String,
        at: Position,
    },
    #[error("nesting deeper than {limit} arrays or objects at {at}")]
    TooDeep { limit: usize, at: Position },
    #[error("trailing data after the JSON value at {at}")]
    TrailingData { at: Position },
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
