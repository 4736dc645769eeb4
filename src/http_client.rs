//! The one outbound HTTP client: hyper 1 through rustls (the shared [`crate::tls`] config),
//! used by the Provet client and the forwarders.
//!
//! Every exchange has one overall deadline (connect, send, headers and body together), because a
//! server that accepts the connection and then never answers must not stall a queue, and the
//! answer's body is read up to a bound, because an endless body from a misbehaving server must
//! not fill the Pi's memory. Callers map [`HttpError`] to what it means for them.

use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::HeaderMap;
use hyper::{Request, StatusCode};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Sent as `User-Agent`, so the other side's logs say who called.
pub const USER_AGENT: &str = concat!("smshub/", env!("CARGO_PKG_VERSION"));

/// Which URL schemes a client may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schemes {
    HttpsOnly,
    /// Plain `http://` too: clinic servers on the LAN often have no certificate; Provet only
    /// with `allow_insecure_http` (tests, the demo).
    HttpOrHttps,
}

/// A complete answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The `Content-Type` header, if there is a readable one.
    pub fn content_type(&self) -> Option<&str> {
        self.headers.get(hyper::header::CONTENT_TYPE).and_then(|v| v.to_str().ok())
    }
}

/// Why an exchange produced no complete answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("no complete answer within {}s", .0.as_secs_f64())]
    Timeout(Duration),
    /// Connecting or sending failed, or the server broke the exchange before a status.
    #[error("request failed: {0}")]
    Request(String),
    /// The status came, but the body was larger than the bound.
    #[error("HTTP {status}: answer body larger than {max} bytes (rejected)")]
    TooLarge { status: u16, max: usize },
    #[error("HTTP {status}: reading the answer body failed: {reason}")]
    Body { status: u16, reason: String },
}

impl HttpError {
    /// The HTTP status, when the server got as far as sending one.
    pub fn status(&self) -> Option<u16> {
        match self {
            HttpError::TooLarge { status, .. } | HttpError::Body { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// An HTTP client with a deadline per exchange and a bound on answer bodies. Cheap to clone
/// (the connection pool is shared).
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
    max_body: usize,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("timeout", &self.timeout)
            .field("max_body", &self.max_body)
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    /// A client whose every exchange must complete within `timeout`, reading at most
    /// `max_body` bytes of an answer.
    pub fn new(schemes: Schemes, timeout: Duration, max_body: usize) -> HttpClient {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        let builder = HttpsConnectorBuilder::new().with_tls_config((*crate::tls::client_config()).clone());
        let builder = match schemes {
            Schemes::HttpsOnly => builder.https_only(),
            Schemes::HttpOrHttps => builder.https_or_http(),
        };
        let connector = builder.enable_http1().wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            // Servers may close idle keep-alive connections early; do not keep them long.
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        HttpClient { client, timeout, max_body }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn max_body(&self) -> usize {
        self.max_body
    }

    /// Changes the bound on an answer's body.
    pub fn with_max_body(mut self, max: usize) -> HttpClient {
        self.max_body = max;
        self
    }

    /// Sends `request` and reads the whole answer, all within the deadline. Redirects are not
    /// followed.
    pub async fn send(&self, request: Request<Full<Bytes>>) -> Result<Reply, HttpError> {
        match tokio::time::timeout(self.timeout, self.exchange(request)).await {
            Ok(result) => result,
            Err(_) => Err(HttpError::Timeout(self.timeout)),
        }
    }

    async fn exchange(&self, request: Request<Full<Bytes>>) -> Result<Reply, HttpError> {
        let response = self.client.request(request).await.map_err(|e| HttpError::Request(error_chain(&e)))?;
        let (parts, body) = response.into_parts();
        let status = parts.status.as_u16();
        let body = match Limited::new(body, self.max_body).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
                return Err(HttpError::TooLarge { status, max: self.max_body });
            }
            Err(e) => return Err(HttpError::Body { status, reason: e.to_string() }),
        };
        Ok(Reply { status: parts.status, headers: parts.headers, body })
    }
}

/// An error and its sources on one line: hyper's top-level error alone says only "client error
/// (Connect)"; the useful part ("tcp connect error: Connection refused") is in the sources.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
