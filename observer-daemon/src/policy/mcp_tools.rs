//! Checks on MCP tool definitions (issue #20): the tools a server announces
//! in its `tools/list` answer, checked as the answer passes by, for what
//! MCP scanners look for before a server is trusted. Lists come from
//! `policies/indicators/mcp_tool_checks.toml` (docs/policies.md "MCP tool
//! definitions"); hidden characters and embedded secrets are code.
//!
//! Pure and synchronous: the stream layer hands over `result.tools` of one
//! answer and records what comes back. Everything in a tool definition is
//! written by the server, so it is treated as hostile: every string is
//! scanned up to [`MAX_SCAN_BYTES`], the walk stops at [`MAX_DEPTH`] and
//! [`MAX_STRINGS`], a tool yields at most [`MAX_FINDINGS_PER_TOOL`]
//! findings, names quoted in findings are escaped and cut, and odd JSON is
//! skipped, never a panic: an entry that is not an object, or has no string
//! `name`, is not a tool an MCP client would offer, so it is not checked.
mod memory;
mod text;

use std::{collections::HashSet, path::Path};

use serde_json::Value;

pub use super::mcp_tools_file::{DangerousInputsDef, PhraseDef, ToolChecksFile, TyposquatDef};
pub use super::mcp_verdict::{verdict, Risk, ToolFinding, Verdict};
use super::{
    error::{edit_distance, PolicyError},
    load::{parse_text, Source},
};
pub use memory::{definition_digest, DefinitionMemory, MEMORY_LIMIT};
use text::{cap, hidden_characters, holds_secret, quote, snake, squat_form, tokenize};

/// How much of one string is scanned (a description can be megabytes).
pub const MAX_SCAN_BYTES: usize = 64 * 1024;
/// How deep into a definition (an input schema nests) the walk goes.
pub const MAX_DEPTH: usize = 32;
/// How many strings (values and keys) of one tool are examined.
pub const MAX_STRINGS: usize = 10_000;
/// Findings kept per tool; past it a hostile definition only repeats itself.
pub const MAX_FINDINGS_PER_TOOL: usize = 32;
/// Characters of a server-chosen name quoted in a finding.
const MAX_QUOTED_CHARS: usize = 96;

// ---- compiled ------------------------------------------------------------

#[derive(Debug, Clone)]
struct Phrase {
    text: String,
    tokens: Vec<String>,
    risk: Risk,
}

/// The compiled lists. `Default` has none: only the code checks (hidden
/// characters, secrets) run.
#[derive(Debug, Clone, Default)]
pub struct ToolChecks {
    phrases: Vec<Phrase>,
    dangerous: HashSet<String>,
    dangerous_risk: Option<Risk>,
    squat_names: Vec<String>,
    min_length: usize,
    two_edit_min_length: usize,
}

/// The built-in file's path in error messages.
impl ToolChecks {
    /// Parses and compiles one file's text; errors read
    /// `origin:line:column: message` and name the field.
    pub fn parse(text: &str, origin: &Path) -> Result<ToolChecks, PolicyError> {
        ToolChecks::compile(&parse_text(origin, text.to_owned())?)
    }

    /// Validates a parsed file: empty, duplicate or unmatchable entries
    /// are refused rather than silently never matching.
    pub fn compile(src: &Source<ToolChecksFile>) -> Result<ToolChecks, PolicyError> {
        let f = &src.value;
        let mut phrases: Vec<Phrase> = Vec::new();
        for p in &f.injection {
            let tokens = tokenize(&p.phrase);
            if !tokens.iter().any(|t| t.chars().any(char::is_alphanumeric)) {
                return Err(src.error_at_value(
                    &p.phrase,
                    format!(
                        "`phrase` {:?} has no words: it would match every text",
                        p.phrase
                    ),
                ));
            }
            if phrases.iter().any(|q| q.tokens == tokens) {
                return Err(src.error_at_value(
                    &p.phrase,
                    format!("`phrase` {:?} is listed twice", p.phrase),
                ));
            }
            phrases.push(Phrase {
                text: p.phrase.clone(),
                tokens,
                risk: p.risk,
            });
        }
        let mut dangerous = HashSet::new();
        for n in &f.dangerous_inputs.names {
            if n.is_empty() || snake(n) != *n {
                return Err(src.error_at_value(
                    n,
                    format!("`names` entry {n:?} of [dangerous_inputs] must be lower snake_case, as names are compared"),
                ));
            }
            if !dangerous.insert(n.clone()) {
                return Err(src.error_at_value(n, format!("`names` entry {n:?} is listed twice")));
            }
        }
        let t = &f.typosquat;
        if t.min_length == 0 || t.two_edit_min_length < t.min_length {
            return Err(src.error_at(
                "min_length",
                "`min_length` must be at least 1 and `two_edit_min_length` at least `min_length`",
            ));
        }
        let mut squat_names: Vec<String> = Vec::new();
        for n in &t.names {
            if n.is_empty() || squat_form(n) != *n {
                return Err(src.error_at_value(
                    n,
                    format!("`names` entry {n:?} of [typosquat] must be lower case, `_` not `-`, as names are compared"),
                ));
            }
            if squat_names.contains(n) {
                return Err(src.error_at_value(n, format!("`names` entry {n:?} is listed twice")));
            }
            squat_names.push(n.clone());
        }
        Ok(ToolChecks {
            phrases,
            dangerous,
            dangerous_risk: Some(f.dangerous_inputs.risk),
            squat_names,
            min_length: t.min_length,
            two_edit_min_length: t.two_edit_min_length,
        })
    }

    /// Checks every tool of one `tools/list` answer (`result.tools`).
    pub fn check(&self, tools: &[Value]) -> Vec<ToolFinding> {
        let mut out = Vec::new();
        for tool in tools {
            let Some(name) = tool_name(tool) else {
                continue;
            };
            let mut one = Findings {
                tool: quote(name),
                seen: HashSet::new(),
                out: Vec::new(),
            };
            self.typosquat(name, &mut one);
            let mut budget = MAX_STRINGS;
            for (key, value) in tool.as_object().into_iter().flatten() {
                let mut path = vec![key.as_str()];
                self.walk(value, &mut path, &mut budget, &mut one);
            }
            out.extend(one.out);
        }
        out
    }

    fn walk<'a>(
        &self,
        value: &'a Value,
        path: &mut Vec<&'a str>,
        budget: &mut usize,
        out: &mut Findings,
    ) {
        if path.len() > MAX_DEPTH || *budget == 0 {
            return;
        }
        match value {
            Value::String(s) => {
                *budget -= 1;
                self.string(s, &Where::Value(path), out);
            }
            Value::Array(items) => {
                for item in items {
                    // Array indexes say nothing a finding needs.
                    path.push("*");
                    self.walk(item, path, budget, out);
                    path.pop();
                }
            }
            Value::Object(map) => {
                for (k, v) in map {
                    if *budget == 0 {
                        return;
                    }
                    *budget -= 1;
                    path.push(k);
                    self.key(k, path, out);
                    self.walk(v, path, budget, out);
                    path.pop();
                }
            }
            _ => {}
        }
    }

    /// A key: hidden characters anywhere; an input field's name against
    /// the dangerous names.
    fn key(&self, key: &str, path: &[&str], out: &mut Findings) {
        let key = cap(key);
        if let Some(hidden) = hidden_characters(key) {
            out.push(
                "hidden_character",
                Risk::High,
                format!("{} has {hidden}", Where::Key(path)),
            );
        }
        if let (Some(field), Some(risk)) = (input_field(path), self.dangerous_risk) {
            if self.dangerous.contains(&snake(key)) {
                out.push("dangerous_input", risk, format!("input field `{field}`"));
            }
        }
    }

    fn string(&self, s: &str, at: &Where, out: &mut Findings) {
        let s = cap(s);
        if let Some(hidden) = hidden_characters(s) {
            out.push("hidden_character", Risk::High, format!("{at} has {hidden}"));
        }
        if !self.phrases.is_empty() {
            let tokens = tokenize(s);
            for p in &self.phrases {
                if tokens
                    .windows(p.tokens.len())
                    .any(|w| w == p.tokens.as_slice())
                {
                    out.push("injection_phrase", p.risk, format!("{at} has {:?}", p.text));
                }
            }
        }
        if holds_secret(s) {
            out.push(
                "embedded_secret",
                Risk::High,
                format!("{at} holds a secret"),
            );
        }
    }

    /// A name one or two edits from a name squatters imitate.
    fn typosquat(&self, original: &str, out: &mut Findings) {
        let name = squat_form(cap(original));
        let len = name.chars().count();
        let longest = self.squat_names.iter().map(|n| n.chars().count()).max();
        if len < self.min_length || longest.is_none_or(|l| len > l + 2) {
            return;
        }
        let mut best: Option<(usize, &str)> = None;
        for target in &self.squat_names {
            let d = edit_distance(&name, target);
            if d == 0 {
                return;
            }
            if best.is_none_or(|(b, _)| d < b) {
                best = Some((d, target));
            }
        }
        let risk = match best {
            Some((1, _)) => Risk::High,
            Some((2, _)) if len >= self.two_edit_min_length => Risk::Medium,
            _ => return,
        };
        let (d, target) = best.unwrap_or_default();
        let edits = if d == 1 { "1 edit" } else { "2 edits" };
        out.push(
            "typosquat",
            risk,
            format!("name `{}` is {edits} from `{target}`", quote(original)),
        );
    }
}

/// One tool's findings, without repeats, at most [`MAX_FINDINGS_PER_TOOL`].
struct Findings {
    tool: String,
    seen: HashSet<(&'static str, String)>,
    out: Vec<ToolFinding>,
}

impl Findings {
    fn push(&mut self, check: &'static str, risk: Risk, reason: String) {
        if self.out.len() < MAX_FINDINGS_PER_TOOL && self.seen.insert((check, reason.clone())) {
            self.out.push(ToolFinding {
                tool: self.tool.clone(),
                check,
                risk,
                reason,
            });
        }
    }
}

fn tool_name(tool: &Value) -> Option<&str> {
    tool.as_object()?.get("name")?.as_str()
}

/// Where a string sits in a tool definition, for a finding's reason.
enum Where<'p, 'a> {
    Value(&'p [&'a str]),
    Key(&'p [&'a str]),
}

impl std::fmt::Display for Where<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Where::Value(path) => {
                match (input_field(&path[..path.len().saturating_sub(1)]), path) {
                    (_, [one]) => write!(f, "{}", quote(one)),
                    (Some(field), [.., "description"]) => {
                        write!(f, "input field `{field}` description")
                    }
                    _ => write!(f, "`{}`", quote(&path.join("."))),
                }
            }
            Where::Key(path) => match input_field(path) {
                Some(field) => write!(f, "input field name `{field}`"),
                None => write!(f, "key `{}`", quote(&path.join("."))),
            },
        }
    }
}

/// `a.b` when `path` ends at an input field: `inputSchema.properties.a`,
/// `inputSchema.properties.a.properties.b` (items of arrays included).
fn input_field(path: &[&str]) -> Option<String> {
    let rest = path.strip_prefix(&["inputSchema"])?;
    let mut fields = Vec::new();
    let mut i = 0;
    while i < rest.len() {
        match rest[i] {
            "properties" if i + 1 < rest.len() => {
                fields.push(quote(rest[i + 1]));
                i += 2;
            }
            "items" | "*" => i += 1,
            _ => return None,
        }
    }
    (!fields.is_empty()).then(|| fields.join("."))
}

#[cfg(test)]
#[path = "mcp_tools_tests.rs"]
mod tests;
