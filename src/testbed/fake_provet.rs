//! [`FakeProvet`]: a small Provet Cloud on 127.0.0.1 for tests and for `smshub demo`.
//!
//! It is a real HTTP server (hyper 1, in-process, on a random port), so the client under test
//! goes through the same connector, timeouts and parsing as against Provet. It speaks the
//! endpoints smshub uses (PROTOCOLS.md §1, and reminders as assumed in [`crate::provet::reminders`]):
//!
//! - `POST /<provet_id>/oauth2/token/`: client credentials, HTTP Basic checked, tokens with a
//!   configurable `expires_in`.
//! - `GET  /<provet_id>/api/0.1/external_sms/` (paginated, `?page=N`), `…/external_sms/<id>/`,
//!   `POST …/external_sms/<id>/mark_successful/`, `POST …/external_sms/<id>/mark_failed/`.
//!   A marked SMS disappears from the list and its GET answers 404, as Provet documents.
//! - Reminders in their real shape (docs/provet.md §2: no `id`, the id is the end of `url`;
//!   `sms_text`, `reminder_template`, `client`, `patient`, `department` as URLs):
//!   `GET …/reminder/` filtered with Provet's `field__method=value` syntax
//!   (`send_method__is`, `planned_sending_date__lte`; the unqualified `send_method=4` of wave 1
//!   is answered 400, so a regression shows), `GET …/reminder/<id>/`,
//!   `GET …/remindertemplate/<id>/`, `GET …/client/<id>/` (with `no_sms`, `phone_numbers`),
//!   `GET …/client/?phonenumbers__icontains=…`, `GET …/phonenumber/?client__is=<id>`,
//!   `GET …/patient/<id>/`, `GET …/department/<id>/`.
//! - `GET …/appointment_reminder/` and `…/<id>/`, `POST …/appointment_reminder/<id>/mark_external_sending/`,
//!   `POST …/appointment_reminder/<id>/mark_sent/` (refused with 400 before
//!   `mark_external_sending`, which catches a pipeline that skips it).
//! - Permissions: [`FakeProvet::deny`] answers 403 for one endpoint, as Provet does when the
//!   API user's permission group lacks the permission.
//!
//! Switches, settable at any time: fail the next N API (or token) calls with 401, 429 (with
//! `Retry-After`, any text), a 5xx or a stall; answer `expires_in` with any JSON value; add latency; stall every call; reject a JSON `mark_failed`
//! body with 400; expire all tokens; change the page size; point `next` at another host.
//! Every call is recorded (method, path, body, status, time), and every mark, so a test can
//! assert that each message was marked exactly once.
//!
//! The state sits behind a `std::sync::Mutex` that is never held across an `.await`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{ProvetConfig, Secret};

/// How the fake starts.
#[derive(Debug, Clone)]
pub struct FakeOptions {
    /// The `<provet_id>` path segment.
    pub provet_id: String,
    pub client_id: String,
    pub client_secret: String,
    /// `expires_in` of issued tokens, seconds.
    pub token_expires_in: u64,
    /// Items per list page.
    pub page_size: usize,
}

impl Default for FakeOptions {
    fn default() -> Self {
        FakeOptions {
            provet_id: "4321".into(),
            client_id: "smshub-test".into(),
            client_secret: "fake-client-secret".into(),
            token_expires_in: 36_000,
            page_size: 50,
        }
    }
}

/// An injected failure for the next call(s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// 401 (as if the token had been revoked).
    Unauthorized,
    /// 429 with this `Retry-After` value (seconds or an HTTP date), or none.
    RateLimited { retry_after: Option<String> },
    /// This status (500, 502, 503 …) with a short body.
    Status(u16),
    /// Never answer.
    Stall,
}

/// A mark Provet received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mark {
    /// `external_sms/<id>/mark_successful/`.
    Successful,
    /// `external_sms/<id>/mark_failed/`: the raw body, and the `reason` if it was JSON with one.
    Failed { reason: Option<String>, body: String },
    /// `appointment_reminder/<id>/mark_external_sending/`.
    ExternalSending,
    /// `appointment_reminder/<id>/mark_sent/`.
    Sent,
}

/// One request the fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedCall {
    pub method: String,
    /// Path and query, e.g. `/4321/api/0.1/external_sms/?page=2`.
    pub path: String,
    pub body: String,
    /// The status answered; 0 for a stalled call.
    pub status: u16,
    pub at: Instant,
}

#[derive(Default)]
struct State {
    next_id: i64,
    sms: BTreeMap<i64, Value>,
    reminders: BTreeMap<i64, Value>,
    appointment_reminders: BTreeMap<i64, Value>,
    templates: BTreeMap<i64, Value>,
    clients: BTreeMap<i64, Value>,
    patients: BTreeMap<i64, Value>,
    departments: BTreeMap<i64, Value>,
    /// Endpoints (first path segment under `api/0.1/`) answered 403.
    denied: Vec<String>,
    tokens: HashMap<String, Instant>,
    tokens_issued: u64,
    expires_in: u64,
    expires_in_json: Option<Value>,
    page_size: usize,
    api_failures: VecDeque<Failure>,
    token_failures: VecDeque<Failure>,
    latency: Duration,
    stall: bool,
    reject_json_mark_failed: bool,
    next_base: Option<String>,
    calls: Vec<RecordedCall>,
    marks: Vec<(i64, Mark)>,
}

struct Shared {
    opts: FakeOptions,
    base_url: String,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock must not hide the state from the others.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The fake Provet server. Stops when [`FakeProvet::stop`] is called or it is dropped.
pub struct FakeProvet {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl FakeProvet {
    /// Binds 127.0.0.1 on a free port and starts serving.
    pub async fn start(opts: FakeOptions) -> io::Result<FakeProvet> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let base_url = format!("http://{addr}/{}/api/0.1/", opts.provet_id);
        let state = State {
            next_id: 1,
            expires_in: opts.token_expires_in,
            page_size: opts.page_size.max(1),
            ..State::default()
        };
        let shared = Arc::new(Shared { opts, base_url, state: Mutex::new(state) });
        let (shutdown, rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, shared.clone(), rx));
        Ok(FakeProvet { addr, shared, shutdown, task: Some(task) })
    }

    /// Stops accepting and drops every open connection (stalled calls included).
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>/<provet_id>/api/0.1/`.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// `http://127.0.0.1:<port>/<provet_id>/oauth2/token/`.
    pub fn token_url(&self) -> String {
        format!("http://{}/{}/oauth2/token/", self.addr, self.shared.opts.provet_id)
    }

    pub fn options(&self) -> &FakeOptions {
        &self.shared.opts
    }

    /// A `[[provet]]` config pointing at this fake (plain http allowed, 5 s timeout).
    pub fn client_config(&self, name: &str) -> ProvetConfig {
        ProvetConfig {
            name: name.to_string(),
            base_url: self.base_url(),
            token_url: self.token_url(),
            client_id: self.shared.opts.client_id.clone(),
            client_secret: Secret::new(self.shared.opts.client_secret.clone()),
            webhook_token: None,
            poll_interval: Duration::from_secs(60),
            reminder_poll: Duration::ZERO,
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            request_timeout: Duration::from_secs(5),
            allow_insecure_http: true,
            custom_integration: None,
        }
    }

    /// Queues an external SMS as Provet would create it today; returns its id.
    pub fn add_sms(&self, phone: &str, message: &str) -> i64 {
        let today = crate::provet::reminders::format_day(crate::provet::reminders::today());
        self.add_sms_created(phone, message, &today)
    }

    /// Queues an external SMS with this `created_date` (`YYYY-MM-DD`); returns its id.
    pub fn add_sms_created(&self, phone: &str, message: &str, created_date: &str) -> i64 {
        let mut st = self.shared.lock();
        let id = take_id(&mut st);
        st.sms.insert(
            id,
            json!({"id": id, "message": message, "phone_number": phone, "client_id": 1,
                   "consultation_id": null, "patient_ids": [], "created_date": created_date}),
        );
        id
    }

    /// Serves `value` as the external SMS `id`, whatever it contains (for malformed-answer tests).
    pub fn put_raw_sms(&self, id: i64, value: Value) {
        let mut st = self.shared.lock();
        st.next_id = st.next_id.max(id + 1);
        st.sms.insert(id, value);
    }

    /// Adds a reminder in the real shape with `sms_text` and `phone_number` set, no client, due
    /// today; returns its id (which the object itself does not carry: see `url`).
    pub fn add_reminder(&self, phone: &str, sms_text: &str, send_method: i64) -> i64 {
        self.add_reminder_with(json!({"phone_number": phone, "sms_text": sms_text, "send_method": send_method}))
    }

    /// Adds a reminder: the public fixture's shape (docs/provet.md §2) with `fields` laid over
    /// it. Links (`client`, `patient`, `reminder_template`, `department`) may be given as ids and
    /// are served as URLs. Returns its id.
    pub fn add_reminder_with(&self, fields: Value) -> i64 {
        let mut st = self.shared.lock();
        let id = take_id(&mut st);
        let today = crate::provet::reminders::format_day(crate::provet::reminders::today());
        let mut r = json!({
            "url": format!("{}reminder/{id}/", self.shared.base_url),
            "department": null, "reminder_template": null, "patient": null, "client": null,
            "email_address": "", "phone_number": "", "email_subject": "", "email_text": "", "sms_text": "",
            "post_text": "", "text_manually": true, "send_before": 3, "send_method": 4,
            "expiry_date": null, "planned_sending_date": today, "status": 0,
            "created": "2020-02-20T04:53:25-05:00", "recurring_type": null, "recurring_times": 0, "external_url": null
        });
        self.overlay(&mut r, fields);
        st.reminders.insert(id, r);
        id
    }

    /// Adds an appointment reminder (`url`, `sms_text`, `phone_number`, `send_externally`;
    /// their real shape is unpublished, see docs/provet.md); returns its id.
    pub fn add_appointment_reminder(&self, phone: &str, sms_text: &str) -> i64 {
        let mut st = self.shared.lock();
        let id = take_id(&mut st);
        st.appointment_reminders.insert(
            id,
            json!({"url": format!("{}appointment_reminder/{id}/", self.shared.base_url), "send_externally": false,
                   "phone_number": phone, "sms_text": sms_text, "client": null, "appointment": 1}),
        );
        id
    }

    /// Adds a reminder template with this SMS text (`[[placeholders]]`); returns its id.
    pub fn add_template(&self, sms_text: &str) -> i64 {
        let mut st = self.shared.lock();
        let id = take_id(&mut st);
        st.templates.insert(
            id,
            json!({"url": format!("{}remindertemplate/{id}/", self.shared.base_url), "id": id,
                   "title": "Vaccination Reminder", "email_text": "", "sms_text": sms_text, "post_text": ""}),
        );
        id
    }

    /// Adds a client with these phone numbers (`(number, preferred_reminders)`); returns its id.
    pub fn add_client(&self, firstname: &str, lastname: &str, no_sms: bool, numbers: &[(&str, bool)]) -> i64 {
        let mut st = self.shared.lock();
        let id = take_id(&mut st);
        let base = &self.shared.base_url;
        let mut list = Vec::new();
        for (number, preferred) in numbers {
            let nid = take_id(&mut st);
            list.push(
                json!({"id": nid, "url": format!("{base}phonenumber/{nid}/"), "client": format!("{base}client/{id}/"),
                "type_code": 1, "phone_number": number, "description": "", "preferred_reminders": preferred}),
            );
        }
        st.clients.insert(
            id,
            json!({"id": id, "url": format!("{base}client/{id}/"), "firstname": firstname, "lastname": lastname,
                   "organization_name": "", "email": "", "no_sms": no_sms, "no_email": false, "archived": false,
                   "patients": [], "phone_numbers": list}),
        );
        id
    }

    /// Adds a patient with this name and no owner; returns its id.
    pub fn add_patient(&self, name: &str) -> i64 {
        self.insert_patient(name, Value::Null)
    }

    /// Adds a patient owned by `client` (the side panel's patient variant); returns its id.
    pub fn add_patient_of(&self, client: i64, name: &str) -> i64 {
        self.insert_patient(name, json!(format!("{}client/{client}/", self.shared.base_url)))
    }

    fn insert_patient(&self, name: &str, client: Value) -> i64 {
        let mut st = self.shared.lock();
        let id = take_id(&mut st);
        let url = format!("{}patient/{id}/", self.shared.base_url);
        st.patients.insert(id, json!({"id": id, "url": url, "name": name, "client": client}));
        id
    }

    /// Adds a department (clinic) with this name; returns its id.
    pub fn add_department(&self, name: &str) -> i64 {
        let mut st = self.shared.lock();
        let id = take_id(&mut st);
        st.departments
            .insert(id, json!({"id": id, "url": format!("{}department/{id}/", self.shared.base_url), "name": name}));
        id
    }

    /// Answers 403 to every call of this endpoint (`client`, `external_sms`, …) from now on, as
    /// Provet does when the API user lacks the permission.
    pub fn deny(&self, endpoint: &str) {
        self.shared.lock().denied.push(endpoint.to_string());
    }

    /// Lays `fields` over `r`; link fields given as integers become URLs.
    fn overlay(&self, r: &mut Value, fields: Value) {
        let Value::Object(fields) = fields else { return };
        for (k, v) in fields {
            let path = match k.as_str() {
                "client" => Some("client"),
                "patient" => Some("patient"),
                "department" => Some("department"),
                "reminder_template" => Some("remindertemplate"),
                _ => None,
            };
            let v = match (path, v.as_i64()) {
                (Some(p), Some(id)) => Value::String(format!("{}{p}/{id}/", self.shared.base_url)),
                _ => v,
            };
            r[k] = v;
        }
    }

    /// Ids of external SMS not yet marked.
    pub fn pending_sms(&self) -> Vec<i64> {
        self.shared.lock().sms.keys().copied().collect()
    }

    /// `expires_in` for tokens issued from now on.
    pub fn set_token_expires_in(&self, secs: u64) {
        self.shared.lock().expires_in = secs;
    }

    /// Answers `expires_in` with exactly this JSON value (e.g. `1e300`, `18446744073709551615`,
    /// `"soon"`) from now on; the tokens themselves stay valid for [`FakeOptions::token_expires_in`].
    /// `None` goes back to the number.
    pub fn set_token_expires_in_json(&self, value: Option<Value>) {
        self.shared.lock().expires_in_json = value;
    }

    /// Invalidates every token issued so far: the next API call gets a 401.
    pub fn expire_tokens(&self) {
        self.shared.lock().tokens.clear();
    }

    /// How many tokens the token endpoint has issued.
    pub fn tokens_issued(&self) -> u64 {
        self.shared.lock().tokens_issued
    }

    /// Fails the next `n` API calls (not token calls) with `failure`.
    pub fn fail_next(&self, n: usize, failure: Failure) {
        self.shared.lock().api_failures.extend(std::iter::repeat_n(failure, n));
    }

    /// Fails the next `n` token calls with `failure`.
    pub fn fail_next_token(&self, n: usize, failure: Failure) {
        self.shared.lock().token_failures.extend(std::iter::repeat_n(failure, n));
    }

    /// Delay before every answer.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.lock().latency = latency;
    }

    /// While on, no call is answered.
    pub fn set_stall(&self, stall: bool) {
        self.shared.lock().stall = stall;
    }

    /// While on, `mark_failed` with a non-empty body answers 400 (and marks nothing).
    pub fn reject_json_mark_failed(&self, reject: bool) {
        self.shared.lock().reject_json_mark_failed = reject;
    }

    pub fn set_page_size(&self, page_size: usize) {
        self.shared.lock().page_size = page_size.max(1);
    }

    /// Builds `next` links on this base instead of the fake's own (e.g. another host).
    pub fn set_next_base(&self, base: Option<String>) {
        self.shared.lock().next_base = base;
    }

    /// Every call received so far, in order.
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.shared.lock().calls.clone()
    }

    /// Every mark received so far, in order, as (object id, mark).
    pub fn marks(&self) -> Vec<(i64, Mark)> {
        self.shared.lock().marks.clone()
    }
}

impl Drop for FakeProvet {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn take_id(st: &mut State) -> i64 {
    let id = st.next_id;
    st.next_id += 1;
    id
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::debug!(error = %e, "fake provet: accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let shared = shared.clone();
        let mut conn_shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(req, shared).await) }
            });
            let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                _ = conn_shutdown.changed() => {}
            }
        });
    }
}

/// What to do with a request.
enum Outcome {
    Answer(Response<Full<Bytes>>),
    Stall,
}

async fn handle(req: Request<Incoming>, shared: Arc<Shared>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, 1024 * 1024).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return reply(StatusCode::PAYLOAD_TOO_LARGE, json!({"detail": "body too large"})),
    };
    let path_and_query = parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
    let (outcome, latency) = {
        let mut st = shared.lock();
        let outcome = respond(&shared, &mut st, &parts.method, &parts.uri, &parts.headers, &body);
        let status = match &outcome {
            Outcome::Answer(r) => r.status().as_u16(),
            Outcome::Stall => 0,
        };
        st.calls.push(RecordedCall {
            method: parts.method.to_string(),
            path: path_and_query,
            body: String::from_utf8_lossy(&body).into_owned(),
            status,
            at: Instant::now(),
        });
        (outcome, st.latency)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match outcome {
        Outcome::Answer(r) => r,
        Outcome::Stall => std::future::pending().await,
    }
}

fn respond(
    shared: &Shared,
    st: &mut State,
    method: &Method,
    uri: &hyper::Uri,
    headers: &hyper::HeaderMap,
    body: &[u8],
) -> Outcome {
    if st.stall {
        return Outcome::Stall;
    }
    let prefix = format!("/{}/", shared.opts.provet_id);
    let Some(rest) = uri.path().strip_prefix(&prefix) else {
        return Outcome::Answer(not_found());
    };
    if rest == "oauth2/token/" {
        if let Some(f) = st.token_failures.pop_front() {
            return failure(f);
        }
        if method != Method::POST {
            return Outcome::Answer(reply(StatusCode::METHOD_NOT_ALLOWED, json!({"detail": "use POST"})));
        }
        return Outcome::Answer(token(shared, st, headers, body));
    }
    let Some(api_path) = rest.strip_prefix("api/0.1/") else {
        return Outcome::Answer(not_found());
    };
    if let Some(f) = st.api_failures.pop_front() {
        return failure(f);
    }
    if !bearer_ok(st, headers) {
        return Outcome::Answer(reply(
            StatusCode::UNAUTHORIZED,
            json!({"detail": "Authentication credentials were not provided or have expired."}),
        ));
    }
    let query: HashMap<String, String> =
        uri.query().map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default();
    let segments: Vec<&str> = api_path.trim_end_matches('/').split('/').collect();
    if segments.first().is_some_and(|first| st.denied.iter().any(|d| d == first)) {
        return Outcome::Answer(reply(
            StatusCode::FORBIDDEN,
            json!({"detail": "You do not have permission to perform this action."}),
        ));
    }
    Outcome::Answer(match (method.clone(), segments.as_slice()) {
        (Method::GET, ["external_sms"]) => {
            let items: Vec<Value> = st.sms.values().cloned().collect();
            page(shared, st, "external_sms/", &[], items, &query)
        }
        (Method::GET, ["external_sms", id]) => match parse_id(id).and_then(|id| st.sms.get(&id)) {
            Some(v) => reply(StatusCode::OK, v.clone()),
            None => not_found(),
        },
        (Method::POST, ["external_sms", id, "mark_successful"]) => match parse_id(id) {
            Some(id) if st.sms.remove(&id).is_some() => {
                st.marks.push((id, Mark::Successful));
                reply(StatusCode::OK, json!({}))
            }
            _ => not_found(),
        },
        (Method::POST, ["external_sms", id, "mark_failed"]) => match parse_id(id) {
            Some(id) if st.sms.contains_key(&id) => {
                if st.reject_json_mark_failed && !body.is_empty() {
                    return Outcome::Answer(reply(
                        StatusCode::BAD_REQUEST,
                        json!({"detail": "This endpoint takes no body."}),
                    ));
                }
                st.sms.remove(&id);
                let reason = serde_json::from_slice::<Value>(body)
                    .ok()
                    .and_then(|v| v.get("reason").and_then(Value::as_str).map(str::to_string));
                st.marks.push((id, Mark::Failed { reason, body: String::from_utf8_lossy(body).into_owned() }));
                reply(StatusCode::OK, json!({}))
            }
            _ => not_found(),
        },
        (Method::GET, ["reminder"]) => {
            if query.contains_key("send_method") {
                return Outcome::Answer(reply(
                    StatusCode::BAD_REQUEST,
                    json!({"detail": "unknown filter `send_method`; filters are written field__method=value"}),
                ));
            }
            let wanted = query.get("send_method__is").and_then(|s| s.parse::<i64>().ok());
            let due_by = query.get("planned_sending_date__lte").cloned();
            let items: Vec<Value> = st
                .reminders
                .values()
                .filter(|r| wanted.is_none() || r.get("send_method").and_then(Value::as_i64) == wanted)
                .filter(|r| match (&due_by, r.get("planned_sending_date").and_then(Value::as_str)) {
                    (None, _) => true,
                    (Some(by), Some(planned)) => planned <= by.as_str(),
                    (Some(_), None) => false,
                })
                .cloned()
                .collect();
            let mut keep: Vec<(&str, String)> = Vec::new();
            if let Some(w) = wanted {
                keep.push(("send_method__is", w.to_string()));
            }
            if let Some(by) = due_by {
                keep.push(("planned_sending_date__lte", by));
            }
            page(shared, st, "reminder/", &keep, items, &query)
        }
        (Method::GET, ["reminder", id]) => by_id(&st.reminders, id),
        (Method::GET, ["remindertemplate", id]) => by_id(&st.templates, id),
        (Method::GET, ["client", id]) => by_id(&st.clients, id),
        (Method::GET, ["patient", id]) => by_id(&st.patients, id),
        (Method::GET, ["department", id]) => by_id(&st.departments, id),
        (Method::GET, ["client"]) => {
            let needle = query.get("phonenumbers__icontains").cloned().unwrap_or_default().to_lowercase();
            let items: Vec<Value> = st
                .clients
                .values()
                .filter(|c| {
                    c["phone_numbers"].as_array().is_some_and(|ns| {
                        ns.iter()
                            .any(|n| n["phone_number"].as_str().is_some_and(|p| p.to_lowercase().contains(&needle)))
                    })
                })
                .cloned()
                .collect();
            let keep = [("phonenumbers__icontains", needle.clone())];
            page(shared, st, "client/", &keep, items, &query)
        }
        (Method::GET, ["phonenumber"]) => {
            let client = query.get("client__is").and_then(|s| s.parse::<i64>().ok());
            let items: Vec<Value> = st
                .clients
                .iter()
                .filter(|(id, _)| client.is_none_or(|c| c == **id))
                .flat_map(|(_, c)| c["phone_numbers"].as_array().cloned().unwrap_or_default())
                .collect();
            let keep: Vec<(&str, String)> = client.map(|c| ("client__is", c.to_string())).into_iter().collect();
            page(shared, st, "phonenumber/", &keep, items, &query)
        }
        (Method::GET, ["appointment_reminder"]) => {
            let items: Vec<Value> = st.appointment_reminders.values().cloned().collect();
            page(shared, st, "appointment_reminder/", &[], items, &query)
        }
        (Method::GET, ["appointment_reminder", id]) => by_id(&st.appointment_reminders, id),
        (Method::POST, ["appointment_reminder", id, "mark_external_sending"]) => {
            match parse_id(id).and_then(|id| st.appointment_reminders.get_mut(&id).map(|r| (id, r))) {
                Some((id, r)) => {
                    r["send_externally"] = Value::Bool(true);
                    st.marks.push((id, Mark::ExternalSending));
                    reply(StatusCode::OK, json!({}))
                }
                None => not_found(),
            }
        }
        (Method::POST, ["appointment_reminder", id, "mark_sent"]) => {
            match parse_id(id).and_then(|id| st.appointment_reminders.get(&id).map(|r| (id, r))) {
                Some((id, r)) => {
                    if r.get("send_externally") != Some(&Value::Bool(true)) {
                        return Outcome::Answer(reply(
                            StatusCode::BAD_REQUEST,
                            json!({"detail": "send_externally is false: call mark_external_sending first"}),
                        ));
                    }
                    st.marks.push((id, Mark::Sent));
                    reply(StatusCode::OK, json!({}))
                }
                None => not_found(),
            }
        }
        (_, ["external_sms" | "reminder" | "appointment_reminder", ..]) => {
            reply(StatusCode::METHOD_NOT_ALLOWED, json!({"detail": "method not allowed"}))
        }
        _ => not_found(),
    })
}

fn token(shared: &Shared, st: &mut State, headers: &hyper::HeaderMap, body: &[u8]) -> Response<Full<Bytes>> {
    let credentials = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok())
        .and_then(|raw| String::from_utf8(raw).ok());
    let ok = credentials.as_deref().and_then(|c| c.split_once(':')).is_some_and(|(id, secret)| {
        form_decode(id) == shared.opts.client_id && form_decode(secret) == shared.opts.client_secret
    });
    if !ok {
        return reply(StatusCode::UNAUTHORIZED, json!({"error": "invalid_client"}));
    }
    let form: HashMap<String, String> = form_urlencoded::parse(body).into_owned().collect();
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return reply(StatusCode::BAD_REQUEST, json!({"error": "unsupported_grant_type"}));
    }
    st.tokens_issued += 1;
    let token = format!("fake-token-{}-{}", st.tokens_issued, fastrand::u64(..));
    st.tokens.insert(token.clone(), crate::deadline::std_in(Duration::from_secs(st.expires_in)));
    let expires_in = st.expires_in_json.clone().unwrap_or_else(|| json!(st.expires_in));
    reply(
        StatusCode::OK,
        json!({"access_token": token, "token_type": "Bearer", "expires_in": expires_in,
               "scope": form.get("scope").cloned().unwrap_or_else(|| "restapi".into())}),
    )
}

fn bearer_ok(st: &State, headers: &hyper::HeaderMap) -> bool {
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|t| st.tokens.get(t))
        .is_some_and(|expiry| Instant::now() < *expiry)
}

/// One page of `items` in Provet's list shape, with absolute `next`/`previous` links.
fn page(
    shared: &Shared,
    st: &State,
    path: &str,
    keep: &[(&str, String)],
    items: Vec<Value>,
    query: &HashMap<String, String>,
) -> Response<Full<Bytes>> {
    let size = st.page_size;
    let count = items.len();
    let num_pages = count.div_ceil(size).max(1);
    let page_no = match query.get("page").map(|p| p.parse::<usize>()) {
        None => 1,
        Some(Ok(n)) if (1..=num_pages).contains(&n) => n,
        Some(_) => return reply(StatusCode::NOT_FOUND, json!({"detail": "Invalid page."})),
    };
    let base = st.next_base.clone().unwrap_or_else(|| shared.base_url.clone());
    let link = |n: usize| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in keep {
            q.append_pair(k, v);
        }
        q.append_pair("page", &n.to_string());
        Value::String(format!("{base}{path}?{}", q.finish()))
    };
    let results: Vec<Value> = items.into_iter().skip((page_no - 1) * size).take(size).collect();
    reply(
        StatusCode::OK,
        json!({
            "count": count,
            "num_pages": num_pages,
            "next": if page_no < num_pages { link(page_no + 1) } else { Value::Null },
            "previous": if page_no > 1 { link(page_no - 1) } else { Value::Null },
            "results": results,
        }),
    )
}

fn failure(f: Failure) -> Outcome {
    match f {
        Failure::Unauthorized => {
            Outcome::Answer(reply(StatusCode::UNAUTHORIZED, json!({"detail": "Invalid token (injected)."})))
        }
        Failure::RateLimited { retry_after } => {
            let mut r = reply(StatusCode::TOO_MANY_REQUESTS, json!({"detail": "Request was throttled (injected)."}));
            if let Some(v) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
                r.headers_mut().insert(RETRY_AFTER, v);
            }
            Outcome::Answer(r)
        }
        Failure::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Outcome::Answer(reply(status, json!({"detail": "injected failure"})))
        }
        Failure::Stall => Outcome::Stall,
    }
}

fn by_id(map: &BTreeMap<i64, Value>, id: &str) -> Response<Full<Bytes>> {
    match parse_id(id).and_then(|id| map.get(&id)) {
        Some(v) => reply(StatusCode::OK, v.clone()),
        None => not_found(),
    }
}

fn parse_id(s: &str) -> Option<i64> {
    s.parse().ok()
}

fn form_decode(s: &str) -> String {
    form_urlencoded::parse(s.as_bytes()).next().map(|(k, _)| k.into_owned()).unwrap_or_default()
}

fn not_found() -> Response<Full<Bytes>> {
    reply(StatusCode::NOT_FOUND, json!({"detail": "Not found."}))
}

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}
