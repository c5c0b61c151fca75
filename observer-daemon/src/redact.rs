//! Secret redaction for process command lines.
//!
//! The observer records every exec's argv, and people (and agents) put
//! credentials on command lines. Everything is passed through here before it
//! is stored or printed. Investigators still need the real command line, so
//! only the *value* of a credential is replaced by [`REDACTED`]: flag names,
//! key names, header names, URL hosts and the rest of the text stay
//! byte-for-byte. Where a rule has to guess, it guesses towards redacting.
//!
//! Short flags (`-p`, `-u`, ...) are never treated as secret-taking: their
//! meaning differs per tool, and guessing wrong would hide ordinary
//! arguments. Header values after `-H` are covered by the header rules,
//! which look at the text itself.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::{Captures, Regex};

/// The marker that replaces a secret value.
pub const REDACTED: &str = "[REDACTED]";

/// A name whose value is a secret: anything ending in key, token, secret,
/// password, passwd, passphrase or credential (optionally plural), or one of
/// the short words auth, pass, pwd, bearer, passin, passout standing alone
/// or after a separator (so `DB_PASS` matches but `bypass` does not).
/// Matching on the *end* of the name is what keeps `--password-file`,
/// `--key-path`, `--token-limit` or `--secret-dir` out: their last word
/// names a file, a place or a number.
/// Leading dashes are part of the name so one pattern covers flags,
/// environment assignments and keys in text.
const SECRET_NAME: &str = r"(?:[A-Za-z0-9_.-]*(?:key|token|secret|passwd|password|passphrase|credential)s?|(?:[A-Za-z0-9_.-]*[_.-])?(?:auth|pass|pwd|bearer|passin|passout))";

/// An unquoted value in running text. It ends at whitespace or a quote; a
/// comma ends it only when followed by a space, as in `f(token=abc, x=1)`,
/// because a comma inside a secret is more likely than a list separator.
const BARE_VALUE: &str = r#"[^\s"',]+(?:,+[^\s"',]+)*"#;

/// First words that turn a secret-sounding name into a switch or a number:
/// `--ask-vault-password`, `--no-auth` and `--with-token` take no value,
/// `--max-tokens` and `MAX_KEYS` take a count.
const NON_SECRET_PREFIXES: &[&str] = &[
    "no", "ask", "prompt", "use", "skip", "show", "print", "with", "without", "require", "enable",
    "disable", "max", "min", "num", "n", "total",
];

/// Compiles one of the fixed patterns below. They are literals covered by
/// the tests, so a failure is a programming error, not a runtime condition.
fn compile(pattern: &str) -> Regex {
    Regex::new(pattern).expect("redaction patterns are fixed literals exercised by the tests")
}

static SECRET_NAME_RE: LazyLock<Regex> = LazyLock::new(|| compile(&format!("(?i)^{SECRET_NAME}$")));

/// A long flag standing alone, so its value is the next argument. No dots:
/// `-Dapp.password` is a Java property switch, not a flag taking a value.
/// At least two characters after the dash, so short flags never match.
static LONE_FLAG: LazyLock<Regex> = LazyLock::new(|| compile(r"^-{1,2}[A-Za-z][A-Za-z0-9_-]+$"));

/// A flag whose value is a shell (or other) script: `-c`, `-lc`, `-ec`,
/// `--command`. Inside a script an unquoted space ends an assignment's value.
static SCRIPT_FLAG: LazyLock<Regex> = LazyLock::new(|| compile(r"^(?:-[A-Za-z]*c|--command)$"));

/// An argument that is itself an assignment, as given to `env`,
/// `docker run -e` or `helm --set`: the value is the rest of the argument,
/// spaces included, because no shell will split it any further.
static ASSIGNMENT: LazyLock<Rule> = LazyLock::new(|| {
    rule(
        &format!(r"(?is)^(?P<head>(?P<name>{SECRET_NAME})=)(?P<val>.+)$"),
        name_not_excluded,
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

/// Rules in the order they run. Earlier rules see the most context (a whole
/// header, a whole URL), and later rules leave [`REDACTED`] alone, so a value
/// masked once is not masked again in a different shape.
static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    vec![
        // PEM private keys first: their base64 body would otherwise be cut
        // up by the token rules. A block truncated by the argv capture limit
        // has no END line, so the body may also run to the end of the text.
        rule(
            r"(?s)(?P<head>-----BEGIN [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----\s*)(?P<val>.*?)(?P<tail>\s*(?:-----END [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----|\z))",
            always,
        ),
        // `--password=...` as a whole argument: the value is everything
        // after `=`, spaces included, since the shell has already split
        // words and a passphrase may contain spaces.
        rule(
            &format!(r"(?is)^(?P<head>(?P<name>-{{1,2}}{SECRET_NAME})=)(?P<val>.+)$"),
            name_not_excluded,
        ),
        // scheme://user:password@host. The password runs to the last `@`
        // of the authority, because unescaped `@` in passwords is common.
        rule(
            r#"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s/?#@:"']*:)(?P<val>[^\s/?#"']*)(?P<tail>@)"#,
            always,
        ),
        // Authorization headers keep their scheme (Bearer, Basic, token...),
        // which says what kind of credential was sent without revealing it.
        rule(
            r#"(?i)(?P<head>authorization["']?[ \t]*:[ \t]*["']?(?:[A-Za-z][A-Za-z0-9_-]*[ \t]+)?)(?P<val>[^\s"'][^"'\r\n]*)"#,
            always,
        ),
        // A cookie header is all session state: mask the whole value.
        rule(
            r#"(?i)(?P<head>cookie["']?[ \t]*:[ \t]*["']?)(?P<val>[^\s"'][^"'\r\n]*)"#,
            always,
        ),
        // `x-api-key:abc` with no space after the colon; the general
        // key/value rule below needs the space to tell `name: value` apart
        // from `image:tag` or `host:port`.
        rule(
            &format!(r#"(?i)(?P<head>api-?key["']?[ \t]*:[ \t]*["']?)(?P<val>{BARE_VALUE})"#),
            always,
        ),
        // URL query and form parameters end at `&`, so the next parameter
        // stays readable. Signatures only count here: a presigned URL's
        // signature is the credential.
        rule(
            &format!(
                r#"(?i)(?P<head>[?&](?P<name>{SECRET_NAME}|(?:[A-Za-z0-9_.-]*[_.-])?sig(?:nature)?)=)(?P<val>[^&#\s"']+)"#
            ),
            name_not_excluded,
        ),
        // "name": value in JSON or a Python dict. A bare value here is a
        // number, null or true/false, so it also ends at `,`, `}` or `]`
        // (which is why an earlier [REDACTED] has to be matched whole).
        rule(
            &format!(
                r#"(?i)(?P<head>["'](?P<name>{SECRET_NAME})["'][ \t]*[:=][ \t]*)(?P<val>"[^"]*"?|'[^']*'?|\[REDACTED\]|[^\s"',}}\]]+)"#
            ),
            name_not_excluded,
        ),
        // name=value and name: value anywhere in the text (environment
        // assignments, `bash -c` scripts, config snippets). A bare value
        // stops at whitespace, so the rest of a script stays readable; `&`
        // and `;` stay inside it because outside a URL they are more likely
        // part of the secret than separators.
        rule(
            &format!(
                r#"(?i)(?P<head>(?:^|[^A-Za-z0-9_.?&-])(?P<name>{SECRET_NAME})(?:=|:[ \t]+))(?P<val>"[^"]*"?|'[^']*'?|{BARE_VALUE})"#
            ),
            name_not_excluded,
        ),
        // Bare tokens recognised by their vendor-specific shape.
        rule(
            r"(?-u:\b)(?P<val>sk-[A-Za-z0-9_-]{20,}|[sr]k_(?:live|test)_[A-Za-z0-9]{10,}|A[KS]IA[A-Z0-9]{16}(?-u:\b)|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{20,}|xox[abprs]-[A-Za-z0-9-]{10,}|AIza[A-Za-z0-9_-]{35,}|hf_[A-Za-z0-9]{30,}|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*)",
            plausible_token,
        ),
    ]
});

fn rule(pattern: &str, accept: fn(&Captures) -> bool) -> Rule {
    Rule {
        re: compile(pattern),
        accept,
    }
}

fn always(_: &Captures) -> bool {
    true
}

fn name_not_excluded(caps: &Captures) -> bool {
    caps.name("name")
        .is_some_and(|name| !has_non_secret_prefix(name.as_str()))
}

/// `sk-` is also how plain hyphenated words start (`sk-learn-...`); a real
/// key is random, so it has a digit or a capital somewhere.
fn plausible_token(caps: &Captures) -> bool {
    let val = caps.name("val").map_or("", |m| m.as_str());
    match val.strip_prefix("sk-") {
        Some(body) => body
            .bytes()
            .any(|b| b.is_ascii_digit() || b.is_ascii_uppercase()),
        None => true,
    }
}

fn has_non_secret_prefix(name: &str) -> bool {
    let mut words = name.trim_start_matches('-').split(['-', '_', '.']);
    let first = words.next().unwrap_or_default();
    // A lone word (`--pass`) has no prefix, whatever it is.
    words.next().is_some()
        && NON_SECRET_PREFIXES
            .iter()
            .any(|p| first.eq_ignore_ascii_case(p))
}

fn is_secret_name(name: &str) -> bool {
    SECRET_NAME_RE.is_match(name) && !has_non_secret_prefix(name)
}

/// True if `arg` is a flag whose value is the next argument and a secret.
fn takes_secret_value(arg: &str) -> bool {
    LONE_FLAG.is_match(arg) && is_secret_name(arg)
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

/// The replacement text for one match of `rule`.
fn replacement(rule: &Rule, caps: &Captures) -> String {
    let part = |name| caps.name(name).map_or("", |m| m.as_str());
    let whole = caps.get(0).map_or("", |m| m.as_str());
    if !(rule.accept)(caps) {
        return whole.to_owned();
    }
    match mask_value(part("val")) {
        Some(masked) => format!("{}{masked}{}", part("head"), part("tail")),
        None => whole.to_owned(),
    }
}

fn apply<'a>(rule: &Rule, s: &'a str) -> Cow<'a, str> {
    rule.re
        .replace_all(s, |caps: &Captures| replacement(rule, caps))
}

/// Redacts secrets inside one string (an argument, a URL, a header).
///
/// Returns `Cow::Borrowed` exactly when nothing changed.
pub fn redact_str(s: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(s);
    for rule in RULES.iter() {
        if let Cow::Owned(changed) = apply(rule, &out) {
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

/// One argument that is not a flag's value. Outside a script, a secret
/// assignment's value runs to the end of the argument.
fn redact_arg(arg: &str, in_script: bool) -> Cow<'_, str> {
    if !in_script {
        let out = unless_unchanged(arg, apply(&ASSIGNMENT, arg));
        if let Cow::Owned(_) = out {
            return out;
        }
    }
    redact_str(arg)
}

/// The value after a secret-taking flag: hidden whole, whatever its shape.
fn redact_whole(arg: &str) -> Cow<'_, str> {
    if arg.is_empty() || arg == REDACTED {
        Cow::Borrowed(arg)
    } else {
        Cow::Owned(REDACTED.to_owned())
    }
}

/// Walks an argv yielding each argument redacted, `Cow::Owned` exactly when
/// it changed. Both public argv functions use it, so they cannot disagree.
struct Redactor<'a> {
    args: std::slice::Iter<'a, String>,
    value_is_secret: bool,
    in_script: bool,
}

impl<'a> Iterator for Redactor<'a> {
    type Item = Cow<'a, str>;

    fn next(&mut self) -> Option<Self::Item> {
        let arg = self.args.next()?;
        // Like getopt, the argument after a value-taking flag is its value
        // even when it looks like a flag, and it is never itself a flag.
        if std::mem::take(&mut self.value_is_secret) {
            return Some(redact_whole(arg));
        }
        let in_script = std::mem::replace(&mut self.in_script, SCRIPT_FLAG.is_match(arg));
        self.value_is_secret = takes_secret_value(arg);
        Some(redact_arg(arg, in_script))
    }
}

fn redactor(argv: &[String]) -> Redactor<'_> {
    Redactor {
        args: argv.iter(),
        value_is_secret: false,
        in_script: false,
    }
}

/// Redacts a whole argv. Handles flag-value pairs split across two arguments
/// (e.g. ["--api-key", "abc"] -> ["--api-key", "[REDACTED]"]).
pub fn redact_argv(argv: &[String]) -> Vec<String> {
    redactor(argv).map(Cow::into_owned).collect()
}

/// True if redact_argv would change anything. Stops at the first argument
/// that needs it, and an argument no rule matches costs no allocation.
pub fn argv_needs_redaction(argv: &[String]) -> bool {
    redactor(argv).any(|arg| matches!(arg, Cow::Owned(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake credential of the given shape, built at run time so that no
    /// token-looking literal sits in the source for secret scanners to flag.
    fn fake(prefix: &str, len: usize) -> String {
        let alphabet = b"aB3dE5gH7jK9mN1pQ2sT4vW6yZ8";
        let body: String = (0..len)
            .map(|i| char::from(alphabet[i % alphabet.len()]))
            .collect();
        format!("{prefix}{body}")
    }

    fn fake_upper(prefix: &str, len: usize) -> String {
        fake(prefix, len).to_ascii_uppercase()
    }

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    struct Case {
        input: Vec<String>,
        expected: Vec<String>,
    }

    fn case(input: &[&str], expected: &[&str]) -> Case {
        Case {
            input: strings(input),
            expected: strings(expected),
        }
    }

    fn unchanged(input: &[&str]) -> Case {
        case(input, input)
    }

    fn pem(kind: &str, body: &str, end: bool) -> String {
        let begin = format!("-----BEGIN {kind} KEY-----");
        let end = if end {
            format!("\n-----END {kind} KEY-----")
        } else {
            String::new()
        };
        format!("{begin}\n{body}{end}")
    }

    #[rustfmt::skip] // one case per line reads as a table; rustfmt would split each over many
    fn cases() -> Vec<Case> {
        let r = REDACTED;
        let openai = fake("sk-", 48);
        let openai_proj = fake("sk-proj-", 60);
        let anthropic = fake("sk-ant-api03-", 80);
        let aws_id = fake_upper("AKIA", 16);
        let aws_sts = fake_upper("ASIA", 16);
        let ghp = fake("ghp_", 36);
        let gho = fake("gho_", 36);
        let github_pat = fake("github_pat_", 82);
        let slack = fake("xoxb-", 40);
        let google = fake("AIza", 35);
        let hf = fake("hf_", 34);
        let stripe = fake("sk_live_", 24);
        let stripe_restricted = fake("rk_live_", 24);
        let jwt = format!("{}.{}.{}", fake("eyJ", 20), fake("eyJ", 30), fake("", 43));
        let pem_full = pem("RSA PRIVATE", "MIIEowIBAAKCAQEA\nq2w3e4r5", true);
        let pem_cut = pem("OPENSSH PRIVATE", "b3BlbnNzaC1rZXk", false);
        let openai_env = format!("OPENAI_API_KEY={openai_proj}");
        let anthropic_env = format!("ANTHROPIC_API_KEY={anthropic}");
        let hf_text = format!("login with {hf} please");
        let ghp_url = format!("https://{ghp}@github.com/o/r.git");
        let jwt_header = format!("Authorization: Bearer {jwt}");
        let stripe_arg = format!("{stripe},{stripe_restricted}");
        let aws_text = format!("id={aws_sts}/20240101/us-east-1");
        vec![
            // Flags with the value in the next argument.
            case(&["curl", "--api-key", "abc123"], &["curl", "--api-key", r]),
            case(&["t", "--apikey", "abc"], &["t", "--apikey", r]),
            case(&["t", "--API_KEY", "abc"], &["t", "--API_KEY", r]),
            case(&["t", "-token", "abc"], &["t", "-token", r]),
            case(&["t", "--key", "abc"], &["t", "--key", r]),
            case(&["t", "--auth-token", "xyz", "-v"], &["t", "--auth-token", r, "-v"]),
            case(&["t", "--Secret", "xyz"], &["t", "--Secret", r]),
            case(&["t", "--client_secret", "xyz"], &["t", "--client_secret", r]),
            case(&["t", "--passwd", "hunter2"], &["t", "--passwd", r]),
            case(&["t", "--pass", "hunter2"], &["t", "--pass", r]),
            case(&["t", "--pwd", "hunter2"], &["t", "--pwd", r]),
            case(&["t", "--credentials", "u:p"], &["t", "--credentials", r]),
            case(&["t", "--auth", "u:p"], &["t", "--auth", r]),
            case(&["t", "--private-key", "abc"], &["t", "--private-key", r]),
            case(&["t", "--session-token", "abc"], &["t", "--session-token", r]),
            case(&["t", "--bearer", "abc"], &["t", "--bearer", r]),
            case(&["hf", "--hf-token", "abc"], &["hf", "--hf-token", r]),
            case(&["gpg", "--passphrase", "abc", "-d", "f"], &["gpg", "--passphrase", r, "-d", "f"]),
            case(&["openssl", "rsa", "-passin", "pass:abc"], &["openssl", "rsa", "-passin", r]),
            // The value is taken even when it looks like a flag, as getopt would.
            case(&["t", "--token", "--verbose", "x"], &["t", "--token", r, "x"]),
            case(&["t", "--password", "a", "--password", "b"], &["t", "--password", r, "--password", r]),
            // Flags with `=`: the whole rest of the argument is the value.
            case(&["t", "--access-token=xyz"], &["t", "--access-token=[REDACTED]"]),
            case(&["mysql", "--password=hunter2", "-u", "root"], &["mysql", "--password=[REDACTED]", "-u", "root"]),
            case(&["t", "--password=my secret phrase"], &["t", "--password=[REDACTED]"]),
            case(&["t", "-api_key=abc"], &["t", "-api_key=[REDACTED]"]),
            case(&["java", "-Djavax.net.ssl.keyStorePassword=changeit", "-jar", "a.jar"], &["java", "-Djavax.net.ssl.keyStorePassword=[REDACTED]", "-jar", "a.jar"]),
            // key=value and key: value inside arguments.
            case(&["env", &openai_env, "python", "x.py"], &["env", "OPENAI_API_KEY=[REDACTED]", "python", "x.py"]),
            case(&["env", &anthropic_env], &["env", "ANTHROPIC_API_KEY=[REDACTED]"]),
            case(&["env", "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG+bPxRfi"], &["env", "AWS_SECRET_ACCESS_KEY=[REDACTED]"]),
            case(&["env", "GITHUB_TOKEN=abc", "DB_PASS=pw", "HOME=/root"], &["env", "GITHUB_TOKEN=[REDACTED]", "DB_PASS=[REDACTED]", "HOME=/root"]),
            case(&["helm", "install", "--set", "db.password=hunter2"], &["helm", "install", "--set", "db.password=[REDACTED]"]),
            case(&["t", "secret_key=abc", "access_key=def", "auth=ghi"], &["t", "secret_key=[REDACTED]", "access_key=[REDACTED]", "auth=[REDACTED]"]),
            case(&["mount", "-o", "username=bob,password=hunter2", "//srv/s"], &["mount", "-o", "username=bob,password=[REDACTED]", "//srv/s"]),
            case(&["env", "DB_PASSWORD=correct horse battery", "psql"], &["env", "DB_PASSWORD=[REDACTED]", "psql"]),
            case(&["docker", "run", "-e", "API_TOKEN=a b", "img"], &["docker", "run", "-e", "API_TOKEN=[REDACTED]", "img"]),
            // In a script an unquoted space ends the value, so the command stays readable.
            case(&["bash", "-c", "API_KEY=abc123 python run.py --verbose"], &["bash", "-c", "API_KEY=[REDACTED] python run.py --verbose"]),
            case(&["sh", "-lc", "DB_PASSWORD=correct horse"], &["sh", "-lc", "DB_PASSWORD=[REDACTED] horse"]),
            case(&["python", "-c", "f(token=abc, n=1)"], &["python", "-c", "f(token=[REDACTED], n=1)"]),
            case(&["bash", "-c", "export TOKEN='a b c' && make"], &["bash", "-c", "export TOKEN='[REDACTED]' && make"]),
            case(&["curl", "-d", r#"{"password":"hunter2","user":"bob"}"#], &["curl", "-d", r#"{"password":"[REDACTED]","user":"bob"}"#]),
            case(&["curl", "-d", r#"{"pin": 1, "api_key": 12345}"#], &["curl", "-d", r#"{"pin": 1, "api_key": [REDACTED]}"#]),
            case(&["t", "--data=password: hunter2"], &["t", "--data=password: [REDACTED]"]),
            // HTTP headers, as their own argument or run together with the flag.
            case(&["curl", "-H", "Authorization: Bearer xyz"], &["curl", "-H", "Authorization: Bearer [REDACTED]"]),
            case(&["curl", "-H", "Authorization: Basic dXNlcjpwYXNz"], &["curl", "-H", "Authorization: Basic [REDACTED]"]),
            case(&["curl", "-HAuthorization: Bearer xyz"], &["curl", "-HAuthorization: Bearer [REDACTED]"]),
            case(&["curl", "-H", "Proxy-Authorization:abc"], &["curl", "-H", "Proxy-Authorization:[REDACTED]"]),
            case(&["curl", "--header=x-api-key: xyz"], &["curl", "--header=x-api-key: [REDACTED]"]),
            case(&["curl", "-H", "api-key:xyz"], &["curl", "-H", "api-key:[REDACTED]"]),
            case(&["curl", "-H", "Cookie: session=abc; theme=dark"], &["curl", "-H", "Cookie: [REDACTED]"]),
            case(&["bash", "-c", "curl -H 'Authorization: Bearer xyz' https://a.example/v1"], &["bash", "-c", "curl -H 'Authorization: Bearer [REDACTED]' https://a.example/v1"]),
            case(&["curl", "-H", &jwt_header], &["curl", "-H", "Authorization: Bearer [REDACTED]"]),
            // Bare tokens by shape.
            case(&["t", &openai], &["t", r]),
            case(&["echo", &format!("use {openai_proj} now")], &["echo", "use [REDACTED] now"]),
            case(&["t", &anthropic], &["t", r]),
            case(&["aws", "configure", "set", "aws_access_key_id", &aws_id], &["aws", "configure", "set", "aws_access_key_id", r]),
            case(&["t", &aws_text], &["t", "id=[REDACTED]/20240101/us-east-1"]),
            case(&["git", "clone", &ghp_url], &["git", "clone", "https://[REDACTED]@github.com/o/r.git"]),
            case(&["t", &gho, &github_pat], &["t", r, r]),
            case(&["t", &slack], &["t", r]),
            case(&["t", &google], &["t", r]),
            case(&["t", &hf_text], &["t", "login with [REDACTED] please"]),
            case(&["t", &stripe_arg], &["t", "[REDACTED],[REDACTED]"]),
            case(&["t", &jwt], &["t", r]),
            case(&["t", &pem_full], &["t", "-----BEGIN RSA PRIVATE KEY-----\n[REDACTED]\n-----END RSA PRIVATE KEY-----"]),
            case(&["t", &pem_cut], &["t", "-----BEGIN OPENSSH PRIVATE KEY-----\n[REDACTED]"]),
            // Credentials in URLs.
            case(&["git", "clone", "https://user:s3cret@github.com/org/repo.git"], &["git", "clone", "https://user:[REDACTED]@github.com/org/repo.git"]),
            case(&["psql", "postgres://admin:p@ss@db:5432/app"], &["psql", "postgres://admin:[REDACTED]@db:5432/app"]),
            case(&["redis-cli", "-u", "redis://:pw@cache:6379"], &["redis-cli", "-u", "redis://:[REDACTED]@cache:6379"]),
            case(&["curl", "https://a.example/v1?api_key=abc123&format=json"], &["curl", "https://a.example/v1?api_key=[REDACTED]&format=json"]),
            case(&["curl", "https://b.example/o?X-Amz-Expires=300&X-Amz-Signature=abcdef"], &["curl", "https://b.example/o?X-Amz-Expires=300&X-Amz-Signature=[REDACTED]"]),
            case(&["curl", "https://c.example/?sig=abc&token=def&access_token=g&page=2"], &["curl", "https://c.example/?sig=[REDACTED]&token=[REDACTED]&access_token=[REDACTED]&page=2"]),
            // Must not redact.
            unchanged(&["t", "--key-file=/path/to/key"]),
            unchanged(&["t", "--keyboard", "us"]),
            unchanged(&["pip", "install", "sk-learn", "sk-"]),
            unchanged(&["echo", "sk-learn-and-friends-project-is-great"]),
            unchanged(&["pip", "install", "scikit-learn"]),
            unchanged(&["ls", "-la", "/home/user/.ssh/id_ed25519"]),
            unchanged(&["t", "--password-file", "/etc/x", "next"]),
            unchanged(&["t", "--password-stdin", "next"]),
            unchanged(&["llm", "--token-limit", "100"]),
            unchanged(&["llm", "--max-tokens", "4096", "--max_new_tokens=10"]),
            unchanged(&["t", "--token-count=5", "--key-path", "/k", "--secret-dir", "/s"]),
            unchanged(&["t", "--password-env", "PW", "--api-key-name", "x", "--auth-file", "f"]),
            unchanged(&["t", "--token-length", "8", "--key-size", "4096"]),
            unchanged(&["ansible-playbook", "--ask-vault-password", "site.yml", "--no-auth", "x"]),
            unchanged(&["gh", "auth", "login", "--with-token", "--hostname", "h"]),
            unchanged(&["git", "clone", "git@github.com:org/repo.git"]),
            unchanged(&["curl", "https://example.com:8443/path?q=1&page=2"]),
            unchanged(&["mysql", "-p", "-u", "root", "-psecret"]),
            unchanged(&["t", "--tokenizer", "bert", "--secrets-manager-url", "u"]),
            unchanged(&["t", "password=", "--token=", "bypass=1", "compass=north"]),
            unchanged(&["t", "--password"]),
            unchanged(&["t", "--password", ""]),
            unchanged(&["docker", "run", "-v", "/a:/b", "image:tag", "mysecret:1.0"]),
            unchanged(&["python", "-c", "print('hello: world')"]),
            unchanged(&["java", "-Dapp.password", "-jar", "a.jar"]),
        ]
    }

    #[test]
    fn table_has_enough_cases() {
        assert!(cases().len() >= 40, "only {} cases", cases().len());
    }

    #[test]
    fn redact_argv_matches_table() {
        for c in cases() {
            assert_eq!(redact_argv(&c.input), c.expected, "input: {:?}", c.input);
        }
    }

    #[test]
    fn needs_redaction_agrees_with_redact_argv() {
        for c in cases() {
            let changed = c.expected != c.input;
            assert_eq!(
                argv_needs_redaction(&c.input),
                changed,
                "input: {:?}",
                c.input
            );
        }
    }

    #[test]
    fn redaction_is_idempotent() {
        for c in cases() {
            assert_eq!(
                redact_argv(&c.expected),
                c.expected,
                "output: {:?}",
                c.expected
            );
            assert!(
                !argv_needs_redaction(&c.expected),
                "output: {:?}",
                c.expected
            );
        }
    }

    /// redact_str on single strings: headers, JSON, scripts, URLs.
    #[rustfmt::skip] // one case per line reads as a table
    const STR_CASES: &[(&str, &str)] = &[
        ("password: hunter2", "password: [REDACTED]"),
        ("--password=my secret phrase", "--password=[REDACTED]"),
        ("TOKEN=abc def", "TOKEN=[REDACTED] def"),
        ("PASSWORD=\"two words\" run", "PASSWORD=\"[REDACTED]\" run"),
        ("{'token': 'abc', 'n': 1}", "{'token': '[REDACTED]', 'n': 1}"),
        (r#"{"Authorization": "Bearer abc", "x": 1}"#, r#"{"Authorization": "Bearer [REDACTED]", "x": 1}"#),
        ("Set-Cookie: id=1; Path=/", "Set-Cookie: [REDACTED]"),
        ("x-api-key:xyz, other", "x-api-key:[REDACTED], other"),
        ("https://u:p@h/x?token=t#frag", "https://u:[REDACTED]@h/x?token=[REDACTED]#frag"),
        ("npm config set //registry.example/:_authToken=abc", "npm config set //registry.example/:_authToken=[REDACTED]"),
        ("pw is hunter2", "pw is hunter2"),
        (r#"password="" token='' key="#, r#"password="" token='' key="#),
        // An unterminated quote (argv capture cut it off) runs to the end.
        (r#"password=" token='x"#, r#"password="[REDACTED]"#),
        ("max_tokens=100 MAX_KEYS=3 --no-password=true", "max_tokens=100 MAX_KEYS=3 --no-password=true"),
        ("http://[::1]:8080/ ssh://git@host:22/repo", "http://[::1]:8080/ ssh://git@host:22/repo"),
        ("-----BEGIN CERTIFICATE-----", "-----BEGIN CERTIFICATE-----"),
    ];

    #[test]
    fn redact_str_cases() {
        for (input, expected) in STR_CASES {
            assert_eq!(redact_str(input), *expected, "input: {input:?}");
            assert_eq!(
                redact_str(expected),
                *expected,
                "not idempotent: {expected:?}"
            );
        }
    }

    #[test]
    fn redact_str_masks_token_shapes_after_a_name() {
        let openai = fake("sk-", 48);
        let ghp = fake("ghp_", 36);
        assert_eq!(redact_str(&format!("key={openai}")), "key=[REDACTED]");
        assert_eq!(
            redact_str(&format!("Authorization: token {ghp}")),
            "Authorization: token [REDACTED]"
        );
        assert_eq!(redact_str(&format!("({ghp})")), "([REDACTED])");
    }

    #[test]
    fn redact_str_borrows_when_unchanged() {
        for s in [
            "ls -la",
            "",
            "password=[REDACTED]",
            "Authorization: Bearer [REDACTED]",
        ] {
            assert!(matches!(redact_str(s), Cow::Borrowed(_)), "{s:?}");
        }
        assert!(matches!(redact_str("token=abc"), Cow::Owned(_)));
    }

    #[test]
    fn empty_argv() {
        assert!(redact_argv(&[]).is_empty());
        assert!(!argv_needs_redaction(&[]));
    }
}
