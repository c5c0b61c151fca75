//! The filters of `receipts` that read a receipt's context (`--user`,
//! `--rule`, `--dst`, `--path`, `--unit`, `--pid`, `--exe`), evaluated on
//! the fleet's rows in Rust, member by member exactly as the local store's
//! SQL reads them (observer-receipts `query::push_filters`).
//!
//! ClickHouse 18.16 has no JSON path functions: `visitParamExtract*` find
//! the first member of a name at any depth, and a context has `pid`, `exe`
//! and `path` at several depths (`process.pid`, `file_open.paths[].pid`,
//! `parents[].pid`). So ClickHouse only narrows the rows with a condition
//! every match meets ([`ContextFilter::prefilter`]: the context holds each
//! literal piece of the glob), and the exact test runs here.
use serde_json::Value;

use super::clickhouse::quote;
use observer_receipts::{payload, query::Query};

/// The context filters of a [`Query`].
#[derive(Debug, Clone, Default)]
pub struct ContextFilter {
    user: Vec<String>,
    rule: Vec<String>,
    dst: Vec<String>,
    path: Vec<String>,
    unit: Vec<String>,
    pid: Vec<u32>,
    exe: Vec<String>,
}

impl ContextFilter {
    pub fn of(q: &Query) -> ContextFilter {
        ContextFilter {
            user: q.user.clone(),
            rule: q.rule.clone(),
            dst: q.dst.clone(),
            path: q.path.clone(),
            unit: q.unit.clone(),
            pid: q.pid.clone(),
            exe: q.exe.clone(),
        }
    }

    pub fn is_empty(&self) -> bool {
        [
            &self.user, &self.rule, &self.dst, &self.path, &self.unit, &self.exe,
        ]
        .iter()
        .all(|l| l.is_empty())
            && self.pid.is_empty()
    }

    /// The `sha256:<hex>` values of `--exe`: they also match the payload's
    /// `executable_hash` (read from the envelope, so selected only then).
    pub fn exe_hashes(&self) -> Vec<String> {
        self.exe.iter().filter_map(|e| exe_hash(e)).collect()
    }

    /// A condition every row this filter accepts meets (fewer rows read
    /// out of ClickHouse, none lost): a context, holding every literal
    /// piece of one glob of each filter. `None` without context filters.
    pub fn prefilter(&self) -> Option<String> {
        if self.is_empty() {
            return None;
        }
        let mut conds = Vec::new();
        let globs = |globs: &[String], seps: &[char]| -> Option<String> {
            if globs.is_empty() {
                return None;
            }
            let any: Vec<String> = globs
                .iter()
                .map(|g| format!("({})", contains_pieces(g, seps)))
                .collect();
            Some(format!("({})", any.join(" OR ")))
        };
        conds.extend(globs(&self.user, &[]));
        conds.extend(globs(&self.rule, &[]));
        conds.extend(globs(&self.unit, &[]));
        conds.extend(globs(&self.path, &[]));
        // `--dst` also matches `remote_addr:remote_port`, text the context
        // does not hold: its pieces are split at the colon.
        conds.extend(globs(&self.dst, &[':']));
        let pids: Vec<String> = self.pid.iter().map(u32::to_string).collect();
        conds.extend(globs(&pids, &[]));
        let mut parts = Vec::new();
        if !conds.is_empty() {
            parts.push(format!("context IS NOT NULL AND {}", conds.join(" AND ")));
        }
        if !self.exe.is_empty() {
            // A hash is in the envelope: a row without a context may match.
            let mut any: Vec<String> = self
                .exe
                .iter()
                .map(|g| format!("(context IS NOT NULL AND {})", contains_pieces(g, &[])))
                .collect();
            any.extend(self.exe_hashes().iter().map(|h| {
                format!(
                    "visitParamExtractString(envelope, 'executable_hash') = {}",
                    quote(h)
                )
            }));
            parts.push(format!("({})", any.join(" OR ")));
        }
        Some(parts.join(" AND "))
    }

    /// Whether a row with context `ctx` (none: hash mode) and payload
    /// `executable_hash` passes every context filter.
    pub fn matches(&self, ctx: Option<&Value>, executable_hash: &str) -> bool {
        let null = Value::Null;
        let c = ctx.unwrap_or(&null);
        let present = ctx.is_some_and(|c| !c.is_null());
        let any = |globs: &[String], f: &dyn Fn(&str) -> bool| {
            globs.is_empty() || (present && globs.iter().any(|g| f(g)))
        };
        let at = |path: &[&str]| path.iter().fold(c, |v, p| &v[*p]);
        let opens = || entries(&c["file_open"]["paths"]);
        any(&self.user, &|g| {
            glob_value(g, at(&["process", "user"]))
                || g.parse::<u32>()
                    .is_ok_and(|uid| at(&["process", "uid"]).as_u64() == Some(uid.into()))
        }) && any(&self.rule, &|g| glob_value(g, &c["rule_id"]))
            && any(&self.unit, &|g| glob_value(g, at(&["process", "unit"])))
            && any(&self.path, &|g| {
                glob_value(g, at(&["file_open", "path"]))
                    || opens().any(|e| glob_value(g, &e["path"]))
                    || glob_value(g, at(&["matched", "path"]))
            })
            && any(&self.dst, &|g| {
                ["connect", "accept", "listen", "bind"]
                    .iter()
                    .any(|k| c.get(*k).is_some_and(|n| dst_matches(g, n)))
                    || glob_value(g, at(&["matched", "destination"]))
            })
            && (self.pid.is_empty()
                || (present
                    && self.pid.iter().any(|pid| {
                        at(&["process", "pid"]).as_u64() == Some((*pid).into())
                            || opens().any(|e| e["pid"].as_u64() == Some((*pid).into()))
                    })))
            && (self.exe.is_empty()
                || self.exe.iter().any(|g| {
                    exe_hash(g).is_some_and(|h| h == executable_hash)
                        || (present
                            && (glob_value(g, at(&["process", "exe"]))
                                || opens().any(|e| glob_value(g, &e["exe"]))))
                }))
    }
}

/// A network event's remote address, `address:port` or one of its names.
fn dst_matches(g: &str, n: &Value) -> bool {
    let addr = text(&n["remote_addr"]);
    let port = text(&n["remote_port"]);
    addr.as_deref().is_some_and(|a| glob_match(g, a))
        || matches!((&addr, &port), (Some(a), Some(p)) if glob_match(g, &format!("{a}:{p}")))
        || entries(&n["dst_names"]).any(|d| glob_value(g, &d["name"]))
}

/// The members of an array or object (`json_each`), none for a scalar.
fn entries(v: &Value) -> Box<dyn Iterator<Item = &Value> + '_> {
    match v {
        Value::Array(a) => Box::new(a.iter()),
        Value::Object(m) => Box::new(m.values()),
        _ => Box::new(std::iter::empty()),
    }
}

/// A member as SQLite's `json_extract` gives it to `GLOB`: strings as
/// they are, numbers as their text, true and false as 1 and 0, arrays and
/// objects as JSON text; none for null or absent.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(if *b { "1" } else { "0" }.into()),
        other => Some(other.to_string()),
    }
}

fn glob_value(g: &str, v: &Value) -> bool {
    text(v).is_some_and(|t| glob_match(g, &t))
}

/// SQLite's `GLOB` for the local filters' globs: `*` any run of characters
/// (newlines too), `?` one character, everything else literal.
pub fn glob_match(glob: &str, text: &str) -> bool {
    let g: Vec<char> = glob.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut gi, mut ti) = (0, 0);
    // The last `*` seen and the text position it is tried from.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match g.get(gi) {
            Some('*') => {
                star = Some((gi, ti));
                gi += 1;
            }
            Some('?') => {
                gi += 1;
                ti += 1;
            }
            Some(c) if *c == t[ti] => {
                gi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sg, st)) => {
                    gi = sg + 1;
                    ti = st + 1;
                    star = Some((sg, st + 1));
                }
                None => return false,
            },
        }
    }
    g[gi..].iter().all(|c| *c == '*')
}

/// `sha256:<hex>` of `--exe` given as a hash, with or without the prefix.
fn exe_hash(exe: &str) -> Option<String> {
    let hex = exe
        .strip_prefix("sha256:")
        .unwrap_or(exe)
        .to_ascii_lowercase();
    payload::is_lower_hex64(&hex).then(|| format!("sha256:{hex}"))
}

/// `position(context, piece) > 0` for each literal piece of `glob` (split
/// at the wildcards, at `seps`, and at every character a JSON writer may
/// escape, so each piece is in the stored text as it is in the glob).
fn contains_pieces(glob: &str, seps: &[char]) -> String {
    let pieces: Vec<String> = glob
        .split(|c: char| {
            matches!(c, '*' | '?' | '"' | '\\') || seps.contains(&c) || !(' '..='~').contains(&c)
        })
        .filter(|p| !p.is_empty())
        .map(|p| format!("position(context, {}) > 0", quote(p)))
        .collect();
    if pieces.is_empty() {
        "1".into()
    } else {
        pieces.join(" AND ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn globs_match_as_sqlite_does() {
        for (g, t, m) in [
            ("*", "", true),
            ("a*c", "abbbc", true),
            ("a*c", "abbbd", false),
            ("a?c", "aéc", true),
            ("a?c", "ac", false),
            ("*.py", "x.py.bak", false),
            ("*a*b*", "xaxxbx", true),
            ("a*", "a\nb", true),
            ("[x]", "[x]", true),
            ("llm-*", "llm-api-call", true),
            ("exact", "exact", true),
            ("exact", "exactly", false),
        ] {
            assert_eq!(glob_match(g, t), m, "{g:?} {t:?}");
        }
    }

    fn filter(f: impl FnOnce(&mut Query)) -> ContextFilter {
        let mut q = Query::default();
        f(&mut q);
        ContextFilter::of(&q)
    }

    #[test]
    fn each_filter_reads_the_members_the_local_sql_reads() {
        let exec = json!({"process": {"pid": 42, "uid": 1000, "user": "alice", "unit": "a.service",
                                      "exe": "/usr/bin/python3"},
                          "parents": [{"pid": 7, "exe": "/bin/bash"}]});
        let open = json!({"process": {"pid": 1}, "file_open": {"path": "/etc/a", "paths": [
            {"path": "/etc/a", "pid": 1, "exe": "/bin/cat"}, {"path": "/srv/b.gguf", "pid": 9, "exe": "/bin/dd"}]}});
        let connect = json!({"connect": {"remote_addr": "10.0.0.1", "remote_port": 443,
                                         "dst_names": [{"name": "api.openai.com", "source": "sni"}]}});
        let finding = json!({"rule_id": "llm-api-call", "matched": {"destination": "api.x.ai", "path": "/m.gguf"}});
        let h = format!("sha256:{}", "ab".repeat(32));
        let yes = |f: &ContextFilter, c: &Value| f.matches(Some(c), &h);
        assert!(yes(&filter(|q| q.user = vec!["al*".into()]), &exec));
        assert!(yes(&filter(|q| q.user = vec!["1000".into()]), &exec));
        assert!(!yes(&filter(|q| q.user = vec!["bob".into()]), &exec));
        assert!(yes(&filter(|q| q.unit = vec!["*.service".into()]), &exec));
        // A parent's pid or exe is not the process's.
        assert!(!yes(&filter(|q| q.pid = vec![7]), &exec));
        assert!(!yes(&filter(|q| q.exe = vec!["/bin/bash".into()]), &exec));
        assert!(yes(&filter(|q| q.pid = vec![3, 42]), &exec));
        assert!(yes(&filter(|q| q.pid = vec![9]), &open));
        assert!(yes(&filter(|q| q.exe = vec!["/bin/d?".into()]), &open));
        assert!(yes(&filter(|q| q.path = vec!["*.gguf".into()]), &open));
        assert!(yes(&filter(|q| q.path = vec!["*.gguf".into()]), &finding));
        assert!(yes(
            &filter(|q| q.dst = vec!["10.0.0.1:443".into()]),
            &connect
        ));
        assert!(yes(&filter(|q| q.dst = vec!["*:443".into()]), &connect));
        assert!(yes(
            &filter(|q| q.dst = vec!["api.openai.*".into()]),
            &connect
        ));
        assert!(yes(&filter(|q| q.dst = vec!["api.x.ai".into()]), &finding));
        assert!(!yes(
            &filter(|q| q.dst = vec!["10.0.0.1:80".into()]),
            &connect
        ));
        assert!(yes(&filter(|q| q.rule = vec!["llm-*".into()]), &finding));
        assert!(!yes(&filter(|q| q.rule = vec!["llm-*".into()]), &exec));
        // Different filters AND, values of one filter OR.
        let both = filter(|q| {
            q.user = vec!["bob".into(), "alice".into()];
            q.pid = vec![42];
        });
        assert!(yes(&both, &exec));
        assert!(!yes(
            &filter(|q| {
                q.user = vec!["alice".into()];
                q.pid = vec![43];
            }),
            &exec
        ));
        // The executable's hash matches with or without a context.
        let by_hash = filter(|q| q.exe = vec![h.trim_start_matches("sha256:").to_uppercase()]);
        assert!(by_hash.matches(None, &h));
        assert!(!by_hash.matches(None, "sha256:00"));
        // Without a context (hash mode) no context filter matches.
        assert!(!filter(|q| q.user = vec!["*".into()]).matches(None, &h));
        assert!(filter(|_| {}).matches(None, &h));
    }

    #[test]
    fn the_prefilter_asks_for_every_literal_piece_and_quotes_it() {
        assert_eq!(filter(|_| {}).prefilter(), None);
        assert_eq!(
            filter(|q| q.user = vec!["al*ce".into(), "x'y".into()]).prefilter().unwrap(),
            "context IS NOT NULL AND ((position(context, 'al') > 0 AND position(context, 'ce') > 0) \
             OR (position(context, 'x\\'y') > 0))"
        );
        // A glob of wildcards only, or of characters a writer may escape,
        // asks for nothing but a context.
        assert_eq!(
            filter(|q| q.rule = vec!["*\"é".into()])
                .prefilter()
                .unwrap(),
            "context IS NOT NULL AND ((1))"
        );
        assert_eq!(
            filter(|q| q.dst = vec!["10.0.0.1:443".into()]).prefilter().unwrap(),
            "context IS NOT NULL AND ((position(context, '10.0.0.1') > 0 AND position(context, '443') > 0))"
        );
        let h = "ab".repeat(32);
        assert_eq!(
            filter(|q| q.exe = vec![h.clone()]).prefilter().unwrap(),
            format!(
                "((context IS NOT NULL AND position(context, '{h}') > 0) OR \
                 visitParamExtractString(envelope, 'executable_hash') = 'sha256:{h}')"
            )
        );
    }
}
