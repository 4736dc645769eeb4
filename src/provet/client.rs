//! [`ProvetClient`]: the REST calls smshub makes to one Provet Cloud instance, and
//! [`ProvetError`], which tells the caller whether trying again can help.
//!
//! The client does not retry on its own, except in two places where a second request is part
//! of the protocol: a 401 on an API call fetches a fresh token once and repeats the call (tokens
//! expire, and Provet can revoke them), and `mark_failed` falls back from a JSON body to an empty
//! POST (the body is undocumented, PROTOCOLS.md "Open questions" 2). Everything else is the
//! caller's decision, using [`ProvetError::is_retryable`], the `retry_after` of a 429 and
//! [`backoff`], because the caller knows what the store already says about the message.
//!
//! Every request, including reading the whole answer, runs under `request_timeout`.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use hyper::body::Bytes;
use hyper::header::HeaderValue;
use hyper::{Method, StatusCode, Uri};
use serde_json::Value;

use super::auth::TokenSource;
pub use super::error::ProvetError;
use super::http::{Body, build_request, excerpt, parse_json, send, status_error};
use super::model::{ExternalSms, Page};
use crate::config::ProvetConfig;
use crate::http_client::{HttpClient, Reply, Schemes};

/// The largest answer we read. A list page holds at most 1000 items of well under 1 KiB each,
/// so this is generous; the limit stops a broken proxy from filling a Raspberry Pi's memory.
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Longest `reason` sent to `mark_failed`: it is shown in Provet's SMS log, not a place for essays.
const MAX_REASON_CHARS: usize = 200;

/// How far one listing (a poll) may go. A `next` chain that never ends, pages of junk or a
/// server that drips pages must not hold memory or the poll forever: when a bound is reached
/// the items read so far are returned (the next poll gets the rest, as marked SMS leave the
/// list) and a warning says which bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListBounds {
    pub max_pages: usize,
    /// Bytes of answer bodies read in all.
    pub max_bytes: usize,
    /// Time for the whole listing, every page included.
    pub deadline: Duration,
}

impl Default for ListBounds {
    fn default() -> Self {
        ListBounds { max_pages: 100, max_bytes: 16 * 1024 * 1024, deadline: Duration::from_secs(120) }
    }
}

/// Why a [`ProvetClient`] cannot be built from its config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientConfigError {
    #[error("provet {instance}: {key} {url:?} is not a usable URL: {reason}")]
    BadUrl { instance: String, key: &'static str, url: String, reason: String },
    #[error("provet {instance}: {key} {url:?} is plain http; set allow_insecure_http = true (tests only) or use https")]
    InsecureHttp { instance: String, key: &'static str, url: String },
}

/// A list item that did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemError {
    /// The item's `id`, when it has a usable one.
    pub id: Option<i64>,
    /// What is wrong, naming the field.
    pub reason: String,
}

/// How `mark_failed` carries its reason; remembered per client once Provet has accepted one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkFailedForm {
    /// `Content-Type: application/json` with `{"reason": "..."}`.
    Json,
    /// An empty POST (no reason).
    Empty,
}

impl MarkFailedForm {
    /// The form's name for the store's kv table.
    pub fn as_str(self) -> &'static str {
        match self {
            MarkFailedForm::Json => "json",
            MarkFailedForm::Empty => "empty",
        }
    }

    /// The inverse of [`MarkFailedForm::as_str`].
    pub fn parse(s: &str) -> Option<MarkFailedForm> {
        match s {
            "json" => Some(MarkFailedForm::Json),
            "empty" => Some(MarkFailedForm::Empty),
            _ => None,
        }
    }

    fn to_u8(form: Option<MarkFailedForm>) -> u8 {
        match form {
            None => 0,
            Some(MarkFailedForm::Json) => 1,
            Some(MarkFailedForm::Empty) => 2,
        }
    }

    fn from_u8(v: u8) -> Option<MarkFailedForm> {
        match v {
            1 => Some(MarkFailedForm::Json),
            2 => Some(MarkFailedForm::Empty),
            _ => None,
        }
    }
}

/// The client for one Provet instance. Share it behind an `Arc`: the token cache and the
/// remembered `mark_failed` form are per client.
pub struct ProvetClient {
    name: String,
    base: Uri,
    base_url: String,
    http: HttpClient,
    auth: TokenSource,
    mark_failed_form: AtomicU8,
    list_bounds: ListBounds,
    /// `smshub_provet_requests_total` (the daemon's client; none in `doctor` and tests).
    metrics: Option<crate::metrics::Metrics>,
}

impl std::fmt::Debug for ProvetClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProvetClient").field("name", &self.name).field("base_url", &self.base_url).finish()
    }
}

impl ProvetClient {
    /// Builds the client: HTTPS through rustls (ring) with the webpki roots; plain http only
    /// when `cfg.allow_insecure_http` (tests, the demo), with a warning.
    pub fn new(cfg: &ProvetConfig) -> Result<ProvetClient, ClientConfigError> {
        let base = check_url(cfg, "base_url", &cfg.base_url)?;
        let token_url = check_url(cfg, "token_url", &cfg.token_url)?;
        let base_url = if cfg.base_url.ends_with('/') { cfg.base_url.clone() } else { format!("{}/", cfg.base_url) };
        if cfg.allow_insecure_http {
            tracing::warn!(
                provet = %cfg.name,
                "allow_insecure_http is set: plain http is accepted for Provet calls; use this for tests only"
            );
        }
        let schemes = if cfg.allow_insecure_http { Schemes::HttpOrHttps } else { Schemes::HttpsOnly };
        let http = HttpClient::new(schemes, cfg.request_timeout, MAX_BODY_BYTES);
        Ok(ProvetClient {
            name: cfg.name.clone(),
            base,
            base_url,
            http,
            auth: TokenSource::new(&cfg.name, token_url, &cfg.client_id, &cfg.client_secret),
            mark_failed_form: AtomicU8::new(0),
            list_bounds: ListBounds::default(),
            metrics: None,
        })
    }

    /// Counts every API call in `metrics`.
    pub fn with_metrics(mut self, metrics: crate::metrics::Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Other bounds for listings (tests use small ones).
    pub fn with_list_bounds(mut self, bounds: ListBounds) -> Self {
        self.list_bounds = bounds;
        self
    }

    /// The instance name from the config.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `GET external_sms/<id>/`.
    pub async fn get_external_sms(&self, id: i64) -> Result<ExternalSms, ProvetError> {
        let what = format!("external_sms {id}");
        let value = self.get_json(&format!("external_sms/{id}/")).await?;
        let sms = ExternalSms::from_json(&value, &what).map_err(ProvetError::BadResponse)?;
        if sms.id != id {
            return Err(ProvetError::BadResponse(format!("{what}: the answer is for id {}", sms.id)));
        }
        Ok(sms)
    }

    /// `GET external_sms/`, following `next` to the last page: every SMS not yet marked. One
    /// malformed item fails the whole list; see [`ProvetClient::list_external_sms_items`] for
    /// a poller that must not be blocked by one bad item.
    pub async fn list_external_sms(&self) -> Result<Vec<ExternalSms>, ProvetError> {
        self.list_external_sms_items()
            .await?
            .into_iter()
            .map(|item| item.map_err(|e| ProvetError::BadResponse(e.reason)))
            .collect()
    }

    /// Like [`ProvetClient::list_external_sms`], but each item parsed on its own: a malformed
    /// item (say, `phone_number: null`) comes back as an [`ItemError`] with its id when it has
    /// one, so the caller can still send the others and report that one as failed.
    pub async fn list_external_sms_items(&self) -> Result<Vec<Result<ExternalSms, ItemError>>, ProvetError> {
        let items = self.list_all("external_sms/", "external_sms list").await?;
        Ok(items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let id = v.get("id").and_then(Value::as_i64);
                let what = match id {
                    Some(id) => format!("external_sms {id} (list item {i})"),
                    None => format!("external_sms list item {i}"),
                };
                ExternalSms::from_json(v, &what).map_err(|reason| ItemError { id, reason })
            })
            .collect())
    }

    /// `POST external_sms/<id>/mark_successful/`.
    pub async fn mark_successful(&self, id: i64) -> Result<(), ProvetError> {
        self.post(&format!("external_sms/{id}/mark_successful/"), Body::Empty).await.map(drop)
    }

    /// `POST external_sms/<id>/mark_failed/` with `{"reason": ...}`, or an empty POST when
    /// Provet refuses the JSON body (400, 415 or 422). The form that worked is remembered (see
    /// [`ProvetClient::mark_failed_form`]) so later calls use it directly.
    pub async fn mark_failed(&self, id: i64, reason: &str) -> Result<(), ProvetError> {
        let path = format!("external_sms/{id}/mark_failed/");
        if self.mark_failed_form() == Some(MarkFailedForm::Empty) {
            return self.post(&path, Body::Empty).await.map(drop);
        }
        let reason: String = reason.chars().take(MAX_REASON_CHARS).collect();
        let body = serde_json::json!({ "reason": reason }).to_string();
        match self.post(&path, Body::Json(Bytes::from(body))).await {
            Ok(_) => {
                self.set_mark_failed_form(Some(MarkFailedForm::Json));
                Ok(())
            }
            Err(ProvetError::Permanent { status: status @ (400 | 415 | 422), .. }) => {
                tracing::info!(
                    provet = %self.name,
                    status,
                    "Provet refused a reason in mark_failed; sending an empty POST instead, and from now on"
                );
                self.post(&path, Body::Empty).await?;
                self.set_mark_failed_form(Some(MarkFailedForm::Empty));
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// The `mark_failed` form Provet accepted last, if known (for the store's kv table).
    pub fn mark_failed_form(&self) -> Option<MarkFailedForm> {
        MarkFailedForm::from_u8(self.mark_failed_form.load(Ordering::Relaxed))
    }

    /// Restores a remembered form (from the store) at start-up.
    pub fn set_mark_failed_form(&self, form: Option<MarkFailedForm>) {
        self.mark_failed_form.store(MarkFailedForm::to_u8(form), Ordering::Relaxed);
    }

    /// For `smshub doctor`: fetches a fresh token (ignoring the cache) to prove the token URL,
    /// client id and secret work.
    pub async fn token_ok(&self) -> Result<(), ProvetError> {
        self.auth.fetch_fresh(&self.http).await.map(drop)
    }

    /// `GET <path>` with the token, answer ignored: whether the API user may read it (403 means
    /// its permission group lacks the permission). For `smshub doctor`.
    pub async fn probe(&self, path: &str) -> Result<(), ProvetError> {
        self.get_json(path).await.map(drop)
    }

    // -----------------------------------------------------------------------------------------
    // Plumbing shared with `reminders`
    // -----------------------------------------------------------------------------------------

    /// `base_url` + `path`, as a URI.
    fn api_uri(&self, path: &str) -> Result<Uri, ProvetError> {
        let url = format!("{}{path}", self.base_url);
        url.parse::<Uri>().map_err(|e| ProvetError::BadResponse(format!("cannot build the URL {url:?}: {e}")))
    }

    /// GET a path under the base URL and parse the answer as JSON.
    pub(crate) async fn get_json(&self, path: &str) -> Result<Value, ProvetError> {
        let uri = self.api_uri(path)?;
        let reply = self.call(Method::GET, uri, Body::Empty).await?;
        parse_json(&reply.body, path)
    }

    /// POST to a path under the base URL.
    pub(crate) async fn post(&self, path: &str, body: Body) -> Result<Reply, ProvetError> {
        let uri = self.api_uri(path)?;
        self.call(Method::POST, uri, body).await
    }

    /// GET a list endpoint and every `next` page; returns the raw items, at most what
    /// [`ListBounds`] allows (a warning says when a bound cut the listing short).
    pub(crate) async fn list_all(&self, path: &str, what: &str) -> Result<Vec<Value>, ProvetError> {
        let bounds = self.list_bounds;
        let deadline = crate::deadline::tokio_in(bounds.deadline);
        let mut uri = self.api_uri(path)?;
        let mut items = Vec::new();
        let mut bytes = 0usize;
        for page_no in 1..=bounds.max_pages {
            let call = self.call(Method::GET, uri.clone(), Body::Empty);
            let reply = match tokio::time::timeout_at(deadline, call).await {
                Ok(reply) => reply?,
                Err(_) if page_no == 1 => {
                    return Err(ProvetError::Transient(format!(
                        "{what}: no answer within {} s",
                        bounds.deadline.as_secs()
                    )));
                }
                Err(_) => {
                    tracing::warn!(provet = %self.name, what, pages = page_no - 1, items = items.len(), "listing cut short: it took longer than {} s; the next poll gets the rest", bounds.deadline.as_secs());
                    return Ok(items);
                }
            };
            bytes = bytes.saturating_add(reply.body.len());
            let page_what = format!("{what} page {page_no}");
            let value = parse_json(&reply.body, &page_what)?;
            let page = Page::from_json(&value, &page_what).map_err(ProvetError::BadResponse)?;
            items.extend(page.results);
            match page.next {
                None => return Ok(items),
                Some(next) => {
                    let next_uri = self.follow_next(&next, &page_what)?;
                    if next_uri == uri {
                        return Err(ProvetError::BadResponse(format!("{page_what}: `next` points to the same page")));
                    }
                    uri = next_uri;
                }
            }
            if bytes >= bounds.max_bytes {
                tracing::warn!(provet = %self.name, what, pages = page_no, items = items.len(), bytes, "listing cut short: more than {} bytes; the next poll gets the rest", bounds.max_bytes);
                return Ok(items);
            }
        }
        tracing::warn!(provet = %self.name, what, pages = bounds.max_pages, items = items.len(), "listing cut short: more than {} pages; the next poll gets the rest", bounds.max_pages);
        Ok(items)
    }

    /// Checks a `next` URL: it must be on the same host (and port, when it names one) as the
    /// base URL, because a `next` elsewhere would carry our token to a stranger. The request
    /// goes to the base URL's scheme and authority with the link's path and query: a same-host
    /// `http://` link under an `https://` base is thereby upgraded (Django behind a TLS proxy
    /// often builds its links with the wrong scheme), and we never downgrade. A path-only link
    /// (`/4321/api/0.1/…?page=2`) is resolved against the base.
    fn follow_next(&self, next: &str, what: &str) -> Result<Uri, ProvetError> {
        let bad = |why: &str| ProvetError::BadResponse(format!("{what}: `next` {why}"));
        if !next.starts_with('/') && !next.contains("://") {
            return Err(bad("is neither an absolute URL nor an absolute path"));
        }
        let uri: Uri = next.parse().map_err(|_| bad("is not a URL"))?;
        let base_authority = self.base.authority().ok_or_else(|| bad("cannot be checked: the base URL has no host"))?;
        let base_port = self.base.port_u16().unwrap_or(if self.base.scheme_str() == Some("http") { 80 } else { 443 });
        match uri.authority() {
            Some(authority) => {
                let same_host = authority.host().eq_ignore_ascii_case(base_authority.host());
                let same_port = authority.port_u16().is_none_or(|p| p == base_port);
                if !(same_host && same_port) {
                    return Err(bad(&format!(
                        "points to another host ({}); refusing to follow it",
                        authority.as_str()
                    )));
                }
            }
            None if next.starts_with('/') => {}
            None => return Err(bad("is not an absolute URL")),
        }
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let scheme = self.base.scheme_str().unwrap_or("https");
        format!("{scheme}://{}{path}", base_authority.as_str()).parse().map_err(|_| bad("is not a URL"))
    }

    /// One API call, counted by outcome: `ok`, `not_found`, `unreachable` (no answer, 5xx,
    /// 429), `refused` (another 4xx, authentication) or `bad_answer`.
    async fn call(&self, method: Method, uri: Uri, body: Body) -> Result<Reply, ProvetError> {
        let result = self.call_with_token(method, uri, body).await;
        if let Some(m) = &self.metrics {
            let outcome = match &result {
                Ok(_) => "ok",
                Err(ProvetError::NotFound) => "not_found",
                Err(ProvetError::RateLimited { .. } | ProvetError::Transient(_)) => "unreachable",
                Err(ProvetError::Permanent { .. } | ProvetError::Auth(_)) => "refused",
                Err(ProvetError::BadResponse(_)) => "bad_answer",
            };
            m.provet_request(&self.name, outcome);
        }
        result
    }

    /// One API call with the bearer token; on 401 fetches a new token once and repeats.
    async fn call_with_token(&self, method: Method, uri: Uri, body: Body) -> Result<Reply, ProvetError> {
        let what = format!("{method} {}", uri.path());
        let token = self.auth.token(&self.http).await?;
        let mut reply = self.send_with_token(&method, &uri, &body, token.expose(), &what).await?;
        if reply.status == StatusCode::UNAUTHORIZED {
            tracing::debug!(provet = %self.name, call = %what, "401 from Provet; fetching a new token");
            self.auth.invalidate(&token).await;
            let token = self.auth.token(&self.http).await?;
            reply = self.send_with_token(&method, &uri, &body, token.expose(), &what).await?;
            if reply.status == StatusCode::UNAUTHORIZED {
                return Err(ProvetError::Auth(format!(
                    "{what}: Provet refused a freshly issued token (HTTP 401); check the virtual user's permissions: {}",
                    excerpt(&reply.body)
                )));
            }
        }
        if reply.status.is_success() {
            return Ok(reply);
        }
        Err(status_error(&reply, &what))
    }

    async fn send_with_token(
        &self,
        method: &Method,
        uri: &Uri,
        body: &Body,
        token: &str,
        what: &str,
    ) -> Result<Reply, ProvetError> {
        let mut auth = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| ProvetError::Auth("the token endpoint issued a token that is not a valid header".into()))?;
        auth.set_sensitive(true);
        let req = build_request(method.clone(), uri.clone(), body, auth)?;
        tracing::debug!(provet = %self.name, call = %what, "calling Provet");
        send(&self.http, req, what).await
    }
}

fn check_url(cfg: &ProvetConfig, key: &'static str, url: &str) -> Result<Uri, ClientConfigError> {
    let bad =
        |reason: String| ClientConfigError::BadUrl { instance: cfg.name.clone(), key, url: url.to_string(), reason };
    let uri: Uri = url.parse().map_err(|e: hyper::http::uri::InvalidUri| bad(e.to_string()))?;
    if uri.authority().is_none() {
        return Err(bad("no host".into()));
    }
    match uri.scheme_str() {
        Some("https") => Ok(uri),
        Some("http") if cfg.allow_insecure_http => Ok(uri),
        Some("http") => Err(ClientConfigError::InsecureHttp { instance: cfg.name.clone(), key, url: url.to_string() }),
        _ => Err(bad("not an http(s) URL".into())),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn mark_failed_form_round_trips_through_its_name() {
        for form in [MarkFailedForm::Json, MarkFailedForm::Empty] {
            assert_eq!(MarkFailedForm::parse(form.as_str()), Some(form));
        }
        assert_eq!(MarkFailedForm::parse("xml"), None);
    }

    fn client_for(base: &str) -> ProvetClient {
        let cfg = ProvetConfig {
            name: "t".into(),
            base_url: base.into(),
            token_url: format!("{base}token/"),
            client_id: "id".into(),
            client_secret: crate::config::Secret::new("s"),
            webhook_token: None,
            poll_interval: Duration::from_secs(60),
            reminder_poll: Duration::ZERO,
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            request_timeout: Duration::from_secs(5),
            allow_insecure_http: base.starts_with("http:"),
            custom_integration: None,
        };
        ProvetClient::new(&cfg).unwrap()
    }

    #[test]
    fn next_links_stay_on_the_base_host_and_never_downgrade() {
        let c = client_for("https://provetcloud.com/4321/api/0.1/");
        let page2 = "/4321/api/0.1/external_sms/?page=2";
        let ok: &[&str] = &[
            "https://provetcloud.com/4321/api/0.1/external_sms/?page=2",
            "http://provetcloud.com/4321/api/0.1/external_sms/?page=2",
            "https://PROVETCLOUD.com/4321/api/0.1/external_sms/?page=2",
            "https://provetcloud.com:443/4321/api/0.1/external_sms/?page=2",
            "/4321/api/0.1/external_sms/?page=2",
        ];
        for next in ok {
            let uri = c.follow_next(next, "p").unwrap();
            assert_eq!(uri.to_string(), format!("https://provetcloud.com{page2}"), "{next}");
        }
        let refused: &[(&str, &str)] = &[
            ("https://evil.example/4321/api/0.1/external_sms/?page=2", "another host (evil.example)"),
            ("https://provetcloud.com.evil.example/x", "another host"),
            ("https://provetcloud.com:8443/x", "another host (provetcloud.com:8443)"),
            ("external_sms/?page=2", "neither an absolute URL nor an absolute path"),
            ("not a url", "neither an absolute URL"),
            ("https://", "is not a URL"),
        ];
        for (next, expected) in refused {
            let err = c.follow_next(next, "p").unwrap_err().to_string();
            assert!(err.contains(expected), "{next}: {err}");
        }
        let local = client_for("http://127.0.0.1:8080/4321/api/0.1/");
        assert_eq!(
            local.follow_next("http://127.0.0.1:8080/4321/api/0.1/x/?page=2", "p").unwrap().to_string(),
            "http://127.0.0.1:8080/4321/api/0.1/x/?page=2"
        );
        // Without a port the link is taken as the base's host: the request still goes to :8080.
        assert_eq!(local.follow_next("http://127.0.0.1/x/", "p").unwrap().to_string(), "http://127.0.0.1:8080/x/");
        assert!(local.follow_next("http://127.0.0.1:9090/x/", "p").is_err());
    }
}
