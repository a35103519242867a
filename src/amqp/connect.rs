//! Opening a connection, and turning connection failures into advice.
//!
//! TLS (`amqps://`) goes through lapin's rustls stack (tcp-stream 0.34 with
//! rustls-connector). With the features our lapin build enables, the broker's
//! certificate is checked by rustls-platform-verifier, which on Linux trusts
//! the system roots (rustls-native-certs: `SSL_CERT_FILE`, `SSL_CERT_DIR` or
//! the distribution's bundle) *plus* the certificates of `amqp.tls.ca_file`,
//! passed as extra roots. So `ca_file` adds a private CA; it does not narrow
//! trust to that CA alone. The host name checked is the one in `amqp.url`. A
//! failed verification is an error: there is no plaintext fallback.

use crate::config::{AmqpConfig, TlsConfig};
use crate::error::{Error, Result};
use crate::redact::{parse_amqp_url, redact_url};
use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::uri::AMQPScheme;
use lapin::{Connection, ConnectionProperties, ErrorKind};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;

/// Connects to one of the nodes in `amqp.url`, trying them in a shuffled
/// order (so a fleet spreads over the cluster) and moving on when one fails;
/// returns the connection and the node's URL, redacted, for logs and
/// `/readyz`. No retries beyond one pass: the supervisor owns the retry
/// policy. `name` shows up in the RabbitMQ management UI's connection list.
pub async fn connect(cfg: &AmqpConfig, name: &str) -> Result<(Connection, String)> {
    let urls: Vec<&str> = cfg.url.iter().collect();
    let mut last = None;
    for i in shuffled(urls.len()) {
        match connect_to(cfg, urls[i], name).await {
            Ok(conn) => return Ok((conn, redact_url(urls[i]))),
            Err(e) => {
                if urls.len() > 1 {
                    tracing::warn!("{e}; trying the next node");
                }
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| Error::config("amqp.url", "is empty; give at least one URL")))
}

/// 0..n in a random order (std's random hasher keys; no RNG crate needed).
fn shuffled(n: usize) -> Vec<usize> {
    use std::hash::{BuildHasher, RandomState};
    let mut order: Vec<usize> = (0..n).collect();
    let random = RandomState::new();
    for i in (1..n).rev() {
        let j = (random.hash_one(i) % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// One connection attempt to one node.
async fn connect_to(cfg: &AmqpConfig, url: &str, name: &str) -> Result<Connection> {
    let mut uri = parse_amqp_url(url)?;
    if uri.query.heartbeat.is_none() {
        uri.query.heartbeat = Some(cfg.heartbeat.as_secs().min(u64::from(u16::MAX)) as u16);
    }
    // Offered up front, so lapin sizes its buffers once and never zero-fills
    // them again for the broker's larger default (`amqp.frame_max`).
    if uri.query.frame_max.is_none() {
        uri.query.frame_max = Some(cfg.frame_max);
    }
    let props = ConnectionProperties::default().with_connection_name(name.into());
    let shown = redact_url(url);
    let tls = match uri.scheme {
        // The entry points installed ring as the crypto provider (`crate::crypto`).
        AMQPScheme::AMQPS => tls_config(&cfg.tls)?,
        // amqp:// with `amqp.tls` files set was refused by Config::validate.
        AMQPScheme::AMQP => OwnedTLSConfig::default(),
    };
    let runtime = lapin::runtime::default_runtime()
        .map_err(|e| Error::amqp("starting lapin's tokio runtime adapter", e))?;
    let connecting = Connection::connect_uri_with_config(uri, props, tls, runtime);
    match tokio::time::timeout(cfg.connect_timeout, connecting).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(explain(&shown, &e)),
        Err(_) => Err(Error::Connect {
            url: shown,
            reason: format!(
                "no answer within {} (amqp.connect_timeout)",
                crate::config::duration::format(&cfg.connect_timeout)
            ),
            fix: "check the host and port in amqp.url (WARREN_AMQP_URL / --amqp-url) and that the network lets AMQP through".into(),
        }),
    }
}

/// Reads `amqp.tls` into lapin's TLS settings, checking each PEM file so a
/// wrong file is named here rather than failing deep in the handshake.
fn tls_config(tls: &TlsConfig) -> Result<OwnedTLSConfig> {
    let read = |key: &str, path: &Path| {
        std::fs::read(path)
            .map_err(|e| Error::config(key, format!("cannot read '{}': {e}", path.display())))
    };
    let cert_chain = match &tls.ca_file {
        Some(path) => {
            let pem = read("amqp.tls.ca_file", path)?;
            certificates("amqp.tls.ca_file", path, &pem)?;
            let text = String::from_utf8(pem).map_err(|_| {
                Error::config(
                    "amqp.tls.ca_file",
                    format!("'{}' is not a PEM text file", path.display()),
                )
            })?;
            Some(text)
        }
        None => None,
    };
    let identity = match (&tls.cert_file, &tls.key_file) {
        (Some(cert_path), Some(key_path)) => {
            let pem = read("amqp.tls.cert_file", cert_path)?;
            certificates("amqp.tls.cert_file", cert_path, &pem)?;
            let key = read("amqp.tls.key_file", key_path)?;
            if PrivateKeyDer::from_pem_slice(&key).is_err() {
                return Err(Error::config(
                    "amqp.tls.key_file",
                    format!(
                        "'{}' holds no unencrypted private key; expected PEM 'BEGIN PRIVATE KEY' \
                         (PKCS#8; convert with openssl pkcs8 -topk8 -nocrypt)",
                        key_path.display()
                    ),
                ));
            }
            Some(OwnedIdentity::PKCS8 { pem, key })
        }
        _ => None,
    };
    Ok(OwnedTLSConfig {
        identity,
        cert_chain,
    })
}

/// Fails unless `pem` holds at least one parsable certificate.
fn certificates(key: &str, path: &Path, pem: &[u8]) -> Result<()> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem).collect();
    if certs.is_empty() || certs.iter().any(|c| c.is_err()) {
        return Err(Error::config(
            key,
            format!(
                "'{}' holds no readable PEM certificate ('BEGIN CERTIFICATE')",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// The rustls error behind a failed connect, if TLS is what failed. The
/// handshake error travels as an `io::Error` whose payload is the
/// `rustls::Error`; `io::Error::source` skips that payload, so look inside.
fn rustls_cause(e: &lapin::Error) -> Option<&rustls::Error> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        next = match err.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    None
}

/// Cause and fix for a TLS failure.
fn explain_tls(tls: &rustls::Error) -> (String, String) {
    use rustls::{AlertDescription as Alert, CertificateError as Cert};
    match tls {
        rustls::Error::InvalidCertificate(cert) => {
            let reason = |why: String| {
                format!("TLS failed: the broker's certificate did not verify: {why}")
            };
            let trust = "set amqp.tls.ca_file (--tls-ca-file / WARREN_AMQP_TLS_CA_FILE) to the PEM \
                         of the CA that signed it, or use the host name in the certificate in \
                         amqp.url; Warren never connects without verifying the broker";
            match cert {
                Cert::UnknownIssuer => (
                    reason("it is not signed by a trusted CA (rustls: UnknownIssuer)".into()),
                    trust.to_owned(),
                ),
                Cert::NotValidForName | Cert::NotValidForNameContext { .. } => (
                    reason(format!("rustls: {cert}")),
                    "use a host name the certificate is valid for in amqp.url (--amqp-url / \
                     WARREN_AMQP_URL), or reissue the broker's certificate for this name; \
                     amqp.tls.ca_file (--tls-ca-file) only chooses which CAs are trusted"
                        .to_owned(),
                ),
                Cert::Expired
                | Cert::ExpiredContext { .. }
                | Cert::NotValidYet
                | Cert::NotValidYetContext { .. } => (
                    reason(format!("rustls: {cert}")),
                    "renew the broker's certificate, or fix this machine's clock".to_owned(),
                ),
                other => (reason(format!("rustls: {other}")), trust.to_owned()),
            }
        }
        rustls::Error::AlertReceived(
            alert @ (Alert::CertificateRequired
            | Alert::BadCertificate
            | Alert::UnknownCA
            | Alert::CertificateUnknown
            | Alert::UnsupportedCertificate
            | Alert::CertificateExpired
            | Alert::CertificateRevoked
            | Alert::AccessDenied
            | Alert::HandshakeFailure),
        ) => (
            format!("TLS failed: the broker refused the connection ({alert:?} alert); it requires a client certificate it trusts"),
            "set amqp.tls.cert_file and amqp.tls.key_file (--tls-cert-file / --tls-key-file, \
             WARREN_AMQP_TLS_CERT_FILE / WARREN_AMQP_TLS_KEY_FILE) to a certificate signed by a CA \
             the broker trusts"
                .to_owned(),
        ),
        other => (
            format!("TLS failed: {other}"),
            "check that the port in amqp.url is the broker's TLS listener (amqps, usually 5671) and \
             the TLS settings in amqp.tls"
                .to_owned(),
        ),
    }
}

/// A peer that hung up before AMQP was set up.
fn closed_early(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind as Io;
    matches!(
        kind,
        Io::ConnectionReset | Io::ConnectionAborted | Io::UnexpectedEof | Io::BrokenPipe
    )
}

/// Maps a lapin connect error to a cause and a fix a user can act on.
pub fn explain(url: &str, e: &lapin::Error) -> Error {
    if let Some(tls) = rustls_cause(e) {
        let (reason, fix) = explain_tls(tls);
        return Error::Connect {
            url: url.to_owned(),
            reason,
            fix,
        };
    }
    let amqps = url
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("amqps://"));
    let (reason, fix) = match e.kind() {
        ErrorKind::IOError(io) if amqps && closed_early(io.kind()) => (
            format!("the broker closed the TLS connection during setup ({io})"),
            // TLS 1.3: the broker checks our certificate after the client
            // finished its handshake; its alert may be lost in a reset.
            "if the broker requires a client certificate (mutual TLS), set amqp.tls.cert_file and \
             amqp.tls.key_file (--tls-cert-file / --tls-key-file) to one signed by a CA it trusts; \
             otherwise check the broker's log"
                .to_owned(),
        ),
        ErrorKind::IOError(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => (
            "connection refused".to_owned(),
            "is RabbitMQ running and listening on that host and port? Fix amqp.url (WARREN_AMQP_URL / --amqp-url) or start the broker".to_owned(),
        ),
        ErrorKind::IOError(io) => (
            io.to_string(),
            "check the host name and port in amqp.url (WARREN_AMQP_URL / --amqp-url)".to_owned(),
        ),
        ErrorKind::ProtocolError(amqp) => match amqp.kind() {
            AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED) | AMQPErrorKind::Hard(_)
                if amqp.get_id() == 403 =>
            {
                (
                    format!("login refused (403 ACCESS_REFUSED: {})", amqp.get_message()),
                    "check the user name and password in amqp.url; note that RabbitMQ's guest user may only connect from localhost".to_owned(),
                )
            }
            AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED) => (
                format!("vhost not allowed (530 NOT_ALLOWED: {})", amqp.get_message()),
                "the vhost in amqp.url does not exist or the user has no permissions on it; write the default vhost / as %2f, or grant access with rabbitmqctl set_permissions".to_owned(),
            ),
            _ => (
                format!("the broker closed the connection ({amqp})"),
                "check amqp.url and the broker's log".to_owned(),
            ),
        },
        _ => (
            e.to_string(),
            "check amqp.url (WARREN_AMQP_URL / --amqp-url) and the broker's log".to_owned(),
        ),
    };
    Error::Connect {
        url: url.to_owned(),
        reason,
        fix,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    fn reason_and_fix(e: Error) -> (String, String) {
        match e {
            Error::Connect { reason, fix, .. } => (reason, fix),
            other => panic!("expected a connect error, got {other}"),
        }
    }

    #[test]
    fn an_unverified_certificate_inside_an_io_error_names_ca_file() {
        let cause = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let e = lapin::Error::from(io::Error::new(io::ErrorKind::InvalidData, cause));
        let (reason, fix) = reason_and_fix(explain("amqps://u:***@h/", &e));
        assert!(reason.contains("certificate did not verify"), "{reason}");
        assert!(reason.contains("UnknownIssuer"), "{reason}");
        assert!(
            fix.contains("amqp.tls.ca_file") && fix.contains("--tls-ca-file"),
            "{fix}"
        );
    }

    #[test]
    fn a_reset_during_tls_setup_points_at_the_client_certificate() {
        let reset = || lapin::Error::from(io::Error::from(io::ErrorKind::ConnectionReset));
        let (_, fix) = reason_and_fix(explain("amqps://u:***@h/", &reset()));
        assert!(fix.contains("amqp.tls.cert_file"), "{fix}");
        let (_, fix) = reason_and_fix(explain("amqp://u:***@h/", &reset()));
        assert!(!fix.contains("amqp.tls"), "plain AMQP: {fix}");
    }

    #[test]
    fn unusable_pem_files_are_config_errors_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let tls = TlsConfig {
            ca_file: Some(junk.clone()),
            ..TlsConfig::default()
        };
        let err = tls_config(&tls).unwrap_err().to_string();
        assert!(
            err.contains("amqp.tls.ca_file") && err.contains("junk.pem"),
            "{err}"
        );
        let tls = TlsConfig {
            cert_file: Some(junk.clone()),
            key_file: Some(junk),
            ..TlsConfig::default()
        };
        let err = tls_config(&tls).unwrap_err().to_string();
        assert!(err.contains("amqp.tls.cert_file"), "{err}");
        assert_eq!(
            tls_config(&TlsConfig::default()).unwrap(),
            OwnedTLSConfig::default()
        );
    }
}
