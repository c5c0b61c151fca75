//! No import circles between files (the architecture's rule: a crate's
//! layers depend downward only). A test reads every library source file of
//! the workspace's crates, finds the files each one names through
//! `crate::`, `super::` and `self::` paths (in `use` trees and inline), and
//! fails on any strongly connected group of two or more files, naming them.
//!
//! A path names the file of its longest prefix that is a module file, so
//! `crate::receipt::select::Selector` names receipt/select.rs and
//! `crate::receipt::Draft` names receipt/mod.rs. Test modules (`#[cfg(test)]
//! mod tests { ... }` to the end of a file, and files of test modules) and
//! binaries are left out: tests may reach anywhere.
use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// A module path inside a crate (`["receipt", "select"]`; empty: the root).
type ModPath = Vec<String>;

/// The module path of `file` under the crate's `src`.
fn module_of(src: &Path, file: &Path) -> ModPath {
    let rel = file
        .strip_prefix(src)
        .expect("under src")
        .with_extension("");
    let mut parts: ModPath = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "bin") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The text that is not a comment, a string, a character literal or a
/// test module: an example path in a doc comment or a string is no import.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests {") {
        Some(at) => &text[..at],
        None => text,
    };
    let c: Vec<char> = text.chars().collect();
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < c.len() {
        let prev_ident = i > 0 && ident(c[i - 1]);
        match c[i] {
            '/' if c.get(i + 1) == Some(&'/') => {
                while i < c.len() && c[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            '/' if c.get(i + 1) == Some(&'*') => {
                i += 2;
                while i + 1 < c.len() && !(c[i] == '*' && c[i + 1] == '/') {
                    i += 1;
                }
                i += 2;
                continue;
            }
            'r' if !prev_ident && matches!(c.get(i + 1), Some('#' | '"')) => {
                let mut j = i + 1;
                let mut hashes = 0;
                while c.get(j) == Some(&'#') {
                    hashes += 1;
                    j += 1;
                }
                if c.get(j) != Some(&'"') {
                    out.push('r');
                    i += 1;
                    continue;
                }
                j += 1;
                while j < c.len()
                    && !(c[j] == '"' && (1..=hashes).all(|k| c.get(j + k) == Some(&'#')))
                {
                    j += 1;
                }
                out.push_str("\"\"");
                i = j + 1 + hashes;
                continue;
            }
            '"' => {
                let mut j = i + 1;
                while j < c.len() && c[j] != '"' {
                    j += if c[j] == '\\' { 2 } else { 1 };
                }
                out.push_str("\"\"");
                i = j + 1;
                continue;
            }
            // A character literal ('"', '\n'); a lifetime ('a) stays.
            '\'' if c.get(i + 1) == Some(&'\\') => {
                let mut j = i + 2;
                while j < c.len() && c[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
                continue;
            }
            '\'' if c.get(i + 2) == Some(&'\'') => {
                i += 3;
                continue;
            }
            ch => out.push(ch),
        }
        i += 1;
    }
    out
}

/// Expands a `use` tree (the text between `use` and `;`) into its paths.
fn expand_use(tree: &str) -> Vec<Vec<String>> {
    fn expand(tree: &str, prefix: &[String], out: &mut Vec<Vec<String>>) {
        let tree = tree.trim();
        if tree.is_empty() {
            return;
        }
        if let Some(open) = tree.find('{') {
            let head: Vec<String> = tree[..open]
                .split("::")
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
            let mut base = prefix.to_vec();
            base.extend(head);
            let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
            // Split the group at top-level commas.
            let (mut depth, mut start) = (0, 0);
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        expand(&inner[start..i], &base, out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            expand(&inner[start..], &base, out);
            return;
        }
        let name = tree.split(" as ").next().unwrap_or(tree);
        let mut path = prefix.to_vec();
        path.extend(
            name.split("::")
                .map(str::trim)
                .filter(|s| !s.is_empty() && *s != "*" && *s != "self")
                .map(String::from),
        );
        out.push(path);
    }
    let mut out = Vec::new();
    expand(tree, &[], &mut out);
    out
}

/// Every `crate::`/`super::`/`self::` path of `code`, as written.
fn paths_of(code: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    // `use` trees, expanded.
    let mut rest = code;
    while let Some(at) = rest.find("use ") {
        let before_ok = at == 0
            || !rest[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_');
        let after = &rest[at + 4..];
        let Some(end) = after.find(';') else { break };
        if before_ok {
            paths.extend(expand_use(&after[..end]));
        }
        rest = &after[end..];
    }
    // Inline paths.
    for anchor in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(at) = code[from..].find(anchor) {
            let start = from + at;
            from = start + anchor.len();
            if code[..start]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
            {
                continue;
            }
            let tail: String = code[start..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            paths.push(
                tail.split("::")
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect(),
            );
        }
    }
    paths
}

/// The module path a written path names, resolved against the file's
/// `module`; None for paths into other crates.
fn absolute(module: &ModPath, path: &[String]) -> Option<ModPath> {
    let (first, rest) = path.split_first()?;
    // The module `self` names; `super` is its parent.
    let mut base: ModPath = module.clone();
    let mut rest = rest;
    match first.as_str() {
        "crate" => base.clear(),
        "self" => {}
        "super" => {
            base.pop();
            while rest.first().is_some_and(|s| s == "super") {
                base.pop();
                rest = &rest[1..];
            }
        }
        _ => return None,
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

/// The strongly connected groups of two or more files (Tarjan).
fn circles(edges: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Vec<Vec<ModPath>> {
    struct State<'a> {
        edges: &'a BTreeMap<ModPath, BTreeSet<ModPath>>,
        index: BTreeMap<&'a ModPath, usize>,
        low: BTreeMap<&'a ModPath, usize>,
        stack: Vec<&'a ModPath>,
        on_stack: BTreeSet<&'a ModPath>,
        out: Vec<Vec<ModPath>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a ModPath) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.edges.get(v).into_iter().flatten() {
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut group = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                group.push(w.clone());
                if w == v {
                    break;
                }
            }
            if group.len() > 1 {
                group.sort();
                s.out.push(group);
            }
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.out
}

/// The import edges between the library files of the crate at `src`.
fn edges_of(src: &Path) -> BTreeMap<ModPath, BTreeSet<ModPath>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeMap<ModPath, PathBuf> = files
        .iter()
        .filter(|f| {
            // Test modules' own files (`#[path = "x_tests.rs"]`, tests.rs).
            let name = f.file_stem().unwrap_or_default().to_string_lossy();
            name != "tests" && !name.ends_with("_tests")
        })
        .map(|f| (module_of(src, f), f.clone()))
        .collect();
    let mut edges: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
    for (module, file) in &modules {
        let text = std::fs::read_to_string(file).expect("read source");
        let targets = edges.entry(module.clone()).or_default();
        for path in paths_of(&code_of(&text)) {
            let Some(abs) = absolute(module, &path) else {
                continue;
            };
            let target = (0..=abs.len())
                .rev()
                .map(|k| abs[..k].to_vec())
                .find(|p| modules.contains_key(p))
                .expect("the crate root is a module");
            if target != *module {
                targets.insert(target);
            }
        }
    }
    edges
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(m: &ModPath) -> String {
        if m.is_empty() {
            "lib".into()
        } else {
            m.join("/")
        }
    }

    #[test]
    fn use_trees_expand_to_every_path() {
        let paths = expand_use(
            "crate::{config::{self, FileOpenFold}, record::{Detail, EnrichedEvent as E}, x::*}",
        );
        let joined: Vec<String> = paths.iter().map(|p| p.join("::")).collect();
        assert_eq!(
            joined,
            [
                "crate::config",
                "crate::config::FileOpenFold",
                "crate::record::Detail",
                "crate::record::EnrichedEvent",
                "crate::x"
            ]
        );
    }

    #[test]
    fn a_circle_between_files_is_found() {
        let dir = std::env::temp_dir().join(format!("import-cycles-{}", std::process::id()));
        let src = dir.join("src");
        std::fs::create_dir_all(src.join("a")).unwrap();
        std::fs::write(src.join("lib.rs"), "pub mod a;\npub mod b;\n").unwrap();
        std::fs::write(src.join("a/mod.rs"), "pub mod c;\nuse crate::b::B;\n").unwrap();
        std::fs::write(
            src.join("a/c.rs"),
            "// crate::b in a comment is no import\nlet s = \"crate::b\";\n",
        )
        .unwrap();
        std::fs::write(src.join("b.rs"), "pub fn f() { super::a::c::g() }\n").unwrap();
        let found = circles(&edges_of(&src));
        assert!(found.is_empty(), "{found:?}");
        std::fs::write(src.join("a/c.rs"), "use crate::{b::{self}};\n").unwrap();
        let found = circles(&edges_of(&src));
        let _ = std::fs::remove_dir_all(&dir);
        let names: Vec<Vec<String>> = found.iter().map(|g| g.iter().map(name).collect()).collect();
        assert_eq!(names, [["a/c", "b"]]);
    }

    #[test]
    fn no_crate_of_the_workspace_has_an_import_circle() {
        let root = crate::workspace_root();
        let mut report = Vec::new();
        for krate in [
            "observer-common",
            "observer-receipts",
            "observer-daemon",
            "observer-ctl",
            "xtask",
        ] {
            for group in circles(&edges_of(&root.join(krate).join("src"))) {
                let files: Vec<String> = group.iter().map(name).collect();
                report.push(format!("{krate}: {}", files.join(", ")));
            }
        }
        assert!(
            report.is_empty(),
            "import circles between files (each group's files import each other, directly \
             or through the others):\n{}",
            report.join("\n")
        );
    }
}
