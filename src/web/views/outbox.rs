//! `GET /outbox` (filter by state, source, number), `GET /outbox/<id>` (parts, modem
//! references, delivery reports, Provet marks, attempts), `POST /outbox/<id>/retry` and
//! `/cancel`.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use hyper::StatusCode;
use maud::html;

use super::{
    Frame, Nav, SignedIn, audit, conversation_href, csrf_field, errors, notice, page, query, read_form, state_badge,
    when,
};
use crate::store::{OutboxFilter, OutboxState, PartState, StoreError};
use crate::web::auth::redirect::see_other;
use crate::web::{AppState, HttpResponse};

/// Rows on one list page.
const LIST_LIMIT: usize = 200;
/// Longest filter value kept (a number or a source name is short).
const FILTER_MAX: usize = 40;

const STATES: [&str; 7] = ["received", "fetched", "sending", "sent", "failed", "refused", "reported"];
const SOURCES: [&str; 8] =
    ["provet", "appointment_reminder", "reminder", "ui", "panel", "cli", "reply", "optout_confirmation"];

pub async fn list(State(state): State<Arc<AppState>>, session: SignedIn, req: Request) -> HttpResponse {
    let q = match query(&req) {
        Ok(q) => q,
        Err(resp) => return *resp,
    };
    let pick = |name: &str| {
        q.get(name).map(str::trim).filter(|v| !v.is_empty()).map(|v| v.chars().take(FILTER_MAX).collect::<String>())
    };
    let state_filter = pick("state");
    let parsed_state = match state_filter.as_deref().map(str::parse::<OutboxState>) {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(_)) => {
            return errors::refusal(StatusCode::BAD_REQUEST, "Unknown state", "Choose a state from the list.");
        }
    };
    let filter =
        OutboxFilter { state: parsed_state, source: pick("source"), number: pick("number"), limit: Some(LIST_LIMIT) };
    let f2 = filter.clone();
    let rows = match state.store.read(move |db| db.list_outbox(&f2)).await {
        Ok(r) => r,
        Err(e) => return errors::store_failed(e),
    };
    let content = html! {
        @if let Some(n) = notice(&q) { (n) }
        form.filters method="get" action="/outbox" role="search" {
            div {
                label for="f-state" { "State" }
                select #f-state name="state" {
                    option value="" { "any" }
                    @for s in STATES { option value=(s) selected[state_filter.as_deref() == Some(s)] { (s) } }
                }
            }
            div {
                label for="f-source" { "Source" }
                select #f-source name="source" {
                    option value="" { "any" }
                    @for s in SOURCES { option value=(s) selected[filter.source.as_deref() == Some(s)] { (s) } }
                }
            }
            div {
                label for="f-number" { "Number contains" }
                input #f-number type="search" name="number" inputmode="tel" value=(filter.number.as_deref().unwrap_or(""));
            }
            div { button type="submit" { "Filter" } }
        }
        @if rows.is_empty() { p.muted { "No messages match." } } @else {
            table.stack {
                thead { tr { th { "#" } th { "To" } th { "State" } th { "Source" } th { "Parts" } th { "Created" } } }
                tbody {
                    @for r in &rows {
                        tr data-outbox-id=(r.id) {
                            td data-label="#" { a href={ "/outbox/" (r.id) } { (r.id) } }
                            td data-label="To" {
                                @match &r.recipient {
                                    Some(n) => a href=(conversation_href(n)) { (n) },
                                    None => span.muted { "not fetched yet" },
                                }
                            }
                            td data-label="State" { (state_badge(r.state.as_str())) @if let Some(why) = &r.fail_reason { " " span.muted { (why) } } }
                            td data-label="Source" { (r.source) @if let Some(i) = &r.instance { " (" (i) ")" } }
                            td data-label="Parts" { (r.parts_acked) "/" (r.parts) }
                            td data-label="Created" { (when(r.created_at)) }
                        }
                    }
                }
            }
            @if rows.len() == LIST_LIMIT { p.muted { "The newest " (LIST_LIMIT) " are shown; filter to find older ones." } }
        }
    };
    page(StatusCode::OK, &session, Frame::new("Outbox", Nav::Outbox), content)
}

pub async fn detail(
    State(state): State<Arc<AppState>>,
    session: SignedIn,
    Path(id): Path<String>,
    req: Request,
) -> HttpResponse {
    let Ok(id) = id.parse::<i64>() else { return errors::not_found("message") };
    let q = match query(&req) {
        Ok(q) => q,
        Err(resp) => return *resp,
    };
    let found = match errors::found(state.store.read(move |db| db.get_outbox(id)).await, "message") {
        Ok(d) => d,
        Err(resp) => return *resp,
    };
    let s = &found.summary;
    let retryable = s.state == OutboxState::Failed;
    let cancellable = matches!(s.state, OutboxState::Received | OutboxState::Fetched | OutboxState::Sending)
        && !found.part_rows.iter().any(|p| p.state == PartState::Sending);
    let title = format!("Message {id}");
    let content = html! {
        @if let Some(n) = notice(&q) { (n) }
        section.card {
            dl.facts {
                dt { "State" } dd data-outbox-state=(s.state.as_str()) { (state_badge(s.state.as_str())) }
                @if let Some(why) = &s.fail_reason { dt { "Reason" } dd.bad { (why) } }
                dt { "To" } dd { @match &s.recipient { Some(n) => a href=(conversation_href(n)) { (n) }, None => "not fetched yet" } }
                dt { "Source" } dd { (s.source) }
                @if let Some(i) = &s.instance { dt { "Provet" } dd { (i) @if let Some(x) = s.external_id { " #" (x) } } }
                @if let Some(o) = &s.outcome { dt { "Provet mark" } dd { @if s.state == OutboxState::Reported { "reported " (o) } @else { (o) ", not yet reported" } } }
                dt { "Attempts" } dd { (s.attempts) }
                @if let Some(e) = &s.last_error { dt { "Last error" } dd { (e) } }
                dt { "Created" } dd { (when(s.created_at)) }
                dt { "Updated" } dd { (when(s.updated_at)) }
                @if let Some(t) = found.next_attempt_at { dt { "Next attempt" } dd { (when(t)) } }
            }
        }
        h2 { "Text" }
        section.card { @match &found.body { Some(b) => p { (b) }, None => p.muted { "not fetched yet, or erased by retention" } } }
        @if retryable || cancellable {
            div {
                @if retryable {
                    form.inline method="post" action={ "/outbox/" (id) "/retry" } { (csrf_field(&session)) button type="submit" { "Retry" } }
                }
                @if cancellable {
                    form.inline method="post" action={ "/outbox/" (id) "/cancel" } { (csrf_field(&session)) button.danger type="submit" { "Cancel" } }
                }
            }
        }
        h2 { "Parts" }
        @if found.part_rows.is_empty() { p.muted { "Not encoded yet." } } @else {
            table.stack {
                thead { tr { th { "Part" } th { "State" } th { "Modem" } th { "Reference" } th { "Delivery report" } th { "Attempts" } th { "Error" } } }
                tbody {
                    @for p in &found.part_rows {
                        tr {
                            td data-label="Part" { (p.seq) }
                            td data-label="State" { (state_badge(p.state.as_str())) }
                            td data-label="Modem" { (p.modem.as_deref().unwrap_or("—")) }
                            td data-label="Reference" { @match p.message_ref { Some(r) => (r), None => "—" } @if let Some(t) = p.acked_at { br; span.muted { (when(t)) } } }
                            td data-label="Delivery report" { (delivery_words(p.delivery_status)) }
                            td data-label="Attempts" { (p.attempts) }
                            td data-label="Error" { (p.last_error.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
    };
    page(StatusCode::OK, &session, Frame::new(&title, Nav::Outbox), content)
}

/// A status report's TP-ST in words (TS 23.040 9.2.3.15).
fn delivery_words(status: Option<i64>) -> String {
    match status {
        None => "none yet".into(),
        Some(s @ 0..=0x1F) => format!("delivered ({s})"),
        Some(s @ 0x20..=0x3F) => format!("still trying ({s})"),
        Some(s) => format!("not delivered ({s})"),
    }
}

pub async fn retry(
    State(state): State<Arc<AppState>>,
    session: SignedIn,
    Path(id): Path<String>,
    req: Request,
) -> HttpResponse {
    act(state, session, id, req, "retry").await
}

pub async fn cancel(
    State(state): State<Arc<AppState>>,
    session: SignedIn,
    Path(id): Path<String>,
    req: Request,
) -> HttpResponse {
    act(state, session, id, req, "cancel").await
}

async fn act(state: Arc<AppState>, session: SignedIn, id: String, req: Request, action: &'static str) -> HttpResponse {
    let Ok(id) = id.parse::<i64>() else { return errors::not_found("message") };
    if let Err(resp) = read_form(&state, &session, req).await {
        return resp;
    }
    let reason = format!("cancelled by {} in the web UI", session.user);
    let done = state.store.call(move |db| if action == "retry" { db.retry(id) } else { db.cancel(id, &reason) }).await;
    match done {
        Ok(()) => {
            audit(&state, &session, action, Some(id.to_string())).await;
            tracing::info!(outbox_id = id, user = %session.user, action, "outbox action from the web UI");
            if action == "retry" {
                crate::outbound::Wake::all(&state.wake.send);
            }
            see_other(&format!("/outbox/{id}?done={}", if action == "retry" { "retried" } else { "cancelled" }))
        }
        Err(StoreError::NotFound(_)) => errors::not_found("message"),
        Err(StoreError::IllegalTransition { from, .. }) => errors::refusal(
            StatusCode::CONFLICT,
            "Not possible now",
            &format!(
                "The message is {} now, so it cannot be {}. Reload its page to see where it stands.",
                from.as_str(),
                if action == "retry" {
                    "retried (only failed messages can be)"
                } else {
                    "cancelled (a part is in the modem's hands, or it is finished)"
                }
            ),
        ),
        Err(e) => errors::store_failed(e),
    }
}
