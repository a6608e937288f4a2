//! The daemon's HTTP endpoint (axum), on `http_listen` when it is set: `GET /metrics` answers
//! with [`crate::metrics`] in the OpenMetrics text format, which Prometheus scrapes. It shows
//! counts and per-node figures only, no process names or users; any other path is 404.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::node::Node;

/// The content type of the OpenMetrics text format.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Binds `addr` (an error names it when it cannot be bound: the daemon does not start).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on http_listen {addr}"))
}

/// Serves the endpoint forever.
pub async fn serve(node: Arc<Node>, listener: TcpListener) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(node);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "the HTTP endpoint stopped");
    }
}

async fn metrics(State(node): State<Arc<Node>>) -> Response {
    let view = match node.gossip.view().await {
        Ok(v) => v,
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    };
    let hosted = node.procs.as_ref().map(|pm| pm.ps()).unwrap_or_default();
    let text = node.metrics.render(&view, &hosted, node.gossip.traffic());
    ([(CONTENT_TYPE, OPENMETRICS)], text).into_response()
}
