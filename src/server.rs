//! The health and metrics endpoints Kubernetes and Prometheus scrape.
//!
//! - `/livez`: 200 while the process serves requests. It never looks at the
//!   broker: a broker outage must not make Kubernetes restart every pod.
//! - `/readyz`: 200 only while connected, consuming and the handler is ready;
//!   503 with the reason while connecting, reconnecting or draining.
//! - `/metrics`: Prometheus text format from Warren's own registry.

use crate::error::{Error, Result};
use crate::health::Health;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Binds `server.listen`; the error names the key and the address.
pub async fn bind(addr: &str) -> Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        Error::config(
            "server.listen",
            format!("cannot listen on {addr}: {e}; pick a free address with --listen or WARREN_SERVER_LISTEN"),
        )
    })
}

/// The routes, for tests and embedding.
pub fn router(health: Arc<Health>) -> Router {
    Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(health)
}

/// Serves until `stop` is cancelled.
pub async fn serve(listener: TcpListener, health: Arc<Health>, stop: CancellationToken) {
    let app = router(health);
    let shutdown = async move { stop.cancelled().await };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!("health/metrics server stopped: {e}");
    }
}

async fn livez() -> &'static str {
    "ok\n"
}

async fn readyz(State(health): State<Arc<Health>>) -> impl IntoResponse {
    match health.readiness() {
        Ok(()) => match health.node() {
            Some(node) => (StatusCode::OK, format!("ready: consuming from {node}\n")),
            None => (StatusCode::OK, "ready\n".to_owned()),
        },
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}

async fn metrics(State(health): State<Arc<Health>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        health.metrics.render(),
    )
}
