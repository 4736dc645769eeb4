//! Redirects after a sign-in step: 303 to a local path, and which `next` paths are safe to follow.

use hyper::header::{HeaderValue, LOCATION};
use hyper::{Response, StatusCode};

use crate::web::HttpResponse;

/// Longest `next` path followed after login.
const MAX_NEXT_LEN: usize = 512;

/// 303 See Other to a local `location`.
pub fn see_other(location: &str) -> HttpResponse {
    let mut resp = Response::new(axum::body::Body::empty());
    *resp.status_mut() = StatusCode::SEE_OTHER;
    let value = HeaderValue::from_str(location).unwrap_or_else(|_| HeaderValue::from_static("/"));
    resp.headers_mut().insert(LOCATION, value);
    resp
}

/// `next` if it is a path on this listener: starts with one `/`, no backslash, no control
/// characters, not too long. Anything else (`//evil.example`, `https://…`) is not followed.
pub fn safe_next(next: &str) -> Option<&str> {
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(char::is_control)
        && next.len() <= MAX_NEXT_LEN;
    local.then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_login() {
        for ok in ["/", "/outbox?state=failed", "/a/b#c"] {
            assert_eq!(safe_next(ok), Some(ok));
        }
        for bad in [
            "",
            "//evil.example/",
            "/\\evil.example",
            "https://evil.example/",
            "evil",
            "/a\nb",
            &format!("/{}", "a".repeat(600)),
        ] {
            assert_eq!(safe_next(bad), None, "{bad:?}");
        }
    }
}
