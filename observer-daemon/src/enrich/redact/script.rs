//! Scripts given with `-c` (`bash -c`, `sh -lc`): split into commands and
//! words the way a shell would (roughly: quotes, backslashes and the
//! command separators), so the argv rules of [`super::tools`] apply to the
//! commands inside, and then the text rules run over the whole script.

use std::borrow::Cow;

use super::{
    mask_by_shape, redact_str,
    tools::{Mask, Walker},
    unless_unchanged, REDACTED,
};

/// One shell word: where it is in the script and its text without quotes.
struct Word {
    start: usize,
    end: usize,
    text: String,
}

fn is_separator(c: char) -> bool {
    matches!(c, ';' | '&' | '|' | '(' | ')' | '\n' | '`')
}

/// The commands of `script`, each a list of words. Unterminated quotes
/// (a script cut by the capture) run to the end.
fn commands(script: &str) -> Vec<Vec<Word>> {
    let mut out = vec![Vec::new()];
    let mut chars = script.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        if c.is_whitespace() && c != '\n' {
            chars.next();
            continue;
        }
        if is_separator(c) {
            chars.next();
            if out.last().is_some_and(|c| !c.is_empty()) {
                out.push(Vec::new());
            }
            continue;
        }
        let mut text = String::new();
        let mut end = i;
        let mut quote: Option<char> = None;
        while let Some(&(j, c)) = chars.peek() {
            if quote.is_none() && (c.is_whitespace() || is_separator(c)) {
                break;
            }
            chars.next();
            end = j + c.len_utf8();
            match (quote, c) {
                (None, '\'' | '"') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (Some('\''), c) => text.push(c),
                (_, '\\') => {
                    if let Some((k, escaped)) = chars.next() {
                        end = k + escaped.len_utf8();
                        text.push(escaped);
                    }
                }
                (_, c) => text.push(c),
            }
        }
        if let Some(words) = out.last_mut() {
            words.push(Word {
                start: i,
                end,
                text,
            });
        }
    }
    out
}

/// The masked text of one word, by its raw form (quotes kept where the
/// masked value is the whole word or follows the flag).
fn masked_word(raw: &str, word: &Word, mask: Mask) -> Option<String> {
    match mask {
        Mask::Keep => None,
        Mask::Value(shape) => mask_by_shape(raw, shape),
        Mask::Attached { flag_len, shape } => {
            let flag = word.text.get(..flag_len)?;
            // The flag itself is never quoted in practice; when it is, the
            // whole word is replaced by the flag and the marker.
            match raw.strip_prefix(flag) {
                Some(rest) => mask_by_shape(rest, shape).map(|m| format!("{flag}{m}")),
                None => Some(format!("{flag}{REDACTED}")),
            }
        }
    }
}

/// Redacts a script: the argv rules over each command's words, then the
/// text rules over the result.
pub(super) fn redact_script(script: &str) -> Cow<'_, str> {
    let mut replacements = Vec::new();
    for words in commands(script) {
        let mut walker = Walker::default();
        for word in &words {
            let mask = walker.step(&word.text);
            if let Some(masked) = masked_word(&script[word.start..word.end], word, mask) {
                replacements.push((word.start, word.end, masked));
            }
        }
    }
    if replacements.is_empty() {
        return redact_str(script);
    }
    let mut out = String::with_capacity(script.len());
    let mut at = 0;
    for (start, end, masked) in replacements {
        out.push_str(&script[at..start]);
        out.push_str(&masked);
        at = end;
    }
    out.push_str(&script[at..]);
    let out = Cow::Owned(redact_str(&out).into_owned());
    unless_unchanged(script, out)
}
