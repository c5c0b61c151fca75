//! Text helpers of the tool checks: cutting and quoting server-chosen
//! strings, words for phrase matching, hidden characters, secrets.
use std::{borrow::Cow, sync::LazyLock};

use regex::Regex;

use super::{MAX_QUOTED_CHARS, MAX_SCAN_BYTES};
use crate::enrich::redact::{redact_str, REDACTED};

/// At most [`MAX_SCAN_BYTES`] of `s`, cut at a character boundary.
pub(super) fn cap(s: &str) -> &str {
    if s.len() <= MAX_SCAN_BYTES {
        return s;
    }
    let mut end = MAX_SCAN_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A server-chosen string fit to quote: hidden and control characters
/// escaped, cut to [`MAX_QUOTED_CHARS`] characters.
pub(super) fn quote(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == MAX_QUOTED_CHARS {
            out.push('…');
            break;
        }
        if c == '`' || is_hidden(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// `shellCommand`, `Shell-Command` -> `shell_command`.
pub(super) fn snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    let mut prev_lower = false;
    for c in name.chars() {
        if c.is_uppercase() && prev_lower {
            out.push('_');
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        out.extend(if c == '-' { '_' } else { c }.to_lowercase());
    }
    out
}

/// A tool name as the typosquat check compares it.
pub(super) fn squat_form(name: &str) -> String {
    name.chars()
        .flat_map(char::to_lowercase)
        .map(|c| if c == '-' { '_' } else { c })
        .collect()
}

/// Lower-case words (letters, digits, `_`) and single punctuation marks,
/// whitespace dropped; hidden characters dropped and tag characters read
/// as the ASCII they encode, so neither hides a phrase.
pub(super) fn tokenize(s: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut word = String::new();
    let flush = |word: &mut String, tokens: &mut Vec<String>| {
        if !word.is_empty() {
            tokens.push(std::mem::take(word));
        }
    };
    for c in cap(s).chars() {
        let c = match c as u32 {
            0xE0020..=0xE007E => char::from_u32(c as u32 - 0xE0000).unwrap_or(' '),
            _ if is_hidden(c) && !c.is_control() => continue,
            _ => c,
        };
        let c = match c {
            '\u{2018}' | '\u{2019}' => '\'',
            '\u{201C}' | '\u{201D}' => '"',
            c => c,
        };
        if c.is_alphanumeric() || c == '_' {
            word.extend(c.to_lowercase());
        } else {
            flush(&mut word, &mut tokens);
            if !c.is_whitespace() && !c.is_control() {
                tokens.push(c.to_string());
            }
        }
    }
    flush(&mut word, &mut tokens);
    tokens
}

/// Default-ignorable code points, format characters (Cf) and control
/// characters other than tab, line feed and carriage return (terminal
/// escapes): nothing a reader sees, all of it read by a model.
static HIDDEN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[\p{Default_Ignorable_Code_Point}\p{Cf}\p{Cc}--[\t\n\r]]")
        .expect("a fixed pattern exercised by the tests")
});

pub(super) fn is_hidden(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_control() && !matches!(c, '\t' | '\n' | '\r');
    }
    HIDDEN.is_match(c.encode_utf8(&mut [0; 4]))
}

/// `U+200B ZERO WIDTH SPACE` (and how many hidden characters there are in
/// all) for the first hidden character of `s` that is not part of ordinary
/// text: a variation selector right after a visible character (emoji
/// presentation), and a zero-width joiner or non-joiner between two
/// non-ASCII letters or symbols (emoji sequences, Persian and Indic
/// scripts), are left alone.
pub(super) fn hidden_characters(s: &str) -> Option<String> {
    let mut first = None;
    let mut count = 0usize;
    for m in HIDDEN.find_iter(s) {
        let c = m.as_str().chars().next()?;
        let prev = s[..m.start()].chars().next_back();
        let next = s[m.end()..].chars().next();
        let ordinary = match c {
            '\u{FE0E}' | '\u{FE0F}' => {
                prev.is_some_and(|p| !is_hidden(p) && !p.is_ascii_alphabetic())
            }
            '\u{200C}' | '\u{200D}' => {
                prev.is_some_and(|p| !p.is_ascii() && (!is_hidden(p) || p == '\u{FE0F}'))
                    && next.is_some_and(|n| !n.is_ascii() && !is_hidden(n))
            }
            _ => false,
        };
        if !ordinary {
            count += 1;
            first.get_or_insert(c);
        }
    }
    let c = first?;
    let more = match count {
        1 => String::new(),
        n => format!(" ({n} hidden characters)"),
    };
    Some(format!("U+{:04X} {}{more}", c as u32, char_name(c)))
}

/// The Unicode name of the hidden characters attacks use; a class name
/// for the rest.
fn char_name(c: char) -> Cow<'static, str> {
    let name = match c {
        '\u{00AD}' => "SOFT HYPHEN",
        '\u{034F}' => "COMBINING GRAPHEME JOINER",
        '\u{061C}' => "ARABIC LETTER MARK",
        '\u{115F}' => "HANGUL CHOSEONG FILLER",
        '\u{1160}' => "HANGUL JUNGSEONG FILLER",
        '\u{180E}' => "MONGOLIAN VOWEL SEPARATOR",
        '\u{200B}' => "ZERO WIDTH SPACE",
        '\u{200C}' => "ZERO WIDTH NON-JOINER",
        '\u{200D}' => "ZERO WIDTH JOINER",
        '\u{200E}' => "LEFT-TO-RIGHT MARK",
        '\u{200F}' => "RIGHT-TO-LEFT MARK",
        '\u{202A}' => "LEFT-TO-RIGHT EMBEDDING",
        '\u{202B}' => "RIGHT-TO-LEFT EMBEDDING",
        '\u{202C}' => "POP DIRECTIONAL FORMATTING",
        '\u{202D}' => "LEFT-TO-RIGHT OVERRIDE",
        '\u{202E}' => "RIGHT-TO-LEFT OVERRIDE",
        '\u{2060}' => "WORD JOINER",
        '\u{2061}' => "FUNCTION APPLICATION",
        '\u{2062}' => "INVISIBLE TIMES",
        '\u{2063}' => "INVISIBLE SEPARATOR",
        '\u{2064}' => "INVISIBLE PLUS",
        '\u{2066}' => "LEFT-TO-RIGHT ISOLATE",
        '\u{2067}' => "RIGHT-TO-LEFT ISOLATE",
        '\u{2068}' => "FIRST STRONG ISOLATE",
        '\u{2069}' => "POP DIRECTIONAL ISOLATE",
        '\u{3164}' => "HANGUL FILLER",
        '\u{FEFF}' => "ZERO WIDTH NO-BREAK SPACE",
        '\u{FFA0}' => "HALFWIDTH HANGUL FILLER",
        '\u{1B}' => "ESCAPE",
        '\u{E0001}' => "LANGUAGE TAG",
        '\u{E007F}' => "CANCEL TAG",
        '\u{E0020}'..='\u{E007E}' => "TAG CHARACTER",
        '\u{FE00}'..='\u{FE0F}' => {
            return format!("VARIATION SELECTOR-{}", c as u32 - 0xFE00 + 1).into()
        }
        '\u{E0100}'..='\u{E01EF}' => {
            return format!("VARIATION SELECTOR-{}", c as u32 - 0xE0100 + 17).into()
        }
        c if c.is_control() => "CONTROL CHARACTER",
        _ => "FORMAT OR DEFAULT-IGNORABLE CHARACTER",
    };
    name.into()
}

/// Whether the daemon's redaction finds a secret in `s`. A value it masks
/// that is one plain word (`Sort key: name`, `token: optional`) is prose
/// the `name: value` rule caught, not a credential.
pub(super) fn holds_secret(s: &str) -> bool {
    let Cow::Owned(red) = redact_str(s) else {
        return false;
    };
    let pieces: Vec<&str> = red.split(REDACTED).collect();
    let Some(rest) = s.strip_prefix(pieces[0]) else {
        return true;
    };
    let mut rest = rest;
    for (i, piece) in pieces.iter().enumerate().skip(1) {
        let at = if i + 1 == pieces.len() {
            rest.len()
                .checked_sub(piece.len())
                .filter(|&at| rest[at..] == **piece)
        } else {
            rest.find(piece)
        };
        let Some(at) = at.filter(|&at| rest.is_char_boundary(at)) else {
            return true;
        };
        if !is_prose(&rest[..at]) {
            return true;
        }
        rest = &rest[at + piece.len()..];
    }
    false
}

fn is_prose(value: &str) -> bool {
    let value = value.trim_matches(|c| c == '"' || c == '\'');
    value.chars().count() <= 20
        && value.chars().all(char::is_alphabetic)
        && !value.chars().skip(1).any(char::is_uppercase)
}
