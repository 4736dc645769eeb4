//! `POST /api/v1/messages` (send), `GET /api/v1/messages/{id}`, `GET /api/v1/messages`.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use hyper::StatusCode;
use hyper::header::{HeaderValue, RETRY_AFTER};
use serde::Deserialize;

use super::{Unreadable, actor, bad_request, error, store_unavailable};
use crate::phone::PhoneNumber;
use crate::store::{ApiSendOutcome, OutboxDetail, OutboxFilter, OutboxState, OutboxSummary};
use crate::web::auth::Caller;
use crate::web::{AppState, HttpResponse, json};

/// The most parts an API message may have.
pub const MAX_PARTS: usize = 10;

/// The longest idempotency key, in bytes.
pub const MAX_KEY_LEN: usize = 200;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendRequest {
    to: String,
    text: String,
    idempotency_key: Option<String>,
}

/// Why a text cannot be sent through the API, if it cannot.
pub fn text_problem(text: &str) -> Option<String> {
    if text.trim().is_empty() {
        return Some("text is empty".into());
    }
    // No part holds more than 160 characters: a longer text is over without splitting it.
    let chars = text.chars().count();
    if chars > MAX_PARTS * 160 {
        return Some(format!("text has {chars} characters: more than {MAX_PARTS} SMS parts"));
    }
    match crate::pdu::split_text(text) {
        Ok((_, parts)) if parts.len() > MAX_PARTS => {
            Some(format!("text needs {} SMS parts; at most {MAX_PARTS}", parts.len()))
        }
        Ok(_) => None,
        Err(e) => Some(format!("text cannot be encoded as SMS: {e}")),
    }
}

/// Why an idempotency key is refused, if it is.
fn key_problem(key: &str) -> Option<String> {
    if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Some(format!(
            "idempotency_key must be 1 to {MAX_KEY_LEN} visible ASCII characters (no spaces), e.g. a UUID"
        ));
    }
    None
}

/// `POST /api/v1/messages`.
pub async fn send(State(state): State<Arc<AppState>>, caller: Caller, req: Request) -> HttpResponse {
    let body: SendRequest = match super::read_json(req).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let to = match PhoneNumber::parse(&body.to, state.config.default_country.as_deref()) {
        Ok(n) => n,
        Err(e) => return bad_request(format!("to: {e}")),
    };
    if let Some(problem) = text_problem(&body.text) {
        return bad_request(problem);
    }
    if let Some(problem) = body.idempotency_key.as_deref().and_then(key_problem) {
        return bad_request(problem);
    }
    let who = actor(&caller);
    let per_hour = state.config.api.per_hour;
    let (to2, text, key, who2) = (to.clone(), body.text, body.idempotency_key, who.clone());
    let outcome = state.store.call(move |db| db.api_send(&who2, &to2, &text, key.as_deref(), per_hour)).await;
    match outcome {
        Ok(ApiSendOutcome::Queued(id)) => {
            tracing::info!(outbox_id = id, to = %to.masked(), caller = %who, "API: message queued");
            state.wake.send.notify_one();
            json(StatusCode::ACCEPTED, &serde_json::json!({"id": id, "state": OutboxState::Fetched.as_str()}))
        }
        Ok(ApiSendOutcome::Repeated(id, st)) => {
            tracing::debug!(outbox_id = id, caller = %who, "API: repeated idempotency key; nothing new queued");
            let mut resp = json(StatusCode::ACCEPTED, &serde_json::json!({"id": id, "state": st.as_str()}));
            resp.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
            resp
        }
        Ok(ApiSendOutcome::KeyConflict(id)) => error(
            StatusCode::CONFLICT,
            "idempotency_key_reused",
            format!("idempotency_key was used for message {id} with another number or text; use a new key"),
        ),
        Ok(ApiSendOutcome::OptedOut) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "opted_out",
            format!("{} is on the opt-out list (they sent STOP); nothing was queued", to.as_str()),
        ),
        Ok(ApiSendOutcome::RateLimited { per_hour, retry_after_s }) => {
            let mut resp = error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "{per_hour} API messages in the last hour: [api] per_hour is {per_hour}; try again in {retry_after_s} s"
                ),
            );
            resp.headers_mut().insert(RETRY_AFTER, HeaderValue::from(retry_after_s));
            resp
        }
        Err(e) => store_unavailable(&e),
    }
}

/// A message id from the path: a positive whole number.
fn parse_id(raw: &str) -> Result<i64, Unreadable> {
    raw.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| {
        let shown: String = raw.chars().take(40).collect();
        Unreadable(format!("{shown:?} is not a message id (a positive whole number)"))
    })
}

fn summary_json(s: &OutboxSummary) -> serde_json::Value {
    serde_json::json!({
        "id": s.id,
        "to": s.recipient,
        "state": s.state.as_str(),
        "source": s.source,
        "provet_instance": s.instance,
        "external_sms_id": s.external_id,
        "parts": s.parts,
        "parts_acked": s.parts_acked,
        "created_at": s.created_at,
        "updated_at": s.updated_at,
        "error": s.fail_reason.as_ref().or(s.last_error.as_ref()),
    })
}

fn detail_json(d: &OutboxDetail) -> serde_json::Value {
    let mut v = summary_json(&d.summary);
    let sent = matches!(d.summary.outcome.as_deref(), Some("sent"));
    let sent_at = sent.then(|| d.part_rows.iter().filter_map(|p| p.acked_at).max()).flatten();
    v["text"] = serde_json::json!(d.body);
    v["sent_at"] = serde_json::json!(sent_at);
    v["parts"] = d
        .part_rows
        .iter()
        .map(|p| {
            serde_json::json!({
                "seq": p.seq,
                "state": p.state,
                "modem": p.modem,
                "message_ref": p.message_ref,
                "acked_at": p.acked_at,
                "delivery_status": p.delivery_status,
                "delivered_at": p.delivered_at,
                "error": p.last_error,
            })
        })
        .collect();
    v
}

/// `GET /api/v1/messages/{id}`.
pub async fn one(State(state): State<Arc<AppState>>, _caller: Caller, Path(raw): Path<String>) -> HttpResponse {
    let id = match parse_id(&raw) {
        Ok(id) => id,
        Err(e) => return e.into(),
    };
    match state.store.read(move |db| db.get_outbox(id)).await {
        Ok(Some(d)) => json(StatusCode::OK, &detail_json(&d)),
        Ok(None) => error(StatusCode::NOT_FOUND, "not_found", format!("no message {id}")),
        Err(e) => store_unavailable(&e),
    }
}

/// `GET /api/v1/messages?state=&limit=`: newest first.
pub async fn list(State(state): State<Arc<AppState>>, _caller: Caller, req: Request) -> HttpResponse {
    let params = match super::query(req.uri().query(), &["state", "limit"]) {
        Ok(p) => p,
        Err(e) => return e.into(),
    };
    let limit = match super::limit(&params) {
        Ok(l) => l,
        Err(e) => return e.into(),
    };
    let filter_state = match params.iter().find(|(k, _)| k == "state") {
        None => None,
        Some((_, v)) => match v.parse::<OutboxState>() {
            Ok(s) => Some(s),
            Err(e) => {
                let all: Vec<&str> = OutboxState::ALL.iter().map(|s| s.as_str()).collect();
                return bad_request(format!("state: {e}; one of {}", all.join(", ")));
            }
        },
    };
    let filter = OutboxFilter { state: filter_state, limit: Some(limit), ..Default::default() };
    match state.store.read(move |db| db.list_outbox(&filter)).await {
        Ok(rows) => {
            json(StatusCode::OK, &serde_json::json!({"messages": rows.iter().map(summary_json).collect::<Vec<_>>()}))
        }
        Err(e) => store_unavailable(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_refused_when_empty_or_over_ten_parts() {
        assert!(text_problem("Rex is ready for pick-up").is_none());
        assert!(text_problem(&"a".repeat(1530)).is_none(), "ten GSM-7 parts of 153");
        assert!(text_problem(&"a".repeat(1531)).unwrap().contains("11 SMS parts"));
        assert!(text_problem(&"ä".repeat(1530)).is_none(), "ä is GSM-7");
        assert!(text_problem(&"ж".repeat(670)).is_none(), "ten UCS-2 parts of 67");
        assert!(text_problem(&"ж".repeat(671)).unwrap().contains("11 SMS parts"));
        assert!(text_problem(&"x".repeat(1_000_000)).unwrap().contains("characters"));
        for empty in ["", "   ", "\n\t"] {
            assert_eq!(text_problem(empty).as_deref(), Some("text is empty"));
        }
    }

    #[test]
    fn ids_and_keys_are_bounded() {
        assert_eq!(parse_id("42").ok(), Some(42));
        for bad in ["0", "-1", "9223372036854775808", "1e3", "abc", ""] {
            assert!(parse_id(bad).is_err(), "{bad}");
        }
        assert!(key_problem("4f1c2a9e-0b7d-4b0e-9c55-1d2e3f405162").is_none());
        for bad in ["", "has space", "tab\t", "ä", &"k".repeat(201)] {
            assert!(key_problem(bad).is_some(), "{bad:?}");
        }
    }
}
