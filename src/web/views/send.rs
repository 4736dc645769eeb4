//! `GET /send` and `POST /send`: a message to any number (`to` is typed), queued through
//! [`crate::outbound::local::queue_local_send`] with source `ui`. Also the message box with its
//! part count that the conversation page and the Provet panel use.

use std::sync::Arc;

use axum::extract::{Request, State};
use hyper::StatusCode;
use maud::{Markup, html};

use super::{Frame, Nav, SignedIn, audit, conversation_href, csrf_field, page, query, read_form};
use crate::outbound::local::{LocalSendError, LocalSource, PartCount, queue_local_send};
use crate::web::auth::redirect::see_other;
use crate::web::{AppState, HttpResponse};

/// Longest `to` or `text` put back into a form after a refusal (a bound on what we echo).
const ECHO_MAX: usize = 4096;

/// The text box with its part count: rendered by the server (right with JS off, and after a
/// refused send), updated live by the script.
pub fn message_box(text: &str) -> Markup {
    let count = PartCount::of(text);
    html! {
        label for="text" { "Message" }
        textarea #text name="text" required maxlength="1600" data-part-count="part-count" aria-describedby="part-count" { (text) }
        output #part-count .part-count for="text" aria-live="polite" { (count.words()) }
    }
}

pub async fn form(State(_state): State<Arc<AppState>>, session: SignedIn, req: Request) -> HttpResponse {
    let q = match query(&req) {
        Ok(q) => q,
        Err(resp) => return *resp,
    };
    let to: String = q.get("to").unwrap_or("").chars().take(ECHO_MAX).collect();
    send_page(StatusCode::OK, &session, &to, "", None)
}

pub async fn submit(State(state): State<Arc<AppState>>, session: SignedIn, req: Request) -> HttpResponse {
    let form = match read_form(&state, &session, req).await {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let to_raw = form.get("to").unwrap_or("").trim();
    let text = form.get("text").unwrap_or("");
    let echo = |s: &str| s.chars().take(ECHO_MAX).collect::<String>();
    let to = match state.config.parse_number(to_raw) {
        Ok(n) => n,
        Err(e) => {
            let why = format!("“{}” is not a number an SMS can be sent to: {e}", echo(to_raw));
            return send_page(StatusCode::BAD_REQUEST, &session, &echo(to_raw), &echo(text), Some(&why));
        }
    };
    match send_as_user(&state, &session, &to, text).await {
        Ok(_) => see_other(&format!("{}?done=queued", conversation_href(to.as_str()))),
        Err(e) => send_page(status_of(&e), &session, to.as_str(), &echo(text), Some(&e.to_string())),
    }
}

/// Queues `text` to `to` for `session`'s person and records it in the audit list.
pub async fn send_as_user(
    state: &AppState,
    session: &SignedIn,
    to: &crate::phone::PhoneNumber,
    text: &str,
) -> Result<i64, LocalSendError> {
    let id = queue_local_send(&state.store, &state.wake, &state.config.replies, LocalSource::Ui, to, text).await?;
    audit(state, session, "send", Some(format!("message {id} to {}", to.as_str()))).await;
    Ok(id)
}

/// The status of a refused send: 422 for policy (opted out, limits), 400 for bad input.
pub fn status_of(e: &LocalSendError) -> StatusCode {
    match e {
        LocalSendError::Empty | LocalSendError::TooLong { .. } => StatusCode::BAD_REQUEST,
        LocalSendError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
        LocalSendError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn send_page(status: StatusCode, session: &SignedIn, to: &str, text: &str, error: Option<&str>) -> HttpResponse {
    let content = html! {
        @if let Some(e) = error { p.refused role="alert" { (e) } }
        section.card {
            form method="post" action="/send" {
                (csrf_field(session))
                label for="to" { "To" }
                input #to type="tel" name="to" value=(to) required autocomplete="off" placeholder="+358 40 123 4567";
                (message_box(text))
                button type="submit" { "Send" }
            }
        }
        p.muted { "Numbers on the opt-out list are refused. Each message counts towards the [replies] limits per number and per hour." }
    };
    page(status, session, Frame::new("Send an SMS", Nav::Send), content)
}
