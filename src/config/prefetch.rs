//! `pool.prefetch`: `auto` or a number, in YAML, env and flags alike.

use serde::{Deserialize, Serialize};

/// `auto` or a number: how many unacked deliveries the broker may push to this process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Prefetch {
    /// Equal to `pool.concurrency`: each worker holds at most one task, like
    /// the tutorial's `prefetch_count=1` per worker (fair dispatch).
    #[default]
    Auto,
    /// An explicit basic_qos prefetch count (1..=65535).
    Count(u32),
}

/// The two spellings a prefetch value may have in YAML, env or flags.
#[derive(Deserialize)]
#[serde(untagged)]
enum PrefetchForm {
    Count(u32),
    Text(String),
}

impl Serialize for Prefetch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Prefetch::Auto => s.serialize_str("auto"),
            Prefetch::Count(n) => s.serialize_u32(*n),
        }
    }
}

impl<'de> Deserialize<'de> for Prefetch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match PrefetchForm::deserialize(d)? {
            PrefetchForm::Count(n) => Ok(Prefetch::Count(n)),
            PrefetchForm::Text(t) if t == "auto" => Ok(Prefetch::Auto),
            PrefetchForm::Text(t) => Err(serde::de::Error::custom(format!(
                "expected auto or a number from 1 to 65535, got '{t}'"
            ))),
        }
    }
}
