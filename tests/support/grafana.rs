//! The Grafana dashboard's JSON as the dashboard test reads it: every
//! panel's PromQL, the template variables, and what Grafana would send to
//! Prometheus; plus which metric names a PromQL expression or a scrape has.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// The dashboard the chart ships.
pub const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/helm/warren/dashboards/warren.json"
);
/// Metrics the dashboard shows whose code has not landed in Warren yet: not
/// required in the scrape (their panels answer `or vector(0)` meanwhile).
/// The test fails once Warren exports one, so it is removed from here and
/// checked like every other name. scripts/check-chart.sh has the same list.
pub const PENDING_METRICS: &[&str] = &[];
/// The one panel allowed to use metrics Warren does not export; the test
/// skips only panels whose description carries this marker.
pub const NEEDS_RABBITMQ_EXPORTER: &str = "requires the RabbitMQ Prometheus plugin";
/// Grafana's interval variables, as Grafana would roughly fill them in.
pub const INTERVALS: &[(&str, &str)] = &[("$__rate_interval", "30s"), ("$__interval", "5s")];

/// One PromQL expression of the dashboard and where it comes from.
pub struct Query {
    pub panel: String,
    pub expr: String,
    /// Marked as needing RabbitMQ's exporter: not evaluated against Prometheus.
    pub needs_rabbitmq: bool,
}

/// `helm/warren/dashboards/warren.json`, parsed.
pub struct Dashboard {
    json: Value,
}

impl Dashboard {
    pub fn load() -> Dashboard {
        let text = std::fs::read_to_string(DASHBOARD).expect("read warren.json");
        let json: Value = serde_json::from_str(&text).expect("warren.json is JSON");
        Dashboard { json }
    }

    /// Every panel, including those nested in collapsed rows.
    pub fn panels(&self) -> Vec<&Value> {
        let mut out = Vec::new();
        for p in self.json["panels"].as_array().expect("panels") {
            out.push(p);
            out.extend(p["panels"].as_array().into_iter().flatten());
        }
        out
    }

    pub fn queries(&self) -> Vec<Query> {
        let mut out = Vec::new();
        for panel in self.panels() {
            let title = panel["title"].as_str().unwrap_or("?").to_owned();
            let needs_rabbitmq = panel["description"]
                .as_str()
                .is_some_and(|d| d.contains(NEEDS_RABBITMQ_EXPORTER));
            for t in panel["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"].as_str().unwrap_or_else(|| {
                    panic!("panel {title:?}: a target without a PromQL expr: {t}")
                });
                out.push(Query {
                    panel: title.clone(),
                    expr: expr.to_owned(),
                    needs_rabbitmq,
                });
            }
        }
        out
    }

    /// (name, query) of every `query` variable.
    pub fn variables(&self) -> Vec<(String, String)> {
        self.json["templating"]["list"]
            .as_array()
            .expect("templating.list")
            .iter()
            .filter(|v| v["type"] == "query")
            .map(|v| {
                let q = v["query"]
                    .as_str()
                    .or_else(|| v["query"]["query"].as_str())
                    .expect("variable query");
                (v["name"].as_str().unwrap().to_owned(), q.to_owned())
            })
            .collect()
    }

    /// `expr` as Prometheus gets it here: intervals filled in, each dashboard
    /// variable set to its value in `picked`, else to All (`.*`; every
    /// matcher on a variable is `=~`).
    pub fn substitute(&self, expr: &str, picked: &BTreeMap<String, String>) -> String {
        let mut out = expr.to_owned();
        for (var, value) in INTERVALS {
            out = out.replace(var, value);
        }
        let mut names: Vec<String> = self.variables().into_iter().map(|(n, _)| n).collect();
        names.sort_by_key(|n| std::cmp::Reverse(n.len())); // $pods before $pod
        for name in names {
            let value = picked.get(&name).map_or(".*", String::as_str);
            out = out
                .replace(&format!("${{{name}}}"), value)
                .replace(&format!("${name}"), value);
        }
        // `$1` is a regex group in label_replace, which Grafana leaves alone.
        let unknown = out.match_indices('$').any(|(i, _)| {
            out[i + 1..]
                .chars()
                .next()
                .is_some_and(|c| c == '{' || c == '_' || c.is_ascii_alphabetic())
        });
        assert!(!unknown, "unknown variable left in {expr:?} → {out:?}");
        out
    }
}

/// Metric names in a PromQL expression that start with `warren_`
/// (identifiers outside string literals).
pub fn warren_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut chars = expr.chars().peekable();
    while let Some(c) = chars.next() {
        if matches!(c, '"' | '\'' | '`') {
            let mut escaped = false;
            for d in chars.by_ref() {
                if d == c && !escaped {
                    break;
                }
                escaped = d == '\\' && !escaped;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let mut ident = c.to_string();
            while let Some(&d) = chars.peek() {
                if !(d.is_ascii_alphanumeric() || d == '_' || d == ':') {
                    break;
                }
                ident.push(d);
                chars.next();
            }
            if ident.starts_with("warren_") {
                names.insert(ident);
            }
        }
    }
    names
}

/// `# TYPE` of every metric family in a scrape.
pub fn families(scrape: &str) -> BTreeMap<String, String> {
    scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, kind)| (name.to_owned(), kind.trim().to_owned()))
        .collect()
}

/// Whether `name` is a series a scrape with these families exposes: a family
/// itself, or a histogram's `_bucket`/`_count`/`_sum` (a summary's `_count`/`_sum`).
pub fn exported(name: &str, families: &BTreeMap<String, String>) -> bool {
    if families.contains_key(name) {
        return true;
    }
    let kind_of = |suffix: &str| {
        name.strip_suffix(suffix)
            .and_then(|base| families.get(base))
            .map(String::as_str)
    };
    matches!(kind_of("_bucket"), Some("histogram"))
        || matches!(kind_of("_count"), Some("histogram" | "summary"))
        || matches!(kind_of("_sum"), Some("histogram" | "summary"))
}

/// A label value as a regex matching only itself, written for a PromQL string
/// literal (hence doubled backslashes); Grafana escapes picked values likewise.
pub fn regex_escape(value: &str) -> String {
    let mut out = String::new();
    for c in value.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `label_values(selector, label)` → (selector, label).
pub fn label_values(definition: &str) -> (&str, &str) {
    let inner = definition
        .trim()
        .strip_prefix("label_values(")
        .and_then(|s| s.strip_suffix(')'))
        .unwrap_or_else(|| panic!("unsupported variable query {definition:?}"));
    let (selector, label) = inner
        .rsplit_once(',')
        .unwrap_or_else(|| panic!("label_values without a metric: {definition:?}"));
    (selector.trim(), label.trim())
}
