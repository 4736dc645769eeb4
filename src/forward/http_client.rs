//! The HTTP client the forwarders share: hyper 1 through rustls (ring, webpki roots), plain
//! `http://` allowed because clinic servers on the LAN often have no certificate.
//!
//! Every call has one overall deadline (connect, send, headers and body together), because a
//! receiver that accepts the connection and then never answers must not stall a delivery
//! queue. The answer's body is read up to a bound: a forwarder only needs a little TwiML, and
//! an endless body from a misbehaving server must not fill the Pi's memory.

use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Request, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Default bound on an answer's body.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Sent as `User-Agent`, so the receiver's logs say who called.
const USER_AGENT: &str = concat!("smshub/", env!("CARGO_PKG_VERSION"));

/// A receiver's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpReply {
    pub status: u16,
    /// The `Content-Type` header, if there was a readable one.
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// Why a call produced no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("{url:?} is not a usable URL: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("no complete answer within {}s", .0.as_secs_f64())]
    Timeout(Duration),
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

/// The forwarders' HTTP client. Cheap to clone (the connection pool is shared).
#[derive(Clone)]
pub struct ForwardClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
    max_response_bytes: usize,
}

impl std::fmt::Debug for ForwardClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardClient")
            .field("timeout", &self.timeout)
            .field("max_response_bytes", &self.max_response_bytes)
            .finish_non_exhaustive()
    }
}

impl ForwardClient {
    /// A client whose every call must complete within `timeout`.
    pub fn new(timeout: Duration) -> ForwardClient {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            // A clinic server may close idle keep-alive connections early; do not keep them long.
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        ForwardClient { client, timeout, max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES }
    }

    /// Changes the bound on an answer's body (default [`DEFAULT_MAX_RESPONSE_BYTES`]).
    pub fn with_max_response_bytes(mut self, max: usize) -> ForwardClient {
        self.max_response_bytes = max;
        self
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// POSTs `body` as `application/x-www-form-urlencoded` to `url`, with `headers` added.
    /// Redirects are not followed (a webhook that moved is a configuration matter).
    pub async fn post_form(&self, url: &str, body: String, headers: &[(&str, &str)]) -> Result<HttpReply, HttpError> {
        let uri: Uri = url.parse().map_err(|e: hyper::http::uri::InvalidUri| HttpError::BadUrl {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        match uri.scheme_str() {
            Some("http") | Some("https") => {}
            _ => {
                return Err(HttpError::BadUrl {
                    url: url.to_string(),
                    reason: "the scheme must be http or https".into(),
                });
            }
        }
        if uri.host().is_none() {
            return Err(HttpError::BadUrl { url: url.to_string(), reason: "no host".into() });
        }
        let mut builder = Request::post(uri)
            .header(hyper::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(hyper::header::USER_AGENT, USER_AGENT)
            .header(hyper::header::ACCEPT, "*/*");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| HttpError::BadUrl { url: url.to_string(), reason: e.to_string() })?;
        match tokio::time::timeout(self.timeout, self.exchange(request)).await {
            Ok(result) => result,
            Err(_) => Err(HttpError::Timeout(self.timeout)),
        }
    }

    async fn exchange(&self, request: Request<Full<Bytes>>) -> Result<HttpReply, HttpError> {
        let response = self.client.request(request).await.map_err(|e| HttpError::Request(error_chain(&e)))?;
        let status = response.status().as_u16();
        let content_type =
            response.headers().get(hyper::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(|s| s.to_string());
        let limited = Limited::new(response.into_body(), self.max_response_bytes);
        let body = match limited.collect().await {
            Ok(collected) => collected.to_bytes().to_vec(),
            Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
                return Err(HttpError::TooLarge { status, max: self.max_response_bytes });
            }
            Err(e) => return Err(HttpError::Body { status, reason: e.to_string() }),
        };
        Ok(HttpReply { status, content_type, body })
    }
}

/// "client error (Connect): tcp connect error: Connection refused": hyper's top-level error
/// alone says only "client error (Connect)", the useful part is in the sources.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
pub(crate) mod test_server {
    //! A tiny HTTP/1.1 server on 127.0.0.1 for the forwarders' tests: answers each request with
    //! the next canned response and records what it received.

    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[derive(Debug, Clone)]
    pub struct Received {
        pub head: String,
        pub body: Vec<u8>,
    }

    impl Received {
        /// A header's value (name case-insensitive).
        pub fn header(&self, name: &str) -> Option<String> {
            self.head.lines().skip(1).find_map(|line| {
                let (n, v) = line.split_once(':')?;
                n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
        }

        pub fn form(&self) -> Vec<(String, String)> {
            form_urlencoded::parse(&self.body).into_owned().collect()
        }
    }

    #[derive(Debug, Clone)]
    pub enum Answer {
        /// Status, content type, body.
        Http(u16, &'static str, Vec<u8>),
        /// Read the request, then say nothing and keep the connection open.
        Silence,
    }

    pub struct TestServer {
        pub url: String,
        pub received: Arc<Mutex<Vec<Received>>>,
    }

    /// Serves `answers` in order (the last one repeats).
    pub async fn serve(path: &str, answers: Vec<Answer>) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        tokio::spawn(async move {
            let mut n = 0usize;
            loop {
                let Ok((mut sock, _)) = listener.accept().await else { return };
                let answer = answers.get(n).or(answers.last()).cloned().unwrap();
                n += 1;
                let log = log.clone();
                tokio::spawn(async move {
                    let Some(req) = read_request(&mut sock).await else { return };
                    log.lock().unwrap().push(req);
                    match answer {
                        Answer::Http(status, ct, body) => {
                            let head = format!(
                                "HTTP/1.1 {status} X\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                body.len()
                            );
                            let _ = sock.write_all(head.as_bytes()).await;
                            let _ = sock.write_all(&body).await;
                            let _ = sock.shutdown().await;
                        }
                        Answer::Silence => {
                            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                        }
                    }
                });
            }
        });
        TestServer { url: format!("http://{addr}{path}"), received }
    }

    async fn read_request(sock: &mut tokio::net::TcpStream) -> Option<Received> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = sock.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_string();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        let (n, v) = l.split_once(':')?;
                        n.eq_ignore_ascii_case("content-length").then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                let mut body = buf[end + 4..].to_vec();
                while body.len() < len {
                    let n = sock.read(&mut chunk).await.ok()?;
                    if n == 0 {
                        return None;
                    }
                    body.extend_from_slice(&chunk[..n]);
                }
                return Some(Received { head, body });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_server::{Answer, serve};
    use super::*;

    #[tokio::test]
    async fn a_form_post_reaches_the_server_with_its_headers() {
        let server = serve("/hook", vec![Answer::Http(200, "text/plain", b"ok".to_vec())]).await;
        let client = ForwardClient::new(Duration::from_secs(10));
        let reply = client.post_form(&server.url, "a=1&b=%C3%A4".into(), &[("X-Test", "yes")]).await.unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.content_type.as_deref(), Some("text/plain"));
        assert_eq!(reply.body, b"ok");
        let got = server.received.lock().unwrap()[0].clone();
        assert!(got.head.starts_with("POST /hook HTTP/1.1"), "{}", got.head);
        assert_eq!(got.header("x-test").as_deref(), Some("yes"));
        assert_eq!(got.header("content-type").as_deref(), Some("application/x-www-form-urlencoded"));
        assert_eq!(got.form(), vec![("a".to_string(), "1".to_string()), ("b".to_string(), "ä".to_string())]);
    }

    #[tokio::test]
    async fn an_oversized_answer_is_an_error_that_keeps_the_status() {
        let server = serve("/", vec![Answer::Http(200, "text/xml", vec![b'x'; 5000])]).await;
        let client = ForwardClient::new(Duration::from_secs(10)).with_max_response_bytes(1000);
        let err = client.post_form(&server.url, String::new(), &[]).await.unwrap_err();
        assert_eq!(err, HttpError::TooLarge { status: 200, max: 1000 });
        assert_eq!(err.status(), Some(200));
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let server = serve("/", vec![Answer::Silence]).await;
        let client = ForwardClient::new(Duration::from_millis(300));
        let err = client.post_form(&server.url, String::new(), &[]).await.unwrap_err();
        assert_eq!(err, HttpError::Timeout(Duration::from_millis(300)));
    }

    #[tokio::test]
    async fn a_refused_connection_names_the_cause() {
        // Bind and drop to get a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let client = ForwardClient::new(Duration::from_secs(10));
        let err = client.post_form(&format!("http://127.0.0.1:{port}/"), String::new(), &[]).await.unwrap_err();
        let HttpError::Request(text) = &err else { panic!("{err:?}") };
        assert!(text.to_lowercase().contains("refused"), "{text}");
    }

    #[tokio::test]
    async fn bad_urls_are_refused_before_any_io() {
        let client = ForwardClient::new(Duration::from_secs(1));
        for url in ["not a url", "ftp://example.com/x", "/relative/path"] {
            let err = client.post_form(url, String::new(), &[]).await.unwrap_err();
            assert!(matches!(err, HttpError::BadUrl { .. }), "{url}: {err:?}");
        }
    }
}
