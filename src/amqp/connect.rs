//! Opening a connection, and turning connection failures into advice.

use super::redact::{parse_amqp_url, redact_url};
use crate::config::AmqpConfig;
use crate::error::{Error, Result};
use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
use lapin::{Connection, ConnectionProperties, ErrorKind};

/// Connects once (no retries here: the supervisor owns the retry policy).
/// `name` shows up in the RabbitMQ management UI's connection list.
pub async fn connect(cfg: &AmqpConfig, name: &str) -> Result<Connection> {
    let mut uri = parse_amqp_url(&cfg.url)?;
    if uri.query.heartbeat.is_none() {
        uri.query.heartbeat = Some(cfg.heartbeat.as_secs().min(u64::from(u16::MAX)) as u16);
    }
    let props = ConnectionProperties::default().with_connection_name(name.into());
    let shown = redact_url(&cfg.url);
    match tokio::time::timeout(cfg.connect_timeout, Connection::connect_uri(uri, props)).await {
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

/// Maps a lapin connect error to a cause and a fix a user can act on.
pub fn explain(url: &str, e: &lapin::Error) -> Error {
    let (reason, fix) = match e.kind() {
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
