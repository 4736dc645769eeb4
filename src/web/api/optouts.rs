//! `GET|POST /api/v1/optouts`, `DELETE /api/v1/optouts/{number}`: the opt-out list (STOP adds
//! to it, START removes). Changes are recorded in the audit list with the caller.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use hyper::StatusCode;
use serde::Deserialize;

use super::{Unreadable, actor, error, store_unavailable};
use crate::phone::PhoneNumber;
use crate::web::auth::Caller;
use crate::web::{AppState, HttpResponse, json};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddRequest {
    number: String,
}

fn parse_number(state: &AppState, raw: &str) -> Result<PhoneNumber, Unreadable> {
    PhoneNumber::parse(raw, state.config.default_country.as_deref()).map_err(|e| Unreadable(format!("number: {e}")))
}

/// `GET /api/v1/optouts`: newest first (no parameters; an unknown one is a 400, as everywhere).
pub async fn list(State(state): State<Arc<AppState>>, _caller: Caller, req: Request) -> HttpResponse {
    if let Err(e) = super::query(req.uri().query(), &[]) {
        return e.into();
    }
    match state.store.read(|db| db.list_optouts()).await {
        Ok(rows) => {
            let list: Vec<_> = rows
                .into_iter()
                .map(|(number, source, created_at)| {
                    serde_json::json!({"number": number, "source": source, "created_at": created_at})
                })
                .collect();
            json(StatusCode::OK, &serde_json::json!({"optouts": list}))
        }
        Err(e) => store_unavailable(&e),
    }
}

/// `POST /api/v1/optouts` `{"number"}`: 201 when added, 200 when it was already there.
pub async fn add(State(state): State<Arc<AppState>>, caller: Caller, req: Request) -> HttpResponse {
    let body: AddRequest = match super::read_json(req).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let number = match parse_number(&state, &body.number) {
        Ok(n) => n,
        Err(e) => return e.into(),
    };
    let (who, n) = (actor(&caller), number.as_str().to_string());
    match state.store.call(move |db| db.api_optout_add(&who, &n)).await {
        Ok(added) => {
            if added {
                tracing::info!(number = %number.masked(), caller = %caller.name(), "API: number added to the opt-out list");
            }
            let status = if added { StatusCode::CREATED } else { StatusCode::OK };
            json(status, &serde_json::json!({"number": number.as_str(), "added": added}))
        }
        Err(e) => store_unavailable(&e),
    }
}

/// `DELETE /api/v1/optouts/{number}`: 200 when removed, 404 when it was not on the list.
pub async fn remove(State(state): State<Arc<AppState>>, caller: Caller, Path(raw): Path<String>) -> HttpResponse {
    let number = match parse_number(&state, &raw) {
        Ok(n) => n,
        Err(e) => return e.into(),
    };
    let (who, n) = (actor(&caller), number.as_str().to_string());
    match state.store.call(move |db| db.api_optout_remove(&who, &n)).await {
        Ok(true) => {
            tracing::info!(number = %number.masked(), caller = %caller.name(), "API: number removed from the opt-out list");
            json(StatusCode::OK, &serde_json::json!({"number": number.as_str(), "removed": true}))
        }
        Ok(false) => {
            error(StatusCode::NOT_FOUND, "not_found", format!("{} is not on the opt-out list", number.as_str()))
        }
        Err(e) => store_unavailable(&e),
    }
}
