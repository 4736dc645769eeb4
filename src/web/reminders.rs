//! `POST` (or `GET`) `/provet/<instance>/reminders`: Provet's custom-integration button on the
//! reminders page ("Send HTTP request"), carrying the selected reminder ids (seed 001).
//!
//! The form body (or the query string; both are read, query first) is checked with
//! [`crate::provet::custom_integration::verify`] against the instance's
//! `[provet.custom_integration]` (else the top-level `[custom_integration]`): a bad hash or a
//! stale timestamp is 403 with the reason, and so is an unknown instance (it is checked against a
//! salt nobody knows, so it fails the same way). More than
//! [`crate::provet::custom_integration::MAX_IDS`] reminders is 413. A verified request is
//! accepted once: the same (timestamp, verification) again is 403, so a captured request cannot
//! be replayed. All ids of a request are queued as `received` outbox rows in one transaction and
//! the Provet worker fetches, sends and reports them.
//!
//! # Which kind of reminder
//! The button does not say whether its ids are patient reminders or appointment reminders, so
//! the parameter `kind` does: `reminder` (the default: the reminders page lists patient
//! reminders, docs/provet.md §2.5) or `appointment_reminder`, which must be written in the
//! button's URL, e.g. `https://sms.example/provet/helsinki/reminders?kind=appointment_reminder`.
//! Wave 1 defaulted to appointment reminders: a reminders-page click could then mark and send an
//! unrelated appointment reminder that happened to share the numeric id. `kind` is not covered by
//! the verification hash (Provet hashes only the timestamp), and it does not need to be: a forged
//! kind at most fetches an object of the other kind, which Provet then refuses or describes, and
//! every reminder passes the same checks before it is sent.
//!
//! The outbox key (kind, instance, id) makes a second click on the same reminders a no-op.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use hyper::StatusCode;

use super::conn::ConnInfo;
use super::{AppState, HttpResponse, json, text};
use crate::config::{CustomIntegrationConfig, Secret};
use crate::provet::ReminderKind;
use crate::provet::custom_integration::{MAX_FUTURE_SKEW, VerifyError, verify};
use crate::store::ButtonOutcome;

/// The parameter that chooses the reminder kind.
pub const KIND_PARAM: &str = "kind";

/// Reads `kind` from the parameters: absent means patient reminders (`reminder`).
pub fn reminder_kind(params: &[(String, String)]) -> Result<ReminderKind, String> {
    match params.iter().find(|(k, _)| k == KIND_PARAM) {
        None => Ok(ReminderKind::Reminder),
        Some((_, v)) => ReminderKind::parse(v.trim()).ok_or_else(|| {
            format!(
                "`{KIND_PARAM}` must be appointment_reminder or reminder, got {:?}",
                v.chars().take(40).collect::<String>()
            )
        }),
    }
}

/// Handles the button request for `instance` (POST with a form body, or GET with the query).
pub async fn handle(State(state): State<Arc<AppState>>, Path(instance): Path<String>, req: Request) -> HttpResponse {
    let instance = instance.as_str();
    let conn = req.extensions().get::<ConnInfo>().copied();
    let known = state.config.provet.iter().find(|p| p.name == instance).and_then(|p| p.custom_integration.clone());
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
    // An unknown instance is checked against a salt nobody knows, so from outside it fails
    // exactly like a wrong hash: instance names cannot be probed.
    let ci = known.unwrap_or_else(unknown_instance);
    let ids = match verify(&params, &ci, crate::store::now_ms() / 1000) {
        Ok(ids) => ids,
        Err(VerifyError::TooManyIds { max }) => {
            return text(StatusCode::PAYLOAD_TOO_LARGE, format!("{}\n", VerifyError::TooManyIds { max }));
        }
        Err(e) => {
            if let Some(conn) = conn {
                state.outsiders.note("reminders button request refused", conn.surface, conn.client);
            }
            return text(StatusCode::FORBIDDEN, format!("{e}\n"));
        }
    };
    let single = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
    let (timestamp, verification) = (single(&ci.timestamp_param), single(&ci.verification_param));
    let keep_ms = i64::try_from(ci.max_age.as_millis() + MAX_FUTURE_SKEW.as_millis()).unwrap_or(i64::MAX);
    let (inst, ids2) = (instance.to_string(), ids.clone());
    let stored = state
        .store
        .call(move |db| db.queue_button_request(&inst, &timestamp, &verification, kind.as_str(), &ids2, keep_ms))
        .await;
    match stored {
        Ok(ButtonOutcome::Queued { new }) => {
            tracing::info!(instance, kind = kind.as_str(), selected = ids.len(), new = new.len(), "reminders queued");
            if !new.is_empty() {
                crate::outbound::Wake::all(&state.wake.fetch);
            }
            json(StatusCode::OK, &serde_json::json!({"ok": true, "kind": kind.as_str(), "queued": ids, "new": new}))
        }
        Ok(ButtonOutcome::Replayed) => {
            if let Some(conn) = conn {
                state.outsiders.note("reminders button request replayed", conn.surface, conn.client);
            }
            text(
                StatusCode::FORBIDDEN,
                "this request was already accepted once; reload the page in Provet and click again\n",
            )
        }
        Err(e) => {
            tracing::error!(instance, error = %e, "could not store reminder ids");
            text(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable, retry later\n")
        }
    }
}

/// The check an unknown instance gets: default parameter names and a random salt.
pub fn unknown_instance() -> CustomIntegrationConfig {
    let salt: String = (0..32).map(|_| fastrand::alphanumeric()).collect();
    CustomIntegrationConfig {
        salt: Secret::new(salt),
        max_age: crate::config::DEFAULT_BUTTON_MAX_AGE,
        timestamp_param: "timestamp".into(),
        verification_param: "verification".into(),
        panel_max_age: crate::config::DEFAULT_PANEL_MAX_AGE,
        client_param: "id".into(),
        frame_ancestors: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_kind_defaults_to_patient_reminders_and_bad_kinds_are_named() {
        assert_eq!(reminder_kind(&p(&[("id", "1")])), Ok(ReminderKind::Reminder));
        assert_eq!(reminder_kind(&p(&[("kind", "reminder")])), Ok(ReminderKind::Reminder));
        assert_eq!(reminder_kind(&p(&[("kind", "appointment_reminder")])), Ok(ReminderKind::AppointmentReminder));
        let err = reminder_kind(&p(&[("kind", "sms")])).unwrap_err();
        assert!(err.contains("\"sms\""), "{err}");
    }
}
