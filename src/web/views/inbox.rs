//! `GET /inbox` and `GET /inbox/<id>`: received messages with their parts (the raw PDU of one
//! that did not decode), each forward delivery with its attempts, and the automatic replies.

use std::sync::Arc;

use axum::extract::{Path, State};
use hyper::StatusCode;
use maud::html;

use super::{Frame, Nav, SignedIn, conversation_href, errors, page, state_badge, when};
use crate::web::{AppState, HttpResponse};

const LIST_LIMIT: usize = 200;

pub async fn list(State(state): State<Arc<AppState>>, session: SignedIn) -> HttpResponse {
    let rows = match state.store.read(|db| db.list_inbox(LIST_LIMIT)).await {
        Ok(r) => r,
        Err(e) => return errors::store_failed(e),
    };
    let content = html! {
        @if rows.is_empty() { p.muted { "Nothing received yet." } } @else {
            table.stack {
                thead { tr { th { "#" } th { "From" } th { "Received" } th { "Parts" } th { "Forwarding" } } }
                tbody {
                    @for r in &rows {
                        tr data-inbox-id=(r.id) {
                            td data-label="#" { a href={ "/inbox/" (r.id) } { (r.id) } }
                            td data-label="From" {
                                @match &r.sender { Some(s) => a href=(conversation_href(s)) { (s) }, None => span.muted { "unknown" } }
                                @if let Some(k) = &r.keyword { " " span.state { (k) } }
                            }
                            td data-label="Received" { (when(r.received_at)) }
                            td data-label="Parts" {
                                (r.parts)
                                @if r.incomplete { " " span.bad { "incomplete" } }
                                @if r.decode_error.is_some() { " " span.bad { "undecodable" } }
                            }
                            td data-label="Forwarding" { @if r.deliveries_pending > 0 { (r.deliveries_pending) " pending" } @else { "done" } }
                        }
                    }
                }
            }
        }
    };
    page(StatusCode::OK, &session, Frame::new("Inbox", Nav::Inbox), content)
}

pub async fn detail(State(state): State<Arc<AppState>>, session: SignedIn, Path(id): Path<String>) -> HttpResponse {
    let Ok(id) = id.parse::<i64>() else { return errors::not_found("received message") };
    let d = match errors::found(state.store.read(move |db| db.get_inbox(id)).await, "received message") {
        Ok(d) => d,
        Err(resp) => return *resp,
    };
    let s = &d.summary;
    let title = format!("Received message {id}");
    let content = html! {
        section.card {
            dl.facts {
                dt { "From" } dd { @match &s.sender { Some(n) => a href=(conversation_href(n)) { (n) }, None => "unknown" } }
                dt { "Modem" } dd { (s.modem) }
                dt { "Received" } dd { (when(s.received_at)) }
                @if let Some(t) = &d.sent_at { dt { "Sender's time" } dd { (t) } }
                dt { "Parts" } dd { (s.parts) @if s.incomplete { " (incomplete: the other parts never came)" } }
                @if let Some(e) = &d.encoding { dt { "Encoding" } dd { (e) } }
                @if let Some(k) = &s.keyword { dt { "Keyword" } dd { (k) } }
                @if let Some(e) = &s.decode_error { dt { "Decoding" } dd.bad { (e) } }
                dt { "Id" } dd.mono { (s.uid) }
            }
        }
        h2 { "Text" }
        section.card { @match &d.body { Some(b) => p { (b) }, None => p.muted { "No text: not decodable (see the raw PDU below), or erased by retention." } } }
        h2 { "Parts" }
        table.stack {
            thead { tr { th { "Part" } th { "PDU" } th { "Error" } } }
            tbody {
                @for p in &d.part_rows {
                    tr {
                        td data-label="Part" { @match (p.concat_seq, p.concat_total) { (Some(a), Some(b)) => { (a) " of " (b) }, _ => "1" } }
                        td data-label="PDU" { code { (p.pdu) } }
                        td data-label="Error" { (p.decode_error.as_deref().unwrap_or("")) }
                    }
                }
            }
        }
        h2 { "Forwarding" }
        @if d.deliveries.is_empty() { p.muted { "No forwarder is configured for it." } }
        @for del in &d.deliveries {
            section.card data-forwarder=(del.forwarder) {
                p { strong { (del.forwarder) } " " (state_badge(&del.state)) " after " (del.attempts) " attempt(s)"
                    @if let Some(t) = del.delivered_at { ", delivered " (when(t)) }
                    @if let Some(t) = del.next_attempt_at { ", next attempt " (when(t)) } }
                @if let Some(e) = &del.last_error { p.bad { (e) } }
                @if !del.attempt_log.is_empty() {
                    table.stack {
                        thead { tr { th { "When" } th { "Channel" } th { "HTTP status" } th { "Error" } } }
                        tbody {
                            @for a in &del.attempt_log {
                                tr {
                                    td data-label="When" { (when(a.at)) }
                                    td data-label="Channel" { (a.channel) }
                                    td data-label="HTTP status" data-http-status=[a.http_status] { @match a.http_status { Some(s) => (s), None => "no answer" } }
                                    td data-label="Error" { (a.error.as_deref().unwrap_or("")) }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if !d.replies.is_empty() {
            h2 { "Automatic replies" }
            ul { @for r in &d.replies { li { a href={ "/outbox/" (r.outbox_id) } { "message " (r.outbox_id) } " " (state_badge(&r.state)) @if let Some(why) = &r.reason { " " (why) } } } }
        }
    };
    page(StatusCode::OK, &session, Frame::new(&title, Nav::Inbox), content)
}
