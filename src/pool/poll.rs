//! Background pollers: queue depths for the `warren_queue_*` gauges and the
//! handler's own readiness for `/readyz`.

use super::Ctx;
use crate::amqp::topology::inspect;
use crate::handler::Handler;
use lapin::Channel;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Polls ready/consumer counts of the work, retry and dead queues with
/// passive declares on `channel` (its own, not the consumer's: a failed
/// passive declare closes the channel), until `stop`.
pub(super) async fn queues<H: Handler>(
    ctx: Arc<Ctx<H>>,
    channel: Channel,
    stop: CancellationToken,
) {
    let mut names = vec![ctx.topo.queue.clone()];
    if ctx.topo.declare {
        names.extend(ctx.topo.retry.iter().map(|(_, n)| n.clone()));
        names.push(ctx.topo.dead.clone());
    }
    let mut ticker = tokio::time::interval(ctx.config.server.queue_poll_interval);
    let metrics = &ctx.state.metrics;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        for name in &names {
            match inspect(&channel, name).await {
                Ok((ready, consumers)) => {
                    metrics
                        .queue_ready
                        .with_label_values(&[name])
                        .set(ready.into());
                    metrics
                        .queue_consumers
                        .with_label_values(&[name])
                        .set(consumers.into());
                }
                Err(e) => {
                    // The channel is closed now; the next session polls again.
                    debug!("stopped polling queue depths: '{name}': {e}");
                    return;
                }
            }
        }
    }
}

/// Asks the handler whether it is ready every couple of seconds, so
/// `/readyz` reflects e.g. an HTTP sidecar that is not up yet.
pub(super) async fn handler_ready<H: Handler>(ctx: Arc<Ctx<H>>, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(std::time::Duration::from_secs(2));
    let mut last_ok = true;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let result = ctx.handler.ready().await;
        match (&result, last_ok) {
            (Err(why), true) => warn!("handler not ready: {why}"),
            (Ok(()), false) => info!("handler ready again"),
            _ => {}
        }
        last_ok = result.is_ok();
        ctx.state.set_handler_problem(result.err());
    }
}
