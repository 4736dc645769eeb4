//! Who is asking, on the admin listener: people sign in with a name and password and get a
//! session cookie; programs show a token (`Authorization: Bearer`). One file per job:
//!
//! - [`names`]: `AccountName`, the checked name of a user or token.
//! - [`password`]: the rule for a new password, argon2id hashing and the check at login.
//! - [`secrets`]: random session ids, CSRF tokens and API tokens, and the SHA-256 kept of them.
//! - [`cookies`]: reading and writing the session cookie.
//! - [`session`]: [`SignedIn`], the person behind a live session cookie.
//! - [`tokens`]: [`Bearer`], the program behind a valid token.
//! - [`csrf`]: the Origin/Referer check on every admin POST and the form token check.
//! - [`throttle`]: failed logins per address and per user.
//! - [`login`]: `GET`/`POST /login`, `POST /logout`.
//! - [`form`], [`html`]: reading forms strictly, writing pages safely.
//!
//! A handler says who may call it by taking an extractor: [`Caller`] (a person or a program),
//! [`Bearer`] (programs only) or [`SignedIn`] (pages: not signed in is a redirect to /login).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use axum::extract::FromRequestParts;
use hyper::HeaderMap;
use hyper::header::AUTHORIZATION;
use hyper::http::Extensions;
use hyper::http::request::Parts;

use super::conn::{ConnInfo, Surface};
use super::{AppState, HttpResponse};

pub mod cookies;
pub mod csrf;
pub mod form;
pub mod html;
pub mod login;
pub mod names;
pub mod password;
pub mod redirect;
pub mod secrets;
pub mod session;
pub mod throttle;
pub mod tokens;

pub use names::AccountName;
pub use session::SignedIn;
pub use tokens::Bearer;

/// How many password hashes may be computed at once (each takes 19 MiB and a core for a
/// moment; more logins wait their turn).
const CONCURRENT_HASHES: usize = 2;

/// What sign-in shares across requests.
#[derive(Debug)]
pub struct Auth {
    pub throttle: throttle::LoginThrottle,
    pub(crate) hashing: tokio::sync::Semaphore,
}

impl Default for Auth {
    fn default() -> Self {
        Auth { throttle: throttle::LoginThrottle::default(), hashing: tokio::sync::Semaphore::new(CONCURRENT_HASHES) }
    }
}

/// Who made a request: a signed-in person or a program with a token.
#[derive(Debug, Clone)]
pub enum Caller {
    Person(SignedIn),
    Program(Bearer),
}

impl Caller {
    /// The user or token name, for logs.
    pub fn name(&self) -> &str {
        match self {
            Caller::Person(s) => &s.user,
            Caller::Program(b) => &b.name,
        }
    }
}

/// A request with an `Authorization` header is judged by its token alone (a wrong token is 401
/// even with a session cookie); otherwise a live session will do. Neither: 401 with
/// `WWW-Authenticate`.
impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = HttpResponse;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        if parts.headers.contains_key(AUTHORIZATION) {
            return Bearer::from_request_parts(parts, state).await.map(Caller::Program);
        }
        match SignedIn::current(state, &parts.headers).await {
            Ok(Some(s)) => Ok(Caller::Person(s)),
            Ok(None) => Err(tokens::unauthorized(None)),
            Err(resp) => Err(resp),
        }
    }
}

/// The connection of a request (a placeholder when a test builds a request by hand).
pub(crate) fn conn_info(extensions: &Extensions) -> ConnInfo {
    extensions.get::<ConnInfo>().copied().unwrap_or(ConnInfo {
        surface: Surface::Admin,
        peer: (Ipv4Addr::UNSPECIFIED, 0).into(),
        client: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        tls: false,
    })
}

/// Whether the browser reached us over TLS: our own, or a trusted proxy's that says so in
/// `X-Forwarded-Proto` (then cookies still get `Secure` and the origin is `https://`).
pub(crate) fn via_tls(state: &AppState, conn: &ConnInfo, headers: &HeaderMap) -> bool {
    conn.tls
        || (state.config.admin.listener.trusted_proxies.contains(&conn.peer.ip())
            && headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|p| p.trim().eq_ignore_ascii_case("https")))
}
