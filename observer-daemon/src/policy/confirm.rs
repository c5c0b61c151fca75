//! Confirmation of generic process names (`q`, `chat`, `amp`, `goose`):
//! a name that many unrelated programs carry counts as an indicator only
//! when something else about the process says which program it is.
use super::{
    matchers::{GlobSet, Regexes},
    model::Confirmation,
};
use crate::record::{Detail, EnrichedEvent};

/// `requires_any`, compiled. Empty (the default) confirms nothing.
#[derive(Debug, Default)]
pub struct Confirm {
    argv: Regexes,
    paths: GlobSet,
    ancestor_names: GlobSet,
    env_names: GlobSet,
}

impl Confirm {
    pub fn compile(c: &Confirmation) -> Result<Confirm, String> {
        Ok(Confirm {
            argv: Regexes::new(&c.argv)?,
            paths: GlobSet::new(&c.paths)?,
            ancestor_names: GlobSet::new(&c.ancestor_names)?,
            env_names: GlobSet::new(&c.env_names)?,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.argv.is_empty()
            && self.paths.is_empty()
            && self.ancestor_names.is_empty()
            && self.env_names.is_empty()
    }

    /// Which list confirmed the process (`paths`, `ancestor_names`,
    /// `env_names`, `argv`), or None. `joined_argv` is called only when
    /// the cheaper lists did not confirm.
    pub fn confirmed_by<'s>(
        &self,
        ev: &EnrichedEvent,
        joined_argv: impl FnOnce() -> &'s str,
    ) -> Option<&'static str> {
        let p = &ev.process;
        if !self.paths.is_empty() {
            let exec_path = match &ev.detail {
                Detail::Exec(e) => Some(e.filename.as_str()),
                _ => None,
            };
            let argv = match &ev.detail {
                Detail::Exec(e) => &e.argv,
                _ => &p.argv,
            };
            if p.exe
                .as_deref()
                .into_iter()
                .chain(exec_path)
                .chain(argv.iter().map(String::as_str))
                .any(|s| self.paths.matches(s))
            {
                return Some("paths");
            }
        }
        if !self.ancestor_names.is_empty()
            && ev
                .parents
                .iter()
                .any(|a| self.ancestor_names.matches(&a.comm))
        {
            return Some("ancestor_names");
        }
        if !self.env_names.is_empty() && p.env_names.iter().any(|n| self.env_names.matches(n)) {
            return Some("env_names");
        }
        if !self.argv.is_empty() && self.argv.matches(joined_argv()) {
            return Some("argv");
        }
        None
    }
}

/// An autonomous-mode flag: `--yolo` alone, or `--approval-mode yolo`
/// (a flag and the value that makes it autonomous).
#[derive(Debug)]
pub struct AutonomousFlag {
    /// As written in the list (what a finding reports).
    pub text: String,
    flag: String,
    value: Option<String>,
}

impl AutonomousFlag {
    pub fn parse(text: &str) -> Result<AutonomousFlag, String> {
        let mut parts = text.split(' ');
        let flag = parts.next().unwrap_or_default();
        let value = parts.next();
        if flag.is_empty()
            || !flag.starts_with('-')
            || value.is_some_and(str::is_empty)
            || parts.next().is_some()
        {
            return Err(format!(
                "autonomous flag {text:?}: write `-f`, `--flag` or `--flag value` (one space)"
            ));
        }
        Ok(AutonomousFlag {
            text: text.to_string(),
            flag: flag.to_string(),
            value: value.map(str::to_string),
        })
    }

    /// Whether argv (argv[0] first, which is never a flag) carries it.
    pub fn in_argv(&self, argv: &[String]) -> bool {
        let f = self.flag.as_str();
        let args = argv.get(1..).unwrap_or_default();
        args.iter().enumerate().any(|(i, a)| match &self.value {
            None => a == f || a.strip_prefix(f).is_some_and(|r| r.starts_with('=')),
            Some(v) => {
                (a == f && args.get(i + 1) == Some(v))
                    || a
                        .strip_prefix(f)
                        .and_then(|r| r.strip_prefix('='))
                        .is_some_and(|r| r == v)
                    // Short options take their value attached: `-anever`.
                    || (f.len() == 2
                        && !f.starts_with("--")
                        && a.strip_prefix(f).is_some_and(|r| r == v))
            }
        })
    }
}
