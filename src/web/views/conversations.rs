//! `GET /conversations` (one line per number, the most recent first) and
//! `GET|POST /conversations/<number>`: the thread with one number, both directions, newest
//! first, its opt-out state and a reply box.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use hyper::StatusCode;
use maud::{Markup, html};

use super::send::{message_box, send_as_user, status_of};
use super::{
    Frame, Nav, SignedIn, ago, conversation_href, csrf_field, errors, notice, page, query, read_form, state_badge, when,
};
use crate::store::{ConversationEntry, Direction, now_ms};
use crate::web::auth::redirect::see_other;
use crate::web::{AppState, HttpResponse};

const THREADS_LIMIT: usize = 200;
/// Messages of one thread shown.
pub const THREAD_LIMIT: usize = 100;
/// A number in a path is short; anything longer is not one we have.
const NUMBER_MAX: usize = 64;

pub async fn list(State(state): State<Arc<AppState>>, session: SignedIn) -> HttpResponse {
    let threads = match state.store.read(|db| db.conversation_threads(THREADS_LIMIT)).await {
        Ok(t) => t,
        Err(e) => return errors::store_failed(e),
    };
    let now = now_ms();
    let content = html! {
        p { a href="/send" { "Start a new conversation" } }
        @if threads.is_empty() { p.muted { "No messages yet." } } @else {
            table.stack {
                thead { tr { th { "Number" } th { "Last message" } th { "Messages" } } }
                tbody {
                    @for t in &threads {
                        tr {
                            td data-label="Number" { a href=(conversation_href(&t.number)) data-thread=(t.number) { (t.number) } }
                            td data-label="Last message" { (ago(t.last_at, now)) ", " @if t.last_direction == Direction::In { "received" } @else { "sent" } }
                            td data-label="Messages" { (t.messages) }
                        }
                    }
                }
            }
        }
    };
    page(StatusCode::OK, &session, Frame::new("Conversations", Nav::Conversations), content)
}

pub async fn thread(
    State(state): State<Arc<AppState>>,
    session: SignedIn,
    Path(number): Path<String>,
    req: Request,
) -> HttpResponse {
    let q = match query(&req) {
        Ok(q) => q,
        Err(resp) => return *resp,
    };
    thread_page(&state, &session, &number, StatusCode::OK, "", None, notice(&q)).await
}

pub async fn reply(
    State(state): State<Arc<AppState>>,
    session: SignedIn,
    Path(number): Path<String>,
    req: Request,
) -> HttpResponse {
    let form = match read_form(&state, &session, req).await {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let text = form.get("text").unwrap_or("");
    let to = match state.config.parse_number(&number) {
        Ok(n) => n,
        Err(e) => {
            return errors::refusal(
                StatusCode::BAD_REQUEST,
                "Cannot reply",
                &format!("This sender cannot get an SMS: {e}."),
            );
        }
    };
    match send_as_user(&state, &session, &to, text).await {
        Ok(_) => see_other(&format!("{}?done=queued", conversation_href(to.as_str()))),
        Err(e) => {
            let kept: String = text.chars().take(4096).collect();
            thread_page(&state, &session, &number, status_of(&e), &kept, Some(&e.to_string()), None).await
        }
    }
}

async fn thread_page(
    state: &AppState,
    session: &SignedIn,
    number: &str,
    status: StatusCode,
    text: &str,
    error: Option<&str>,
    notice: Option<Markup>,
) -> HttpResponse {
    if number.len() > NUMBER_MAX || number.chars().any(char::is_control) {
        return errors::not_found("conversation");
    }
    // A number typed without + still finds its thread.
    let key = state.config.parse_number(number).map(|n| n.as_str().to_string()).unwrap_or_else(|_| number.to_string());
    let k2 = key.clone();
    let read = state.store.read(move |db| Ok((db.conversation(&k2, THREAD_LIMIT)?, db.is_opted_out(&k2)?))).await;
    let (entries, opted_out) = match read {
        Ok(r) => r,
        Err(e) => return errors::store_failed(e),
    };
    let replyable = state.config.parse_number(&key).is_ok();
    let title = format!("Conversation with {key}");
    let content = html! {
        @if let Some(n) = notice { (n) }
        @if let Some(e) = error { p.refused role="alert" { (e) } }
        p data-optout=(if opted_out { "yes" } else { "no" }) {
            @if opted_out { strong.bad { "On the opt-out list: " } "nothing can be sent to this number. " a href="/optouts" { "Opt-outs" } }
            @else { "Not on the opt-out list." }
        }
        @if replyable && !opted_out {
            section.card {
                form method="post" action=(conversation_href(&key)) {
                    (csrf_field(session))
                    (message_box(text))
                    button type="submit" { "Send reply" }
                }
            }
        } @else if !replyable {
            p.muted { "This sender is not a phone number (an alphanumeric name or a short code): it cannot be replied to." }
        }
        (thread_list(&entries))
    };
    page(status, session, Frame::new(&title, Nav::Conversations), content)
}

/// The messages of a thread, newest first (also the Provet panel's).
pub fn thread_list(entries: &[ConversationEntry]) -> Markup {
    html! {
        @if entries.is_empty() { p.muted { "No messages with this number yet." } }
        ol.thread aria-label="Messages, newest first" {
            @for e in entries {
                @let dir = if e.direction == Direction::In { "in" } else { "out" };
                li class=(dir) data-direction=(dir) data-id=(e.id) {
                    @match &e.body { Some(b) => (b), None => span.muted { "(no text)" } }
                    span.meta {
                        (when(e.at))
                        @if e.direction == Direction::Out {
                            " · " (state_badge(e.state.as_deref().unwrap_or("")))
                            @if let Some(s) = &e.source { " · " (s) }
                            @if let Some(r) = &e.reason { " · " (r) }
                        } @else { " · received" }
                    }
                }
            }
        }
    }
}
