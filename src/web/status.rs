//! `GET /healthz` (for load balancers and systemd-style probes) and `GET /status` (for people
//! and scripts on the box).

use std::sync::Arc;

use axum::extract::State;
use hyper::StatusCode;

use super::{AppState, HttpResponse, json};

/// `GET /healthz`: 200 when every part is healthy, else 503, with the health report.
pub async fn healthz(State(state): State<Arc<AppState>>) -> HttpResponse {
    let report = state.health.report();
    let status = if report.healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    json(status, &serde_json::to_value(&report).unwrap_or_default())
}

/// `GET /status`: version, uptime, health and the outbox counts.
pub async fn status(State(state): State<Arc<AppState>>) -> HttpResponse {
    json(StatusCode::OK, &state.status_json().await)
}
