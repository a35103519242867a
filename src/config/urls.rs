//! `amqp.url`: one broker URL, or several — the nodes of a cluster.
//!
//! In YAML a string or a list; in `WARREN_AMQP_URL` and `--amqp-url` a
//! comma-separated list (the flag may also be repeated). A comma inside a
//! password must be written `%2C`. One URL (a Kubernetes Service in front of
//! the cluster) works as before.

use serde::{Deserialize, Serialize};

/// The broker URLs, in the order given (connecting shuffles them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrls(Vec<String>);

impl BrokerUrls {
    /// Splits a comma-separated list; blanks are dropped.
    pub fn parse(text: &str) -> BrokerUrls {
        BrokerUrls(
            text.split(',')
                .map(str::trim)
                .filter(|url| !url.is_empty())
                .map(str::to_owned)
                .collect(),
        )
    }

    /// Every URL, raw (with passwords): only for connecting.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// The first URL (the vhost and credentials of a cluster's nodes agree).
    pub fn first(&self) -> Option<&str> {
        self.0.first().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every URL with its password replaced by `***`.
    pub fn redacted(&self) -> BrokerUrls {
        BrokerUrls(self.iter().map(crate::redact::redact_url).collect())
    }
}

impl From<&str> for BrokerUrls {
    fn from(text: &str) -> Self {
        BrokerUrls::parse(text)
    }
}

impl From<String> for BrokerUrls {
    fn from(text: String) -> Self {
        BrokerUrls::parse(&text)
    }
}

impl std::fmt::Display for BrokerUrls {
    /// Comma-separated, as given; callers print [`BrokerUrls::redacted`].
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join(","))
    }
}

/// The two spellings in YAML.
#[derive(Deserialize)]
#[serde(untagged)]
enum Form {
    One(String),
    Many(Vec<String>),
}

impl<'de> Deserialize<'de> for BrokerUrls {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Form::deserialize(d)? {
            Form::One(text) => BrokerUrls::parse(&text),
            Form::Many(list) => BrokerUrls(
                list.iter()
                    .flat_map(|item| BrokerUrls::parse(item).0)
                    .collect(),
            ),
        })
    }
}

impl Serialize for BrokerUrls {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => s.serialize_str(one),
            many => many.serialize(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_string_a_comma_list_or_a_yaml_list() {
        let one: BrokerUrls = serde_yaml::from_str("amqp://a/").unwrap();
        assert_eq!(one.len(), 1);
        let listed: BrokerUrls = serde_yaml::from_str("[amqp://a/, amqp://b/]").unwrap();
        let commas: BrokerUrls = serde_yaml::from_str("'amqp://a/, amqp://b/'").unwrap();
        assert_eq!(listed, commas);
        assert_eq!(
            listed.iter().collect::<Vec<_>>(),
            ["amqp://a/", "amqp://b/"]
        );
        // One URL prints as a string, several as a list: both load back.
        assert_eq!(serde_yaml::to_string(&one).unwrap().trim(), "amqp://a/");
        let text = serde_yaml::to_string(&listed).unwrap();
        assert_eq!(serde_yaml::from_str::<BrokerUrls>(&text).unwrap(), listed);
    }

    #[test]
    fn every_password_is_redacted() {
        let urls = BrokerUrls::parse("amqp://u:p1@a/,amqp://u:p2@b/");
        let shown = urls.redacted().to_string();
        assert_eq!(shown, "amqp://u:***@a/,amqp://u:***@b/");
    }

    /// Loads (and validates) env vars and flags (`--name`, raw text).
    fn loaded(
        vars: &[(&str, &str)],
        flags: &[(&str, &str)],
    ) -> crate::Result<crate::config::Loaded> {
        use crate::config::{Layer, env_layers, keys};
        let env = vars.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        let (mut layers, _) = env_layers(env);
        for (flag, raw) in flags {
            layers.push(Layer::flag(keys::by_flag(flag).expect("a known flag"), raw));
        }
        crate::config::load(None, &layers)
    }

    #[test]
    fn amqp_url_takes_the_nodes_of_a_cluster() {
        let (a, b) = ("amqp://u:p1@a:5672/%2f", "amqp://u:p2@b:5672/%2f");
        let both = format!("{a},{b}");
        let from_env = loaded(&[("WARREN_AMQP_URL", &both)], &[])
            .map(|l| l.config)
            .unwrap();
        let from_yaml =
            serde_yaml::from_str::<crate::config::Config>(&format!("amqp:\n  url: [{a}, {b}]\n"))
                .unwrap();
        let from_flag = loaded(&[], &[("--amqp-url", &both)])
            .map(|l| l.config)
            .unwrap();
        assert_eq!(from_env.amqp.url.len(), 2);
        assert_eq!(from_env.amqp.url, from_yaml.amqp.url);
        assert_eq!(from_env.amqp.url, from_flag.amqp.url);
        // Every password is hidden in what config check prints.
        let yaml = serde_yaml::to_string(&from_env.redacted()).unwrap();
        assert!(!yaml.contains("p1") && !yaml.contains("p2"), "{yaml}");

        let check = |flags: &[(&str, &str)]| loaded(&[], flags).map(|l| l.warnings);
        let mixed = format!("{a},amqps://u:p3@c:5671/%2f");
        let err = check(&[("--amqp-url", &mixed)]).unwrap_err().to_string();
        assert!(
            err.contains("amqp.url") && err.contains("mixes amqp:// and amqps://"),
            "{err}"
        );
        assert!(!err.contains("p1") && !err.contains("p3"), "{err}");
        let err = check(&[("--amqp-url", " , ")]).unwrap_err().to_string();
        assert!(err.contains("amqp.url") && err.contains("empty"), "{err}");
    }

    #[test]
    fn the_url_flag_may_be_repeated() {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from([
            "warren",
            "status",
            "--amqp-url",
            "amqp://a/",
            "--amqp-url",
            "amqp://b/",
        ])
        .unwrap();
        let crate::cli::Command::Status(args) = cli.command else {
            panic!("status");
        };
        let config = crate::config::load(None, args.keys.layers())
            .unwrap()
            .config;
        assert_eq!(
            config.amqp.url.iter().collect::<Vec<_>>(),
            ["amqp://a/", "amqp://b/"]
        );
    }
}
