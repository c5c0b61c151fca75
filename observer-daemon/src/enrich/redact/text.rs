//! Rules over free text: one argument, a script, a header, a URL. Each
//! finds a credential by the text around it (a key name, a header name, a
//! URL's user part) or by its own shape ([`super::tokens`]).

use std::sync::LazyLock;

use regex::Captures;

use super::{
    names::{name_not_excluded, SECRET_NAME},
    tokens::{looks_random, plausible_token, starts_with_token_prefix, TOKEN_SHAPES},
    Rule,
};

/// An unquoted value in running text. It ends at whitespace or a quote; a
/// comma ends it only when followed by a space, as in `f(token=abc, x=1)`,
/// because a comma inside a secret is more likely than a list separator.
/// It never starts with `=`, so `key == x` (a comparison) is left alone.
const BARE_VALUE: &str = r#"[^\s"',=][^\s"',]*(?:,+[^\s"',]+)*"#;

/// Rules in the order they run. Earlier rules see the most context (a whole
/// header, a whole URL), and later rules leave [`super::REDACTED`] alone, so
/// a value masked once is not masked again in a different shape.
pub(super) static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    vec![
        // PEM private keys first: their base64 body would otherwise be cut
        // up by the token rules. A block truncated by the argv capture limit
        // has no END line, so the body may also run to the end of the text.
        Rule::new(
            r"(?s)(?P<head>-----BEGIN [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----\s*)(?P<val>.*?)(?P<tail>\s*(?:-----END [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----|\z))",
            always,
        ),
        // `--password=...` as a whole argument: the value is everything
        // after `=`, spaces included, since the shell has already split
        // words and a passphrase may contain spaces.
        Rule::new(
            &format!(r"(?is)^(?P<head>(?P<name>-{{1,2}}{SECRET_NAME})=)(?P<val>.+)$"),
            name_not_excluded,
        ),
        // Slack and Discord webhook URLs: the path is the credential.
        Rule::new(
            r"(?P<head>https?://(?:hooks\.slack\.com/(?:services|workflows|triggers)/|(?:[a-z]+\.)?discord(?:app)?\.com/api/webhooks/))(?P<val>[A-Za-z0-9/_-]+)",
            always,
        ),
        // scheme://user:password@host. The password runs to the last `@`
        // before whitespace, because unescaped `@` and `/` in passwords are
        // common; `host:port/path@x` is told apart by its port.
        Rule::new(
            r#"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://(?P<user>[^\s/?#@:"']*):)(?P<val>[^\s"']*)(?P<tail>@)"#,
            not_a_port,
        ),
        // scheme://token@host: a user part alone is a credential when it
        // looks like one (git over HTTPS takes a token as the user name);
        // `ssh://git@host` keeps its user.
        Rule::new(
            r#"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://)(?P<val>[^\s/?#@:"'\[]+)(?P<tail>@)"#,
            user_is_a_token,
        ),
        // Authorization headers keep their scheme (Bearer, Basic, token...),
        // which says what kind of credential was sent without revealing it.
        Rule::new(
            r#"(?i)(?P<head>authorization["']?[ \t]*:[ \t]*["']?(?:[A-Za-z][A-Za-z0-9_-]*[ \t]+)?)(?P<val>[^\s"'][^"'\r\n]*)"#,
            always,
        ),
        // A cookie header is all session state: mask the whole value.
        Rule::new(
            r#"(?i)(?P<head>cookie["']?[ \t]*:[ \t]*["']?)(?P<val>[^\s"'][^"'\r\n]*)"#,
            always,
        ),
        // `x-api-key:abc` with no space after the colon; the general
        // key/value rule below needs the space to tell `name: value` apart
        // from `image:tag` or `host:port`.
        Rule::new(
            &format!(r#"(?i)(?P<head>api-?key["']?[ \t]*:[ \t]*["']?)(?P<val>{BARE_VALUE})"#),
            always,
        ),
        // URL query and form parameters end at `&`, so the next parameter
        // stays readable. Signatures only count here: a presigned URL's
        // signature is the credential.
        Rule::new(
            &format!(
                r#"(?i)(?P<head>[?&](?P<name>{SECRET_NAME}|(?:[A-Za-z0-9_.-]*[_.-])?sig(?:nature)?)=)(?P<val>[^&#\s"']+)"#
            ),
            name_not_excluded,
        ),
        // "name": value in JSON or a Python dict. A bare value here is a
        // number, null or true/false, so it also ends at `,`, `}` or `]`
        // (which is why an earlier [REDACTED] has to be matched whole).
        Rule::new(
            &format!(
                r#"(?i)(?P<head>["'](?P<name>{SECRET_NAME})["'][ \t]*[:=][ \t]*)(?P<val>"[^"]*"?|'[^']*'?|\[REDACTED\]|[^\s"',}}\]]+)"#
            ),
            name_not_excluded,
        ),
        // name=value, name = value and name: value anywhere in the text
        // (environment assignments, `bash -c` scripts, inline Python,
        // config snippets). A bare value stops at whitespace, so the rest
        // of a script stays readable; `&` and `;` stay inside it because
        // outside a URL they are more likely part of the secret than
        // separators.
        Rule::new(
            &format!(
                r#"(?i)(?P<head>(?:^|[^A-Za-z0-9_.?&-])(?P<name>{SECRET_NAME})(?:[ \t]*=[ \t]*|:[ \t]+))(?P<val>"[^"]*"?|'[^']*'?|{BARE_VALUE})"#
            ),
            name_not_excluded,
        ),
        // Bare tokens recognised by their vendor-specific shape.
        Rule::new(
            &format!(r"(?-u:\b)(?P<val>{TOKEN_SHAPES})"),
            plausible_token,
        ),
    ]
});

fn always(_: &Captures) -> bool {
    true
}

/// `host:8443/path@x` (a port, then a path holding an `@`) and `[::1]:80`
/// are not a user and a password.
fn not_a_port(caps: &Captures) -> bool {
    let user = caps.name("user").map_or("", |m| m.as_str());
    let val = caps.name("val").map_or("", |m| m.as_str());
    let digits = val.bytes().take_while(u8::is_ascii_digit).count();
    let port_then_path =
        (1..=5).contains(&digits) && matches!(val.as_bytes().get(digits), Some(b'/' | b'?' | b'#'));
    !user.starts_with('[') && !port_then_path
}

fn user_is_a_token(caps: &Captures) -> bool {
    let user = caps.name("val").map_or("", |m| m.as_str());
    starts_with_token_prefix(user) || looks_random(user) || user.len() >= 32
}
