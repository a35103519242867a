//! Merging the file, `WARREN_*` env vars and flags into one validated [`Config`].
//!
//! All three sources are merged as YAML values first and deserialized once,
//! so every bad value, wherever it came from, fails with the same message
//! naming its dotted key and its origin (the env var or the flag). Which env
//! vars and flags exist, and how their text is read, comes from [`KEYS`].

use super::Config;
use super::keys::{Form, KEYS, Key, by_env, lookup};
use crate::error::{Error, Result};
use serde_yaml::{Mapping, Value};
use std::path::Path;

/// Where a value came from; shown in error messages and by `config check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An environment variable, by name.
    Env(String),
    /// A command-line flag, as typed (`--concurrency`, `-- PROGRAM ARGS`).
    Flag(String),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Env(name) | Source::Flag(name) => f.write_str(name),
        }
    }
}

/// One override: the key, its value, and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    key: &'static Key,
    value: Value,
    source: Source,
}

impl Layer {
    /// The raw text of `key`'s flag, read as the key's [`Form`] says.
    pub fn flag(key: &'static Key, raw: &str) -> Layer {
        Layer {
            key,
            value: parse(key.form, raw),
            source: Source::Flag(key.flag_text()),
        }
    }

    /// The words after `--`, kept as a list (no splitting, no YAML).
    pub fn argv(key: &'static Key, words: Vec<String>) -> Layer {
        Layer {
            key,
            value: Value::Sequence(words.into_iter().map(Value::String).collect()),
            source: Source::Flag(key.flag_text()),
        }
    }
}

/// Env vars Warren reads that are not config keys (not warned about).
const OTHER_ENV: &[&str] = &["WARREN_CONFIG", "WARREN_LOG", "WARREN_LOG_FORMAT"];

/// The env overrides (sorted by name, so the result does not depend on the
/// environment's order) and a warning for each unknown `WARREN_*` name.
pub fn env_layers(env: impl IntoIterator<Item = (String, String)>) -> (Vec<Layer>, Vec<String>) {
    let mut layers = Vec::new();
    let mut warnings = Vec::new();
    let mut env: Vec<(String, String)> = env.into_iter().collect();
    env.sort();
    for (name, raw) in env {
        if let Some(key) = by_env(&name) {
            layers.push(Layer {
                key,
                value: parse(key.form, &raw),
                source: Source::Env(name),
            });
        } else if name.starts_with("WARREN_")
            && !name.starts_with("WARREN_TEST_")
            && !OTHER_ENV.contains(&name.as_str())
        {
            warnings.push(format!(
                "ignoring unknown environment variable {name}; `warren config keys` lists the WARREN_* names"
            ));
        }
    }
    (layers, warnings)
}

/// Env or flag text as a YAML value. Unparsable YAML stays a string, so the
/// error comes from deserializing the key, with the key's name in it.
fn parse(form: Form, raw: &str) -> Value {
    let yaml = |text: &str| {
        serde_yaml::from_str::<Value>(text).unwrap_or_else(|_| Value::String(text.to_owned()))
    };
    match form {
        Form::Text | Form::Texts => Value::String(raw.to_owned()),
        Form::Yaml => yaml(raw),
        Form::List => match yaml(raw) {
            list @ Value::Sequence(_) => list,
            _ => Value::Sequence(
                raw.split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(yaml)
                    .collect(),
            ),
        },
    }
}

/// A config that passed [`Config::validate`], with what the checks warned
/// about and where each value came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The effective, validated configuration.
    pub config: Config,
    /// Legal but doubtful values, for the caller to show once.
    pub warnings: Vec<String>,
    /// Per key of [`KEYS`], in table order: `default`, the file, the env var or the flag.
    pub origins: Vec<(&'static str, String)>,
}

/// Reads the optional file, applies the layers in order (later wins),
/// deserializes and validates.
pub fn load(file: Option<&Path>, layers: &[Layer]) -> Result<Loaded> {
    let mut root = match file {
        Some(path) => read_file(path)?,
        None => Value::Mapping(Mapping::new()),
    };
    let origins = origins(file, &root, layers);
    for l in layers {
        set_path(&mut root, l.key.path, l.value.clone());
    }
    let config = serde_path_to_error::deserialize::<_, Config>(root).map_err(|e| {
        let key = e.path().to_string();
        let origin = match layers.iter().rev().find(|l| l.key.path == key) {
            Some(l) => format!(" (from {})", l.source),
            None => file
                .map(|p| format!(" (in {})", p.display()))
                .unwrap_or_default(),
        };
        Error::Config {
            key,
            origin,
            message: e.into_inner().to_string(),
        }
    })?;
    let warnings = config.validate()?;
    Ok(Loaded {
        config,
        warnings,
        origins,
    })
}

/// Where each key's value comes from: the last layer setting it, else the
/// file if it has the key, else the default.
fn origins(file: Option<&Path>, root: &Value, layers: &[Layer]) -> Vec<(&'static str, String)> {
    KEYS.iter()
        .map(|key| {
            let origin = match layers.iter().rev().find(|l| std::ptr::eq(l.key, key)) {
                Some(l) => l.source.to_string(),
                None => match (file, lookup(root, key.path)) {
                    (Some(path), Some(_)) => path.display().to_string(),
                    _ => "default".into(),
                },
            };
            (key.path, origin)
        })
        .collect()
}

fn read_file(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::ConfigFile {
        path: path.display().to_string(),
        source,
    })?;
    match serde_yaml::from_str::<Value>(&text) {
        Ok(Value::Null) => Ok(Value::Mapping(Mapping::new())),
        Ok(v @ Value::Mapping(_)) => Ok(v),
        Ok(_) => Err(Error::Config {
            key: path.display().to_string(),
            origin: String::new(),
            message: "the file must be a YAML mapping (amqp:, queue:, pool:, …)".into(),
        }),
        Err(e) => Err(Error::Config {
            key: path.display().to_string(),
            origin: String::new(),
            message: format!("not valid YAML: {e}"),
        }),
    }
}

/// Sets `a.b.c` in a YAML tree, creating (or replacing non-mapping) parents.
fn set_path(root: &mut Value, path: &str, value: Value) {
    let mut node = root;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        if !node.is_mapping() {
            *node = Value::Mapping(Mapping::new());
        }
        let map = node.as_mapping_mut().expect("just made a mapping");
        let key = Value::String(part.to_owned());
        if parts.peek().is_none() {
            map.insert(key, value);
            return;
        }
        node = map.entry(key).or_insert(Value::Null);
    }
}
