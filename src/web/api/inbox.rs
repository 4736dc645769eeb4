//! `GET /api/v1/inbox?limit=&since=`: received messages.
//!
//! `since` is a cursor, not a time: an inbox id. With it, the messages received after that
//! one, oldest first; a program polls with the last id it saw and never misses or repeats one
//! (two messages can share a millisecond, ids cannot). Without it, the newest, newest first.

use std::sync::Arc;

use axum::extract::{Request, State};
use hyper::StatusCode;

use super::{bad_request, store_unavailable};
use crate::web::auth::Caller;
use crate::web::{AppState, HttpResponse, json};

/// `GET /api/v1/inbox`.
pub async fn list(State(state): State<Arc<AppState>>, _caller: Caller, req: Request) -> HttpResponse {
    let params = match super::query(req.uri().query(), &["limit", "since"]) {
        Ok(p) => p,
        Err(e) => return e.into(),
    };
    let limit = match super::limit(&params) {
        Ok(l) => l,
        Err(e) => return e.into(),
    };
    let since = match params.iter().find(|(k, _)| k == "since") {
        None => None,
        Some((_, v)) => match v.parse::<i64>().ok().filter(|n| *n >= 0) {
            Some(n) => Some(n),
            None => return bad_request("since must be an inbox id (a whole number, 0 or more)"),
        },
    };
    match state.store.read(move |db| db.api_inbox(since, limit)).await {
        Ok(rows) => {
            let next = rows.iter().map(|r| r.id).max().or(since);
            json(StatusCode::OK, &serde_json::json!({"messages": rows, "next_since": next}))
        }
        Err(e) => store_unavailable(&e),
    }
}
