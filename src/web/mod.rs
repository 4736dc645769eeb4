//! The HTTP server: an axum [`Router`] served by hyper inside our own accept loop.
//!
//! The files mirror the HTTP surface: [`status`] (`/healthz`, `/status`), [`provet_webhook`]
//! (`POST /provet/<instance>/webhook/<token>`), [`reminders`] (`POST /provet/<instance>/reminders`);
//! [`state`] is what the handlers share with the daemon. [`router`] is the one table of routes.
//!
//! Why our own accept loop instead of `axum::serve`: it keeps the knobs a box on the internet
//! needs in one place (hyper's header-read timeout, one task per connection, a bounded graceful
//! drain on shutdown, a pause when accepting fails), which `axum::serve` does not expose.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::{MethodRouter, get, post};
use http_body_util::BodyExt;
use hyper::body::Bytes;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

pub mod provet_webhook;
pub mod reminders;
pub mod state;
pub mod status;

pub use state::AppState;

use crate::shutdown::ShutdownSignal;

/// How long open connections may take to finish once shutdown starts.
const GRACE: Duration = Duration::from_secs(5);

/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

pub type HttpResponse = Response<Body>;

/// Builds a JSON response.
pub fn json(status: StatusCode, value: &serde_json::Value) -> HttpResponse {
    respond(status, "application/json", value.to_string())
}

/// Builds a plain-text response.
pub fn text(status: StatusCode, body: impl Into<String>) -> HttpResponse {
    respond(status, "text/plain; charset=utf-8", body.into())
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> HttpResponse {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// Reads a request body of at most `limit` bytes: a larger one (declared or actual) is 413,
/// one that cannot be read is 400 — the `Err` is the response to send.
pub async fn read_body(req: axum::extract::Request, limit: usize) -> Result<Bytes, HttpResponse> {
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let too_big = || text(StatusCode::PAYLOAD_TOO_LARGE, format!("body larger than {limit} bytes\n"));
    if declared.is_some_and(|n| n > limit) {
        return Err(too_big());
    }
    match http_body_util::Limited::new(req.into_body(), limit).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(too_big()),
        Err(e) => Err(text(StatusCode::BAD_REQUEST, format!("could not read the body: {e}\n"))),
    }
}

/// `route` answers only `method`; any other method gets 405 with `Allow` and a line saying which.
fn only(method: &'static str, route: MethodRouter<Arc<AppState>>) -> MethodRouter<Arc<AppState>> {
    route.fallback(move || async move {
        let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, format!("use {method}\n"));
        resp.headers_mut().insert(ALLOW, HeaderValue::from_static(method));
        resp
    })
}

/// Every route the server answers. Anything else is 404.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", only("GET", get(status::healthz)))
        .route("/status", only("GET", get(status::status)))
        .route("/provet/{instance}/webhook/{token}", only("POST", post(provet_webhook::handle)))
        .route("/provet/{instance}/reminders", only("POST", post(reminders::handle)))
        .fallback(|| async { text(StatusCode::NOT_FOUND, "not found\n") })
        .with_state(state)
}

/// Serves HTTP on `listener` until `shutdown` fires, then drains connections for [`GRACE`].
pub async fn serve(listener: TcpListener, state: Arc<AppState>, mut shutdown: ShutdownSignal) {
    let app = router(state);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait() => break,
        };
        let (stream, peer): (_, SocketAddr) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Running out of file descriptors must not spin the CPU.
                tracing::warn!(error = %e, "accepting an HTTP connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let conn = http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(GRACE, graceful.shutdown()).await.is_err() {
        tracing::warn!("open HTTP connections did not finish within {GRACE:?}; closing them");
    }
}
