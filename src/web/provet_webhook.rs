//! `POST /provet/<instance>/webhook/<token>`: Provet's "new external SMS" hint.
//!
//! Provet signs nothing, so the unguessable path token is the guard, and the webhook is only
//! a hint: the text and number are always fetched from the API, so a forged call can at most
//! trigger a fetch. The id is committed to the store before the 200 goes out (Provet retries
//! anything else), and a repeated id is a no-op 200.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use hyper::StatusCode;

use super::conn::ConnInfo;
use super::{AppState, HttpResponse, json, text};

/// Why a webhook body was refused (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookBodyError {
    #[error("the body is empty: expected {{\"external_sms_id\": N}} or external_sms_id=N")]
    Empty,
    #[error("the body is not valid JSON: {0}")]
    Json(String),
    #[error("no external_sms_id in the body")]
    Missing,
    #[error("external_sms_id {0:?} is not a positive whole number")]
    NotAnId(String),
}

/// Reads the id from a JSON or form body; the content type decides, and without one JSON is
/// tried first (the docs show both encodings, PROTOCOLS.md §1).
pub fn parse_body(content_type: Option<&str>, body: &[u8]) -> Result<i64, WebhookBodyError> {
    let trimmed = body.trim_ascii();
    if trimmed.is_empty() {
        return Err(WebhookBodyError::Empty);
    }
    let ct = content_type.unwrap_or("").to_ascii_lowercase();
    let is_form = ct.starts_with("application/x-www-form-urlencoded") || (!ct.contains("json") && trimmed[0] != b'{');
    if is_form {
        let text = std::str::from_utf8(trimmed).map_err(|_| WebhookBodyError::NotAnId("(not UTF-8)".into()))?;
        let value = text
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "external_sms_id")
            .map(|(_, v)| v.trim().to_string())
            .ok_or(WebhookBodyError::Missing)?;
        return parse_id(&value);
    }
    let v: serde_json::Value = serde_json::from_slice(trimmed).map_err(|e| WebhookBodyError::Json(e.to_string()))?;
    match v.get("external_sms_id") {
        None | Some(serde_json::Value::Null) => Err(WebhookBodyError::Missing),
        Some(serde_json::Value::Number(n)) => {
            n.as_i64().filter(|i| *i > 0).ok_or_else(|| WebhookBodyError::NotAnId(n.to_string()))
        }
        Some(serde_json::Value::String(s)) => parse_id(s),
        Some(other) => Err(WebhookBodyError::NotAnId(other.to_string())),
    }
}

fn parse_id(s: &str) -> Result<i64, WebhookBodyError> {
    let shown: String = s.chars().take(40).collect();
    s.parse::<i64>().ok().filter(|i| *i > 0).ok_or(WebhookBodyError::NotAnId(shown))
}

/// Compares in time independent of where the strings differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Handles the webhook; `instance` and `token` come from the path.
pub async fn handle(
    State(state): State<Arc<AppState>>,
    Path((instance, token)): Path<(String, String)>,
    req: Request,
) -> HttpResponse {
    let (instance, token) = (instance.as_str(), token.as_str());
    let conn = req.extensions().get::<ConnInfo>().copied();
    let known = state.config.provet.iter().find(|p| p.name == instance).and_then(|p| p.webhook_token.as_ref());
    // Unknown instance, webhooks off, or a wrong token all look the same from outside.
    let Some(expected) = known else { return text(StatusCode::NOT_FOUND, "not found\n") };
    if !constant_time_eq(expected.expose().as_bytes(), token.as_bytes()) {
        if let Some(conn) = conn {
            state.outsiders.note("Provet webhook with a wrong token", conn.surface, conn.client);
        }
        return text(StatusCode::NOT_FOUND, "not found\n");
    }
    let content_type = req.headers().get(hyper::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
    let body = match super::read_body(req, state.config.http.listener.max_body_bytes).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let id = match parse_body(content_type.as_deref(), &body) {
        Ok(id) => id,
        Err(e) => {
            if let Some(conn) = conn {
                state.outsiders.note(
                    "Provet webhook with a body that is not an external SMS id",
                    conn.surface,
                    conn.client,
                );
            }
            return text(StatusCode::BAD_REQUEST, format!("{e}\n"));
        }
    };
    let inst = instance.to_string();
    let stored = state.store.call(move |db| db.insert_received("provet", &inst, id)).await;
    match stored {
        Ok((outbox_id, new)) => {
            if new {
                tracing::info!(instance, external_sms_id = id, outbox_id, "Provet webhook: new external SMS");
                crate::outbound::Wake::all(&state.wake.fetch);
            } else {
                tracing::debug!(instance, external_sms_id = id, "Provet webhook repeated; nothing to do");
            }
            json(StatusCode::OK, &serde_json::json!({"ok": true, "outbox_id": outbox_id, "new": new}))
        }
        Err(e) => {
            // Not 200: Provet retries, and the poller catches up anyway.
            tracing::error!(instance, error = %e, "could not store a Provet webhook");
            text(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable, retry later\n")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_form_bodies_are_accepted() {
        let ok: &[(Option<&str>, &str, i64)] = &[
            (Some("application/json"), r#"{"external_sms_id": 123}"#, 123),
            (Some("application/json; charset=utf-8"), r#"{"external_sms_id": "77"}"#, 77),
            (Some("application/x-www-form-urlencoded"), "external_sms_id=5", 5),
            (Some("application/x-www-form-urlencoded"), "other=1&external_sms_id=9", 9),
            (None, r#" {"external_sms_id": 42, "extra": true} "#, 42),
            (None, "external_sms_id=8", 8),
        ];
        for (ct, body, id) in ok {
            assert_eq!(parse_body(*ct, body.as_bytes()), Ok(*id), "{body}");
        }
    }

    #[test]
    fn bad_bodies_say_what_is_wrong() {
        let bad: &[(Option<&str>, &str, &str)] = &[
            (None, "", "empty"),
            (Some("application/json"), "{", "not valid JSON"),
            (Some("application/json"), r#"{"id": 1}"#, "no external_sms_id"),
            (Some("application/json"), r#"{"external_sms_id": -1}"#, "not a positive"),
            (Some("application/json"), r#"{"external_sms_id": 1.5}"#, "not a positive"),
            (Some("application/json"), r#"{"external_sms_id": [1]}"#, "not a positive"),
            (Some("application/x-www-form-urlencoded"), "external_sms_id=abc", "\"abc\""),
            (Some("application/x-www-form-urlencoded"), "x=1", "no external_sms_id"),
        ];
        for (ct, body, expected) in bad {
            let err = parse_body(*ct, body.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(expected), "{body}: {err}");
        }
    }

    #[test]
    fn token_comparison_needs_equal_bytes() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
