//! Cross-site request forgery, refused twice over on the admin listener:
//!
//! 1. [`same_origin`], a middleware on every admin request that can change something (any
//!    method but GET, HEAD and OPTIONS): a present `Origin` (or, without one, `Referer`) must be
//!    this listener's own origin — the scheme we serve (`https` under TLS), the `Host` the
//!    browser asked for, and its port (another port on the same host is another origin). A
//!    request with neither header is let through only with an `Authorization` header: browsers
//!    send `Origin` with every POST, and no page of another site can add `Authorization`
//!    without a CORS preflight we never grant; the handler then checks the token itself. This
//!    is what guards the login form (there is no session yet to hold a token).
//! 2. [`form_token_ok`]: every state-changing form of a session carries its CSRF token in the
//!    hidden field [`CSRF_FIELD`], compared in constant time.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use hyper::header::{AUTHORIZATION, HOST, ORIGIN, REFERER};
use hyper::{HeaderMap, Method, StatusCode};

use super::{SignedIn, conn_info, html, secrets, via_tls};
use crate::web::{AppState, HttpResponse};

/// The hidden form field holding the session's CSRF token.
pub const CSRF_FIELD: &str = "csrf_token";

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `Origin`/`Referer` names another origin (or `null`, or is unreadable).
    OtherOrigin,
    /// Neither header and no token: not what a browser or a program of ours sends.
    NoOrigin,
}

/// The middleware (see the module doc).
pub async fn same_origin(State(state): State<Arc<AppState>>, req: Request, next: Next) -> HttpResponse {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    let conn = conn_info(req.extensions());
    let scheme = if via_tls(&state, &conn, req.headers()) { "https" } else { "http" };
    match check(req.headers(), scheme) {
        Ok(()) => next.run(req).await,
        Err(refusal) => {
            state.outsiders.note("admin POST refused: it came from another site", conn.surface, conn.client);
            let why = match refusal {
                Refusal::OtherOrigin => "This form was sent from another site or address, so smshub did not act on it.",
                Refusal::NoOrigin => {
                    "The request did not say where it came from (no Origin or Referer) and carried no token."
                }
            };
            html::error(StatusCode::FORBIDDEN, "Refused", why)
        }
    }
}

/// The origin rule on a state-changing request's headers, `scheme` being what we serve.
pub fn check(headers: &HeaderMap, scheme: &str) -> Result<(), Refusal> {
    let header = |name| headers.get(name).map(|v| v.to_str().ok());
    let claimed = match (header(ORIGIN), header(REFERER)) {
        (Some(origin), _) => origin.and_then(parse_origin),
        (None, Some(referer)) => referer.and_then(parse_origin),
        (None, None) => {
            return if headers.contains_key(AUTHORIZATION) { Ok(()) } else { Err(Refusal::NoOrigin) };
        }
    };
    let ours = headers.get(HOST).and_then(|h| h.to_str().ok()).and_then(|host| origin(scheme, host));
    match (claimed, ours) {
        (Some(c), Some(o)) if c == o => Ok(()),
        _ => Err(Refusal::OtherOrigin),
    }
}

/// `scheme://host[:port]` of an `Origin` value or a `Referer` URL, normalised.
fn parse_origin(value: &str) -> Option<String> {
    let (scheme, rest) = value.trim().split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?;
    origin(&scheme, authority)
}

/// The normalised origin of `host` (a `Host` value or a URL's authority) under `scheme`:
/// lowercase, without the scheme's default port. `None` for anything with user info or empty.
fn origin(scheme: &str, host: &str) -> Option<String> {
    let host = host.trim().to_ascii_lowercase();
    if host.is_empty() || host.contains('@') || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    let default_port = if scheme == "https" { ":443" } else { ":80" };
    let host = host.strip_suffix(default_port).unwrap_or(&host);
    Some(format!("{scheme}://{host}"))
}

/// Whether a submitted form carries the session's CSRF token.
pub fn form_token_ok(session: &SignedIn, submitted: Option<&str>) -> bool {
    tokens_match(&session.csrf_token, submitted)
}

fn tokens_match(expected: &str, submitted: Option<&str>) -> bool {
    submitted.is_some_and(|t| secrets::same(t, expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    #[test]
    fn only_our_own_origin_may_post() {
        let host = ("host", "127.0.0.1:8081");
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, Result<(), Refusal>);
        let cases: &[Case] = &[
            (&[host, ("origin", "http://127.0.0.1:8081")], "http", Ok(())),
            (&[host, ("origin", "HTTP://127.0.0.1:8081")], "http", Ok(())),
            (&[host, ("origin", "http://127.0.0.1:8080")], "http", Err(Refusal::OtherOrigin)),
            (&[host, ("origin", "https://127.0.0.1:8081")], "http", Err(Refusal::OtherOrigin)),
            (&[host, ("origin", "http://127.0.0.1:8081")], "https", Err(Refusal::OtherOrigin)),
            (&[host, ("origin", "http://evil.example")], "http", Err(Refusal::OtherOrigin)),
            (&[host, ("origin", "null")], "http", Err(Refusal::OtherOrigin)),
            // Origin wins over Referer.
            (
                &[host, ("origin", "http://evil.example"), ("referer", "http://127.0.0.1:8081/")],
                "http",
                Err(Refusal::OtherOrigin),
            ),
            (&[host, ("referer", "http://127.0.0.1:8081/login?next=/")], "http", Ok(())),
            (&[host, ("referer", "http://127.0.0.1:8081")], "http", Ok(())),
            (&[host, ("referer", "http://127.0.0.1:80811/")], "http", Err(Refusal::OtherOrigin)),
            (&[host, ("referer", "http://user@127.0.0.1:8081/")], "http", Err(Refusal::OtherOrigin)),
            (&[host, ("referer", "/relative")], "http", Err(Refusal::OtherOrigin)),
            (&[host], "http", Err(Refusal::NoOrigin)),
            (&[host, ("authorization", "Bearer x")], "http", Ok(())),
            (&[("origin", "http://127.0.0.1:8081")], "http", Err(Refusal::OtherOrigin)),
            // Default ports are the same origin as none.
            (&[("host", "sms.example:443"), ("origin", "https://sms.example")], "https", Ok(())),
            (&[("host", "SMS.example"), ("origin", "https://sms.example:443")], "https", Ok(())),
            (&[("host", "sms.example"), ("origin", "http://sms.example:80")], "http", Ok(())),
            (&[("host", "[::1]:8081"), ("origin", "http://[::1]:8081")], "http", Ok(())),
        ];
        for (h, scheme, want) in cases {
            assert_eq!(check(&headers(h), scheme), *want, "{h:?} under {scheme}");
        }
    }

    #[test]
    fn the_form_token_must_be_the_sessions() {
        let expected = "AAAAAAAAAAAAAAAAAAAAAA";
        assert!(tokens_match(expected, Some("AAAAAAAAAAAAAAAAAAAAAA")));
        assert!(!tokens_match(expected, Some("AAAAAAAAAAAAAAAAAAAAAB")));
        assert!(!tokens_match(expected, Some("")));
        assert!(!tokens_match(expected, None));
    }
}
