//! TLS (`amqps://`) against private RabbitMQ nodes with TLS listeners and a
//! PKI generated here with the openssl CLI: the broker's certificate is
//! verified against `amqp.tls.ca_file` (or the system roots), a certificate
//! that does not verify is one clear error and never a plaintext fallback,
//! mutual TLS works with a client certificate, and no password is printed.

mod support;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use support::broker::{self, unique_queue};
use support::health::tasks_total;
use support::node::RabbitNode;
use support::proc::{Warren, command, run, text};
use warren::metrics::Disposition;

const LIMIT: Duration = Duration::from_secs(60);
const OPENSSL: &str = "/usr/bin/openssl";
/// A new unencrypted P-256 key (fast to generate; PKCS#8 PEM output).
const EC_KEY: &str = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
/// The nodes' URLs carry this; it must never be printed.
const SECRET: &str = "guest:guest@";

/// A throw-away PKI: a CA, a server and a client certificate signed by it,
/// and an unrelated CA that signed nothing the broker presents.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn generate() -> Pki {
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
        };
        pki.ca("ca", "Warren-Test-CA");
        pki.ca("other-ca", "Unrelated-CA");
        pki.leaf(
            "server",
            "localhost",
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        );
        pki.leaf("client", "warren-client", "extendedKeyUsage=clientAuth\n");
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn arg(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    /// `<name>.pem` (self-signed, CA:TRUE) and `<name>.key`.
    fn ca(&self, name: &str, cn: &str) {
        let (key, pem) = (
            self.arg(&format!("{name}.key")),
            self.arg(&format!("{name}.pem")),
        );
        openssl(&format!(
            "req -x509 {EC_KEY} -days 2 -subj /CN={cn} -keyout {key} -out {pem} \
             -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign"
        ));
    }

    /// `<name>.pem` signed by `ca`, with `extensions`, and its PKCS#8 `<name>.key`.
    fn leaf(&self, name: &str, cn: &str, extensions: &str) {
        let (key, csr, pem) = (
            self.arg(&format!("{name}.key")),
            self.arg(&format!("{name}.csr")),
            self.arg(&format!("{name}.pem")),
        );
        let ext = self.path(&format!("{name}.ext"));
        std::fs::write(
            &ext,
            format!("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n{extensions}"),
        )
        .unwrap();
        openssl(&format!(
            "req -new {EC_KEY} -subj /CN={cn} -keyout {key} -out {csr}"
        ));
        openssl(&format!(
            "x509 -req -in {csr} -CA {} -CAkey {} -CAcreateserial -days 2 -extfile {} -out {pem}",
            self.arg("ca.pem"),
            self.arg("ca.key"),
            ext.display()
        ));
    }

    fn node(&self, require_client_cert: bool) -> RabbitNode {
        RabbitNode::start_with_tls(
            &self.path("ca.pem"),
            &self.path("server.pem"),
            &self.path("server.key"),
            require_client_cert,
        )
    }
}

/// Runs the openssl CLI; `args` are split on whitespace (no value has spaces).
fn openssl(args: &str) {
    let out = Command::new(OPENSSL)
        .args(args.split_whitespace())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {OPENSSL}: {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `warren publish` with `extra` flags; checks that no password leaked.
fn publish(url: &str, queue: &str, extra: &[&str]) -> Output {
    let mut args = vec!["publish", "--amqp-url", url, "--queue", queue];
    args.extend_from_slice(extra);
    args.push("tls.");
    let out = run(&args, LIMIT);
    let all = text(&out);
    assert!(!all.contains(SECRET), "password printed by {args:?}: {all}");
    out
}

/// The single `error:` line of a failed command.
fn error_line(out: &Output) -> String {
    let all = text(out);
    assert!(!out.status.success(), "must fail: {all}");
    let errors: Vec<&str> = all.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "exactly one error line: {all}");
    eprintln!("{}", errors[0]);
    errors[0].to_owned()
}

fn assert_not_verified(line: &str) {
    assert!(
        line.contains("the broker's certificate did not verify"),
        "says why: {line}"
    );
    assert!(
        line.contains("amqp.tls.ca_file") && line.contains("--tls-ca-file"),
        "names the fix: {line}"
    );
    assert!(line.contains("amqps://guest:***@"), "{line}");
}

/// `warren work` over TLS until one task is done; checks the log for passwords.
async fn work_until_done(name: &str, mut cmd: Command) {
    cmd.env("WARREN_POOL_CONCURRENCY", "1");
    let w = Warren::spawn_with(name, cmd);
    w.wait_acked(1, LIMIT).await;
    let log = w.lines().join("\n");
    assert!(!log.contains(SECRET), "password in the log: {log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn amqps_verifies_the_broker_and_never_downgrades() {
    let started = Instant::now();
    let pki = Pki::generate();
    let node = pki.node(false);
    eprintln!(
        "PKI + TLS node up in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let url = node.amqps_url();
    let q = unique_queue("tls");
    let ca = pki.arg("ca.pem");

    let out = publish(&url, &q, &["--tls-ca-file", &ca]);
    assert!(out.status.success(), "publish over TLS: {}", text(&out));
    assert!(text(&out).contains("1 confirmed"), "{}", text(&out));
    let cmd = command(&[
        "work",
        "--amqp-url",
        &url,
        "--queue",
        &q,
        "--per-dot",
        "1ms",
        "--tls-ca-file",
        &ca,
    ]);
    work_until_done("tls-worker", cmd).await;

    // A CA that did not sign the broker's certificate, then the system roots only.
    let other = pki.arg("other-ca.pem");
    assert_not_verified(&error_line(&publish(&url, &q, &["--tls-ca-file", &other])));
    let line = error_line(&publish(&url, &q, &[]));
    assert_not_verified(&line);
    assert!(line.contains("not signed by a trusted CA"), "{line}");

    // A host name the certificate was not issued for.
    let by_name = url.replace("@localhost:", "@vm:");
    let line = error_line(&publish(&by_name, &q, &["--tls-ca-file", &ca]));
    assert!(
        line.contains("the broker's certificate did not verify"),
        "{line}"
    );
    assert!(line.contains("not valid for name \"vm\""), "{line}");
    assert!(
        line.contains("use a host name the certificate is valid for"),
        "{line}"
    );

    // `work` logs the same cause and keeps retrying (as for any broker
    // outage), without ever consuming: there is no plaintext fallback. A
    // task waits in the queue, so a worker that consumed would have taken it.
    let out = publish(&url, &q, &["--tls-ca-file", &ca]);
    assert!(out.status.success(), "publish over TLS: {}", text(&out));
    let mut w = Warren::spawn(
        "tls-untrusted-worker",
        &[
            "work",
            "--amqp-url",
            &url,
            "--queue",
            &q,
            "--tls-ca-file",
            &other,
        ],
    );
    // The cause, as the operator reads it.
    w.wait_for("did not verify", 1, LIMIT).await;
    assert!(
        w.is_running(),
        "a bad certificate is retried like an outage"
    );
    w.wait_readyz(503, LIMIT).await;
    assert_eq!(w.metric(&tasks_total(Disposition::Acked)), 0.0);
    assert_eq!(w.metric("warren_tasks_in_flight"), 0.0);
    assert_eq!(
        broker::counts(&node.amqp_url(), &q).await,
        Some((1, 0)),
        "the task is still there and nobody consumes"
    );
    assert!(!w.lines().join("\n").contains(SECRET));
    w.kill();

    // amqps on the plain AMQP port: a TLS error naming the port, not a hang.
    let plain_port = format!("localhost:{}", node.amqp_port());
    let wrong_port = url.replace(&format!("localhost:{}", node.tls_port()), &plain_port);
    let line = error_line(&publish(&wrong_port, &q, &["--tls-ca-file", &ca]));
    assert!(
        line.contains("TLS failed") && line.contains("TLS listener"),
        "{line}"
    );
    eprintln!("done in {:.1}s", started.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread")]
async fn mutual_tls_needs_the_client_certificate() {
    let started = Instant::now();
    let pki = Pki::generate();
    let node = pki.node(true);
    let url = node.amqps_url();
    let q = unique_queue("mtls");
    let (ca, cert, key) = (
        pki.arg("ca.pem"),
        pki.arg("client.pem"),
        pki.arg("client.key"),
    );

    let with_cert = [
        "--tls-ca-file",
        ca.as_str(),
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
    ];
    let out = publish(&url, &q, &with_cert);
    assert!(
        out.status.success(),
        "publish with a client cert: {}",
        text(&out)
    );
    // The same settings from the environment.
    let mut cmd = command(&[
        "work",
        "--amqp-url",
        &url,
        "--queue",
        &q,
        "--per-dot",
        "1ms",
    ]);
    cmd.env("WARREN_AMQP_TLS_CA_FILE", &ca)
        .env("WARREN_AMQP_TLS_CERT_FILE", &cert)
        .env("WARREN_AMQP_TLS_KEY_FILE", &key);
    work_until_done("mtls-worker", cmd).await;

    // The broker's refusal arrives as a TLS alert, or (TLS 1.3 checks the
    // client after the client's handshake is done) as a reset that can
    // overtake the alert: both name the client certificate as the fix.
    let no_cert = |line: &str| {
        assert!(line.contains("client certificate"), "{line}");
        assert!(line.contains("--tls-cert-file"), "{line}");
    };
    no_cert(&error_line(&publish(&url, &q, &["--tls-ca-file", &ca])));
    // A certificate from a CA the broker does not trust.
    let other = [
        "--tls-ca-file",
        ca.as_str(),
        "--tls-cert-file",
        &pki.arg("other-ca.pem"),
        "--tls-key-file",
        &pki.arg("other-ca.key"),
    ];
    no_cert(&error_line(&publish(&url, &q, &other)));
    eprintln!("done in {:.1}s", started.elapsed().as_secs_f64());
}

#[test]
fn tls_settings_are_checked_before_connecting() {
    let pki = Pki::generate();
    let ca = pki.arg("ca.pem");
    let plain = "amqp://guest:guest@127.0.0.1:1/%2f";
    let tls = "amqps://guest:guest@127.0.0.1:1/%2f";
    let q = unique_queue("tls-config");
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        (
            plain,
            vec!["--tls-ca-file".into(), ca.clone()],
            "amqp.tls.ca_file: set but amqp.url is amqp://; use amqps://",
        ),
        (
            tls,
            vec!["--tls-cert-file".into(), pki.arg("client.pem")],
            "amqp.tls.key_file: is required",
        ),
        (
            tls,
            vec!["--tls-ca-file".into(), pki.arg("missing.pem")],
            "amqp.tls.ca_file: cannot read",
        ),
        (
            tls,
            vec!["--tls-ca-file".into(), pki.arg("client.key")],
            "amqp.tls.ca_file: '",
        ),
        (
            tls,
            vec![
                "--tls-cert-file".into(),
                pki.arg("client.pem"),
                "--tls-key-file".into(),
                pki.arg("client.pem"),
            ],
            "amqp.tls.key_file: '",
        ),
    ];
    for (url, flags, expected) in cases {
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let out = publish(url, &q, &flags);
        let line = error_line(&out);
        assert!(
            line.contains("invalid configuration") && line.contains(expected),
            "{flags:?}: {line}"
        );
    }
    // `config check` reports it too, and the file paths are shown (they are no secret).
    let out = run(
        &["config", "check", "--amqp-url", plain, "--tls-ca-file", &ca],
        LIMIT,
    );
    assert!(error_line(&out).contains("never downgrades to plaintext"));
    // `status` validates the loaded config like every command.
    let out = run(
        &["status", "--amqp-url", plain, "--tls-ca-file", &ca],
        LIMIT,
    );
    assert!(error_line(&out).contains("never downgrades to plaintext"));
    let out = run(
        &["config", "check", "--amqp-url", tls, "--tls-ca-file", &ca],
        LIMIT,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("ca_file: {ca}")),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains(SECRET));
}
