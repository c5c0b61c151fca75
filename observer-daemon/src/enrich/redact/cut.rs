//! Arguments cut by the kernel's argv capture. Each argument is copied
//! with at most [`ARG_CHUNK`] bytes (255 and a NUL), so a credential at the
//! end of a long argument may arrive as its first few characters, too
//! short for any shape rule: `... sk-pr`. Those characters are still part
//! of a secret, so the last word of a cut argument is dropped whenever it
//! could be the start of one.

use observer_common::ARG_CHUNK;

use super::{
    tokens::{looks_random, may_start_token},
    REDACTED,
};

/// True if the capture may have cut `arg`: the exec was flagged truncated
/// and the argument filled its buffer. An argument of exactly 255 bytes is
/// indistinguishable from a cut one and is treated the same. (Invalid
/// UTF-8 decoded lossily only grows, so the length test stays safe.)
pub(super) fn may_be_cut(arg: &str, args_truncated: bool) -> bool {
    args_truncated && arg.len() >= ARG_CHUNK - 1
}

/// Characters that end a key, a URL part or a quoted string: the cut value
/// starts after the last of them.
fn is_value_boundary(c: char) -> bool {
    matches!(
        c,
        '=' | ':' | '@' | '"' | '\'' | '(' | ',' | '[' | '{' | ';' | '&' | '?' | '`'
    )
}

/// `redacted`, the redacted text of a cut argument, with its last value
/// replaced by [`REDACTED`] when that value could be the start of a
/// secret: it starts (or could start) like a known token, looks random, or
/// is a URL whose authority (where a user and password sit) was cut.
pub(super) fn drop_cut_value(redacted: String) -> String {
    let trimmed = redacted.trim_end_matches(['"', '\'']);
    if trimmed.ends_with(REDACTED) {
        return redacted;
    }
    let word_start = redacted.rfind(char::is_whitespace).map_or(0, |i| {
        i + redacted[i..].chars().next().map_or(1, char::len_utf8)
    });
    let word = &redacted[word_start..];
    // `https://user:pass` or `https://token` with no `@`, `/` yet: the
    // capture ended inside the authority, so what is there may be a
    // credential whose `@` was cut off.
    if let Some(scheme_end) = word.find("://") {
        let authority = &word[scheme_end + 3..];
        if !authority.is_empty() && !authority.contains(['@', '/', '?', '#']) {
            return format!("{}{REDACTED}", &redacted[..word_start + scheme_end + 3]);
        }
    }
    let value_start = word.rfind(is_value_boundary).map_or(0, |i| {
        i + word[i..].chars().next().map_or(1, char::len_utf8)
    });
    let value = &word[value_start..];
    if may_start_token(value) || looks_random(value) {
        return format!("{}{REDACTED}", &redacted[..word_start + value_start]);
    }
    redacted
}
