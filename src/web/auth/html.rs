//! The few HTML pages of sign-in: one shell (readable on a phone, no scripts, no outside
//! resources) and an escape for everything interpolated into it.

use axum::body::Body;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};

use crate::web::HttpResponse;

/// `s` with `& < > " '` escaped, safe inside element text and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;padding:1rem;background:#f4f5f7;color:#1d1d1f}\
main{max-width:24rem;margin:2rem auto;background:#fff;padding:1.5rem;border-radius:.5rem;box-shadow:0 1px 3px #0002}\
h1{font-size:1.4rem;margin-top:0}label{display:block;margin-top:1rem;font-weight:600}\
input{display:block;width:100%;box-sizing:border-box;font-size:1.1rem;padding:.6rem;margin-top:.3rem}\
button{margin-top:1.5rem;font-size:1.1rem;padding:.6rem 1.2rem;width:100%}\
.error{color:#a40000;font-weight:600}";

/// A whole page: `title` is text (escaped here), `body` is HTML the caller built with
/// [`escape`].
pub fn page(status: StatusCode, title: &str, body: &str) -> HttpResponse {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · smshub</title><style>{STYLE}</style></head>\n<body><main>\n{body}\n</main></body></html>\n",
        escape(title)
    );
    let mut resp = Response::new(Body::from(html));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    // Pages with a CSRF token or a name must not be kept by caches, framed or sent elsewhere.
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        HeaderName::from_static("content-security-policy"),
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    );
    h.insert(HeaderName::from_static("x-frame-options"), HeaderValue::from_static("DENY"));
    h.insert(HeaderName::from_static("referrer-policy"), HeaderValue::from_static("same-origin"));
    h.insert(HeaderName::from_static("x-content-type-options"), HeaderValue::from_static("nosniff"));
    resp
}

/// A refusal in words: a heading and one paragraph (both text).
pub fn error(status: StatusCode, heading: &str, explanation: &str) -> HttpResponse {
    page(status, heading, &format!("<h1>{}</h1>\n<p>{}</p>", escape(heading), escape(explanation)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_escaped() {
        assert_eq!(escape(r#"<a href="x">'&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
        assert_eq!(escape("anna"), "anna");
    }
}
