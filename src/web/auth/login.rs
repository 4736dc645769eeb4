//! `GET /login` (the form), `POST /login` (the check, then a session cookie and a redirect),
//! `POST /logout` (CSRF-checked: ends the session).
//!
//! A wrong name and a wrong password look the same (401, the form again, one generic line),
//! and take as long (see [`password::verify`]). Failures are counted per address and per user
//! ([`super::throttle`]) and summarised in the outsider warnings, never with the password.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use hyper::header::{HeaderValue, RETRY_AFTER, SET_COOKIE};
use hyper::{StatusCode, Uri};

use super::csrf::{self, CSRF_FIELD};
use super::form::{self, Form};
use super::redirect::{safe_next, see_other};
use super::{AccountName, SignedIn, conn_info, cookies, html, password, via_tls};
use crate::web::conn::mask_address;
use crate::web::{AppState, HttpResponse, read_body};

/// A login or logout form is a few hundred bytes; anything much larger is not one.
const FORM_LIMIT: usize = 16 * 1024;

/// `GET /login`: the form (with `?next=/path` to come back to).
pub async fn form(req: Request) -> HttpResponse {
    let next = next_from_query(req.uri());
    login_page(StatusCode::OK, None, "", &next)
}

/// `POST /login`.
pub async fn submit(State(state): State<Arc<AppState>>, req: Request) -> HttpResponse {
    let conn = conn_info(req.extensions());
    let secure = via_tls(&state, &conn, req.headers());
    // A session this browser had before is ended by a new login (one cookie, one session).
    let previous = SignedIn::current(&state, req.headers()).await.ok().flatten();
    if !form::is_form(req.headers()) {
        return html::error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Not a form",
            "Send the login form as application/x-www-form-urlencoded, as the login page does.",
        );
    }
    let body = match read_body(req, FORM_LIMIT).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let form = match Form::parse(&body) {
        Ok(f) => f,
        Err(e) => {
            return html::error(
                StatusCode::BAD_REQUEST,
                "Unreadable form",
                &format!("{e}; sign in from the login page."),
            );
        }
    };
    let (Some(username), Some(password)) = (form.get("username"), form.get("password")) else {
        return html::error(
            StatusCode::BAD_REQUEST,
            "Incomplete form",
            "The login form needs a user name and a password.",
        );
    };
    let next = form.get("next").and_then(safe_next).unwrap_or("/");
    // A name that cannot exist is checked against nothing (its form is no secret) and is not
    // counted per user: only per address.
    let name = AccountName::parse(username).ok();
    let user_key = name.as_ref().map(AccountName::as_str);

    // One hash at a time per permit: a burst of attempts from one address waits here and then
    // meets its own failures in the throttle instead of all being checked at once.
    let Ok(_permit) = state.auth.hashing.acquire().await else {
        return html::error(StatusCode::SERVICE_UNAVAILABLE, "Try again", "smshub is stopping.");
    };
    if let Err(wait) = state.auth.throttle.check(conn.client, user_key, Instant::now()) {
        state.outsiders.note("login refused: too many failed attempts", conn.surface, conn.client);
        let mut resp = login_page(
            StatusCode::TOO_MANY_REQUESTS,
            Some("Too many failed attempts. Wait a minute and try again."),
            user_key.unwrap_or(""),
            next,
        );
        resp.headers_mut().insert(RETRY_AFTER, HeaderValue::from(whole_seconds(wait)));
        return resp;
    }
    let verified = match &name {
        Some(n) => match check_password(&state, n, password).await {
            Ok(v) => v,
            Err(resp) => return resp,
        },
        None => false,
    };
    let started = match (&name, verified) {
        (Some(n), true) => match SignedIn::start(&state, n).await {
            Ok(s) => s.map(|s| (n, s)),
            Err(resp) => return resp,
        },
        _ => None,
    };
    let Some((name, session)) = started else {
        state.auth.throttle.failed(conn.client, user_key, Instant::now());
        state.outsiders.note("failed login", conn.surface, conn.client);
        return login_page(
            StatusCode::UNAUTHORIZED,
            Some("Wrong user name or password."),
            user_key.unwrap_or(""),
            next,
        );
    };
    if let Some(p) = previous {
        let _ = p.end(&state).await;
    }
    tracing::info!(user = %name, client = %mask_address(conn.client), "signed in");
    let mut resp = see_other(next);
    resp.headers_mut().insert(SET_COOKIE, cookies::start(&session.id, state.config.admin.session_lifetime, secure));
    resp
}

/// `POST /logout`: ends the session whose form carries its CSRF token.
pub async fn logout(State(state): State<Arc<AppState>>, req: Request) -> HttpResponse {
    let conn = conn_info(req.extensions());
    let secure = via_tls(&state, &conn, req.headers());
    let session = match SignedIn::current(&state, req.headers()).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            // Nothing to end; make sure the browser forgets whatever it sent.
            let mut resp = see_other("/login");
            resp.headers_mut().insert(SET_COOKIE, cookies::end(secure));
            return resp;
        }
        Err(resp) => return resp,
    };
    let submitted = if form::is_form(req.headers()) {
        match read_body(req, FORM_LIMIT).await {
            Ok(body) => Form::parse(&body).ok(),
            Err(resp) => return resp,
        }
    } else {
        None
    };
    if !csrf::form_token_ok(&session, submitted.as_ref().and_then(|f| f.get(CSRF_FIELD))) {
        state.outsiders.note("form with a missing or wrong CSRF token", conn.surface, conn.client);
        return html::error(
            StatusCode::FORBIDDEN,
            "Refused",
            "The form was out of date or was not sent from smshub's own page, so you are still signed in. Reload the page and try again.",
        );
    }
    if let Err(resp) = session.end(&state).await {
        return resp;
    }
    tracing::info!(user = %session.user, client = %mask_address(conn.client), "signed out");
    let mut resp = see_other("/login");
    resp.headers_mut().insert(SET_COOKIE, cookies::end(secure));
    resp
}

async fn check_password(state: &AppState, name: &AccountName, password: &str) -> Result<bool, HttpResponse> {
    let n = name.as_str().to_string();
    let stored = state.store.call(move |db| db.user_password_hash(&n)).await.map_err(|e| {
        tracing::error!(error = %e, "cannot read users");
        html::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Try again",
            "smshub could not reach its database. Try again in a moment.",
        )
    })?;
    let password = password.to_string();
    tokio::task::spawn_blocking(move || password::verify(&password, stored.as_deref())).await.map_err(|e| {
        tracing::error!(error = %e, "the password check failed");
        html::error(StatusCode::INTERNAL_SERVER_ERROR, "Try again", "The password could not be checked. Try again.")
    })
}

fn next_from_query(uri: &Uri) -> String {
    uri.query()
        .and_then(|q| Form::parse(q.as_bytes()).ok())
        .and_then(|f| f.get("next").and_then(safe_next).map(str::to_string))
        .unwrap_or_else(|| "/".into())
}

fn whole_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn login_page(status: StatusCode, message: Option<&str>, username: &str, next: &str) -> HttpResponse {
    let message =
        message.map(|m| format!("<p class=\"error\" role=\"alert\">{}</p>\n", html::escape(m))).unwrap_or_default();
    let autofocus_user = if username.is_empty() { " autofocus" } else { "" };
    let autofocus_password = if username.is_empty() { "" } else { " autofocus" };
    let body = format!(
        "<h1>Sign in to smshub</h1>\n{message}<form method=\"post\" action=\"/login\">\n\
         <label for=\"username\">User name</label>\n\
         <input id=\"username\" name=\"username\" value=\"{}\" autocomplete=\"username\" autocapitalize=\"none\" spellcheck=\"false\" required{autofocus_user}>\n\
         <label for=\"password\">Password</label>\n\
         <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required{autofocus_password}>\n\
         <input type=\"hidden\" name=\"next\" value=\"{}\">\n\
         <button type=\"submit\">Sign in</button>\n</form>",
        html::escape(username),
        html::escape(next),
    );
    html::page(status, "Sign in", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_path_survives_the_query_and_is_escaped_in_the_page() {
        let uri: Uri = "/login?next=%2Foutbox%3Fa%3D1%26b%3D%22x%22".parse().unwrap();
        assert_eq!(next_from_query(&uri), "/outbox?a=1&b=\"x\"");
        assert_eq!(next_from_query(&"/login?next=https://evil.example".parse().unwrap()), "/");
        assert_eq!(next_from_query(&"/login".parse().unwrap()), "/");
        assert_eq!(whole_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(whole_seconds(Duration::from_secs(3)), 3);
    }
}
