//! OAuth 2.0 client credentials against Provet's token endpoint (PROTOCOLS.md §1).
//!
//! `POST <token_url>` with `grant_type=client_credentials&scope=restapi`, the client id and
//! secret in HTTP Basic (the form Provet prefers; RFC 6749 §2.3.1 wants both form-urlencoded
//! before base64). Client credentials issue no refresh token, so a new token is simply asked
//! for when the cached one is close to expiry or the API answers 401.
//!
//! The cache sits behind a `tokio::sync::Mutex` that is held while a token is fetched: when ten
//! calls find the token expired at once, one fetches and nine wait for it, instead of ten
//! token requests (Provet rate-limits per endpoint).
//!
//! Neither the secret nor a token is ever logged: both live in [`Secret`], whose `Debug` shows
//! `****`, and the headers carrying them are marked sensitive.

use std::time::Duration;

use base64::Engine;
use hyper::body::Bytes;
use hyper::header::HeaderValue;
use hyper::{Method, StatusCode, Uri};
use serde_json::Value;
use tokio::time::Instant;

use super::error::ProvetError;
use super::http::{Body, build_request, excerpt, send, status_error};
use crate::config::Secret;
use crate::http_client::HttpClient;

/// A token is replaced this long before Provet says it expires, so a call never starts with a
/// token that dies in flight.
const REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// Used when the token answer has no `expires_in` (Provet documents 10 h; be conservative).
const DEFAULT_EXPIRES_IN: Duration = Duration::from_secs(3600);

/// `expires_in` is clamped to this range: below a minute the token would be fetched for every
/// call; beyond a day (2^64-1, 1e300) it is a mistake, and a daily refresh costs nothing.
const MIN_EXPIRES_IN: Duration = Duration::from_secs(60);
const MAX_EXPIRES_IN: Duration = Duration::from_secs(24 * 3600);

struct CachedToken {
    token: Secret,
    refresh_at: Instant,
}

/// Issues and caches access tokens for one Provet instance.
pub(crate) struct TokenSource {
    instance: String,
    token_url: Uri,
    basic: HeaderValue,
    cache: tokio::sync::Mutex<Option<CachedToken>>,
}

impl TokenSource {
    pub(crate) fn new(instance: &str, token_url: Uri, client_id: &str, secret: &Secret) -> Self {
        TokenSource {
            instance: instance.to_string(),
            token_url,
            basic: basic_auth(client_id, secret.expose()),
            cache: tokio::sync::Mutex::new(None),
        }
    }

    /// A token that is good for at least [`REFRESH_MARGIN`] more, from the cache or fresh.
    pub(crate) async fn token(&self, http: &HttpClient) -> Result<Secret, ProvetError> {
        let mut cache = self.cache.lock().await;
        if let Some(cached) = cache.as_ref()
            && Instant::now() < cached.refresh_at
        {
            return Ok(cached.token.clone());
        }
        let (token, lifetime) = self.fetch(http).await?;
        // A lifetime shorter than the margin still serves the call that asked for it.
        *cache = Some(CachedToken {
            token: token.clone(),
            refresh_at: crate::deadline::tokio_in(lifetime.saturating_sub(REFRESH_MARGIN)),
        });
        Ok(token)
    }

    /// Forgets `failed` (refused with a 401). A newer token fetched meanwhile by another call
    /// is kept.
    pub(crate) async fn invalidate(&self, failed: &Secret) {
        let mut cache = self.cache.lock().await;
        if cache.as_ref().is_some_and(|c| &c.token == failed) {
            *cache = None;
        }
    }

    /// Fetches a token bypassing the cache, and caches it (for `doctor`).
    pub(crate) async fn fetch_fresh(&self, http: &HttpClient) -> Result<Secret, ProvetError> {
        let mut cache = self.cache.lock().await;
        let (token, lifetime) = self.fetch(http).await?;
        *cache = Some(CachedToken {
            token: token.clone(),
            refresh_at: crate::deadline::tokio_in(lifetime.saturating_sub(REFRESH_MARGIN)),
        });
        Ok(token)
    }

    async fn fetch(&self, http: &HttpClient) -> Result<(Secret, Duration), ProvetError> {
        let what = format!("POST {} (token)", self.token_url.path());
        let body = Body::Form(Bytes::from_static(b"grant_type=client_credentials&scope=restapi"));
        let req = build_request(Method::POST, self.token_url.clone(), &body, self.basic.clone())?;
        let reply = send(http, req, &what).await?;
        match reply.status {
            s if s.is_success() => {}
            StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND => {
                // RFC 6749 §5.2: `error` is a short code such as `invalid_client`; no secrets in it.
                let code = serde_json::from_slice::<Value>(&reply.body)
                    .ok()
                    .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
                    .unwrap_or_else(|| excerpt(&reply.body));
                let hint = if reply.status == StatusCode::NOT_FOUND {
                    "check token_url"
                } else {
                    "check client_id and client_secret, and that the integration is enabled in Provet"
                };
                return Err(ProvetError::Auth(format!(
                    "{what}: the token endpoint answered HTTP {} ({code}); {hint}",
                    reply.status.as_u16()
                )));
            }
            _ => return Err(status_error(&reply, &what)),
        }
        let (token, lifetime) = parse_token(&reply.body)?;
        tracing::info!(
            provet = %self.instance,
            expires_in_s = lifetime.as_secs(),
            "fetched a new Provet access token"
        );
        Ok((token, lifetime))
    }
}

/// `Basic base64(urlencode(id) ":" urlencode(secret))`, marked sensitive.
fn basic_auth(client_id: &str, secret: &str) -> HeaderValue {
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let raw = format!("{}:{}", enc(client_id), enc(secret));
    let encoded = base64::engine::general_purpose::STANDARD.encode(raw);
    // Base64 output is always a valid header value.
    let mut value = HeaderValue::from_str(&format!("Basic {encoded}")).unwrap_or(HeaderValue::from_static("Basic"));
    value.set_sensitive(true);
    value
}

/// Parses a token answer: `access_token` (required), `expires_in` (seconds, optional, clamped to
/// [`MIN_EXPIRES_IN`, `MAX_EXPIRES_IN`]).
pub(crate) fn parse_token(body: &[u8]) -> Result<(Secret, Duration), ProvetError> {
    let bad = |why: String| ProvetError::BadResponse(format!("token answer: {why}"));
    let value: Value = serde_json::from_slice(body).map_err(|e| bad(format!("not JSON ({e})")))?;
    let token = match value.get("access_token") {
        Some(Value::String(t)) if !t.is_empty() => t.clone(),
        Some(Value::String(_)) => return Err(bad("field `access_token` is empty".into())),
        Some(_) => return Err(bad("field `access_token` should be a string".into())),
        None => return Err(bad("missing field `access_token`".into())),
    };
    if let Some(kind) = value.get("token_type").and_then(Value::as_str)
        && !kind.eq_ignore_ascii_case("bearer")
    {
        return Err(bad(format!("field `token_type` is {kind:?}, smshub only speaks Bearer")));
    }
    let lifetime = match value.get("expires_in") {
        None | Some(Value::Null) => DEFAULT_EXPIRES_IN,
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Duration::from_secs)
            .or_else(|| n.as_f64().and_then(|f| crate::deadline::from_secs_f64_capped(f, MAX_EXPIRES_IN)))
            .ok_or_else(|| bad("field `expires_in` should be a non-negative number".into()))?,
        Some(Value::String(s)) => {
            let s = s.trim();
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("field `expires_in` should be a number of seconds".into()));
            }
            Duration::from_secs(s.parse::<u64>().unwrap_or(u64::MAX))
        }
        Some(_) => return Err(bad("field `expires_in` should be a number of seconds".into())),
    };
    Ok((Secret::new(token), crate::deadline::clamp(lifetime, MIN_EXPIRES_IN, MAX_EXPIRES_IN)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_encodes_the_id_and_secret_as_rfc6749_asks() {
        let v = basic_auth("my id", "s:cr+t");
        assert!(v.is_sensitive());
        let text = v.to_str().unwrap();
        let decoded = base64::engine::general_purpose::STANDARD.decode(text.strip_prefix("Basic ").unwrap()).unwrap();
        assert_eq!(String::from_utf8(decoded).unwrap(), "my+id:s%3Acr%2Bt");
    }

    #[test]
    fn token_answers_are_parsed_with_field_named_errors() {
        let (t, d) =
            parse_token(br#"{"access_token":"abc","token_type":"Bearer","expires_in":36000,"scope":"restapi"}"#)
                .unwrap();
        assert_eq!(t.expose(), "abc");
        assert_eq!(d, Duration::from_secs(36000));
        let (_, d) = parse_token(br#"{"access_token":"abc"}"#).unwrap();
        assert_eq!(d, DEFAULT_EXPIRES_IN);
        let (_, d) = parse_token(br#"{"access_token":"abc","expires_in":"120"}"#).unwrap();
        assert_eq!(d, Duration::from_secs(120));
        let cases: &[(&[u8], &str)] = &[
            (b"<html>", "not JSON"),
            (br#"{"token_type":"Bearer"}"#, "missing field `access_token`"),
            (br#"{"access_token":""}"#, "`access_token` is empty"),
            (br#"{"access_token":5}"#, "`access_token` should be a string"),
            (br#"{"access_token":"a","expires_in":-1}"#, "`expires_in` should be a non-negative number"),
            (br#"{"access_token":"a","expires_in":"soon"}"#, "`expires_in` should be a number"),
            (br#"{"access_token":"a","token_type":"mac"}"#, "only speaks Bearer"),
            (br#"{"access_token":"a","expires_in":"-5"}"#, "`expires_in` should be a number"),
        ];
        for (body, expected) in cases {
            let err = parse_token(body).unwrap_err().to_string();
            assert!(err.contains(expected), "{}: {err}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn expires_in_from_outside_is_clamped_to_a_minute_and_a_day() {
        let day = Duration::from_secs(86_400);
        let cases: &[(&[u8], Duration)] = &[
            (br#"{"access_token":"a","expires_in":18446744073709551615}"#, day),
            (br#"{"access_token":"a","expires_in":1e300}"#, day),
            (br#"{"access_token":"a","expires_in":"18446744073709551615"}"#, day),
            (br#"{"access_token":"a","expires_in":"999999999999999999999999"}"#, day),
            (br#"{"access_token":"a","expires_in":0}"#, MIN_EXPIRES_IN),
            (br#"{"access_token":"a","expires_in":0.5}"#, MIN_EXPIRES_IN),
            (br#"{"access_token":"a","expires_in":36000.5}"#, Duration::from_millis(36_000_500)),
        ];
        for (body, expected) in cases {
            let (_, d) = parse_token(body).unwrap();
            assert_eq!(d, *expected, "{}", String::from_utf8_lossy(body));
        }
    }
}
