//! `GET /`: for now only who is signed in and a way out; the web UI comes in a later issue.

use hyper::StatusCode;

use super::csrf::CSRF_FIELD;
use super::{SignedIn, html};
use crate::web::HttpResponse;

/// `GET /`: not signed in is a redirect to `/login` (the [`SignedIn`] extractor).
pub async fn home(session: SignedIn) -> HttpResponse {
    let body = format!(
        "<h1>smshub</h1>\n<p>Signed in as <strong>{}</strong>.</p>\n\
         <form method=\"post\" action=\"/logout\">\n\
         <input type=\"hidden\" name=\"{CSRF_FIELD}\" value=\"{}\">\n\
         <button type=\"submit\">Sign out</button>\n</form>",
        html::escape(&session.user),
        html::escape(&session.csrf_token),
    );
    html::page(StatusCode::OK, "smshub", &body)
}
