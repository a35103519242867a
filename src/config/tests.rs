//! Precedence (file < env < flags) and the messages users see for bad values.

use super::*;
use std::io::Write;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn file(yaml: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(yaml.as_bytes()).unwrap();
    f
}

fn load_with(yaml: Option<&str>, vars: &[(&str, &str)], flags: &[(&str, &str)]) -> Result<Config> {
    let f = yaml.map(file);
    let flags: Vec<(&str, String)> = flags.iter().map(|(k, v)| (*k, v.to_string())).collect();
    let (layers, _) = parse_layers(env(vars), &flags, None);
    load(f.as_ref().map(|f| f.path()), &layers)
}

#[test]
fn defaults_reproduce_the_tutorial() {
    let c = load_with(None, &[], &[]).unwrap();
    assert_eq!(c.queue.name, "task_queue");
    assert_eq!(c.amqp.url, "amqp://guest:guest@127.0.0.1:5672/%2f");
    assert_eq!(c.handler.sleep.per_dot, Duration::from_secs(1));
    assert_eq!(c.pool.effective_prefetch(), 8);
    assert_eq!(c.retry.max_attempts, 5);
    assert_eq!(c.dead_letter_queue(), "task_queue.dead");
    assert!(c.validate().unwrap().is_empty());
}

#[test]
fn flags_win_over_env_which_wins_over_the_file() {
    let yaml = "pool: { concurrency: 2, prefetch: 10 }\nqueue: { name: from_file }\n";
    let c = load_with(Some(yaml), &[], &[]).unwrap();
    assert_eq!(
        (c.pool.concurrency, c.queue.name.as_str()),
        (2, "from_file")
    );

    let vars = [
        ("WARREN_POOL_CONCURRENCY", "3"),
        ("WARREN_QUEUE_NAME", "from_env"),
    ];
    let c = load_with(Some(yaml), &vars, &[]).unwrap();
    assert_eq!((c.pool.concurrency, c.queue.name.as_str()), (3, "from_env"));
    assert_eq!(
        c.pool.prefetch,
        Prefetch::Count(10),
        "untouched keys keep the file's value"
    );

    let c = load_with(
        Some(yaml),
        &vars,
        &[("--concurrency", "4"), ("--queue", "from_flag")],
    )
    .unwrap();
    assert_eq!(
        (c.pool.concurrency, c.queue.name.as_str()),
        (4, "from_flag")
    );
}

#[test]
fn values_parse_from_text() {
    let flags = [
        ("--backoff", "1s, 10s,1m"),
        ("--handler-timeout", "90s"),
        ("--prefetch", "auto"),
        ("--queue", "123"),
        ("--queue-type", "quorum"),
    ];
    let c = load_with(None, &[("WARREN_QUEUE_DECLARE", "false")], &flags).unwrap();
    assert_eq!(
        c.retry.backoff,
        [1, 10, 60].map(Duration::from_secs).to_vec()
    );
    assert_eq!(c.pool.handler_timeout, Duration::from_secs(90));
    assert_eq!(c.pool.prefetch, Prefetch::Auto);
    assert_eq!(c.queue.name, "123", "a numeric queue name stays a string");
    assert_eq!(c.queue.kind, QueueType::Quorum);
    assert!(!c.queue.declare);
    let c = load_with(Some("retry: { backoff: [2s, 3s] }"), &[], &[]).unwrap();
    assert_eq!(c.retry.backoff, [2, 3].map(Duration::from_secs).to_vec());
}

#[test]
fn errors_name_the_key_and_where_the_value_came_from() {
    let err = load_with(None, &[("WARREN_POOL_CONCURRENCY", "lots")], &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("pool.concurrency"), "{err}");
    assert!(err.contains("WARREN_POOL_CONCURRENCY"), "{err}");

    let err = load_with(None, &[], &[("--per-dot", "soon")])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("handler.sleep.per_dot") && err.contains("--per-dot"),
        "{err}"
    );
    assert!(err.contains("'soon' is not a duration"), "{err}");

    let err = load_with(Some("pool:\n  concurency: 3\n"), &[], &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `concurency`"), "{err}");
    assert!(err.contains("pool"), "{err}");

    let err = load_with(Some("pool: [unclosed"), &[], &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("not valid YAML"), "{err}");

    let err = load_with(None, &[], &[("--queue-type", "stream")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("queue.type"), "{err}");
}

#[test]
fn unknown_warren_env_vars_are_warned_about() {
    let (_, warnings) = parse_layers(
        env(&[("WARREN_CONCURRENCY", "3"), ("HOME", "/root")]),
        &[],
        None,
    );
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("WARREN_CONCURRENCY"));
}

#[test]
fn validation_names_the_key_and_the_fix() {
    let check = |flags: &[(&str, &str)]| load_with(None, &[], flags).unwrap().validate();
    let err = check(&[("--concurrency", "0")]).unwrap_err().to_string();
    assert!(
        err.contains("pool.concurrency") && err.contains("--concurrency"),
        "{err}"
    );

    let err = check(&[("--prefetch", "70000")]).unwrap_err().to_string();
    assert!(
        err.contains("pool.prefetch") && err.contains("65535"),
        "{err}"
    );

    let warnings = check(&[("--prefetch", "2"), ("--concurrency", "4")]).unwrap();
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("pool.prefetch (2) is below pool.concurrency (4)"));

    let err = check(&[("--amqp-url", "http://guest:hunter2@host/")])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("amqp.url") && !err.contains("hunter2"),
        "{err}"
    );

    let err = check(&[("--max-attempts", "0")]).unwrap_err().to_string();
    assert!(err.contains("retry.max_attempts"), "{err}");

    let err = check(&[("--handler", "exec")]).unwrap_err().to_string();
    assert!(err.contains("handler.exec.command"), "{err}");

    let err = check(&[("--listen", "nowhere")]).unwrap_err().to_string();
    assert!(err.contains("server.listen"), "{err}");
}

#[test]
fn redacted_copy_hides_passwords() {
    let mut c = Config::default();
    c.amqp.url = "amqp://app:s3cret@rabbit:5672/%2f".into();
    c.amqp.management_url = Some("http://admin:adm1n@rabbit:15672".into());
    let yaml = serde_yaml::to_string(&c.redacted()).unwrap();
    assert!(
        !yaml.contains("s3cret") && !yaml.contains("adm1n"),
        "{yaml}"
    );
    assert!(yaml.contains("amqp://app:***@rabbit:5672/%2f"), "{yaml}");
}

#[test]
fn every_cli_flag_maps_to_a_config_key() {
    use clap::CommandFactory;
    let cli = crate::cli::Cli::command();
    let work = cli.find_subcommand("work").unwrap();
    let not_config = ["config", "help", "version", "command"];
    for arg in work.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if not_config.contains(&long) {
            continue;
        }
        let flag = format!("--{long}");
        let leaked: &'static str = Box::leak(flag.into_boxed_str());
        let (layers, _) = parse_layers(Vec::new(), &[(leaked, "1".to_string())], None);
        assert_eq!(layers.len(), 1, "{leaked} must map to a config key");
    }
}
