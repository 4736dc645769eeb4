//! The session cookie: reading it from `Cookie` headers and writing `Set-Cookie`.
//!
//! `HttpOnly` (scripts cannot read it), `SameSite=Strict` (no other site's page sends it),
//! `Path=/`, `Secure` whenever the browser reached us over TLS, and `Max-Age` equal to the
//! session's lifetime on the server, which is what really ends it.

use std::time::Duration;

use hyper::HeaderMap;
use hyper::header::{COOKIE, HeaderValue};

use super::secrets;

/// The cookie's name.
pub const SESSION_COOKIE: &str = "smshub_session";

/// The session id in the request's cookies, if one is there and has our shape. Garbage,
/// duplicates of other names and non-UTF-8 headers are skipped.
pub fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| name.trim() == SESSION_COOKIE)
        .map(|(_, value)| value.trim().trim_matches('"'))
        .find(|value| secrets::is_short_secret(value))
        .map(str::to_string)
}

/// `Set-Cookie` starting a session.
pub fn start(session_id: &str, lifetime: Duration, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let value = format!(
        "{SESSION_COOKIE}={session_id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
        lifetime.as_secs()
    );
    // The id is base64url: always a valid header value.
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("smshub_session=; Max-Age=0"))
}

/// `Set-Cookie` telling the browser to forget the session.
pub fn end(secure: bool) -> HeaderValue {
    if secure {
        HeaderValue::from_static("smshub_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0; Secure")
    } else {
        HeaderValue::from_static("smshub_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "AAAAAAAAAAAAAAAAAAAAAA";

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(COOKIE, HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    #[test]
    fn the_session_id_is_found_among_other_cookies() {
        let cases: &[(&[&[u8]], Option<&str>)] = &[
            (&[b"smshub_session=AAAAAAAAAAAAAAAAAAAAAA"], Some(ID)),
            (&[b"theme=dark; smshub_session=AAAAAAAAAAAAAAAAAAAAAA; lang=fi"], Some(ID)),
            (&[b"theme=dark", b"smshub_session=\"AAAAAAAAAAAAAAAAAAAAAA\""], Some(ID)),
            // An old garbage value first, then a good one.
            (&[b"smshub_session=garbage; smshub_session=AAAAAAAAAAAAAAAAAAAAAA"], Some(ID)),
            (&[b"smshub_session="], None),
            (&[b"smshub_session=AAAA"], None),
            (&[b"smshub_session=AAAAAAAAAAAAAAAAAAAAA="], None),
            (&[b"smshub_sessionX=AAAAAAAAAAAAAAAAAAAAAA"], None),
            (&[b";;;==;"], None),
            (&[b"smshub_session=\xff\xfe"], None),
            (&[], None),
        ];
        for (values, want) in cases {
            assert_eq!(session_id(&headers(values)).as_deref(), *want, "{values:?}");
        }
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_under_tls() {
        let plain = start(ID, Duration::from_secs(3600), false);
        assert_eq!(plain, "smshub_session=AAAAAAAAAAAAAAAAAAAAAA; HttpOnly; SameSite=Strict; Path=/; Max-Age=3600");
        let tls = start(ID, Duration::from_secs(60), true);
        assert!(tls.to_str().unwrap().ends_with("; Secure"));
        assert!(end(false).to_str().unwrap().contains("Max-Age=0"));
        assert!(end(true).to_str().unwrap().ends_with("; Secure"));
    }
}
