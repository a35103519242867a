//! The worker pool: one connection, one channel, one consumer, N workers.
//!
//! - [`supervisor`] connects, declares, consumes, reconnects, and drains on shutdown.
//! - [`worker`] turns a delivery into a [`Task`](crate::Task), runs the handler
//!   (catching panics, enforcing the timeout) and hands the outcome to settle.
//! - [`settle`] maps the outcome to AMQP: ack, retry copy, or dead letter —
//!   never acking the original before a copy is confirmed.

mod acks;
mod poll;
mod settle;
mod slots;
mod state;
mod supervisor;
mod worker;

pub use state::{Phase, State};

use crate::amqp::topology::Topology;
use crate::config::Config;
use crate::error::Result;
use crate::handler::Handler;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// What every worker needs, built once per pool.
struct Ctx<H> {
    handler: H,
    config: Config,
    topo: Topology,
    state: Arc<State>,
    /// Host or pod name, recorded in dead-letter headers and the connection name.
    worker_name: String,
    /// Cancelled when the drain deadline passes: workers abandon their tasks.
    hard_stop: CancellationToken,
}

/// Runs the pool with `handler` until `shutdown` is cancelled, then drains
/// (in-flight tasks finish within `pool.shutdown_timeout`) and returns.
/// Serves /livez, /readyz and /metrics on `server.listen` meanwhile.
/// Returns an error only for problems retrying cannot fix (invalid config,
/// a queue declared elsewhere with other arguments).
pub async fn run<H: Handler>(
    config: Config,
    handler: H,
    shutdown: CancellationToken,
) -> Result<()> {
    run_with_state(config, handler, shutdown, Arc::default()).await
}

/// [`run`], reporting readiness and in-flight counts through `state`.
pub async fn run_with_state<H: Handler>(
    config: Config,
    handler: H,
    shutdown: CancellationToken,
    state: Arc<State>,
) -> Result<()> {
    for warning in config.validate()? {
        tracing::warn!("{warning}");
    }
    let listener = crate::server::bind(&config.server.listen).await?;
    if let Ok(addr) = listener.local_addr() {
        info!("serving /livez /readyz /metrics on http://{addr}");
    }
    let ctx = Arc::new(Ctx {
        topo: Topology::from_config(&config),
        worker_name: worker_name(),
        hard_stop: CancellationToken::new(),
        handler,
        config,
        state,
    });
    let background = CancellationToken::new();
    let server = tokio::spawn(crate::server::serve(
        listener,
        ctx.state.clone(),
        background.clone(),
    ));
    tokio::spawn(poll::handler_ready(ctx.clone(), background.clone()));
    tokio::spawn(crate::kube::run(
        ctx.state.clone(),
        ctx.config.kube.clone(),
        background.clone(),
    ));
    let result = supervisor::supervise(ctx.clone(), shutdown).await;
    ctx.state.set_phase(Phase::Stopped);
    background.cancel();
    let _ = server.await;
    result
}

/// POD_NAME (set by the Helm chart from the downward API), else the host name.
fn worker_name() -> String {
    if let Ok(pod) = std::env::var("POD_NAME") {
        return pod;
    }
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        return String::from_utf8_lossy(&buf[..end]).into_owned();
    }
    "unknown-host".into()
}
