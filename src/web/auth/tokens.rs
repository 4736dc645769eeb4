//! Tokens for programs: `Authorization: Bearer <token>` on the admin listener.
//!
//! `smshub token create NAME` makes a token and stores only its SHA-256; [`Bearer`] finds the
//! token's name by that hash. A missing, malformed, unknown or revoked token is 401 with
//! `WWW-Authenticate: Bearer realm="smshub"`; wrong ones are counted in the summarised
//! outsider warnings (never logged one by one, never with the token).

use std::sync::Arc;

use axum::extract::FromRequestParts;
use hyper::StatusCode;
use hyper::header::{AUTHORIZATION, HeaderValue, WWW_AUTHENTICATE};
use hyper::http::request::Parts;

use super::{conn_info, secrets};
use crate::web::{AppState, HttpResponse, text};

/// A program that showed a valid token: the token's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bearer {
    pub name: String,
}

impl FromRequestParts<Arc<AppState>> for Bearer {
    type Rejection = HttpResponse;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let Some(header) = parts.headers.get(AUTHORIZATION) else {
            return Err(unauthorized(None));
        };
        let token = header.to_str().ok().and_then(bearer_token).filter(|t| secrets::is_token(t));
        let found = match token {
            Some(t) => {
                let hash = secrets::digest(t);
                match state.store.call(move |db| db.token_name(&hash)).await {
                    Ok(name) => name,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read tokens");
                        return Err(text(StatusCode::SERVICE_UNAVAILABLE, "the database did not answer; try again\n"));
                    }
                }
            }
            None => None,
        };
        match found {
            Some(name) => Ok(Bearer { name }),
            None => {
                let conn = conn_info(&parts.extensions);
                state.outsiders.note("request with a wrong or revoked API token", conn.surface, conn.client);
                Err(unauthorized(Some("invalid_token")))
            }
        }
    }
}

/// The token of an `Authorization` value: `Bearer <token>`, the scheme in any case.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// 401 asking for a token (RFC 6750); `error` when one was given and refused.
pub fn unauthorized(error: Option<&'static str>) -> HttpResponse {
    let mut resp = text(
        StatusCode::UNAUTHORIZED,
        match error {
            Some(_) => "the token is wrong or revoked\n",
            None => "sign in, or send a token: Authorization: Bearer <token> (smshub token create NAME)\n",
        },
    );
    let challenge = match error {
        Some(e) => format!("Bearer realm=\"smshub\", error=\"{e}\""),
        None => "Bearer realm=\"smshub\"".to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        resp.headers_mut().insert(WWW_AUTHENTICATE, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_follows_the_bearer_scheme() {
        assert_eq!(bearer_token("Bearer smshub_abc"), Some("smshub_abc"));
        assert_eq!(bearer_token("bearer  smshub_abc "), Some("smshub_abc"));
        assert_eq!(bearer_token("Basic YWxhZGRpbjpvcGVu"), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token(""), None);
    }
}
