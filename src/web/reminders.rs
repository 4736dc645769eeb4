//! `POST /provet/<instance>/reminders`: Provet's custom-integration button on the reminders
//! page ("Send HTTP request"), carrying the selected reminder ids (seed 001).
//!
//! The form body (or the query string; both are read, query first) is checked with
//! [`crate::provet::custom_integration::verify`] against `[custom_integration]`: a bad hash or
//! a stale timestamp is 403 with the reason, a body that cannot be read is 400. Each id is
//! queued as a `received` outbox row and the Provet worker fetches, sends and reports it.
//!
//! # Which kind of reminder
//! The button does not say whether its ids are appointment reminders or reminders with
//! `send_method` 4, so the parameter `kind` does: `appointment_reminder` (the default) or
//! `reminder`. Set it in the button's URL in Provet, one button per kind, e.g.
//! `https://sms.example/provet/helsinki/reminders?kind=reminder`. `kind` is not covered by the
//! verification hash (Provet hashes only the timestamp), and it does not need to be: a forged
//! kind at most fetches an object of the other kind, which Provet then refuses or describes.
//!
//! The outbox key (kind, instance, id) makes a second click on the same reminders a no-op.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use hyper::StatusCode;

use super::{AppState, HttpResponse, json, text};
use crate::provet::ReminderKind;
use crate::provet::custom_integration::verify;

/// The parameter that chooses the reminder kind.
pub const KIND_PARAM: &str = "kind";

/// Reads `kind` from the parameters: absent means appointment reminders.
pub fn reminder_kind(params: &[(String, String)]) -> Result<ReminderKind, String> {
    match params.iter().find(|(k, _)| k == KIND_PARAM) {
        None => Ok(ReminderKind::AppointmentReminder),
        Some((_, v)) => ReminderKind::parse(v.trim()).ok_or_else(|| {
            format!(
                "`{KIND_PARAM}` must be appointment_reminder or reminder, got {:?}",
                v.chars().take(40).collect::<String>()
            )
        }),
    }
}

/// Handles the button request for `instance`.
pub async fn handle(State(state): State<Arc<AppState>>, Path(instance): Path<String>, req: Request) -> HttpResponse {
    let instance = instance.as_str();
    let (Some(ci), true) =
        (state.config.custom_integration.as_ref(), state.config.provet.iter().any(|p| p.name == instance))
    else {
        return text(StatusCode::NOT_FOUND, "not found\n");
    };
    let mut params: Vec<(String, String)> =
        req.uri().query().map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default();
    let body = match super::read_body(req, state.config.http.listener.max_body_bytes).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    if std::str::from_utf8(&body).is_err() {
        return text(StatusCode::BAD_REQUEST, "the body is not a UTF-8 form\n");
    }
    params.extend(form_urlencoded::parse(&body).into_owned());
    let kind = match reminder_kind(&params) {
        Ok(k) => k,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
    let ids = match verify(&params, ci, crate::store::now_ms() / 1000) {
        Ok(ids) => ids,
        Err(e) => {
            tracing::warn!(instance, error = %e, "custom-integration request refused");
            return text(StatusCode::FORBIDDEN, format!("{e}\n"));
        }
    };
    let inst = instance.to_string();
    let ids2 = ids.clone();
    let stored = state
        .store
        .call(move |db| {
            let mut new = Vec::new();
            for id in &ids2 {
                let (_, is_new) = db.insert_received(kind.as_str(), &inst, *id)?;
                if is_new {
                    new.push(*id);
                }
            }
            db.log_webhook_call(
                "in",
                &format!("provet/{inst}/reminders"),
                Some(200),
                Some(&format!("{} ids", ids2.len())),
            )?;
            Ok(new)
        })
        .await;
    match stored {
        Ok(new) => {
            tracing::info!(instance, kind = kind.as_str(), selected = ids.len(), new = new.len(), "reminders queued");
            if !new.is_empty() {
                crate::outbound::Wake::all(&state.wake.fetch);
            }
            json(StatusCode::OK, &serde_json::json!({"ok": true, "kind": kind.as_str(), "queued": ids, "new": new}))
        }
        Err(e) => {
            tracing::error!(instance, error = %e, "could not store reminder ids");
            text(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable, retry later\n")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_kind_defaults_to_appointment_reminders_and_bad_kinds_are_named() {
        assert_eq!(reminder_kind(&p(&[("id", "1")])), Ok(ReminderKind::AppointmentReminder));
        assert_eq!(reminder_kind(&p(&[("kind", "reminder")])), Ok(ReminderKind::Reminder));
        assert_eq!(reminder_kind(&p(&[("kind", "appointment_reminder")])), Ok(ReminderKind::AppointmentReminder));
        let err = reminder_kind(&p(&[("kind", "sms")])).unwrap_err();
        assert!(err.contains("\"sms\""), "{err}");
    }
}
