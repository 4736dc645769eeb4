//! `GET /healthz` (public: for load balancers and probes) and `GET /status` (admin: for people
//! and scripts).

use std::sync::Arc;

use axum::extract::State;
use hyper::StatusCode;

use super::auth::Caller;
use super::{AppState, HttpResponse, json};

/// `GET /healthz` (public): 200 when every part is healthy, else 503, with `{"healthy": bool}`
/// and nothing more: the reasons (modem names, errors) are for `/status` on the admin listener.
pub async fn healthz(State(state): State<Arc<AppState>>) -> HttpResponse {
    let healthy = state.health.report().healthy;
    let status = if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    json(status, &serde_json::json!({ "healthy": healthy }))
}

/// `GET /status`: version, uptime, health and the outbox counts, for a signed-in person or a
/// program with a token.
pub async fn status(State(state): State<Arc<AppState>>, _caller: Caller) -> HttpResponse {
    json(StatusCode::OK, &state.status_json().await)
}
