//! The admin HTTP port: Prometheus metrics, the probes Kubernetes asks, and the admin API
//! (`admin_api`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::http::StatusCode;
use axum::routing::get;
use starling_telemetry::Metrics;
use tokio::net::TcpListener;

/// Serves `/metrics`, `/healthz` (the process answers) and `/readyz` (every listener is up; a
/// session node owns partitions; not while draining).
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, ready: Arc<AtomicBool>, api: crate::admin_api::AdminApi) {
    let app = api
        .routes()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move { ([("content-type", "text/plain; version=0.0.4")], metrics.render()) }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.load(Ordering::Acquire);
                async move { if ready { (StatusCode::OK, "ready") } else { (StatusCode::SERVICE_UNAVAILABLE, "starting") } }
            }),
        );
    if let Err(error) = axum::serve(listener, app).await {
        tracing::error!(%error, "admin HTTP server stopped");
    }
}
