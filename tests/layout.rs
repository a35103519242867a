//! The structure rules of docs/design-notes.md ("Module layout"), checked so
//! they stay true: `use crate::` edges between top-level modules form a DAG,
//! no file in `src/` is over 400 lines and no function over 60.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 400;
const MAX_FN_LINES: usize = 60;

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The top-level module a file belongs to (`pool` for src/pool/worker.rs).
fn module_of(path: &Path) -> String {
    let rel = path.strip_prefix(src()).expect("under src/");
    let first = rel.components().next().expect("non-empty");
    first
        .as_os_str()
        .to_string_lossy()
        .trim_end_matches(".rs")
        .to_owned()
}

/// The code of a file without comments and without its unit-test module
/// (tests may reach anywhere; doc links are not dependencies).
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("read source");
    if path.file_name().is_some_and(|n| n == "tests.rs") {
        return String::new();
    }
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => &text,
    };
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Top-level modules named after `crate::` in `code`, including `use crate::{a, b}`.
fn referenced(code: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut found = BTreeSet::new();
    for part in code.split("crate::").skip(1) {
        if let Some(group) = part.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for item in group.split(',') {
                found.insert(ident(item.trim()));
            }
        } else {
            found.insert(ident(part));
        }
    }
    found.retain(|m| !m.is_empty() && m.chars().next().is_some_and(|c| c.is_ascii_lowercase()));
    found
}

#[test]
fn module_imports_form_a_dag() {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(&src()) {
        let from = module_of(&file);
        if from == "lib" || from == "main" {
            continue;
        }
        let to = referenced(&code(&file));
        edges
            .entry(from.clone())
            .or_default()
            .extend(to.into_iter().filter(|m| *m != from));
    }
    // Depth-first search; reaching a node already on the path is a cycle.
    fn visit<'a>(
        node: &'a str,
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) {
        if done.contains(node) {
            return;
        }
        if let Some(at) = path.iter().position(|n| *n == node) {
            panic!("import cycle: {} -> {node}", path[at..].join(" -> "));
        }
        path.push(node);
        for next in edges.get(node).into_iter().flatten() {
            visit(next, edges, path, done);
        }
        path.pop();
        done.insert(node);
    }
    let mut done = BTreeSet::new();
    for node in edges.keys() {
        visit(node, &edges, &mut Vec::new(), &mut done);
    }
    assert!(
        edges.contains_key("pool"),
        "the scan found the pool: {edges:?}"
    );
    assert!(
        !edges["pool"].contains("server") && !edges["pool"].contains("app"),
        "the pool must not start the server: {:?}",
        edges["pool"]
    );
}

#[test]
fn files_and_functions_stay_short() {
    let mut long = Vec::new();
    for file in rust_files(&src()) {
        let text = std::fs::read_to_string(&file).expect("read source");
        let lines: Vec<&str> = text.lines().collect();
        let shown = file.strip_prefix(src()).unwrap().display().to_string();
        if lines.len() > MAX_FILE_LINES {
            long.push(format!("{shown}: {} lines", lines.len()));
        }
        for (start, line) in lines.iter().enumerate() {
            let Some(name) = fn_name(line) else { continue };
            let indent = line.len() - line.trim_start().len();
            let close = format!("{}}}", " ".repeat(indent));
            let Some(len) = lines[start..].iter().position(|l| l.starts_with(&close)) else {
                continue;
            };
            if len + 1 > MAX_FN_LINES {
                long.push(format!("{shown}: fn {name} is {} lines", len + 1));
            }
        }
    }
    assert!(long.is_empty(), "over the limits:\n{}", long.join("\n"));
}

/// The name of a function whose body starts on this line.
fn fn_name(line: &str) -> Option<&str> {
    let t = line.trim_start();
    let t = t
        .strip_prefix("pub ")
        .or_else(|| t.strip_prefix("pub(crate) "))
        .unwrap_or(t);
    let t = t.strip_prefix("pub(super) ").unwrap_or(t);
    let t = t.strip_prefix("async ").unwrap_or(t);
    let rest = t.strip_prefix("fn ")?;
    if line.trim_end().ends_with(';') {
        return None;
    }
    let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))?;
    Some(&rest[..end])
}

#[test]
fn the_scanner_sees_grouped_imports() {
    let found =
        referenced("use crate::{config::Config, health::Health};\nlet x = crate::pool::run;");
    let want: BTreeSet<String> = ["config", "health", "pool"].map(String::from).into();
    assert_eq!(found, want);
}
