//! The composition root: the one place that starts Warren's parts side by side.
//!
//! ```text
//! App::run ─┬─ pool (supervisor → workers → settle)     reports into Health
//!           ├─ queue-depth poller (on the pool's spare channel)
//!           ├─ handler readiness poller                  → Health
//!           ├─ pod-deletion-cost updater (kube.pod_deletion_cost)
//!           ├─ orphan reaper, as PID 1 only (opt-in; the binary turns it on)
//!           └─ HTTP server /livez /readyz /metrics (opt-in; the binary turns it on)
//! ```
//! The parts never start each other: each takes what it needs (the shared
//! [`Health`], the config, a stop token) from here.

use crate::config::{Config, Loaded};
use crate::error::Result;
use crate::handler::Handler;
use crate::health::{Health, Phase};
use crate::pool::Pool;
use crate::{pod_cost, queue_depth, reaper, server};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// A pool with its helpers, built from a config and a handler.
pub struct App<H> {
    config: Config,
    /// Warnings of a config that was validated already (by `config::load`);
    /// None: validate at `run`.
    checked: Option<Vec<String>>,
    handler: H,
    health: Arc<Health>,
    /// Serve /livez, /readyz and /metrics on `server.listen`.
    http_server: bool,
    /// Reap orphaned processes when running as PID 1. Off for library
    /// users: their process may wait for children the reaper cannot know.
    reap_orphans: bool,
}

impl<H: Handler> App<H> {
    /// An app that runs `handler` on the queue `config` names. No HTTP
    /// server unless [`serve_http`](App::serve_http) is called: a library
    /// user may have their own.
    pub fn new(config: Config, handler: H) -> Self {
        App {
            config,
            checked: None,
            handler,
            health: Arc::default(),
            http_server: false,
            reap_orphans: false,
        }
    }

    /// An app for a config [`config::load`](crate::config::load) validated
    /// already: it is trusted as is, and its warnings are logged at `run`.
    pub fn from_loaded(loaded: Loaded, handler: H) -> Self {
        App {
            checked: Some(loaded.warnings),
            ..App::new(loaded.config, handler)
        }
    }

    /// Also serve /livez, /readyz and /metrics on `server.listen`.
    pub fn serve_http(mut self) -> Self {
        self.http_server = true;
        self
    }

    /// Also reap orphaned processes when this process is PID 1 (a container
    /// without an init); see [`reaper`] for how children Warren waits for
    /// itself are left alone.
    pub fn reap_orphans(mut self) -> Self {
        self.reap_orphans = true;
        self
    }

    /// Readiness and metrics, for library users who report them their own way.
    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    /// Runs until `shutdown` is cancelled, then drains (in-flight tasks finish
    /// within `pool.shutdown_timeout`) and returns. Fails only for problems a
    /// retry cannot fix: invalid config, a port in use, a queue declared
    /// elsewhere with other arguments.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<()> {
        crate::crypto::install_crypto_provider();
        let warnings = match self.checked.take() {
            Some(warnings) => warnings,
            None => self.config.validate()?,
        };
        for warning in warnings {
            warn!("{warning}");
        }
        let listener = match self.http_server {
            true => Some(server::bind(&self.config.server.listen).await?),
            false => None,
        };
        let App {
            config,
            handler,
            health,
            reap_orphans,
            ..
        } = self;
        let handler = Arc::new(handler);
        let background = CancellationToken::new();
        let mut server = None;
        if let Some(listener) = listener {
            if let Ok(addr) = listener.local_addr() {
                info!("serving /livez /readyz /metrics on http://{addr}");
            }
            let serve = server::serve(listener, health.clone(), background.clone());
            server = Some(tokio::spawn(serve));
        }
        let pool = Pool::new(config.clone(), health.clone());
        tokio::spawn(queue_depth::run(
            health.clone(),
            queue_depth::queues(pool.topology()),
            config.server.queue_poll_interval,
            pool.observer_channels(),
            background.clone(),
        ));
        tokio::spawn(handler_readiness(
            handler.clone(),
            health.clone(),
            background.clone(),
        ));
        tokio::spawn(pod_cost::run(
            health.clone(),
            config.kube.clone(),
            background.clone(),
        ));
        start_reaper(reap_orphans, &background);
        let result = on_workers(pool.run(handler, shutdown)).await;
        health.set_phase(Phase::Stopped);
        background.cancel();
        if let Some(server) = server {
            let _ = server.await;
        }
        result
    }
}

/// Runs `handler` on the queue `config` names until `shutdown`, without an
/// HTTP server; see [`App`] for more control.
pub async fn run<H: Handler>(
    config: Config,
    handler: H,
    shutdown: CancellationToken,
) -> Result<()> {
    App::new(config, handler).run(shutdown).await
}

/// Runs the pool on the runtime's workers, not inline: the caller's future
/// may be `block_on`'s (the binary's main), which runs on a thread of its
/// own, and every delivery would then cross threads twice more.
async fn on_workers(pool: impl Future<Output = Result<()>> + Send + 'static) -> Result<()> {
    match tokio::spawn(pool).await {
        Ok(result) => result,
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            // Cancelled: only a runtime shutting down does that, and it ends us too.
            Err(_) => Ok(()),
        },
    }
}

/// The orphan reaper, when it was asked for and this process is PID 1.
fn start_reaper(asked: bool, stop: &CancellationToken) {
    if asked && reaper::is_init() {
        info!("running as PID 1: reaping orphaned processes");
        tokio::spawn(reaper::run(stop.clone()));
    }
}

/// Asks the handler whether it is ready every couple of seconds, so
/// `/readyz` reflects e.g. an HTTP sidecar that is not up yet.
async fn handler_readiness<H: Handler>(
    handler: Arc<H>,
    health: Arc<Health>,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(Duration::from_secs(2));
    let mut last_ok = true;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let result = handler.ready().await;
        match (&result, last_ok) {
            (Err(why), true) => warn!("handler not ready: {why}"),
            (Ok(()), false) => info!("handler ready again"),
            _ => {}
        }
        last_ok = result.is_ok();
        health.set_handler_problem(result.err());
    }
}
