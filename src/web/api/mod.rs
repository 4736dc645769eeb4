//! The local API, `/api/v1/…` on the admin listener: for the clinic's own programs (a token
//! from `smshub token create`) and signed-in people. One file per resource:
//! [`messages`] (send, one, list), [`inbox`], [`optouts`], [`openapi`] (the document).
//!
//! - **One route list** ([`ROUTES`]): the admin router is built from it and a test checks that
//!   every path and method in it is in `docs/openapi.json`.
//! - **JSON errors everywhere under `/api/`**: `{"error": "<code>", "reason": "<sentence>"}`.
//!   Our handlers answer so themselves; [`json_errors`] rewrites every other error answer under
//!   `/api/` (401 from the token check, 404 and 405 from the router, 413 and 408 from the body
//!   reader, 403 from the origin check) and keeps its headers (`WWW-Authenticate`, `Allow`).
//! - 400 is a request we cannot read (malformed JSON, a missing or unknown field, a bad number,
//!   an empty or too long text); 422 is only "refused by policy" (the number opted out); 409
//!   is an idempotency key used before for another number or text; 429 is over `[api]
//!   per_hour`, with `Retry-After`.

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::middleware::Next;
use axum::routing::{MethodRouter, delete, get};
use http_body_util::BodyExt;
use hyper::StatusCode;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};

use super::{AppState, HttpResponse, json};

pub mod inbox;
pub mod messages;
pub mod openapi;
pub mod optouts;

/// One route of the API: its path template, the methods it answers, and its handlers.
pub struct Route {
    pub path: &'static str,
    /// As in an `Allow` header, e.g. "GET, POST".
    pub methods: &'static str,
    handlers: fn() -> MethodRouter<Arc<AppState>>,
}

/// Every API route. The router is built from this list, and the OpenAPI test reads it.
pub const ROUTES: &[Route] = &[
    Route { path: "/api/v1/messages", methods: "GET, POST", handlers: || get(messages::list).post(messages::send) },
    Route { path: "/api/v1/messages/{id}", methods: "GET", handlers: || get(messages::one) },
    Route { path: "/api/v1/inbox", methods: "GET", handlers: || get(inbox::list) },
    Route { path: "/api/v1/optouts", methods: "GET, POST", handlers: || get(optouts::list).post(optouts::add) },
    Route { path: "/api/v1/optouts/{number}", methods: "DELETE", handlers: || delete(optouts::remove) },
    Route { path: "/api/v1/openapi.json", methods: "GET", handlers: || get(openapi::document) },
];

/// Adds [`ROUTES`] to the admin router.
pub fn add_routes(mut router: Router<Arc<AppState>>) -> Router<Arc<AppState>> {
    for r in ROUTES {
        router = router.route(r.path, super::only(r.methods, (r.handlers)()));
    }
    router
}

/// The largest JSON body the API reads (a send is a number, at most ten parts of text and a
/// key: well under 8 KiB even in UCS-2 escapes).
pub const MAX_BODY: usize = 16 * 1024;

/// The most rows one list answer holds, and how many when `limit` is not given.
pub const MAX_LIMIT: usize = 500;
pub const DEFAULT_LIMIT: usize = 50;

/// An API error answer: `{"error": code, "reason": reason}`.
pub fn error(status: StatusCode, code: &str, reason: impl Into<String>) -> HttpResponse {
    json(status, &serde_json::json!({"error": code, "reason": reason.into()}))
}

/// A 400 with `reason`.
pub fn bad_request(reason: impl Into<String>) -> HttpResponse {
    error(StatusCode::BAD_REQUEST, "bad_request", reason)
}

/// Why a request cannot be read (400), from the checks that run before a handler's work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable(pub String);

impl From<Unreadable> for HttpResponse {
    fn from(u: Unreadable) -> HttpResponse {
        bad_request(u.0)
    }
}

/// 503 when the database did not answer (logged with the error; the caller may retry).
pub fn store_unavailable(e: &crate::store::StoreError) -> HttpResponse {
    tracing::error!(error = %e, "API: the database did not answer");
    error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the database did not answer; try again")
}

/// The error code of a status: its canonical reason in snake case ("method_not_allowed").
fn code_of(status: StatusCode) -> String {
    status.canonical_reason().unwrap_or("error").to_ascii_lowercase().replace([' ', '-'], "_")
}

/// The middleware that makes every error answer under `/api/` JSON (see the module doc).
pub async fn json_errors(req: Request, next: Next) -> HttpResponse {
    if !req.uri().path().starts_with("/api/") {
        return next.run(req).await;
    }
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let is_text =
        resp.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| ct.starts_with("text/plain"));
    let (mut parts, body) = resp.into_parts();
    // Our own error texts are one line; axum's rejections are short too. Bounded all the same.
    let text = match http_body_util::Limited::new(body, 4096).collect().await {
        Ok(b) if is_text => String::from_utf8_lossy(&b.to_bytes()).trim().to_string(),
        _ => String::new(),
    };
    let reason = match (text.is_empty(), status) {
        (false, _) => text,
        // The origin check's page is HTML; under /api/ that is its only 403.
        (true, StatusCode::FORBIDDEN) => {
            "refused: the request came from another site (Origin/Referer) and carried no token".to_string()
        }
        (true, _) => status.canonical_reason().unwrap_or("error").to_string(),
    };
    let body = serde_json::json!({"error": code_of(status), "reason": reason}).to_string();
    parts.headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(CONTENT_LENGTH);
    HttpResponse::from_parts(parts, axum::body::Body::from(body))
}

/// Whether the request says its body is JSON (`application/json`, parameters allowed).
pub fn is_json(req: &Request) -> bool {
    req.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// Reads a JSON body into `T` (`deny_unknown_fields` types): 415 for another content type,
/// 413 when larger than [`MAX_BODY`], 400 with serde's sentence when it does not parse.
pub async fn read_json<T: serde::de::DeserializeOwned>(req: Request) -> Result<T, HttpResponse> {
    if !is_json(&req) {
        return Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with Content-Type: application/json",
        ));
    }
    let body = super::read_body(req, MAX_BODY).await?;
    serde_json::from_slice(&body).map_err(|e| bad_request(format!("the body is not the JSON expected: {e}")))
}

/// The query parameters of `req` as (name, value) pairs; a name outside `allowed` or given
/// twice is a 400.
pub fn query(req_query: Option<&str>, allowed: &[&str]) -> Result<Vec<(String, String)>, Unreadable> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in form_urlencoded::parse(req_query.unwrap_or("").as_bytes()) {
        if !allowed.contains(&k.as_ref()) {
            let shown: String = k.chars().take(40).collect();
            return Err(Unreadable(match allowed {
                [] => format!("unknown query parameter {shown:?}; this call takes none"),
                _ => format!("unknown query parameter {shown:?}; allowed: {}", allowed.join(", ")),
            }));
        }
        if out.iter().any(|(n, _)| *n == k) {
            return Err(Unreadable(format!("query parameter {k} given twice")));
        }
        out.push((k.into_owned(), v.into_owned()));
    }
    Ok(out)
}

/// `limit` from a query: 1 to [`MAX_LIMIT`], [`DEFAULT_LIMIT`] when absent.
pub fn limit(params: &[(String, String)]) -> Result<usize, Unreadable> {
    match params.iter().find(|(k, _)| k == "limit") {
        None => Ok(DEFAULT_LIMIT),
        Some((_, v)) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| Unreadable(format!("limit must be a whole number from 1 to {MAX_LIMIT}"))),
    }
}

/// The audit actor of a caller: `token:<name>` or `user:<name>`.
pub fn actor(caller: &super::auth::Caller) -> String {
    match caller {
        super::auth::Caller::Program(b) => format!("token:{}", b.name),
        super::auth::Caller::Person(s) => format!("user:{}", s.user),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_api_route_and_method_is_in_the_openapi_document() {
        let doc: serde_json::Value = serde_json::from_str(openapi::DOCUMENT).expect("docs/openapi.json is JSON");
        let version = doc["openapi"].as_str().unwrap_or("");
        assert!(version.starts_with("3."), "openapi: {version:?}");
        let mut checked = 0;
        for r in ROUTES {
            for method in r.methods.split(", ") {
                let op = &doc["paths"][r.path][method.to_ascii_lowercase()];
                assert!(op.is_object(), "{method} {} is not in docs/openapi.json", r.path);
                assert!(op["responses"].is_object(), "{method} {} has no responses", r.path);
                checked += 1;
            }
        }
        assert_eq!(checked, 8);
        // And nothing in the document that the router does not serve.
        for (path, ops) in doc["paths"].as_object().unwrap() {
            let route = ROUTES.iter().find(|r| r.path == path).unwrap_or_else(|| panic!("{path} is not served"));
            for method in ops.as_object().unwrap().keys().filter(|k| *k != "parameters") {
                assert!(
                    route.methods.split(", ").any(|m| m.eq_ignore_ascii_case(method)),
                    "{method} {path} is documented but not served"
                );
            }
        }
    }

    #[test]
    fn query_parameters_are_strict_and_limits_bounded() {
        assert!(query(Some("limit=5&state=sent"), &["limit", "state"]).is_ok());
        assert!(query(Some("limit=5&limit=6"), &["limit"]).is_err());
        assert!(query(Some("bogus=1"), &["limit"]).is_err());
        assert!(query(Some("x=1"), &[]).unwrap_err().0.contains("takes none"));
        assert_eq!(query(None, &[]), Ok(vec![]));
        let l = |v: &str| limit(&[("limit".to_string(), v.to_string())]).ok();
        assert_eq!(l("1"), Some(1));
        assert_eq!(l("500"), Some(500));
        for bad in ["0", "-1", "501", "99999999999999999999999", "ten", ""] {
            assert_eq!(l(bad), None, "{bad}");
        }
        assert_eq!(limit(&[]).ok(), Some(DEFAULT_LIMIT));
    }

    #[test]
    fn error_codes_are_snake_case_reasons() {
        assert_eq!(code_of(StatusCode::METHOD_NOT_ALLOWED), "method_not_allowed");
        assert_eq!(code_of(StatusCode::PAYLOAD_TOO_LARGE), "payload_too_large");
        assert_eq!(code_of(StatusCode::UNAUTHORIZED), "unauthorized");
    }
}
