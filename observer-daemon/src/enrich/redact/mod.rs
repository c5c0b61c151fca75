//! Secret redaction for process command lines.
//!
//! The observer records every exec's argv, and people (and agents) put
//! credentials on command lines. Everything is passed through here before it
//! is stored or printed. Investigators still need the real command line, so
//! only the *value* of a credential is replaced by [`REDACTED`]: flag names,
//! key names, header names, URL hosts and the rest of the text stay
//! byte-for-byte. Where a rule has to guess, it guesses towards redacting.
//!
//! - [`names`]: which flag, variable and key names hold a secret.
//! - [`tools`]: which argument is a secret by position (`--token X`,
//!   `sshpass -p X`, `mysql -pX`, `curl -u user:X`, `aws configure set
//!   aws_secret_access_key X`). Short flags count only for the tools listed
//!   there: their meaning differs per tool (`grep -p`, `ssh -p 22`).
//! - [`text`]: rules over free text (assignments, headers, JSON, URL
//!   credentials, webhooks) and [`tokens`]: credentials by vendor shape.
//! - [`script`]: `sh -c` scripts, split into commands and words so the
//!   positional rules apply inside them too.
//! - [`cut`]: arguments cut by the kernel's 255-byte argument capture.

mod cut;
mod names;
mod script;
mod text;
mod tokens;
mod tools;

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::{Captures, Regex};

use tools::{Mask, Shape, Walker};

/// The marker that replaces a secret value.
pub const REDACTED: &str = "[REDACTED]";

/// Compiles one of the fixed patterns. They are literals covered by the
/// tests, so a failure is a programming error, not a runtime condition.
fn compile(pattern: &str) -> Regex {
    Regex::new(pattern).expect("redaction patterns are fixed literals exercised by the tests")
}

/// A flag whose value is a shell (or other) script: `-c`, `-lc`, `-ec`,
/// `--command`. Inside a script an unquoted space ends an assignment's value.
static SCRIPT_FLAG: LazyLock<Regex> = LazyLock::new(|| compile(r"^(?:-[A-Za-z]*c|--command)$"));

/// An argument that is itself an assignment, as given to `env`,
/// `docker run -e` or `helm --set`: the value is the rest of the argument,
/// spaces included, because no shell will split it any further.
static ASSIGNMENT: LazyLock<Rule> = LazyLock::new(|| {
    Rule::new(
        &format!(
            r"(?is)^(?P<head>(?P<name>{})=)(?P<val>.+)$",
            names::SECRET_NAME
        ),
        names::name_not_excluded,
    )
});

/// One redaction rule. Every pattern splits its match into `head` (kept),
/// `val` (masked) and `tail` (kept), so the replacement can rebuild the
/// match exactly around the masked value.
struct Rule {
    re: Regex,
    /// Second look at a match the pattern alone cannot judge.
    accept: fn(&Captures) -> bool,
}

impl Rule {
    fn new(pattern: &str, accept: fn(&Captures) -> bool) -> Rule {
        Rule {
            re: compile(pattern),
            accept,
        }
    }

    /// The replacement text for one match.
    fn replacement(&self, caps: &Captures) -> String {
        let part = |name| caps.name(name).map_or("", |m| m.as_str());
        let whole = caps.get(0).map_or("", |m| m.as_str());
        if !(self.accept)(caps) {
            return whole.to_owned();
        }
        match mask_value(part("val")) {
            Some(masked) => format!("{}{masked}{}", part("head"), part("tail")),
            None => whole.to_owned(),
        }
    }

    fn apply<'a>(&self, s: &'a str) -> Cow<'a, str> {
        self.re
            .replace_all(s, |caps: &Captures| self.replacement(caps))
    }
}

/// Masks one value, keeping the quotes around it so quoted shell or JSON
/// text still reads the same. None when there is nothing to hide.
fn mask_value(val: &str) -> Option<String> {
    let quote = val.chars().next().filter(|c| matches!(c, '"' | '\''));
    let (open, rest) = val.split_at(quote.map_or(0, char::len_utf8));
    let close = quote.filter(|q| rest.ends_with(*q));
    let inner = &rest[..rest.len() - close.map_or(0, char::len_utf8)];
    if inner.is_empty() {
        return None;
    }
    let close = close.map(String::from).unwrap_or_default();
    Some(format!("{open}{REDACTED}{close}"))
}

/// Masks the part of `val` that `shape` says is secret.
fn mask_by_shape(val: &str, shape: Shape) -> Option<String> {
    let split_after = |sep: char| {
        let (user, secret) = val.split_once(sep)?;
        mask_value(secret).map(|m| format!("{user}{sep}{m}"))
    };
    match shape {
        Shape::Whole => mask_value(val),
        Shape::AfterColon => split_after(':'),
        Shape::AfterPercent => split_after('%'),
    }
}

/// True if a JSON member or form field of this name holds a secret
/// (`api_key`, `password`, `Authorization`), by the same name rules as the
/// command-line redaction.
pub fn is_secret_field(name: &str) -> bool {
    names::is_secret_name(name)
}

/// Redacts secrets inside one string (an argument, a URL, a header).
///
/// Returns `Cow::Borrowed` exactly when nothing changed.
pub fn redact_str(s: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(s);
    for rule in text::RULES.iter() {
        if let Cow::Owned(changed) = rule.apply(&out) {
            out = Cow::Owned(changed);
        }
    }
    unless_unchanged(s, out)
}

/// A rule may rewrite a match into the same text (an already redacted
/// value); report that as unchanged so callers can trust `Cow::Borrowed`.
fn unless_unchanged<'a>(original: &'a str, out: Cow<'a, str>) -> Cow<'a, str> {
    if out == original {
        Cow::Borrowed(original)
    } else {
        out
    }
}

/// One argument whose position says nothing. Outside a script, a secret
/// assignment's value runs to the end of the argument; a script is split
/// into its commands first.
fn redact_arg(arg: &str, in_script: bool) -> Cow<'_, str> {
    if in_script {
        return script::redact_script(arg);
    }
    let out = unless_unchanged(arg, ASSIGNMENT.apply(arg));
    if let Cow::Owned(_) = out {
        return out;
    }
    redact_str(arg)
}

/// Walks an argv yielding each argument redacted, `Cow::Owned` exactly when
/// it changed. Every public argv function uses it, so they cannot disagree.
struct Redactor<'a> {
    args: std::slice::Iter<'a, String>,
    walker: Walker,
    in_script: bool,
}

impl<'a> Iterator for Redactor<'a> {
    type Item = Cow<'a, str>;

    fn next(&mut self) -> Option<Self::Item> {
        let arg = self.args.next()?;
        let mask = self.walker.step(arg);
        if mask != Mask::Keep {
            self.in_script = false;
            let masked = match mask {
                Mask::Value(shape) => mask_by_shape(arg, shape),
                Mask::Attached { flag_len, shape } => mask_by_shape(&arg[flag_len..], shape)
                    .map(|m| format!("{}{m}", &arg[..flag_len])),
                Mask::Keep => None,
            };
            return Some(unless_unchanged(
                arg,
                masked.map_or(Cow::Borrowed(arg), Cow::Owned),
            ));
        }
        let in_script = std::mem::replace(&mut self.in_script, SCRIPT_FLAG.is_match(arg));
        Some(redact_arg(arg, in_script))
    }
}

fn redactor(argv: &[String]) -> Redactor<'_> {
    Redactor {
        args: argv.iter(),
        walker: Walker::default(),
        in_script: false,
    }
}

/// Redacts a whole argv. Handles flag-value pairs split across two arguments
/// (e.g. ["--api-key", "abc"] -> ["--api-key", "[REDACTED]"]).
pub fn redact_argv(argv: &[String]) -> Vec<String> {
    redactor(argv).map(Cow::into_owned).collect()
}

/// Redacts an argv as the kernel captured it: as [`redact_argv`], and an
/// argument the capture may have cut (`args_truncated` set and the argument
/// as long as the capture allows) also loses its last value when that
/// could be the start of a secret, rather than keep a secret's prefix.
pub fn redact_captured_argv(argv: &[String], args_truncated: bool) -> Vec<String> {
    redactor(argv)
        .zip(argv)
        .map(|(redacted, original)| {
            if cut::may_be_cut(original, args_truncated) {
                cut::drop_cut_value(redacted.into_owned())
            } else {
                redacted.into_owned()
            }
        })
        .collect()
}

/// True if redact_argv would change anything. Stops at the first argument
/// that needs it, and an argument no rule matches costs no allocation.
pub fn argv_needs_redaction(argv: &[String]) -> bool {
    redactor(argv).any(|arg| matches!(arg, Cow::Owned(_)))
}
