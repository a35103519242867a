//! `warren status`: the queue's depth and consumers, like
//! `rabbitmqctl list_queues name messages_ready messages_unacknowledged consumers`.

use crate::amqp;
use crate::amqp::topology::{Topology, inspect};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::redact::redact_url;
use std::fmt::Write;

/// One row of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStatus {
    /// Queue name.
    pub name: String,
    /// Messages waiting to be delivered.
    pub ready: u32,
    /// Deliveries handed out and not yet acked (management API only).
    pub unacked: Option<u64>,
    /// Consumers attached.
    pub consumers: u32,
}

/// Reads the work queue, its retry queues and the dead-letter queue.
/// Queues that do not exist (yet) are left out, except the work queue.
pub async fn queue_status(config: &Config) -> Result<Vec<QueueStatus>> {
    let (conn, _node) = amqp::connect(&config.amqp, "warren status").await?;
    let topo = Topology::from_config(config);
    let mut names = vec![topo.queue.clone()];
    names.extend(topo.retry.iter().map(|(_, name)| name.clone()));
    names.push(topo.dead.clone());
    let mut rows = Vec::new();
    for (i, name) in names.iter().enumerate() {
        // A failed passive declare closes the channel: use a fresh one each time.
        let limit = config.amqp.connect_timeout;
        let channel = amqp::open_channel(&conn, limit).await?;
        let inspected = amqp::within(limit, "inspecting a queue", inspect(&channel, name)).await;
        if channel.status().connected() {
            let _ = channel.close(200, "done".into()).await;
        }
        match inspected {
            Ok((ready, consumers)) => rows.push(QueueStatus {
                name: name.clone(),
                ready,
                unacked: None,
                consumers,
            }),
            Err(Error::QueueMissing { .. }) if i > 0 => {}
            Err(Error::QueueMissing { queue }) => {
                let _ = conn.close(200, "done".into()).await;
                return Err(Error::QueueMissing { queue });
            }
            Err(e) => return Err(e),
        }
    }
    let _ = conn.close(200, "done".into()).await;
    if let Some(base) = &config.amqp.management_url {
        let first = config.amqp.url.first().unwrap_or_default();
        let vhost = crate::redact::parse_amqp_url(first)?.vhost;
        for row in &mut rows {
            row.unacked = Some(unacked(base, &vhost, &row.name).await?);
        }
    }
    Ok(rows)
}

/// `messages_unacknowledged` from the management API
/// (`GET /api/queues/<vhost>/<queue>`), which AMQP cannot report.
async fn unacked(base: &str, vhost: &str, queue: &str) -> Result<u64> {
    let shown = redact_url(base);
    let fail = |why: String| {
        Error::Connect {
        url: shown.clone(),
        reason: why,
        fix: "check amqp.management_url (--management-url): http://user:password@host:15672 with the management plugin enabled".into(),
    }
    };
    let mut url = reqwest::Url::parse(base).map_err(|e| fail(format!("not a URL ({e})")))?;
    let (user, password) = (url.username().to_owned(), url.password().map(str::to_owned));
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.path_segments_mut()
        .map_err(|()| fail("not a base URL".into()))?
        .pop_if_empty()
        .extend(["api", "queues", vhost, queue]);
    let mut request = reqwest::Client::new().get(url);
    if !user.is_empty() {
        request = request.basic_auth(user, password);
    }
    let response = request
        .send()
        .await
        .map_err(|e| fail(e.without_url().to_string()))?;
    let status = response.status();
    if !status.is_success() {
        return Err(fail(format!("the management API answered {status}")));
    }
    let body = response
        .text()
        .await
        .map_err(|e| fail(e.without_url().to_string()))?;
    let info: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| fail(format!("unexpected answer ({e})")))?;
    // Freshly declared queues may not report stats yet: that is zero.
    Ok(info["messages_unacknowledged"].as_u64().unwrap_or(0))
}

/// Renders rows as an aligned table.
pub fn render(rows: &[QueueStatus]) -> String {
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(4).max(4);
    let mut out = format!(
        "{:width$}  messages_ready  messages_unacknowledged  consumers\n",
        "name"
    );
    for r in rows {
        let unacked = r.unacked.map_or_else(|| "-".to_owned(), |n| n.to_string());
        let _ = writeln!(
            out,
            "{:width$}  {:>14}  {:>23}  {:>9}",
            r.name, r.ready, unacked, r.consumers
        );
    }
    if rows.iter().any(|r| r.unacked.is_none()) {
        out.push_str("(messages_unacknowledged: AMQP cannot report it; give --management-url)\n");
    }
    out
}
