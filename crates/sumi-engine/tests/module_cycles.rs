//! The engine's source files must not import each other in a loop: arrows point down only
//! (kernels know nothing of models, models nothing of previews or text, ...).
//!
//! The graph is read from the source text: every `crate::a::b` and `super::x` path (in `use`
//! lines and inline) is an arrow from the file it appears in to the file that defines the
//! module it names (the longest module prefix that is a file). `mod child;` declarations are not
//! arrows; a parent that re-exports from a child and a child that takes something from its
//! parent are, so shared helpers live in a sibling file instead of the parent.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (e.g. `["kernels", "conv"]`) -> source file, for every `.rs` file under `src/`.
fn modules(src: &Path) -> BTreeMap<Vec<String>, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap();
            let mut parts: Vec<String> = rel
                .iter()
                .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
                .collect();
            if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
                parts.pop();
            }
            out.insert(parts, path);
        }
    }
    out
}

/// Source text without comments and string literals, so only code is scanned.
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            i += 2;
            while i < b.len() && !b[i..].starts_with(b"*/") {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push(' ');
        } else if b[i] == b'\'' && i + 2 < b.len() && (b[i + 2] == b'\'' || b[i + 1] == b'\\') {
            // A char literal such as '"' or '\n' (lifetimes have no closing quote).
            i += if b[i + 1] == b'\\' { 4 } else { 3 };
            out.push(' ');
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// Every path the code names that starts with `crate`, `super`, `self` or a child module,
/// expanding `use` groups (`use crate::a::{b, c::d}` gives `crate::a::b` and `crate::a::c::d`).
/// Each path comes with the inline modules (`mod tests { ... }`) it sits in, which `super`
/// counts from.
fn paths(code: &str) -> Vec<(Vec<String>, Vec<String>)> {
    let mut out = Vec::new();
    let tokens = tokenize(code);
    // Inline modules we are inside: (name, brace depth at which it closes).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < tokens.len() {
        let t = tokens[i].as_str();
        match t {
            "{" => depth += 1,
            "}" => {
                depth = depth.saturating_sub(1);
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
            }
            "mod" if tokens.get(i + 2).is_some_and(|b| b == "{") => {
                inline.push((tokens[i + 1].clone(), depth));
                depth += 1;
                i += 3;
                continue;
            }
            _ => {}
        }
        let starts = t.chars().all(|c| c.is_alphanumeric() || c == '_')
            && tokens.get(i + 1).is_some_and(|n| n == "::")
            && (i == 0 || tokens[i - 1] != "::");
        if starts {
            let mut found = Vec::new();
            i = expand(&tokens, i, Vec::new(), &mut found);
            let within: Vec<String> = inline.iter().map(|(n, _)| n.clone()).collect();
            out.extend(found.into_iter().map(|p| (p, within.clone())));
        } else {
            i += 1;
        }
    }
    out
}

fn tokenize(code: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut chars = code.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_alphanumeric() || c == '_' {
            let mut word = String::new();
            while let Some(&c) = chars.peek().filter(|c| c.is_alphanumeric() || **c == '_') {
                word.push(c);
                chars.next();
            }
            tokens.push(word);
        } else if c == ':' {
            chars.next();
            if chars.peek() == Some(&':') {
                chars.next();
                tokens.push("::".into());
            } else {
                tokens.push(":".into());
            }
        } else if c.is_whitespace() {
            chars.next();
        } else {
            tokens.push(c.to_string());
            chars.next();
        }
    }
    tokens
}

/// Reads a path starting at `tokens[i]` with `prefix` before it; returns the index after it.
fn expand(
    tokens: &[String],
    mut i: usize,
    mut prefix: Vec<String>,
    out: &mut Vec<Vec<String>>,
) -> usize {
    loop {
        let Some(t) = tokens.get(i) else {
            out.push(prefix);
            return i;
        };
        if t == "{" {
            i += 1;
            loop {
                match tokens.get(i).map(String::as_str) {
                    None => return i,
                    Some("}") => return i + 1,
                    Some(",") => i += 1,
                    Some(_) => i = expand(tokens, i, prefix.clone(), out),
                }
            }
        }
        if t.chars().all(|c| c.is_alphanumeric() || c == '_') {
            prefix.push(t.clone());
            i += 1;
            if tokens.get(i).is_some_and(|n| n == "::") {
                i += 1;
                continue;
            }
        }
        out.push(prefix);
        return i;
    }
}

/// The file a path names, seen from module `from`: its longest module prefix that is a file.
fn target(
    from: &[String],
    path: &[String],
    mods: &BTreeMap<Vec<String>, PathBuf>,
) -> Option<Vec<String>> {
    let mut base: Vec<String> = from.to_vec();
    let mut rest = path;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest = &rest[1..];
        }
        Some("self") => rest = &rest[1..],
        Some("super") => {
            while rest.first().is_some_and(|s| s == "super") {
                base.pop()?;
                rest = &rest[1..];
            }
        }
        // A bare path names a child module of `from` (anything else is an outside crate).
        Some(child) if mods.contains_key(&[from, &[child.to_string()]].concat()) => {}
        _ => return None,
    }
    // Inline modules are not files: the base is the longest prefix that is one.
    while !base.is_empty() && !mods.contains_key(&base) {
        base.pop();
    }
    let mut best = base.clone();
    let mut cur = base;
    for part in rest {
        cur.push(part.clone());
        if mods.contains_key(&cur) {
            best = cur.clone();
        } else {
            break;
        }
    }
    Some(best)
}

#[test]
fn the_engine_has_no_import_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mods = modules(&src);
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (module, file) in &mods {
        let code = code_only(&std::fs::read_to_string(file).unwrap());
        for (path, within) in paths(&code) {
            let from = [module.clone(), within].concat();
            if let Some(to) = target(&from, &path, &mods) {
                if &to != module && !to.is_empty() {
                    edges.entry(module.clone()).or_default().insert(to);
                }
            }
        }
    }
    let cycles = find_cycles(&edges);
    let name = |m: &Vec<String>| mods[m].strip_prefix(&src).unwrap().display().to_string();
    let shown: Vec<String> = cycles
        .iter()
        .map(|c| c.iter().map(name).collect::<Vec<_>>().join(", "))
        .collect();
    assert!(
        shown.is_empty(),
        "engine files that import each other in a loop (move what they share into a file \
         below them):\n{}",
        shown.join("\n")
    );
}

/// One cycle per strongly connected component with more than one file (Tarjan's algorithm).
fn find_cycles(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<Vec<String>>> {
    struct State<'a> {
        edges: &'a BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        index: BTreeMap<Vec<String>, usize>,
        low: BTreeMap<Vec<String>, usize>,
        stack: Vec<Vec<String>>,
        on_stack: BTreeSet<Vec<String>>,
        out: Vec<Vec<Vec<String>>>,
    }
    fn visit(s: &mut State, v: &Vec<String>) {
        let n = s.index.len();
        s.index.insert(v.clone(), n);
        s.low.insert(v.clone(), n);
        s.stack.push(v.clone());
        s.on_stack.insert(v.clone());
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
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(&w);
                let done = &w == v;
                comp.push(w);
                if done {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.reverse();
                s.out.push(comp);
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

#[test]
fn the_reader_sees_paths_groups_and_parents() {
    let code = code_only(
        "use crate::a::{b, c::D};\n// use crate::comment::X;\nlet s = \"crate::string\";\nsuper::e::f(); x::crate::no; std::mem::swap();",
    );
    let got: Vec<Vec<String>> = paths(&code).into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        got,
        vec![
            vec!["crate", "a", "b"],
            vec!["crate", "a", "c", "D"],
            vec!["super", "e", "f"],
            vec!["x", "crate", "no"],
            vec!["std", "mem", "swap"],
        ]
    );
    let mut mods = BTreeMap::new();
    for m in [&[][..], &["a"], &["a", "c"], &["k"], &["k", "x"]] {
        let key: Vec<String> = m.iter().map(|s| s.to_string()).collect();
        mods.insert(key, PathBuf::new());
    }
    let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        target(&v(&["k", "x"]), &v(&["super", "Y"]), &mods),
        Some(v(&["k"]))
    );
    assert_eq!(
        target(&v(&["k"]), &v(&["crate", "a", "c", "D"]), &mods),
        Some(v(&["a", "c"]))
    );
    assert_eq!(
        target(&v(&["k"]), &v(&["x", "f"]), &mods),
        Some(v(&["k", "x"]))
    );
    assert_eq!(target(&v(&["k"]), &v(&["std", "mem"]), &mods), None);
    // `super` inside `mod tests { }` of k/x.rs is k/x.rs itself.
    let inline = paths("mod tests { use super::*; }");
    assert_eq!(inline, vec![(v(&["super"]), v(&["tests"]))]);
    let from = [v(&["k", "x"]), inline[0].1.clone()].concat();
    assert_eq!(target(&from, &inline[0].0, &mods), Some(v(&["k", "x"])));
}
