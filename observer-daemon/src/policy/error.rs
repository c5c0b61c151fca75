//! Policy errors. Every error names the file; parse and validation errors
//! also name the line, column and key, and an unknown key comes with the
//! closest valid one, so a misspelt condition is refused instead of being
//! ignored (which would silently weaken a rule).
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `path:line:col: message`.
    #[error("{path}:{line}:{column}: {message}")]
    At {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
}

impl PolicyError {
    pub fn file(path: &Path, message: impl Into<String>) -> PolicyError {
        PolicyError::File {
            path: path.to_owned(),
            message: message.into(),
        }
    }

    /// The error at byte offset `at` of `text`.
    pub fn at(path: &Path, text: &str, at: usize, message: impl Into<String>) -> PolicyError {
        let (line, column) = line_column(text, at);
        PolicyError::At {
            path: path.to_owned(),
            line,
            column,
            message: message.into(),
        }
    }

    /// A toml/serde error, with a suggestion for an unknown key or value.
    pub fn from_toml(path: &Path, text: &str, err: &toml::de::Error) -> PolicyError {
        let mut message = err.message().trim().to_string();
        if let Some(hint) = suggestion(&message) {
            message.push_str(&format!("; did you mean `{hint}`?"));
        }
        match err.span() {
            Some(span) => Self::at(path, text, span.start, message),
            None => Self::file(path, message),
        }
    }
}

/// 1-based line and column of byte offset `at`.
pub fn line_column(text: &str, at: usize) -> (usize, usize) {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let column = before[before.rfind('\n').map_or(0, |i| i + 1)..]
        .chars()
        .count()
        + 1;
    (line, column)
}

/// For serde's "unknown field `x`, expected one of `a`, `b`" (and "unknown
/// variant"), the valid name closest to `x` by edit distance.
pub fn suggestion(message: &str) -> Option<String> {
    let rest = message
        .strip_prefix("unknown field `")
        .or_else(|| message.strip_prefix("unknown variant `"))?;
    let (bad, rest) = rest.split_once('`')?;
    let valid = rest.split_once("expected")?.1;
    valid
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|c| (edit_distance(bad, c), c))
        .min()
        .filter(|(d, c)| *d <= c.len().max(bad.len()) / 2 + 1)
        .map(|(_, c)| c.to_string())
}

/// Closest of `candidates` to `bad`, for names outside serde (files,
/// indicator and provider ids).
pub fn closest<'a>(bad: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(bad, c), c))
        .min()
        .filter(|(d, c)| *d <= c.len().max(bad.len()) / 2 + 1)
        .map(|(_, c)| c)
}

/// Levenshtein distance over chars.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let up = row[j + 1];
            row[j + 1] = (up + 1).min(row[j] + 1).min(diag + usize::from(ca != *cb));
            diag = up;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_closest_field() {
        assert_eq!(
            suggestion("unknown field `registerd`, expected one of `event`, `registered`, `paths`")
                .as_deref(),
            Some("registered")
        );
        assert_eq!(
            suggestion("unknown variant `fileopen`, expected one of `exec`, `file_open`")
                .as_deref(),
            Some("file_open")
        );
        assert_eq!(
            suggestion("unknown field `zzzzzzzz`, expected `id`"),
            None,
            "nothing close"
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(line_column("a\nbc\nd", 3), (2, 2));
    }
}
