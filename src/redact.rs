//! Password redaction and URL parsing: the only place that sees raw credentials.
//!
//! Every URL Warren prints (logs, errors, `config check`) goes through
//! [`redact_url`] first, so a password can never reach a log line.

use crate::error::{Error, Result};
use lapin::uri::AMQPUri;

/// Replaces the password in `scheme://user:password@host/...` with `***`.
/// Works on malformed URLs too (they end up in error messages).
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest_start = scheme_end + 3;
    let authority_end = url[rest_start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| rest_start + i);
    let authority = &url[rest_start..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &authority[..at];
    let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
    if user.len() == userinfo.len() {
        return url.to_owned();
    }
    format!(
        "{}{user}:***{}",
        &url[..rest_start],
        &url[rest_start + at..]
    )
}

/// Parses and checks an AMQP URL; the error names the key and shows the URL redacted.
pub fn parse_amqp_url(url: &str) -> Result<AMQPUri> {
    let bad = |why: String| {
        Error::config(
            "amqp.url",
            format!(
                "'{}' is not a valid AMQP URL ({why}); expected amqp://user:password@host:5672/vhost \
                 (set --amqp-url or WARREN_AMQP_URL; write the default vhost / as %2f)",
                redact_url(url)
            ),
        )
    };
    let mut uri: AMQPUri = url.parse().map_err(bad)?;
    // amq-protocol-uri only reads DNS names; an IP literal would silently
    // become "localhost", so take the host from the URL text ourselves.
    uri.authority.host = host_of(url).ok_or_else(|| bad("no host".into()))?;
    Ok(uri)
}

/// The host part of `scheme://[userinfo@]host[:port]/...`, brackets removed for IPv6.
fn host_of(url: &str) -> Option<String> {
    let rest = &url[url.find("://")? + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = hostport.strip_prefix('[') {
        &v6[..v6.find(']')?]
    } else {
        hostport.split(':').next()?
    };
    (!host.is_empty()).then(|| host.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_only_the_password() {
        assert_eq!(
            redact_url("amqp://guest:s3cr3t@rabbit:5672/%2f"),
            "amqp://guest:***@rabbit:5672/%2f"
        );
        assert_eq!(
            redact_url("amqps://u:p@ss@h/v?heartbeat=5"),
            "amqps://u:***@h/v?heartbeat=5"
        );
        assert_eq!(redact_url("amqp://host:5672/"), "amqp://host:5672/");
        assert_eq!(redact_url("amqp://user@host/"), "amqp://user@host/");
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn parse_keeps_ip_hosts_and_hides_passwords_in_errors() {
        let uri = parse_amqp_url("amqp://guest:guest@10.1.2.3:5673/%2f").unwrap();
        assert_eq!(uri.authority.host, "10.1.2.3");
        assert_eq!(uri.authority.port, 5673);
        assert_eq!(uri.vhost, "/");
        let uri = parse_amqp_url("amqp://u:p@[::1]:5672/v").unwrap();
        assert_eq!(uri.authority.host, "::1");

        let err = parse_amqp_url("http://guest:topsecret@host/")
            .unwrap_err()
            .to_string();
        assert!(err.contains("amqp.url"), "{err}");
        assert!(err.contains("guest:***@host"), "{err}");
        assert!(!err.contains("topsecret"), "{err}");
    }
}
