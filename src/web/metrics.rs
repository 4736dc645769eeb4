//! `GET /metrics` (admin: a token, or a signed-in person) and the middleware that counts every
//! answered request in `smshub_http_requests_total{listener,route,status}`.
//!
//! The route label is the matched route template (`/api/v1/messages/{id}`), never the raw
//! path, so outsiders cannot grow the label set; a request no route matched is `unmatched`.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use hyper::StatusCode;

use super::auth::{Caller, conn_info};
use super::{AppState, HttpResponse, respond};
use crate::metrics::{CONTENT_TYPE, Scrape};

/// `GET /metrics`.
pub async fn metrics(State(state): State<Arc<AppState>>, _caller: Caller) -> HttpResponse {
    let pending = state.store.read(|db| db.pending_figures()).await;
    let pending = match pending {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "metrics: the database did not answer");
            return super::text(StatusCode::SERVICE_UNAVAILABLE, "the database did not answer; try again\n");
        }
    };
    let scrape = Scrape {
        pending,
        now_ms: crate::store::now_ms(),
        db_free_bytes: crate::store::free_bytes(&state.config.store.path).ok(),
    };
    respond(StatusCode::OK, CONTENT_TYPE, state.metrics.render(&scrape))
}

/// The route template a request matched, carried out on its response.
#[derive(Debug, Clone)]
struct RouteTemplate(String);

/// A route layer: marks the response with the matched route's template.
pub async fn mark_route(req: Request, next: Next) -> HttpResponse {
    let route = req.extensions().get::<MatchedPath>().map(|m| RouteTemplate(m.as_str().to_string()));
    let mut resp = next.run(req).await;
    if let Some(route) = route {
        resp.extensions_mut().insert(route);
    }
    resp
}

/// The outer layer: counts the answered request under its route (or `unmatched`).
pub async fn count_requests(State(state): State<Arc<AppState>>, req: Request, next: Next) -> HttpResponse {
    let listener = conn_info(req.extensions()).surface.as_str();
    let resp = next.run(req).await;
    let route = resp.extensions().get::<RouteTemplate>().map_or("unmatched", |r| r.0.as_str());
    state.metrics.http_request(listener, route, resp.status().as_u16());
    resp
}
