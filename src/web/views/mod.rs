//! The web UI on the admin listener: server-rendered pages (maud templates, checked at compile
//! time and escaped by default), one stylesheet and one small script embedded in the binary.
//! Every page reads without JavaScript; the script only adds the live part count and the
//! Provet panel's reload message.
//!
//! One file per page area, as a person sees them: [`dashboard`] (`/`), [`outbox`], [`inbox`],
//! [`conversations`], [`send`], [`optouts`], [`events`] (the event-webhook call log),
//! [`settings`] (effective config and the audit list), [`doctor`]; [`errors`] renders refusals
//! in words; [`assets`] serves the stylesheet and script (on both listeners: the Provet panel
//! uses them too).
//!
//! Every page takes [`SignedIn`]. Every form that changes something carries the session's CSRF
//! token ([`csrf_field`]) and is read with [`read_form`], which checks it (the Origin check has
//! already run as a layer on the whole admin router); the action is then recorded in the audit
//! list ([`audit`]) as `user:<name>`. Numbers are shown in full: signed-in people are the
//! clinic's staff. Logs stay masked.

pub mod assets;
pub mod conversations;
pub mod dashboard;
pub mod doctor;
pub mod errors;
pub mod events;
pub mod inbox;
pub mod optouts;
pub mod outbox;
pub mod send;
pub mod settings;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::routing::{get, post};
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};
use maud::{DOCTYPE, Markup, html};

use super::auth::csrf::{self, CSRF_FIELD};
use super::auth::form::{self, Form};
use super::auth::{SignedIn, conn_info};
use super::{AppState, HttpResponse, only, read_body};

/// A page form is a few KiB at most (a message of ten parts is under 2 KiB of text).
const FORM_LIMIT: usize = 64 * 1024;

/// What admin pages may load: only our own stylesheet and script, never be framed.
const ADMIN_CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The UI's routes, merged into the admin router (which adds the Origin check).
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", only("GET", get(dashboard::show)))
        .route("/outbox", only("GET", get(outbox::list)))
        .route("/outbox/{id}", only("GET", get(outbox::detail)))
        .route("/outbox/{id}/retry", only("POST", post(outbox::retry)))
        .route("/outbox/{id}/cancel", only("POST", post(outbox::cancel)))
        .route("/inbox", only("GET", get(inbox::list)))
        .route("/inbox/{id}", only("GET", get(inbox::detail)))
        .route("/conversations", only("GET", get(conversations::list)))
        .route("/conversations/{number}", only("GET, POST", get(conversations::thread).post(conversations::reply)))
        .route("/send", only("GET, POST", get(send::form).post(send::submit)))
        .route("/optouts", only("GET, POST", get(optouts::list).post(optouts::add)))
        .route("/optouts/remove", only("POST", post(optouts::remove)))
        .route("/events", only("GET", get(events::list)))
        .route("/events/{id}", only("GET", get(events::detail)))
        .route("/events/{id}/replay", only("POST", post(events::replay)))
        .route("/settings", only("GET", get(settings::show)))
        .route("/doctor", only("GET", get(doctor::show)))
        .merge(assets::routes())
}

/// Which part of the UI a page belongs to (the highlighted menu entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Dashboard,
    Conversations,
    Send,
    Outbox,
    Inbox,
    Optouts,
    Events,
    Settings,
    Doctor,
}

const MENU: [(Nav, &str, &str); 9] = [
    (Nav::Dashboard, "/", "Dashboard"),
    (Nav::Conversations, "/conversations", "Conversations"),
    (Nav::Send, "/send", "Send"),
    (Nav::Outbox, "/outbox", "Outbox"),
    (Nav::Inbox, "/inbox", "Inbox"),
    (Nav::Optouts, "/optouts", "Opt-outs"),
    (Nav::Events, "/events", "Events"),
    (Nav::Settings, "/settings", "Settings"),
    (Nav::Doctor, "/doctor", "Doctor"),
];

/// A page's frame: title, menu entry, and whether it reloads itself (seconds).
pub struct Frame<'a> {
    pub title: &'a str,
    pub nav: Nav,
    pub refresh_s: Option<u32>,
}

impl<'a> Frame<'a> {
    pub fn new(title: &'a str, nav: Nav) -> Frame<'a> {
        Frame { title, nav, refresh_s: None }
    }
}

/// The `<head>` every page has (admin and panel).
pub fn head(title: &str, refresh_s: Option<u32>) -> Markup {
    html! {
        meta charset="utf-8";
        meta name="viewport" content="width=device-width, initial-scale=1";
        @if let Some(s) = refresh_s { meta http-equiv="refresh" content=(s); }
        title { (title) " · smshub" }
        link rel="stylesheet" href=(assets::CSS_PATH);
        script src=(assets::JS_PATH) defer {}
    }
}

/// A whole admin page with the menu and the sign-out button.
pub fn page(status: StatusCode, session: &SignedIn, frame: Frame<'_>, content: Markup) -> HttpResponse {
    let doc = html! {
        (DOCTYPE)
        html lang="en" {
            head { (head(frame.title, frame.refresh_s)) }
            body {
                header.top {
                    a.brand href="/" { "smshub" }
                    nav aria-label="Main menu" {
                        ul {
                            @for (nav, href, label) in MENU {
                                li { a href=(href) aria-current=[(nav == frame.nav).then_some("page")] { (label) } }
                            }
                        }
                    }
                    form.signout method="post" action="/logout" {
                        (csrf_field(session))
                        span { "Signed in as " strong { (session.user) } }
                        button type="submit" { "Sign out" }
                    }
                }
                main { h1 { (frame.title) } (content) }
            }
        }
    };
    html_response(status, doc.into_string(), ADMIN_CSP)
}

/// An HTML response with the headers every page gets: not cached (pages hold tokens and
/// numbers), `csp` (which says who may frame it), no sniffing, no referrer to other sites.
pub fn html_response(status: StatusCode, body: String, csp: &str) -> HttpResponse {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(csp) {
        h.insert(HeaderName::from_static("content-security-policy"), v);
    }
    if csp.contains("frame-ancestors 'none'") {
        h.insert(HeaderName::from_static("x-frame-options"), HeaderValue::from_static("DENY"));
    }
    h.insert(HeaderName::from_static("referrer-policy"), HeaderValue::from_static("same-origin"));
    h.insert(HeaderName::from_static("x-content-type-options"), HeaderValue::from_static("nosniff"));
    resp
}

/// The hidden field with the session's CSRF token.
pub fn csrf_field(session: &SignedIn) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(session.csrf_token); }
}

/// Reads a page form: URL-encoded, at most [`FORM_LIMIT`], UTF-8, and carrying the session's
/// CSRF token. `Err` is the page to answer.
pub async fn read_form(state: &AppState, session: &SignedIn, req: Request) -> Result<Form, HttpResponse> {
    let conn = conn_info(req.extensions());
    if !form::is_form(req.headers()) {
        return Err(errors::refusal(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Not a form",
            "Send this from smshub's own page (a URL-encoded form).",
        ));
    }
    let body = read_body(req, FORM_LIMIT).await?;
    let form = Form::parse(&body).map_err(|e| {
        errors::refusal(StatusCode::BAD_REQUEST, "Unreadable form", &format!("{e}; send it from smshub's own page."))
    })?;
    if !csrf::form_token_ok(session, form.get(CSRF_FIELD)) {
        state.outsiders.note("form with a missing or wrong CSRF token", conn.surface, conn.client);
        return Err(errors::refusal(
            StatusCode::FORBIDDEN,
            "Refused",
            "The form was out of date or was not sent from smshub's own page, so nothing was changed. Reload the page and try again.",
        ));
    }
    Ok(form)
}

/// The query string, read strictly (a parameter that is not UTF-8 is 400). The refusal page is
/// boxed: it is the rare path.
pub fn query(req: &Request) -> Result<Form, Box<HttpResponse>> {
    Form::parse(req.uri().query().unwrap_or("").as_bytes()).map_err(|e| {
        Box::new(errors::refusal(
            StatusCode::BAD_REQUEST,
            "Unreadable address",
            &format!("{e}: the link's parameters."),
        ))
    })
}

/// Records what `session`'s person did in the audit list. A failure to record is logged, not
/// shown: the action itself is done.
pub async fn audit(state: &AppState, session: &SignedIn, action: &'static str, subject: Option<String>) {
    let actor = format!("user:{}", session.user);
    if let Err(e) = state.store.call(move |db| db.record_audit(&actor, action, subject.as_deref())).await {
        tracing::error!(error = %e, action, "could not record an action in the audit list");
    }
}

/// `2026-12-04 14:03:09 UTC` for unix ms.
pub fn when(ms: i64) -> String {
    let ts = crate::pdu::Timestamp::from_unix(ms.div_euclid(1000), 0).to_rfc3339();
    // "YYYY-MM-DDTHH:MM:SS+00:00" → "YYYY-MM-DD HH:MM:SS UTC"
    format!("{} UTC", ts.get(..19).unwrap_or(&ts).replacen('T', " ", 1))
}

/// How long ago, in words a receptionist reads at a glance.
pub fn ago(ms: i64, now_ms: i64) -> String {
    let s = now_ms.saturating_sub(ms).max(0) / 1000;
    match s {
        0..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=86_399 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}

/// The link to a number's conversation (the number percent-encoded: senders can be any text).
pub fn conversation_href(number: &str) -> String {
    format!("/conversations/{}", percent_encoding::utf8_percent_encode(number, percent_encoding::NON_ALPHANUMERIC))
}

/// A state as a small labelled badge (`class="state state-sent"`).
pub fn state_badge(state: &str) -> Markup {
    let class: String = state.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(20).collect::<String>();
    html! { span class={ "state state-" (class) } data-state=(class) { (state.replace('_', " ")) } }
}

/// The line shown after a redirect (`?done=<code>`): only codes we know, so a link cannot put
/// words on the page.
pub fn notice(q: &Form) -> Option<Markup> {
    let text = match q.get("done")? {
        "queued" => "Queued: the message is on its way to the modem.",
        "retried" => "The message will be sent again (parts already sent are not sent twice).",
        "cancelled" => "The message was cancelled.",
        "optout_added" => "The number was added to the opt-out list.",
        "optout_removed" => "The number was removed from the opt-out list.",
        "optout_unchanged" => "Nothing changed: the list already said so.",
        "replayed" => "A new delivery attempt was queued.",
        _ => return None,
    };
    Some(html! { p.notice role="status" { (text) } })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_utc_and_ages_as_words() {
        assert_eq!(when(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(when(1_733_320_989_000), "2024-12-04 14:03:09 UTC");
        assert_eq!(when(i64::MAX).len(), 23, "a huge value still formats");
        assert_eq!(ago(0, 5_000), "5 s ago");
        assert_eq!(ago(0, 7_200_000), "2 h ago");
        assert_eq!(ago(10_000, 0), "0 s ago", "the future is now");
    }

    #[test]
    fn conversation_links_encode_any_sender() {
        assert_eq!(conversation_href("+358401234567"), "/conversations/%2B358401234567");
        assert_eq!(conversation_href("Vet \"Clinic\"/x"), "/conversations/Vet%20%22Clinic%22%2Fx");
    }

    #[test]
    fn only_known_notices_are_shown() {
        assert!(notice(&Form::parse(b"done=queued").unwrap()).is_some());
        assert!(notice(&Form::parse(b"done=%3Cscript%3E").unwrap()).is_none());
        assert!(notice(&Form::default()).is_none());
    }
}
