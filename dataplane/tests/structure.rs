//! The crate's structure, checked on its sources: no `use` cycle between
//! sibling modules, and no source file over 900 lines outside its tests.
//!
//! A reference from module `a::b` to `a::c::d` is an edge between the
//! siblings `b` and `c` (children of their closest common ancestor); a
//! module's references to its ancestors or descendants are not edges (a
//! parent and the modules it is made of belong together). References are
//! `crate::` and `super::` paths and the names a module's `use super::{..}`
//! brings in, read from the code before the file's `#[cfg(test)]` module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Longest a source file may be, not counting its unit tests.
const MAX_LINES: usize = 900;

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a source file (`src/pipeline/mod.rs` → `pipeline`).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|s| s.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|l| l == "mod" || l == "lib") {
        parts.pop();
    }
    parts
}

/// The file's code before its unit tests.
fn code(text: &str) -> &str {
    match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    }
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every module path the code names: `crate::a::b`, `super::x` (resolved
/// against `module`), and the items of `use super::{..}` groups.
fn references(module: &[String], code: &str) -> Vec<Vec<String>> {
    let mut refs = Vec::new();
    let text: String = code
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if !text.is_char_boundary(i) {
            i += 1;
            continue;
        }
        let boundary = i == 0 || !is_ident(char::from(b[i - 1]));
        let rest = &text[i..];
        if boundary && (rest.starts_with("crate::") || rest.starts_with("super::")) {
            // Read the path: identifiers joined by `::`, and one `{..}` group.
            let len = rest
                .find(|c: char| !(is_ident(c) || c == ':'))
                .unwrap_or(rest.len());
            let path = &rest[..len];
            let base = resolve(module, path.trim_end_matches(':'));
            let mut j = i + len;
            if rest[len..].starts_with('{') && path.ends_with("::") {
                let end = rest[len..].find('}').map_or(len, |k| len + k);
                for item in rest[len + 1..end].split(',') {
                    let first = item.trim().split("::").next().unwrap_or("").trim();
                    if !first.is_empty() && first != "self" {
                        let mut p = base.clone();
                        p.push(first.to_string());
                        refs.push(p);
                    }
                }
                j = i + end;
            } else {
                refs.push(base);
            }
            i = j.max(i + 1);
        } else {
            i += 1;
        }
    }
    refs
}

fn resolve(module: &[String], path: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut segs = path.split("::").filter(|s| !s.is_empty()).peekable();
    if segs.peek() == Some(&"crate") {
        segs.next();
    } else {
        out = module.to_vec();
        while segs.peek() == Some(&"super") {
            segs.next();
            out.pop();
        }
    }
    out.extend(segs.map(str::to_string));
    out
}

/// Sibling edges per parent module, and the files over [`MAX_LINES`].
type Edges = BTreeMap<Vec<String>, BTreeSet<(String, String)>>;

fn scan() -> (Edges, Vec<String>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(&src, f)).collect();
    let known = |p: &[String]| -> Vec<String> {
        // The longest prefix of `p` that is a module of a file.
        (0..=p.len())
            .rev()
            .map(|n| p[..n].to_vec())
            .find(|m| modules.contains(m))
            .unwrap_or_default()
    };
    // Sibling edges, per parent.
    let mut edges = Edges::new();
    let mut long = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let code = code(&text);
        let lines = code.lines().count();
        if lines > MAX_LINES {
            long.push(format!("{} ({lines} lines)", f.display()));
        }
        let from = module_of(&src, f);
        for r in references(&from, code) {
            let to = known(&r);
            let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
            if common == from.len() || common == to.len() {
                continue; // an ancestor or a descendant
            }
            edges
                .entry(from[..common].to_vec())
                .or_default()
                .insert((from[common].clone(), to[common].clone()));
        }
    }
    (edges, long)
}

#[test]
fn no_use_cycle_between_sibling_modules() {
    let (edges, _) = scan();
    // Any cycle among siblings: depth-first search per parent.
    for (parent, es) in &edges {
        let mut adj: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (a, b) in es {
            adj.entry(a).or_default().push(b);
        }
        fn visit<'a>(
            n: &'a str,
            adj: &BTreeMap<&'a str, Vec<&'a str>>,
            stack: &mut Vec<&'a str>,
            done: &mut BTreeSet<&'a str>,
        ) -> Option<Vec<&'a str>> {
            if let Some(i) = stack.iter().position(|s| *s == n) {
                let mut cycle = stack[i..].to_vec();
                cycle.push(n);
                return Some(cycle);
            }
            if done.contains(n) {
                return None;
            }
            stack.push(n);
            for m in adj.get(n).into_iter().flatten() {
                if let Some(c) = visit(m, adj, stack, done) {
                    return Some(c);
                }
            }
            stack.pop();
            done.insert(n);
            None
        }
        let mut done = BTreeSet::new();
        for n in adj.keys() {
            if let Some(c) = visit(n, &adj, &mut Vec::new(), &mut done) {
                panic!(
                    "use cycle between modules of `crate::{}`: {}",
                    parent.join("::"),
                    c.join(" → ")
                );
            }
        }
    }
}
#[test]
fn no_long_source_files() {
    let (_, long) = scan();
    assert!(long.is_empty(), "files over {MAX_LINES} lines: {long:?}");
}
