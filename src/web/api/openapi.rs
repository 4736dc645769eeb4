//! `GET /api/v1/openapi.json`: the OpenAPI 3 document of the API (`docs/openapi.json`, built
//! in). It describes the API and holds no secret, so it is served without a token.

use hyper::StatusCode;
use hyper::header::{CACHE_CONTROL, HeaderValue};

use crate::web::{HttpResponse, respond_static};

/// The document, as shipped in the repository.
pub const DOCUMENT: &str = include_str!("../../../docs/openapi.json");

pub async fn document() -> HttpResponse {
    let mut resp = respond_static(StatusCode::OK, "application/json", DOCUMENT);
    resp.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}
