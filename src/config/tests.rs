//! Precedence (file < env < flags) and the messages users see for bad values.

use super::*;
use crate::error::Result;
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

/// Loads (and so validates) the file, env and flags (`--name`, raw text).
fn loaded_with(
    yaml: Option<&str>,
    vars: &[(&str, &str)],
    flags: &[(&str, &str)],
) -> Result<Loaded> {
    let f = yaml.map(file);
    let (mut layers, _) = env_layers(env(vars));
    for (flag, raw) in flags {
        let key = keys::by_flag(flag).unwrap_or_else(|| panic!("no key has the flag {flag}"));
        layers.push(Layer::flag(key, raw));
    }
    load(f.as_ref().map(|f| f.path()), &layers)
}

fn load_with(yaml: Option<&str>, vars: &[(&str, &str)], flags: &[(&str, &str)]) -> Result<Config> {
    loaded_with(yaml, vars, flags).map(|l| l.config)
}

#[test]
fn defaults_reproduce_the_tutorial() {
    let c = load_with(None, &[], &[]).unwrap();
    assert_eq!(c.queue.name, "task_queue");
    assert_eq!(
        c.amqp.url.to_string(),
        "amqp://guest:guest@127.0.0.1:5672/%2f"
    );
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
    let (_, warnings) = env_layers(env(&[("WARREN_CONCURRENCY", "3"), ("HOME", "/root")]));
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("WARREN_CONCURRENCY"));
}

#[test]
fn validation_names_the_key_and_the_fix() {
    let check = |flags: &[(&str, &str)]| loaded_with(None, &[], flags).map(|l| l.warnings);
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

    for bad in ["0", "70000"] {
        let err = check(&[("--prefetch-max", bad)]).unwrap_err().to_string();
        assert!(
            err.contains("pool.prefetch_max") && err.contains("65535"),
            "{err}"
        );
    }
    let err = check(&[("--prefetch-max", "10"), ("--concurrency", "20")])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("pool.prefetch_max") && err.contains("at least 20"),
        "{err}"
    );
    // A pinned prefetch has no ceiling to respect.
    let pinned = [
        ("--prefetch-max", "10"),
        ("--concurrency", "20"),
        ("--prefetch", "40"),
    ];
    assert!(check(&pinned).unwrap().is_empty());

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
fn frame_max_must_be_an_amqp_frame_size() {
    for bad in ["4095", "2000000"] {
        let err = load_with(None, &[], &[("--frame-max", bad)]).unwrap_err();
        let err = err.to_string();
        assert!(
            err.contains("amqp.frame_max") && err.contains("4096"),
            "{err}"
        );
    }
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
fn the_generated_flags_build_and_keep_their_names() {
    use clap::CommandFactory;
    crate::cli::Cli::command().debug_assert();
    let c = load_with(
        None,
        &[],
        &[("--declare", "false"), ("--pod-deletion-cost", "true")],
    )
    .unwrap();
    assert!(!c.queue.declare && c.kube.pod_deletion_cost);
    for (flag, env) in [
        ("--queue", "WARREN_QUEUE_NAME"),
        ("--handler", "WARREN_HANDLER_KIND"),
        (
            "--pod-deletion-cost-interval",
            "WARREN_KUBE_UPDATE_INTERVAL",
        ),
        ("--tls-ca-file", "WARREN_AMQP_TLS_CA_FILE"),
    ] {
        assert_eq!(keys::by_flag(flag).unwrap().env(), env);
    }
}

#[test]
fn lists_take_yaml_or_commas() {
    let c = load_with(
        None,
        &[("WARREN_HANDLER_EXEC_REJECT_EXIT_CODES", "[65, 78]")],
        &[],
    )
    .unwrap();
    assert_eq!(c.handler.exec.reject_exit_codes, [65, 78]);
    let c = load_with(None, &[], &[("--reject-exit-codes", "64,65")]).unwrap();
    assert_eq!(c.handler.exec.reject_exit_codes, [64, 65]);
    let c = load_with(None, &[], &[("--reject-exit-codes", "3")]).unwrap();
    assert_eq!(c.handler.exec.reject_exit_codes, [3]);
}

#[test]
fn check_output_is_yaml_that_loads_back_and_names_origins() {
    let loaded = loaded_with(
        Some("pool: { concurrency: 3 }"),
        &[("WARREN_QUEUE_NAME", "123")],
        &[("--backoff", "1s,2s")],
    )
    .unwrap();
    let yaml = effective_yaml(&loaded);
    assert!(
        yaml.contains("name: '123'  # from WARREN_QUEUE_NAME"),
        "{yaml}"
    );
    assert!(
        yaml.contains("backoff: [1s, 2s]  # from --backoff"),
        "{yaml}"
    );
    assert!(yaml.contains("concurrency: 3  # from /"), "{yaml}");
    let back = load_with(Some(&yaml), &[], &[]).unwrap();
    assert_eq!(back, loaded.config.redacted());
}

#[test]
fn zero_limits_and_empty_lists_are_errors_naming_the_key() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("--pod-deletion-cost-interval", "0s")],
            "kube.update_interval",
        ),
        (
            &[("--queue-poll-interval", "0s")],
            "server.queue_poll_interval",
        ),
        (&[("--connect-timeout", "0s")], "amqp.connect_timeout"),
        (&[("--handler-timeout", "0s")], "pool.handler_timeout"),
        (
            &[("--broker-consumer-timeout", "0s")],
            "amqp.broker_consumer_timeout",
        ),
        (&[("--backoff", ",")], "retry.backoff"),
        (&[("--backoff", "")], "retry.backoff"),
        (&[("--dead-letter-queue", "")], "retry.dead_letter_queue"),
        (&[("--management-url", "")], "amqp.management_url"),
        (&[("--max-body-bytes", "0")], "pool.max_body_bytes"),
        (
            &[
                ("--handler", "http"),
                ("--http-url", "http://h/"),
                ("--http-timeout", "0s"),
            ],
            "handler.http.timeout",
        ),
        (&[("--handler", "exec")], "handler.exec.command"),
        (&[("--reject-exit-codes", "0")], ""),
    ];
    for (flags, key) in cases {
        match load_with(None, &[], flags) {
            Err(e) => assert!(e.to_string().contains(key), "{flags:?}: {e}"),
            // Reject codes only matter (and are checked) for the exec handler.
            Ok(_) => assert!(key.is_empty(), "{flags:?} must fail naming {key}"),
        }
    }
    let err = load_with(Some("retry: { backoff: [] }"), &[], &[]).unwrap_err();
    assert!(err.to_string().contains("retry.backoff"), "{err}");
}

#[test]
fn zero_delays_mean_at_once_and_are_allowed() {
    let flags = [
        ("--per-dot", "0s"),
        ("--shutdown-timeout", "0s"),
        ("--kill-grace", "0s"),
        ("--heartbeat", "0s"),
        ("--backoff", "0s,1s"),
        ("--reject-exit-codes", ""),
    ];
    let c = load_with(None, &[], &flags).unwrap();
    assert!(c.pool.shutdown_timeout.is_zero() && c.handler.exec.reject_exit_codes.is_empty());
}
