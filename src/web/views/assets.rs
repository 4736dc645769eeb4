//! The stylesheet and the script, compiled into the binary (no CDN, nothing to install) and
//! served on both listeners: the admin pages and the Provet panel use them.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};

use crate::web::{AppState, HttpResponse, only};

/// Versioned, so a new release is fetched at once however long browsers keep the old one.
pub const CSS_PATH: &str = concat!("/assets/smshub.css?v=", env!("CARGO_PKG_VERSION"));
pub const JS_PATH: &str = concat!("/assets/smshub.js?v=", env!("CARGO_PKG_VERSION"));

const CSS: &str = include_str!("smshub.css");
const JS: &str = include_str!("smshub.js");

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/assets/smshub.css", only("GET", get(|| async { asset("text/css; charset=utf-8", CSS) })))
        .route("/assets/smshub.js", only("GET", get(|| async { asset("text/javascript; charset=utf-8", JS) })))
}

fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("public, max-age=86400"));
    h.insert(HeaderName::from_static("x-content-type-options"), HeaderValue::from_static("nosniff"));
    resp
}
