//! The plumbing every Provet call shares (the token request included): request building with the
//! headers Provet expects, sending through the one outbound client, and sorting an answer's
//! status into a [`ProvetError`].

use std::time::{Duration, SystemTime};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER, USER_AGENT};
use hyper::{Method, Request, Uri};
use serde_json::Value;

use super::error::ProvetError;
use crate::http_client::{HttpClient, HttpError, Reply};

/// A request body.
#[derive(Debug, Clone)]
pub(crate) enum Body {
    Empty,
    Json(Bytes),
    Form(Bytes),
}

/// Builds a request with the headers every Provet call carries.
pub(crate) fn build_request(
    method: Method,
    uri: Uri,
    body: &Body,
    authorization: HeaderValue,
) -> Result<Request<Full<Bytes>>, ProvetError> {
    let mut builder = Request::builder()
        .method(method)
        .uri(uri)
        .header(AUTHORIZATION, authorization)
        .header(ACCEPT, "application/json")
        .header(USER_AGENT, crate::http_client::USER_AGENT);
    let bytes = match body {
        Body::Empty => Bytes::new(),
        Body::Json(b) => {
            builder = builder.header(CONTENT_TYPE, "application/json");
            b.clone()
        }
        Body::Form(b) => {
            builder = builder.header(CONTENT_TYPE, "application/x-www-form-urlencoded");
            b.clone()
        }
    };
    builder.body(Full::new(bytes)).map_err(|e| ProvetError::BadResponse(format!("cannot build the request: {e}")))
}

/// Sends `req` and reads the whole answer within the client's deadline; `what` names the call
/// in errors.
pub(crate) async fn send(http: &HttpClient, req: Request<Full<Bytes>>, what: &str) -> Result<Reply, ProvetError> {
    http.send(req).await.map_err(|e| match e {
        HttpError::Timeout(after) => {
            ProvetError::Transient(format!("{what}: no complete answer within {} s", after.as_secs_f32()))
        }
        HttpError::Request(reason) => ProvetError::Transient(format!("{what}: {reason}")),
        HttpError::TooLarge { max, .. } => {
            ProvetError::BadResponse(format!("{what}: the answer is larger than {max} bytes"))
        }
        HttpError::Body { reason, .. } => {
            ProvetError::Transient(format!("{what}: reading the answer failed: {reason}"))
        }
    })
}

/// The error for a non-2xx answer (401 is handled by the caller before this).
pub(crate) fn status_error(reply: &Reply, what: &str) -> ProvetError {
    let status = reply.status;
    match status.as_u16() {
        404 => ProvetError::NotFound,
        429 => ProvetError::RateLimited {
            retry_after: reply
                .headers
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now())),
        },
        408 => ProvetError::Transient(format!("{what}: HTTP 408 Request Timeout")),
        500..=599 => ProvetError::Transient(format!("{what}: HTTP {status}")),
        code => ProvetError::Permanent { status: code, body_excerpt: excerpt(&reply.body) },
    }
}

/// Parses JSON, naming the call when it is not JSON.
pub(crate) fn parse_json(body: &[u8], what: &str) -> Result<Value, ProvetError> {
    serde_json::from_slice(body).map_err(|e| ProvetError::BadResponse(format!("{what}: the answer is not JSON ({e})")))
}

/// The start of an error body, on one line, for messages.
pub(crate) fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String =
        text.chars().take(200).map(|c| if c.is_control() { ' ' } else { c }).collect::<String>().trim().to_string();
    if text.chars().count() > 200 {
        out.push('…');
    }
    if out.is_empty() { "(empty body)".into() } else { out }
}

/// The longest `Retry-After` honoured: a larger one (or 2^64-1) is a mistake on the other side,
/// and waiting an hour and asking again costs one request.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// `Retry-After`: delay seconds or an HTTP date (RFC 9110 §10.2.3), at most
/// [`MAX_RETRY_AFTER`]. A date in the past reads as zero; any run of digits, however long,
/// reads as the cap.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        let secs = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO).min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        let cases: &[(&str, Option<u64>)] = &[
            ("120", Some(120)),
            (" 7 ", Some(7)),
            ("0", Some(0)),
            ("Sun, 06 Nov 1994 08:50:07 GMT", Some(30)),
            ("Sun, 06 Nov 1994 08:00:00 GMT", Some(0)),
            ("soon", None),
            ("-5", None),
            ("", None),
            ("3600", Some(3600)),
            ("3601", Some(3600)),
            ("18446744073709551615", Some(3600)),
            ("99999999999999999999999", Some(3600)),
            ("Fri, 31 Dec 9999 23:59:59 GMT", Some(3600)),
        ];
        for (value, expected) in cases {
            assert_eq!(parse_retry_after(value, now).map(|d| d.as_secs()), *expected, "{value:?}");
        }
    }

    #[test]
    fn excerpts_are_short_single_lines() {
        assert_eq!(excerpt(b""), "(empty body)");
        assert_eq!(excerpt(b"{\"detail\":\n\"bad\"}"), "{\"detail\": \"bad\"}");
        let long = "x".repeat(500);
        assert_eq!(excerpt(long.as_bytes()).chars().count(), 201);
    }
}
