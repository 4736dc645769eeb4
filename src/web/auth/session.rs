//! Sessions: made at login, found by the cookie on every request, ended at logout or expiry.
//!
//! The cookie holds a random 128-bit id; the database holds its SHA-256 with the user, the
//! session's CSRF token and an absolute expiry (`[admin] session_lifetime_s` after login). A
//! session lives in the database, so it survives a restart of the daemon; expired rows are
//! deleted at start and at every login.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use hyper::http::request::Parts;
use hyper::{HeaderMap, StatusCode};

use super::{AccountName, cookies, html, secrets};
use crate::store::{NewSession, now_ms};
use crate::web::{AppState, HttpResponse};

/// A person with a live session.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub user: String,
    /// What this session's forms must carry (see [`super::csrf`]).
    pub csrf_token: String,
    id_hash: [u8; 32],
}

/// A session just made: the id for the cookie.
pub struct NewlyStarted {
    pub id: String,
}

impl SignedIn {
    /// The session of the request's cookie, if it is live; `Err` is the page to answer when the
    /// database cannot say.
    pub async fn current(state: &AppState, headers: &HeaderMap) -> Result<Option<SignedIn>, HttpResponse> {
        let Some(id) = cookies::session_id(headers) else { return Ok(None) };
        let id_hash = secrets::digest(&id);
        match state.store.call(move |db| db.session(&id_hash, now_ms())).await {
            Ok(row) => Ok(row.map(|r| SignedIn { user: r.user, csrf_token: r.csrf_token, id_hash })),
            Err(e) => {
                tracing::error!(error = %e, "cannot read sessions");
                Err(unavailable())
            }
        }
    }

    /// Starts a session for `user`, lasting the configured lifetime. `Ok(None)` if the user was
    /// removed meanwhile.
    pub async fn start(state: &AppState, user: &AccountName) -> Result<Option<NewlyStarted>, HttpResponse> {
        let (Ok(id), Ok(csrf_token)) = (secrets::short_secret(), secrets::short_secret()) else {
            tracing::error!("no randomness for a session id");
            return Err(unavailable());
        };
        let id_hash = secrets::digest(&id);
        let now = now_ms();
        let lifetime_ms = i64::try_from(state.config.admin.session_lifetime.as_millis()).unwrap_or(i64::MAX);
        let user = user.as_str().to_string();
        let stored = state
            .store
            .call(move |db| {
                db.prune_sessions(now)?;
                db.create_session(&NewSession {
                    id_hash: &id_hash,
                    user: &user,
                    csrf_token: &csrf_token,
                    created_at: now,
                    expires_at: now.saturating_add(lifetime_ms),
                })
            })
            .await;
        match stored {
            Ok(true) => Ok(Some(NewlyStarted { id })),
            Ok(false) => Ok(None),
            Err(e) => {
                tracing::error!(error = %e, "cannot store a session");
                Err(unavailable())
            }
        }
    }

    /// Ends this session (logout).
    pub async fn end(&self, state: &AppState) -> Result<(), HttpResponse> {
        let id_hash = self.id_hash;
        state.store.call(move |db| db.end_session(&id_hash)).await.map(|_| ()).map_err(|e| {
            tracing::error!(error = %e, "cannot end a session");
            unavailable()
        })
    }
}

/// Pages need a person: without a live session the answer is a redirect to the login form,
/// which brings the person back here afterwards.
impl FromRequestParts<Arc<AppState>> for SignedIn {
    type Rejection = HttpResponse;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        match SignedIn::current(state, &parts.headers).await? {
            Some(s) => Ok(s),
            None => {
                let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
                Err(to_login(path))
            }
        }
    }
}

/// 303 to `/login`, coming back to `from` (a local path) afterwards.
pub fn to_login(from: &str) -> HttpResponse {
    let location = match super::redirect::safe_next(from) {
        Some(next) if next != "/" => {
            format!("/login?next={}", form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>())
        }
        _ => "/login".to_string(),
    };
    super::redirect::see_other(&location)
}

fn unavailable() -> HttpResponse {
    html::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again",
        "smshub could not reach its database to check your session. Try again in a moment; if it lasts, see `smshub doctor`.",
    )
}
