//! Which names (of flags, environment variables, keys in text) hold a
//! secret value.

use std::sync::LazyLock;

use regex::{Captures, Regex};

use super::compile;

/// A name whose value is a secret: anything ending in key, token, secret,
/// password, passwd, passphrase, credential (optionally plural) or pass (and
/// optionally followed by a word that still names the value itself, as in
/// `MY_SECRET_VALUE` or `--key-data`), or one of the short words auth, pwd,
/// bearer, passin, passout standing alone or after a separator (so
/// `DB_PASS` and `--dbpass` match, `OLDPWD` does not).
/// Matching on the *end* of the name is what keeps `--password-file`,
/// `--key-path`, `--token-limit` or `--secret-dir` out: their last word
/// names a file, a place or a number. English words ending in "pass"
/// (`bypass`, `compass`) are excluded by [`NOT_A_PASSWORD`].
/// Leading dashes are part of the name so one pattern covers flags,
/// environment assignments and keys in text.
pub(super) const SECRET_NAME: &str = r"(?:[A-Za-z0-9_.-]*(?:(?:key|token|secret|passwd|password|passphrase|credential)s?|pass)(?:[_.-](?:value|val|data|string|str|text|content|b64|base64|hex|json|raw|plain|plaintext))?|(?:[A-Za-z0-9_.-]*[_.-])?(?:auth|pwd|bearer|passin|passout))";

/// First words that turn a secret-sounding name into a switch or a number:
/// `--ask-vault-password`, `--no-auth` and `--with-token` take no value,
/// `--max-tokens` and `MAX_KEYS` take a count.
const NON_SECRET_PREFIXES: &[&str] = &[
    "no", "ask", "prompt", "use", "skip", "show", "print", "with", "without", "require", "enable",
    "disable", "max", "min", "num", "n", "total",
];

/// Last words ending in "pass" that are not a password: a name ending in
/// one of these is not secret (`--bypass`, `COMPASS`; `--nopass` is a
/// switch).
const NOT_A_PASSWORD: &[&str] = &[
    "bypass",
    "compass",
    "encompass",
    "surpass",
    "trespass",
    "overpass",
    "underpass",
    "multipass",
    "onepass",
    "twopass",
    "singlepass",
    "firstpass",
    "secondpass",
    "nopass",
];

static SECRET_NAME_RE: LazyLock<Regex> = LazyLock::new(|| compile(&format!("(?i)^{SECRET_NAME}$")));

/// A long flag standing alone, so its value is the next argument. No dots:
/// `-Dapp.password` is a Java property switch, not a flag taking a value.
/// At least two characters after the dash, so short flags never match.
static LONE_FLAG: LazyLock<Regex> = LazyLock::new(|| compile(r"^-{1,2}[A-Za-z][A-Za-z0-9_-]+$"));

/// A bare key as `aws configure set` or `git config` take it: no dashes
/// in front, no `=` in it.
static BARE_KEY: LazyLock<Regex> = LazyLock::new(|| compile(r"^[A-Za-z][A-Za-z0-9_.-]*$"));

fn has_non_secret_prefix(name: &str) -> bool {
    let mut words = name.trim_start_matches('-').split(['-', '_', '.']);
    let first = words.next().unwrap_or_default();
    // A lone word (`--pass`) has no prefix, whatever it is.
    words.next().is_some()
        && NON_SECRET_PREFIXES
            .iter()
            .any(|p| first.eq_ignore_ascii_case(p))
}

fn ends_in_a_word_not_a_password(name: &str) -> bool {
    let last = name.rsplit(['-', '_', '.']).next().unwrap_or_default();
    NOT_A_PASSWORD.iter().any(|w| last.eq_ignore_ascii_case(w))
}

/// The second look every name-based rule takes at a name its pattern
/// matched.
pub(super) fn name_is_secret(name: &str) -> bool {
    !has_non_secret_prefix(name) && !ends_in_a_word_not_a_password(name)
}

/// `accept` of the text rules that capture a `name`.
pub(super) fn name_not_excluded(caps: &Captures) -> bool {
    caps.name("name")
        .is_some_and(|name| name_is_secret(name.as_str()))
}

pub(super) fn is_secret_name(name: &str) -> bool {
    SECRET_NAME_RE.is_match(name) && name_is_secret(name)
}

/// True if `arg` is a long flag whose value is the next argument and a
/// secret.
pub(super) fn takes_secret_value(arg: &str) -> bool {
    LONE_FLAG.is_match(arg) && is_secret_name(arg)
}

/// True if `arg` is a bare configuration key naming a secret, as in
/// `aws configure set aws_secret_access_key V`.
pub(super) fn is_secret_key(arg: &str) -> bool {
    BARE_KEY.is_match(arg) && is_secret_name(arg)
}
