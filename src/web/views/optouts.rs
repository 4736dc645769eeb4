//! `GET /optouts` (the list), `POST /optouts` (add a number), `POST /optouts/remove`.

use std::sync::Arc;

use axum::extract::{Request, State};
use hyper::StatusCode;
use maud::html;

use super::{Frame, Nav, SignedIn, audit, conversation_href, csrf_field, errors, notice, page, query, read_form, when};
use crate::web::auth::redirect::see_other;
use crate::web::{AppState, HttpResponse};

pub async fn list(State(state): State<Arc<AppState>>, session: SignedIn, req: Request) -> HttpResponse {
    let q = match query(&req) {
        Ok(q) => q,
        Err(resp) => return *resp,
    };
    list_page(&state, &session, StatusCode::OK, notice(&q), None).await
}

async fn list_page(
    state: &AppState,
    session: &SignedIn,
    status: StatusCode,
    notice: Option<maud::Markup>,
    error: Option<&str>,
) -> HttpResponse {
    let rows = match state.store.read(|db| db.list_optouts()).await {
        Ok(r) => r,
        Err(e) => return errors::store_failed(e),
    };
    let content = html! {
        @if let Some(n) = notice { (n) }
        @if let Some(e) = error { p.refused role="alert" { (e) } }
        section.card {
            form method="post" action="/optouts" {
                (csrf_field(session))
                label for="number" { "Add a number" }
                input #number type="tel" name="number" required autocomplete="off";
                button type="submit" { "Add to the opt-out list" }
            }
        }
        p.muted { "A number on this list gets no SMS from smshub. A client who sends STOP is added, START removes them." }
        @if rows.is_empty() { p.muted { "The list is empty." } } @else {
            table.stack {
                thead { tr { th { "Number" } th { "How" } th { "Since" } th { "" } } }
                tbody {
                    @for (number, source, at) in &rows {
                        tr data-optout=(number) {
                            td data-label="Number" { a href=(conversation_href(number)) { (number) } }
                            td data-label="How" { (source) }
                            td data-label="Since" { (when(*at)) }
                            td {
                                form.inline method="post" action="/optouts/remove" {
                                    (csrf_field(session))
                                    input type="hidden" name="number" value=(number);
                                    button.secondary type="submit" aria-label={ "Remove " (number) } { "Remove" }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    page(status, session, Frame::new("Opt-outs", Nav::Optouts), content)
}

pub async fn add(State(state): State<Arc<AppState>>, session: SignedIn, req: Request) -> HttpResponse {
    change(state, session, req, true).await
}

pub async fn remove(State(state): State<Arc<AppState>>, session: SignedIn, req: Request) -> HttpResponse {
    change(state, session, req, false).await
}

async fn change(state: Arc<AppState>, session: SignedIn, req: Request, add: bool) -> HttpResponse {
    let form = match read_form(&state, &session, req).await {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let raw = form.get("number").unwrap_or("").trim();
    let number = match state.config.parse_number(raw) {
        Ok(n) => n.as_str().to_string(),
        // Removing: the list may hold a sender that is not a phone number (kept as received).
        Err(_) if !add && !raw.is_empty() && raw.len() <= 64 => raw.to_string(),
        Err(e) => {
            let shown: String = raw.chars().take(64).collect();
            let why = format!("“{shown}” is not a phone number: {e}");
            return list_page(&state, &session, StatusCode::BAD_REQUEST, None, Some(&why)).await;
        }
    };
    let source = format!("user:{}", session.user);
    let n2 = number.clone();
    let changed = state
        .store
        .call(move |db| if add { db.add_optout(&n2, &source) } else { db.remove_optout(&n2, &source) })
        .await;
    match changed {
        Ok(changed) => {
            if changed {
                audit(&state, &session, if add { "optout.add" } else { "optout.remove" }, Some(number)).await;
            }
            let done = match (changed, add) {
                (false, _) => "optout_unchanged",
                (true, true) => "optout_added",
                (true, false) => "optout_removed",
            };
            see_other(&format!("/optouts?done={done}"))
        }
        Err(e) => errors::store_failed(e),
    }
}
