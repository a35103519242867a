//! The key table against the structs it describes.

use super::KEYS;
use crate::config::Config;

/// Every leaf of the default config, as dotted paths.
fn leaves(value: &serde_yaml::Value, prefix: &str, out: &mut Vec<String>) {
    match value.as_mapping() {
        Some(map) => {
            for (k, v) in map {
                let k = k.as_str().unwrap();
                let path = match prefix {
                    "" => k.to_owned(),
                    _ => format!("{prefix}.{k}"),
                };
                leaves(v, &path, out);
            }
        }
        None => out.push(prefix.to_owned()),
    }
}

#[test]
fn the_key_table_and_the_structs_agree() {
    let defaults = serde_yaml::to_value(Config::default()).unwrap();
    let mut fields = Vec::new();
    leaves(&defaults, "", &mut fields);
    let rows: Vec<&str> = KEYS.iter().map(|k| k.path).collect();
    for field in &fields {
        assert!(
            rows.contains(&field.as_str()),
            "{field} has no row in src/config/keys.rs"
        );
    }
    for row in &rows {
        assert!(
            fields.iter().any(|f| f == row),
            "{row} in src/config/keys.rs is not a field of Config"
        );
    }
    assert_eq!(fields.len(), rows.len(), "one row per key");
    let mut envs: Vec<String> = KEYS.iter().map(|k| k.env()).collect();
    let mut flags: Vec<String> = KEYS.iter().map(|k| k.flag_text()).collect();
    envs.sort();
    envs.dedup();
    flags.sort();
    flags.dedup();
    assert_eq!(
        (envs.len(), flags.len()),
        (rows.len(), rows.len()),
        "unique names"
    );
}
