//! The forwarders' HTTP client: form POSTs to the clinic's webhooks through the one outbound
//! client ([`crate::http_client`]), with its deadline and body bound. Plain `http://` is
//! allowed, because clinic servers on the LAN often have no certificate.

use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Uri};

use crate::http_client::{HttpClient, HttpError, Schemes, USER_AGENT};

/// Default bound on an answer's body: a forwarder only needs a little TwiML.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// A receiver's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpReply {
    pub status: u16,
    /// The `Content-Type` header, if there was a readable one.
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// Why a POST produced no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PostError {
    /// Refused before any I/O; retrying cannot help.
    #[error("{url:?} is not a usable URL: {reason}")]
    BadUrl { url: String, reason: String },
    #[error(transparent)]
    Http(#[from] HttpError),
}

impl PostError {
    /// The HTTP status, when the server got as far as sending one.
    pub fn status(&self) -> Option<u16> {
        match self {
            PostError::Http(e) => e.status(),
            PostError::BadUrl { .. } => None,
        }
    }
}

/// The forwarders' HTTP client. Cheap to clone (the connection pool is shared).
#[derive(Clone, Debug)]
pub struct ForwardClient {
    http: HttpClient,
}

impl ForwardClient {
    /// A client whose every call must complete within `timeout`.
    pub fn new(timeout: Duration) -> ForwardClient {
        ForwardClient { http: HttpClient::new(Schemes::HttpOrHttps, timeout, DEFAULT_MAX_RESPONSE_BYTES) }
    }

    /// Changes the bound on an answer's body (default [`DEFAULT_MAX_RESPONSE_BYTES`]).
    pub fn with_max_response_bytes(self, max: usize) -> ForwardClient {
        ForwardClient { http: self.http.with_max_body(max) }
    }

    pub fn timeout(&self) -> Duration {
        self.http.timeout()
    }

    /// POSTs `body` as `application/x-www-form-urlencoded` to `url`, with `headers` added.
    /// Redirects are not followed (a webhook that moved is a configuration matter).
    pub async fn post_form(&self, url: &str, body: String, headers: &[(&str, &str)]) -> Result<HttpReply, PostError> {
        let bad = |reason: String| PostError::BadUrl { url: url.to_string(), reason };
        let uri: Uri = url.parse().map_err(|e: hyper::http::uri::InvalidUri| bad(e.to_string()))?;
        if !matches!(uri.scheme_str(), Some("http") | Some("https")) {
            return Err(bad("the scheme must be http or https".into()));
        }
        if uri.host().is_none() {
            return Err(bad("no host".into()));
        }
        let mut builder = Request::post(uri)
            .header(hyper::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(hyper::header::USER_AGENT, USER_AGENT)
            .header(hyper::header::ACCEPT, "*/*");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder.body(Full::new(Bytes::from(body))).map_err(|e| bad(e.to_string()))?;
        let reply = self.http.send(request).await?;
        Ok(HttpReply {
            status: reply.status.as_u16(),
            content_type: reply.content_type().map(str::to_string),
            body: reply.body.to_vec(),
        })
    }
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
        assert_eq!(err, PostError::Http(HttpError::TooLarge { status: 200, max: 1000 }));
        assert_eq!(err.status(), Some(200));
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let server = serve("/", vec![Answer::Silence]).await;
        let client = ForwardClient::new(Duration::from_millis(300));
        let err = client.post_form(&server.url, String::new(), &[]).await.unwrap_err();
        assert_eq!(err, PostError::Http(HttpError::Timeout(Duration::from_millis(300))));
    }

    #[tokio::test]
    async fn a_refused_connection_names_the_cause() {
        // Bind and drop to get a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let client = ForwardClient::new(Duration::from_secs(10));
        let err = client.post_form(&format!("http://127.0.0.1:{port}/"), String::new(), &[]).await.unwrap_err();
        let PostError::Http(HttpError::Request(text)) = &err else { panic!("{err:?}") };
        assert!(text.to_lowercase().contains("refused"), "{text}");
    }

    #[tokio::test]
    async fn bad_urls_are_refused_before_any_io() {
        let client = ForwardClient::new(Duration::from_secs(1));
        for url in ["not a url", "ftp://example.com/x", "/relative/path"] {
            let err = client.post_form(url, String::new(), &[]).await.unwrap_err();
            assert!(matches!(err, PostError::BadUrl { .. }), "{url}: {err:?}");
        }
    }
}
