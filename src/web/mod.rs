//! The HTTP surface: two listeners, each an axum [`Router`] served by hyper in our own accept
//! loop ([`server`]).
//!
//! - **Public** (`[http]`): what Provet Cloud and staff browsers inside Provet reach from the
//!   internet: [`provet_webhook`], [`reminders`] (the button), [`panel`] (the side panel),
//!   `/assets/*` (the stylesheet and script), and `GET /healthz` (a status code and
//!   `{"healthy": bool}`, nothing more).
//! - **Admin** (`[admin]`, loopback by default): sign-in ([`auth`]: `/login`, `/logout`), the web
//!   UI ([`views`]: `/` and the pages), `/status`, the local API ([`api`], `/api/v1/…`) and
//!   [`metrics`] (`/metrics`).
//!
//! Every answered request of either listener is counted by route template
//! ([`metrics::count_requests`]).
//!
//! A route of one surface is 404 on the other. [`state`] is what the handlers share with the
//! daemon, [`conn`] what they know about the connection, [`outsiders`] the summarised warnings.
//!
//! **Protecting an admin route.** Every admin request that is not GET/HEAD/OPTIONS has already
//! passed [`auth::csrf::same_origin`] (a layer on the whole admin router) before its handler
//! runs. The handler says who may call it by taking one extractor:
//! - [`auth::Caller`]: a signed-in person *or* a program with a token (`/status`; the local API
//!   and `/metrics` will take this or `Bearer`);
//! - [`auth::Bearer`]: programs only (`Authorization: Bearer <token>` from
//!   `smshub token create`); missing or wrong is 401 with `WWW-Authenticate`;
//! - [`auth::SignedIn`]: people only (pages); not signed in is a 303 to `/login`.
//!
//! A page form that changes something carries `SignedIn::csrf_token` in the hidden field
//! [`auth::csrf::CSRF_FIELD`], and its handler checks it with [`auth::csrf::form_token_ok`].

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::routing::{MethodRouter, get, post};
use http_body_util::BodyExt;
use hyper::body::Bytes;
use hyper::header::{ALLOW, CONNECTION, CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};

pub mod api;
pub mod auth;
pub mod conn;
pub mod metrics;
pub mod outsiders;
pub mod panel;
pub mod provet_webhook;
pub mod reminders;
pub mod server;
pub mod state;
pub mod status;
pub mod views;

pub use state::AppState;

pub type HttpResponse = Response<Body>;

/// Builds a JSON response.
pub fn json(status: StatusCode, value: &serde_json::Value) -> HttpResponse {
    respond(status, "application/json", value.to_string())
}

/// Builds a plain-text response.
pub fn text(status: StatusCode, body: impl Into<String>) -> HttpResponse {
    respond(status, "text/plain; charset=utf-8", body.into())
}

/// Builds a response with a body known at compile time.
pub fn respond_static(status: StatusCode, content_type: &'static str, body: &'static str) -> HttpResponse {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> HttpResponse {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// Reads a request body of at most `limit` bytes within the request's deadline: a larger one
/// (declared or actual) is 413, one too slow is 408 (and the connection closes), one that cannot
/// be read is 400 — the `Err` is the response to send.
pub async fn read_body(req: axum::extract::Request, limit: usize) -> Result<Bytes, HttpResponse> {
    let deadline = req.extensions().get::<server::RequestDeadline>().map(|d| d.0);
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let too_big = || text(StatusCode::PAYLOAD_TOO_LARGE, format!("body larger than {limit} bytes\n"));
    if declared.is_some_and(|n| n > limit) {
        return Err(too_big());
    }
    let collect = http_body_util::Limited::new(req.into_body(), limit).collect();
    let collected = match deadline {
        Some(d) => match tokio::time::timeout_at(d, collect).await {
            Ok(r) => r,
            Err(_) => {
                let mut resp = text(StatusCode::REQUEST_TIMEOUT, "the request was not complete in time\n");
                resp.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
                return Err(resp);
            }
        },
        None => collect.await,
    };
    match collected {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(too_big()),
        Err(e) => Err(text(StatusCode::BAD_REQUEST, format!("could not read the body: {e}\n"))),
    }
}

/// `route` answers only `method` (e.g. "GET" or "GET, POST"); any other method gets 405 with
/// `Allow` and a line saying which.
pub(crate) fn only(method: &'static str, route: MethodRouter<Arc<AppState>>) -> MethodRouter<Arc<AppState>> {
    route.fallback(move || async move {
        let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, format!("use {method}\n"));
        resp.headers_mut().insert(ALLOW, HeaderValue::from_static(method));
        resp
    })
}

fn not_found() -> HttpResponse {
    text(StatusCode::NOT_FOUND, "not found\n")
}

/// The public listener's routes. Anything else is 404.
pub fn public_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", only("GET", get(status::healthz)))
        .route("/provet/{instance}/webhook/{token}", only("POST", post(provet_webhook::handle)))
        // Provet's buttons can be set to send GET as well as POST.
        .route("/provet/{instance}/reminders", only("GET, POST", get(reminders::handle).post(reminders::handle)))
        .route("/provet/{instance}/panel/client", only("GET, POST", get(panel::client).post(panel::client)))
        .route("/provet/{instance}/panel/patient", only("GET, POST", get(panel::patient).post(panel::patient)))
        .route("/provet/{instance}/panel/send", only("POST", post(panel::send)))
        .merge(views::assets::routes())
        .fallback(|| async { not_found() })
        .route_layer(axum::middleware::from_fn(metrics::mark_route))
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::count_requests))
        .with_state(state)
}

/// The admin listener's routes. Anything else is 404. Every state-changing request must come
/// from this listener's own origin (or carry a token): [`auth::csrf::same_origin`].
/// Under `/api/` every error answer is JSON ([`api::json_errors`]).
pub fn admin_router(state: Arc<AppState>) -> Router {
    let router = Router::new()
        .merge(views::routes())
        .route("/login", only("GET, POST", get(auth::login::form).post(auth::login::submit)))
        .route("/logout", only("POST", post(auth::login::logout)))
        .route("/status", only("GET", get(status::status)))
        .route("/metrics", only("GET", get(metrics::metrics)));
    api::add_routes(router)
        .fallback(|| async { not_found() })
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::csrf::same_origin))
        .route_layer(axum::middleware::from_fn(metrics::mark_route))
        .layer(axum::middleware::from_fn(api::json_errors))
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::count_requests))
        .with_state(state)
}
