//! Credentials recognised by their vendor-specific shape, wherever they
//! appear: a bare argument, a word in a script, a URL user.
//!
//! Each shape is a fixed prefix and a body long enough that ordinary words
//! with the same prefix (`sk-learn`, `gsk`, `pypi-simple`) do not match.

use regex::Captures;

/// One alternative per vendor, bodies at or below the real lengths so a
/// key of a newer, longer format still matches.
pub(super) const TOKEN_SHAPES: &str = concat!(
    // OpenAI and Anthropic (`sk-ant-`), DeepSeek and others using `sk-`.
    r"sk-[A-Za-z0-9_-]{20,}",
    // Stripe secret and restricted keys.
    r"|[sr]k_(?:live|test)_[A-Za-z0-9]{10,}",
    // AWS access key ids (long-term and STS).
    r"|A[KS]IA[A-Z0-9]{16}(?-u:\b)",
    // GitHub.
    r"|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{20,}",
    // Slack bot/user tokens and app-level tokens.
    r"|xox[abeprs]-[A-Za-z0-9-]{10,}|xapp-[A-Za-z0-9-]{10,}",
    // Google API keys, OAuth access tokens, OAuth client secrets, refresh tokens.
    r"|AIza[A-Za-z0-9_-]{35,}|ya29\.[A-Za-z0-9_-]{20,}|GOCSPX-[A-Za-z0-9_-]{20,}|1//0[A-Za-z0-9_-]{30,}",
    // Hugging Face.
    r"|hf_[A-Za-z0-9]{30,}",
    // Groq, xAI, Perplexity, Replicate.
    r"|gsk_[A-Za-z0-9]{20,}|xai-[A-Za-z0-9]{20,}|pplx-[A-Za-z0-9]{20,}|r8_[A-Za-z0-9]{20,}",
    // GitLab personal, deploy, runner, pipeline-trigger, CI-build, OAuth,
    // feed, incoming-mail, agent and SCIM tokens.
    r"|gl(?:pat|dt|rt|ptt|cbt|oas|soat|ft|imt|agent|sct|wt)-[A-Za-z0-9_.-]{20,}",
    // npm and PyPI (a macaroon, base64 after `pypi-`).
    r"|npm_[A-Za-z0-9]{30,}|pypi-[A-Za-z0-9_-]{40,}",
    // HashiCorp Vault service, batch and recovery tokens.
    r"|hv[sbr]\.[A-Za-z0-9_-]{24,}",
    // SendGrid.
    r"|SG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}",
    // LangSmith (current and legacy).
    r"|lsv2_[a-z]{2}_[A-Za-z0-9_]{20,}|ls__[A-Za-z0-9]{20,}",
    // age identities (secret keys; `age1...` recipients are public).
    r"|AGE-SECRET-KEY-1[A-Z0-9]{20,}|AGE-PLUGIN-[A-Z0-9-]+-1[A-Z0-9]{20,}",
    // JSON web tokens (header and payload always start `eyJ`).
    r"|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*",
);

/// How every shape in [`TOKEN_SHAPES`] starts. A word cut by the argv
/// capture that starts with one of these, or is the start of one of these,
/// may be the beginning of a credential.
pub(super) const TOKEN_PREFIXES: &[&str] = &[
    "sk-",
    "sk_live_",
    "sk_test_",
    "rk_live_",
    "rk_test_",
    "AKIA",
    "ASIA",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "xoxa-",
    "xoxb-",
    "xoxe-",
    "xoxp-",
    "xoxr-",
    "xoxs-",
    "xapp-",
    "AIza",
    "ya29.",
    "GOCSPX-",
    "1//0",
    "hf_",
    "gsk_",
    "xai-",
    "pplx-",
    "r8_",
    "glpat-",
    "gldt-",
    "glrt-",
    "glptt-",
    "glcbt-",
    "gloas-",
    "glsoat-",
    "glft-",
    "glimt-",
    "glagent-",
    "glsct-",
    "glwt-",
    "npm_",
    "pypi-",
    "hvs.",
    "hvb.",
    "hvr.",
    "SG.",
    "lsv2_",
    "ls__",
    "AGE-SECRET-KEY-",
    "AGE-PLUGIN-",
    "eyJ",
];

/// `sk-` is also how plain hyphenated words start (`sk-learn-...`); a real
/// key is random, so it has a digit or a capital somewhere.
pub(super) fn plausible_token(caps: &Captures) -> bool {
    let val = caps.name("val").map_or("", |m| m.as_str());
    match val.strip_prefix("sk-") {
        Some(body) => body
            .bytes()
            .any(|b| b.is_ascii_digit() || b.is_ascii_uppercase()),
        None => true,
    }
}

/// True if `word` starts with a token prefix, or is itself the start of
/// one (at least two characters, so a lone letter is not dropped).
pub(super) fn may_start_token(word: &str) -> bool {
    TOKEN_PREFIXES
        .iter()
        .any(|p| word.starts_with(p) || (word.len() >= 2 && p.starts_with(word)))
}

/// True if `word` starts with a token prefix (a URL user part).
pub(super) fn starts_with_token_prefix(word: &str) -> bool {
    TOKEN_PREFIXES.iter().any(|p| word.starts_with(p))
}

/// True if `word` looks random enough to be a credential of a shape no
/// rule knows: long, with letters of both cases and digits (paths, words
/// and hex digests rarely mix all three).
pub(super) fn looks_random(word: &str) -> bool {
    word.len() >= 16
        && word.bytes().any(|b| b.is_ascii_digit())
        && word.bytes().any(|b| b.is_ascii_uppercase())
        && word.bytes().any(|b| b.is_ascii_lowercase())
}
