//! The event webhooks' delivery task: one loop per `[[event_webhook]]`, each taking its due
//! deliveries oldest first, posting the signed envelope and recording the attempt with its
//! consequence in one transaction (the call log row and the delivery's new state).
//!
//! Any 2xx is delivered. Anything else (another status, no answer within [`CALL_TIMEOUT`], a
//! refused connection) is retried with the one backoff ([`crate::retry::backoff`]) until
//! `give_up_after` has passed since the event happened; then `gave_up`. Every attempt carries
//! the same envelope id. At least once: only a crash between an answer and its commit repeats a
//! delivery, with the same id, so a receiver drops duplicates by `X-Smshub-Delivery`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Uri};
use tokio::sync::Notify;

use crate::config::{Config, EventWebhookConfig};
use crate::http_client::{HttpClient, HttpError, Schemes, USER_AGENT};
use crate::retry::backoff;
use crate::shutdown::ShutdownSignal;
use crate::store::{DueEvent, EventDeliveryState, Store, WebhookCall, now_ms};

/// Each call must be answered within this.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// The call log keeps this much of an answer's body.
pub const LOGGED_BODY_BYTES: usize = 4096;
/// Answers are read up to this (a larger 2xx still counts as delivered).
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// With nothing due, a loop still looks at the store this often (events written by the CLI).
const IDLE_RECHECK: Duration = Duration::from_secs(60);
const STORE_ERROR_PAUSE: Duration = Duration::from_secs(1);
const BATCH: usize = 20;

/// The daemon's event delivery task.
pub struct EventWebhooks {
    store: Store,
    config: Arc<Config>,
    client: HttpClient,
    /// Notified by the store after it writes an event (see `EventRoutes::waking`).
    wake: Arc<Notify>,
    /// `smshub_event_deliveries_total`.
    metrics: crate::metrics::Metrics,
}

impl EventWebhooks {
    pub fn new(
        store: Store,
        config: Arc<Config>,
        wake: Arc<Notify>,
        metrics: crate::metrics::Metrics,
    ) -> EventWebhooks {
        let client = HttpClient::new(Schemes::HttpOrHttps, CALL_TIMEOUT, MAX_ANSWER_BYTES);
        EventWebhooks { store, config, client, wake, metrics }
    }

    /// Runs until shutdown.
    pub async fn run(self, mut shutdown: ShutdownSignal) {
        let this = Arc::new(self);
        let mut loops = tokio::task::JoinSet::new();
        let mut kicks = Vec::new();
        for w in &this.config.event_webhooks {
            let kick = Arc::new(Notify::new());
            kicks.push(kick.clone());
            loops.spawn(this.clone().webhook_loop(w.clone(), kick, shutdown.clone()));
        }
        loop {
            tokio::select! {
                _ = shutdown.wait() => break,
                _ = this.wake.notified() => kicks.iter().for_each(|k| k.notify_one()),
            }
        }
        while loops.join_next().await.is_some() {}
        tracing::debug!("event webhooks stopped");
    }

    async fn webhook_loop(self: Arc<Self>, hook: EventWebhookConfig, kick: Arc<Notify>, mut shutdown: ShutdownSignal) {
        let name = hook.name.clone();
        loop {
            if shutdown.is_triggered() {
                break;
            }
            let n = name.clone();
            match self.store.call(move |db| db.due_event_deliveries(&n, now_ms(), BATCH)).await {
                Ok(due) if !due.is_empty() => {
                    for event in due {
                        let outcome = tokio::select! {
                            o = self.attempt(&hook, &event) => o,
                            _ = shutdown.wait() => break,
                        };
                        self.record(&hook, &event, outcome).await;
                    }
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(webhook = %name, error = %e, "reading due events failed");
                    tokio::time::sleep(STORE_ERROR_PAUSE).await;
                }
            }
            let n = name.clone();
            let next = self.store.call(move |db| db.next_event_due(&n)).await.ok().flatten();
            let wait = crate::deadline::until_ms(next, now_ms(), IDLE_RECHECK);
            tokio::select! {
                _ = shutdown.wait() => break,
                _ = kick.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        tracing::debug!(webhook = %name, "event webhook stopped");
    }

    /// One POST; the call as the log keeps it.
    async fn attempt(&self, hook: &EventWebhookConfig, event: &DueEvent) -> WebhookCall {
        let clinic_code = self.config.clinic_code.as_deref().unwrap_or("");
        let body = super::envelope(hook.version, clinic_code, event);
        let headers = [
            ("Content-Type", "application/json".to_string()),
            ("User-Agent", USER_AGENT.to_string()),
            ("X-Smshub-Event", event.event_type.clone()),
            ("X-Smshub-Delivery", event.uid.clone()),
            ("X-Smshub-Signature", super::signature(hook.secret.expose(), body.as_bytes())),
        ];
        let mut call = WebhookCall {
            event_id: event.event_id,
            webhook: hook.name.clone(),
            at: now_ms(),
            url: super::url_for_log(&hook.url),
            request_headers: headers.iter().map(|(k, v)| format!("{k}: {v}\n")).collect(),
            request_body: body.clone(),
            ..Default::default()
        };
        let started = Instant::now();
        let result = match build_request(&hook.url, &headers, body) {
            Ok(request) => self.client.send(request).await,
            Err(e) => Err(HttpError::Request(format!("the URL is not usable: {e}"))),
        };
        call.duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        match result {
            Ok(reply) => {
                call.status = Some(reply.status.as_u16());
                call.response_headers = Some(
                    reply
                        .headers
                        .iter()
                        .map(|(k, v)| format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())))
                        .collect(),
                );
                let shown = reply.body.get(..LOGGED_BODY_BYTES.min(reply.body.len())).unwrap_or_default();
                call.response_body = Some(String::from_utf8_lossy(shown).into_owned());
                if !reply.status.is_success() {
                    call.error = Some(format!("HTTP {}: only a 2xx answer counts as delivered", reply.status.as_u16()));
                }
            }
            Err(HttpError::TooLarge { status, max }) if (200..300).contains(&status) => {
                call.status = Some(status);
                call.response_body = Some(format!("(answer longer than {max} bytes; not kept)"));
            }
            Err(e) => {
                call.status = e.status();
                call.error = Some(e.to_string());
            }
        }
        call
    }

    async fn record(&self, hook: &EventWebhookConfig, event: &DueEvent, call: WebhookCall) {
        let attempts = event.attempts.saturating_add(1);
        self.metrics.event_delivery(&hook.name, call.error.is_none());
        let outcome = if call.error.is_none() {
            EventDeliveryState::Delivered
        } else {
            let age = Duration::from_millis(u64::try_from(now_ms().saturating_sub(event.created_at)).unwrap_or(0));
            let wait = backoff(attempts, hook.retry_initial, hook.retry_max);
            if age.saturating_add(wait) > hook.give_up_after {
                EventDeliveryState::GaveUp
            } else {
                EventDeliveryState::RetryAt(crate::deadline::ms_after(now_ms(), wait))
            }
        };
        match outcome {
            EventDeliveryState::Delivered => {
                tracing::debug!(webhook = %hook.name, event = %event.uid, attempts, "event delivered")
            }
            EventDeliveryState::RetryAt(_) => tracing::info!(
                webhook = %hook.name, event = %event.uid, kind = %event.event_type, attempts,
                "event webhook failed; retrying: {}", call.error.as_deref().unwrap_or("")
            ),
            EventDeliveryState::GaveUp => tracing::warn!(
                webhook = %hook.name, event = %event.uid, kind = %event.event_type, attempts,
                "gave up delivering an event: {}", call.error.as_deref().unwrap_or("")
            ),
        }
        let result = self.store.call(move |db| db.record_event_call(&call, outcome)).await;
        if let Err(e) = result {
            tracing::error!(webhook = %hook.name, error = %e, "recording an event webhook call failed");
            tokio::time::sleep(STORE_ERROR_PAUSE).await;
        }
    }
}

fn build_request(url: &str, headers: &[(&str, String)], body: String) -> Result<Request<Full<Bytes>>, String> {
    let uri: Uri = url.parse().map_err(|e: hyper::http::uri::InvalidUri| e.to_string())?;
    let mut builder = Request::post(uri);
    for (k, v) in headers {
        builder = builder.header(*k, v.as_str());
    }
    builder.body(Full::new(Bytes::from(body))).map_err(|e| e.to_string())
}
