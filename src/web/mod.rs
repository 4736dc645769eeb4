//! The HTTP server: `/healthz` and `/status` now; the Provet webhook and the local API plug
//! into [`route`].
//!
//! hyper 1 with one task per connection. On shutdown the listener stops accepting at once
//! and open connections get a bounded grace period to finish their request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::daemon::AppState;

pub mod provet_webhook;
pub mod reminders;
use crate::shutdown::ShutdownSignal;

/// How long open connections may take to finish once shutdown starts.
const GRACE: Duration = Duration::from_secs(5);

pub type HttpResponse = Response<Full<Bytes>>;

/// Builds a JSON response.
pub fn json(status: StatusCode, value: &serde_json::Value) -> HttpResponse {
    let mut resp = Response::new(Full::new(Bytes::from(value.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    resp
}

/// Builds a plain-text response.
pub fn text(status: StatusCode, body: impl Into<String>) -> HttpResponse {
    let mut resp = Response::new(Full::new(Bytes::from(body.into())));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

/// Reads a request body of at most `limit` bytes: a larger one (declared or actual) is 413,
/// one that cannot be read is 400 — the `Err` is the response to send.
pub async fn read_body(req: Request<Incoming>, limit: usize) -> Result<Bytes, HttpResponse> {
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

/// Dispatches one request.
pub async fn route(req: Request<Incoming>, state: Arc<AppState>) -> HttpResponse {
    let path = req.uri().path().to_string();
    if let Some(rest) = path.strip_prefix("/provet/") {
        let segments: Vec<&str> = rest.split('/').collect();
        if let [instance, "webhook", token] = segments.as_slice() {
            if req.method() != Method::POST {
                return text(StatusCode::METHOD_NOT_ALLOWED, "use POST\n");
            }
            return provet_webhook::handle(req, state, instance, token).await;
        }
        if let [instance, "reminders"] = segments.as_slice() {
            if req.method() != Method::POST {
                return text(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "use POST
",
                );
            }
            return reminders::handle(req, state, instance).await;
        }
    }
    match (req.method(), path.as_str()) {
        (&Method::GET, "/healthz") => {
            let report = state.health.report();
            let status = if report.healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            json(status, &serde_json::to_value(&report).unwrap_or_default())
        }
        (&Method::GET, "/status") => json(StatusCode::OK, &state.status_json().await),
        (_, "/healthz") | (_, "/status") => text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n"),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// Serves HTTP on `listener` until `shutdown` fires, then drains connections for [`GRACE`].
pub async fn serve(listener: TcpListener, state: Arc<AppState>, mut shutdown: ShutdownSignal) {
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
        let state = state.clone();
        let service = service_fn(move |req| {
            let state = state.clone();
            async move { Ok::<_, std::convert::Infallible>(route(req, state).await) }
        });
        let conn = http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(Duration::from_secs(10))
            .serve_connection(TokioIo::new(stream), service);
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
