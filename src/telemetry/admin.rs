//! The admin port: plain HTTP, apart from the mutual-TLS gRPC port, for what the platform around
//! the hub polls: `/metrics` (Prometheus), `/healthz` (the process is alive), `/readyz` (it
//! takes calls: the database answers and the hub is not draining), and `grpc.health.v1` over
//! plaintext HTTP/2, the same service and states as on the gRPC port, for probes that speak gRPC
//! but hold no agency certificate (the kubelet's gRPC probe).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use super::Metrics;
use crate::store::Store;

/// Whether the hub takes calls; shared by the database probe, the shutdown and the admin port.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Sets whether the hub is ready.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }

    /// Whether the hub is ready.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// What the admin handlers read.
#[derive(Debug, Clone)]
pub struct AdminState {
    /// The hub's metrics.
    pub metrics: Metrics,
    /// The store, for the gauges read at each scrape.
    pub store: Store,
    /// Readiness, for `/readyz`.
    pub ready: Readiness,
}

/// Serves the admin port until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: AdminState,
    health: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "alive\n" }))
        .route("/readyz", get(ready))
        .with_state(state)
        .merge(health);
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    // A scrape reads the gauges fresh; when the database does not answer soon, the last readings
    // stand and `quotahub_db_up` says why.
    match tokio::time::timeout(Duration::from_secs(2), state.store.stats()).await {
        Ok(Ok(stats)) => state.metrics.store_stats(stats),
        Ok(Err(error)) => tracing::debug!(%error, "metrics: cannot read the store's gauges"),
        Err(_) => tracing::debug!("metrics: the store's gauges took too long"),
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render_prometheus(),
    )
}

async fn ready(State(state): State<AdminState>) -> impl IntoResponse {
    if state.ready.get() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}
