//! Refusals and failures as pages in words: what happened and what to do.

use hyper::StatusCode;

use crate::store::StoreError;
use crate::web::HttpResponse;
use crate::web::auth::html;

/// A refusal page: a heading and one paragraph (text, escaped).
pub fn refusal(status: StatusCode, heading: &str, explanation: &str) -> HttpResponse {
    html::error(status, heading, explanation)
}

/// 404 for a message, event or page that does not exist (any more: retention erases old ones).
pub fn not_found(what: &str) -> HttpResponse {
    refusal(
        StatusCode::NOT_FOUND,
        "Not found",
        &format!(
            "There is no {what} with this number. It may have been removed by the retention rule ([store] keep_days); go back to the list."
        ),
    )
}

/// 503 when the database cannot answer; the error goes to the log, not the page.
pub fn store_failed(e: StoreError) -> HttpResponse {
    tracing::error!(error = %e, "a web page could not read or write the database");
    refusal(
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again",
        "smshub could not reach its database. Try again in a moment; if it lasts, open the Doctor page or run `smshub doctor`.",
    )
}

/// A row read by id: the row, or the page to answer (404 when it is not there, 503 when the
/// database failed). Boxed: the rare path.
pub fn found<T>(read: Result<Option<T>, StoreError>, what: &str) -> Result<T, Box<HttpResponse>> {
    match read {
        Ok(Some(row)) => Ok(row),
        Ok(None) => Err(Box::new(not_found(what))),
        Err(e) => Err(Box::new(store_failed(e))),
    }
}
