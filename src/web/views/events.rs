//! `GET /events` (the event-webhook call log: filter by type and delivery state),
//! `GET /events/<id>` (the event's data and every HTTP attempt: request, numeric response
//! status, response, duration), `POST /events/<id>/replay` (queues a new attempt).

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use hyper::StatusCode;
use maud::html;

use super::{Frame, Nav, SignedIn, audit, csrf_field, errors, notice, page, query, read_form, state_badge, when};
use crate::store::{EVENT_DELIVERY_STATES, EventFilter, EventType};
use crate::web::auth::redirect::see_other;
use crate::web::{AppState, HttpResponse};

const LIST_LIMIT: usize = 200;

pub async fn list(State(state): State<Arc<AppState>>, session: SignedIn, req: Request) -> HttpResponse {
    let q = match query(&req) {
        Ok(q) => q,
        Err(resp) => return *resp,
    };
    let event_type = q.get("type").filter(|t| !t.is_empty()).map(str::to_string);
    let delivery = q.get("state").filter(|t| !t.is_empty()).map(str::to_string);
    if event_type.as_deref().is_some_and(|t| EventType::parse(t).is_none())
        || delivery.as_deref().is_some_and(|s| !EVENT_DELIVERY_STATES.contains(&s))
    {
        return errors::refusal(StatusCode::BAD_REQUEST, "Unknown filter", "Choose a type and a state from the lists.");
    }
    let filter = EventFilter { event_type: event_type.clone(), state: delivery.clone(), limit: LIST_LIMIT };
    let rows = match state.store.read(move |db| db.list_events(&filter)).await {
        Ok(r) => r,
        Err(e) => return errors::store_failed(e),
    };
    let content = html! {
        @if state.config.event_webhooks.is_empty() { p.muted { "No [[event_webhook]] is configured, so no events are recorded." } }
        form.filters method="get" action="/events" role="search" {
            div { label for="f-type" { "Type" } select #f-type name="type" {
                option value="" { "any" }
                @for t in EventType::ALL.map(EventType::as_str) { option value=(t) selected[event_type.as_deref() == Some(t)] { (t) } } } }
            div { label for="f-state" { "Delivery" } select #f-state name="state" {
                option value="" { "any" }
                @for s in EVENT_DELIVERY_STATES { option value=(s) selected[delivery.as_deref() == Some(s)] { (s) } } } }
            div { button type="submit" { "Filter" } }
        }
        @if rows.is_empty() { p.muted { "No events match." } } @else {
            table.stack {
                thead { tr { th { "#" } th { "Type" } th { "When" } th { "Deliveries" } } }
                tbody {
                    @for e in &rows {
                        tr {
                            td data-label="#" { a href={ "/events/" (e.id) } { (e.id) } }
                            td data-label="Type" { (e.event_type) }
                            td data-label="When" { (when(e.created_at)) }
                            td data-label="Deliveries" { @for d in &e.deliveries { (d.webhook) " " (state_badge(&d.state)) " " } }
                        }
                    }
                }
            }
        }
    };
    page(StatusCode::OK, &session, Frame::new("Event webhooks: call log", Nav::Events), content)
}

pub async fn detail(
    State(state): State<Arc<AppState>>,
    session: SignedIn,
    Path(id): Path<String>,
    req: Request,
) -> HttpResponse {
    let Ok(id) = id.parse::<i64>() else { return errors::not_found("event") };
    let q = match query(&req) {
        Ok(q) => q,
        Err(resp) => return *resp,
    };
    let d = match errors::found(state.store.read(move |db| db.event_detail(id)).await, "event") {
        Ok(d) => d,
        Err(resp) => return *resp,
    };
    let data = serde_json::to_string_pretty(&d.data).unwrap_or_default();
    let title = format!("Event {id}: {}", d.summary.event_type);
    let content = html! {
        @if let Some(n) = notice(&q) { (n) }
        section.card {
            dl.facts {
                dt { "Id" } dd.mono { (d.summary.uid) }
                dt { "Type" } dd { (d.summary.event_type) }
                dt { "Created" } dd { (when(d.summary.created_at)) }
                @for del in &d.summary.deliveries {
                    dt { (del.webhook) }
                    dd { (state_badge(&del.state)) " after " (del.attempts) " attempt(s)"
                         @if let Some(e) = &del.last_error { br; span.bad { (e) } } }
                }
            }
            form method="post" action={ "/events/" (id) "/replay" } {
                (csrf_field(&session))
                button.secondary type="submit" { "Replay to every webhook" }
            }
        }
        h2 { "Data" }
        pre { (data) }
        h2 { "Calls" }
        @if d.calls.is_empty() { p.muted { "No attempt yet." } }
        @for c in &d.calls {
            section.card data-call=(c.id) {
                h3 { (when(c.at)) " · " (c.webhook) }
                dl.facts {
                    dt { "URL" } dd.mono { (c.url) }
                    dt { "Status" } dd data-http-status=[c.status] { @match c.status { Some(s) => (s), None => "no answer" } }
                    dt { "Duration" } dd { (c.duration_ms) " ms" }
                    @if let Some(e) = &c.error { dt { "Error" } dd.bad { (e) } }
                }
                details { summary { "Request" } pre { (c.request_headers) "\n\n" (c.request_body) } }
                details { summary { "Response" }
                    pre { (c.response_headers.as_deref().unwrap_or("")) "\n\n" (c.response_body.as_deref().unwrap_or("")) } }
            }
        }
    };
    page(StatusCode::OK, &session, Frame::new(&title, Nav::Events), content)
}

pub async fn replay(
    State(state): State<Arc<AppState>>,
    session: SignedIn,
    Path(id): Path<String>,
    req: Request,
) -> HttpResponse {
    let Ok(id) = id.parse::<i64>() else { return errors::not_found("event") };
    if let Err(resp) = read_form(&state, &session, req).await {
        return resp;
    }
    match state.store.call(move |db| db.replay_event(id, None)).await {
        Ok(0) => errors::not_found("event with a webhook delivery"),
        Ok(_) => {
            audit(&state, &session, "event.replay", Some(id.to_string())).await;
            see_other(&format!("/events/{id}?done=replayed"))
        }
        Err(e) => errors::store_failed(e),
    }
}
