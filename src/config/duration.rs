//! Durations as humans write them ("10ms", "1s", "5m") in YAML, env and flags.
//!
//! humantime does the parsing; these helpers plug it into serde and add the
//! comma-separated list form used by `--backoff 1s,10s,1m`.

use serde::{Deserialize, Deserializer, Serializer, de};
use std::time::Duration;

/// Parses one duration, with an error that shows the expected form.
pub fn parse(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("'{text}' is not a duration ({e}); write it like 10ms, 1s, 5m or 1h"))
}

/// Renders a duration the way a user would write it.
pub fn format(d: &Duration) -> String {
    humantime::format_duration(*d).to_string()
}

/// serde `with` module for one `Duration`.
pub mod single {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).map_err(de::Error::custom)
    }
}

/// serde `with` module for a list of durations: a YAML list or "1s,10s,1m".
pub mod list {
    use super::*;

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        Text(String),
        List(Vec<String>),
    }

    pub fn serialize<S: Serializer>(ds: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(ds.iter().map(format))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        let items: Vec<String> = match Form::deserialize(d)? {
            Form::Text(text) => text.split(',').map(str::to_owned).collect(),
            Form::List(items) => items,
        };
        items
            .iter()
            .filter(|item| !item.trim().is_empty())
            .map(|item| parse(item).map_err(de::Error::custom))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(parse("10ms").unwrap(), Duration::from_millis(10));
        assert_eq!(parse("1s").unwrap(), Duration::from_secs(1));
        assert_eq!(parse(" 5m ").unwrap(), Duration::from_secs(300));
        let err = parse("soon").unwrap_err();
        assert!(err.contains("'soon' is not a duration"), "{err}");
    }
}
