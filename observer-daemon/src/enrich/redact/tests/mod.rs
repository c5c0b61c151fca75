//! The table tests of the redaction rules: each row an argv in and the
//! argv stored. This file holds the helpers and the rules as first written,
//! `kinds.rs` one table per kind of secret of issue #16, `near_misses.rs`
//! ordinary commands that must stay untouched, `cut.rs` the
//! truncated-argument rule.

mod cut;
mod kinds;
mod near_misses;

use std::borrow::Cow;

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
        // A lone `-p` prompts; `-pX` is the password (issue #16).
            case(&["mysql", "-p", "-u", "root", "-psecret"], &["mysql", "-p", "-u", "root", "-p[REDACTED]"]),
        unchanged(&["t", "--tokenizer", "bert", "--secrets-manager-url", "u"]),
        unchanged(&["t", "password=", "--token=", "bypass=1", "compass=north"]),
        unchanged(&["t", "--password"]),
        unchanged(&["t", "--password", ""]),
        unchanged(&["docker", "run", "-v", "/a:/b", "image:tag", "mysecret:1.0"]),
        unchanged(&["python", "-c", "print('hello: world')"]),
        unchanged(&["java", "-Dapp.password", "-jar", "a.jar"]),
    ]
}

/// Every row redacts as expected, [`argv_needs_redaction`] agrees, and the
/// stored argv redacts to itself.
fn check(cases: &[Case]) {
    for c in cases {
        assert_eq!(redact_argv(&c.input), c.expected, "input: {:?}", c.input);
        let changed = c.expected != c.input;
        assert_eq!(
            argv_needs_redaction(&c.input),
            changed,
            "input: {:?}",
            c.input
        );
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
