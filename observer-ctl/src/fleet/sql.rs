//! The WHERE clauses of the fleet queries: the command line's globs and
//! times as ClickHouse conditions. Every value reaches the SQL text through
//! [`quote`] (a string literal) or [`like_pattern`] then [`quote`] (a
//! `LIKE` pattern in a literal); nothing else is spliced in.
//!
//! Globs are the local filters' (`*` any run of characters, `?` one
//! character, everything else literal, case-sensitive). ClickHouse's `LIKE`
//! has the same meaning for `%` and `_` (`_` is one UTF-8 character, both
//! match newlines, checked on 18.16), so a glob is a `LIKE` pattern with
//! `%`, `_` and `\` escaped. A glob without a wildcard is an equality, and
//! on the sort key's columns (`host`, `chain`) both an equality and a
//! pattern with a literal prefix select a range of the primary index.
use super::clickhouse::quote;
use crate::CtlError;

/// `glob` as a ClickHouse `LIKE` pattern (not yet quoted).
pub fn like_pattern(glob: &str) -> String {
    let mut out = String::with_capacity(glob.len() + 4);
    for c in glob.chars() {
        match c {
            '*' => out.push('%'),
            '?' => out.push('_'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// Whether `glob` has a wildcard.
pub fn is_pattern(glob: &str) -> bool {
    glob.contains(['*', '?'])
}

/// `column` matching one glob: an equality without a wildcard, else `LIKE`.
pub fn glob_cond(column: &str, glob: &str) -> String {
    if is_pattern(glob) {
        format!("{column} LIKE {}", quote(&like_pattern(glob)))
    } else {
        format!("{column} = {}", quote(glob))
    }
}

/// A host as given to `--hosts`: an origin (it has a `/`) as is, a bare
/// host name as the origins of every deployer with that host name.
pub fn host_glob(host: &str) -> String {
    if host.contains('/') {
        host.to_string()
    } else {
        format!("*/host/{host}")
    }
}

/// Checks each value of `--hosts`: a host name, or an origin of the shape
/// `<deployer_id>/host/<hostname>` (wildcards allowed in both). Anything
/// else could never match a host and would print an empty fleet, which
/// reads as "no such hosts" rather than as the typo it is.
pub fn check_hosts(hosts: &[String]) -> Result<(), CtlError> {
    for host in hosts {
        let ok = match host.rsplit_once("/host/") {
            _ if host.is_empty() => false,
            None => !host.contains('/'),
            Some((deployer, name)) => {
                !deployer.is_empty() && !name.is_empty() && !name.contains('/')
            }
        };
        if !ok {
            return Err(CtlError::Usage(format!(
                "--hosts {host:?}: expected a host name or a log origin, \
                 <deployer_id>/host/<hostname> (`observerctl fleet hosts` lists them)"
            )));
        }
    }
    Ok(())
}

/// A conjunction being built: ` AND`-joined conditions.
#[derive(Debug, Default, Clone)]
pub struct Where {
    conds: Vec<String>,
}

impl Where {
    /// A condition as is (built from quoted values only).
    pub fn push(&mut self, cond: String) {
        self.conds.push(cond);
    }

    /// `column` matching any of `globs`; nothing for none.
    pub fn any(&mut self, column: &str, globs: &[String]) {
        if globs.is_empty() {
            return;
        }
        let mut exact: Vec<String> = Vec::new();
        let mut conds: Vec<String> = Vec::new();
        for g in globs {
            if is_pattern(g) {
                conds.push(glob_cond(column, g));
            } else {
                exact.push(quote(g));
            }
        }
        match exact.len() {
            0 => {}
            1 => conds.insert(0, format!("{column} = {}", exact[0])),
            _ => conds.insert(0, format!("{column} IN ({})", exact.join(", "))),
        }
        self.conds.push(if conds.len() == 1 {
            conds.remove(0)
        } else {
            format!("({})", conds.join(" OR "))
        });
    }

    /// The hosts of `--hosts`.
    pub fn hosts(&mut self, hosts: &[String]) {
        let globs: Vec<String> = hosts.iter().map(|h| host_glob(h)).collect();
        self.any("host", &globs);
    }

    /// `issued_ns` in `[since, until]` (either open when none).
    pub fn window(&mut self, since_ns: Option<u64>, until_ns: Option<u64>) {
        if let Some(t) = since_ns {
            self.conds.push(format!("issued_ns >= {t}"));
        }
        if let Some(t) = until_ns {
            self.conds.push(format!("issued_ns <= {t}"));
        }
    }

    /// ` WHERE c1 AND c2 ...`, or nothing.
    pub fn sql(&self) -> String {
        if self.conds.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.conds.join(" AND "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_glob_becomes_a_like_pattern_with_its_literals_escaped() {
        assert_eq!(like_pattern("network.*"), "network.%");
        assert_eq!(like_pattern("a?c"), "a_c");
        assert_eq!(like_pattern("50%_off\\x"), "50\\%\\_off\\\\x");
        assert_eq!(like_pattern("[x]'"), "[x]'");
        // In its literal, each backslash doubles again and a quote is
        // escaped: the literal cannot end early.
        assert_eq!(glob_cond("agent", "o'k_*"), "agent LIKE 'o\\'k\\\\_%'");
        assert_eq!(glob_cond("agent", "a'b"), "agent = 'a\\'b'");
    }

    #[test]
    fn exact_values_share_one_in_list_and_patterns_are_ored() {
        let mut w = Where::default();
        w.any("agent", &["a".into(), "b".into(), "c*".into()]);
        w.any("risk", &["high".into()]);
        w.any("action", &[]);
        w.window(Some(5), None);
        assert_eq!(
            w.sql(),
            " WHERE (agent IN ('a', 'b') OR agent LIKE 'c%') AND risk = 'high' AND issued_ns >= 5"
        );
        assert_eq!(Where::default().sql(), "");
    }

    #[test]
    fn a_host_that_is_neither_a_name_nor_an_origin_is_refused_naming_the_flag() {
        for ok in ["web-1", "web-*", "did:web:x/host/db", "*/host/db?"] {
            check_hosts(&[ok.to_string()]).unwrap();
        }
        for bad in ["", "a/b", "did:web:x/host/", "/host/db", "x/host/a/b"] {
            let e = check_hosts(&["web-1".into(), bad.into()]).unwrap_err();
            assert!(
                e.to_string().starts_with(&format!("--hosts {bad:?}")),
                "{e}"
            );
        }
    }

    #[test]
    fn a_bare_host_name_is_every_origin_with_that_name() {
        let mut w = Where::default();
        w.hosts(&["web-1".into(), "did:web:x/host/db".into()]);
        assert_eq!(
            w.sql(),
            " WHERE (host = 'did:web:x/host/db' OR host LIKE '%/host/web-1')"
        );
    }
}
