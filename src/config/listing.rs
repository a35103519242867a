//! Text generated from [`KEYS`]: the effective config `warren config check`
//! prints, and the key reference of `warren config keys` and README.md.

use super::keys::{KEYS, Key, Scope, lookup};
use super::load::Loaded;
use serde_yaml::Value;
use std::fmt::Write;

/// The effective config as YAML (usable as a config file), passwords
/// redacted, in table order; a value not from the defaults says where it
/// came from in a comment.
pub fn effective_yaml(loaded: &Loaded) -> String {
    let values = serde_yaml::to_value(loaded.config.redacted()).expect("config serializes");
    let mut out = String::new();
    let mut open: Vec<&str> = Vec::new();
    for key in KEYS {
        let parts: Vec<&str> = key.path.split('.').collect();
        let (leaf, parents) = parts.split_last().expect("paths are not empty");
        let same = open.iter().zip(parents).take_while(|(a, b)| a == b).count();
        for (depth, part) in parents.iter().enumerate().skip(same) {
            let _ = writeln!(out, "{:indent$}{part}:", "", indent = depth * 2);
        }
        open = parents.to_vec();
        let value = lookup(&values, key.path).map_or_else(|| "null".into(), flow);
        let origin = loaded
            .origins
            .iter()
            .find(|(path, _)| *path == key.path)
            .map_or("default", |(_, origin)| origin.as_str());
        let comment = match origin {
            "default" => String::new(),
            from => format!("  # from {from}"),
        };
        let indent = parents.len() * 2;
        let _ = writeln!(out, "{:indent$}{leaf}: {value}{comment}", "");
    }
    out
}

/// One YAML value on one line, quoted where YAML needs it (`[1s, 10s]`).
fn flow(value: &Value) -> String {
    match value {
        Value::Sequence(items) => {
            let items: Vec<String> = items.iter().map(flow).collect();
            format!("[{}]", items.join(", "))
        }
        scalar => serde_yaml::to_string(scalar)
            .unwrap_or_default()
            .trim_end()
            .to_owned(),
    }
}

fn commands(key: &Key) -> &'static str {
    match key.scope {
        Scope::All => "all",
        Scope::Work => "work",
    }
}

/// `warren config keys`: every key with its default, env var and flag.
pub fn keys_text() -> String {
    let mut out = String::new();
    for key in KEYS {
        let _ = writeln!(
            out,
            "{}\n    default {} · env {} · flag {} {} ({})\n    {}",
            key.path,
            key.default_text(),
            key.env(),
            key.flag_text(),
            key.value_name,
            commands(key),
            key.doc
        );
    }
    out
}

/// README.md's configuration table (`warren config keys --markdown`).
pub fn keys_markdown() -> String {
    let mut out = String::from(
        "| key | default | env | flag | commands | meaning |\n|---|---|---|---|---|---|\n",
    );
    for key in KEYS {
        let flag = key.flag_text();
        let default = match key.default_text().as_str() {
            "none" => "none".to_owned(),
            text => format!("`{text}`"),
        };
        let _ = writeln!(
            out,
            "| `{}` | {default} | `{}` | `{flag}` | {} | {} |",
            key.path,
            key.env(),
            commands(key),
            key.doc.replace('|', "\\|")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// README.md's table is generated: paste `warren config keys --markdown`
    /// between its `keys:begin` / `keys:end` markers when this fails.
    #[test]
    fn readme_table_matches_the_key_definitions() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
        let readme = std::fs::read_to_string(path).unwrap();
        let begin = "<!-- keys:begin (generated: warren config keys --markdown) -->\n";
        let end = "<!-- keys:end -->";
        let start = readme.find(begin).map(|i| i + begin.len());
        let stop = readme.find(end);
        let found = match (start, stop) {
            (Some(a), Some(b)) if a <= b => &readme[a..b],
            _ => "",
        };
        let expected = keys_markdown();
        assert!(
            found == expected,
            "README.md's key table differs from src/config/keys.rs; put this between \
             the markers\n{begin}{expected}{end}\n"
        );
    }
}
