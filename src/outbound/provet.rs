//! The Provet side of the send pipeline, one [`ProvetWorker`] per `[[provet]]` instance:
//!
//! - **Poll**: `GET external_sms/` at start and every `poll_interval` (0 = only at start);
//!   each item is stored `fetched` at once (its text and number are in the list), or `failed`
//!   when its number or shape is unusable (reported failed later). Catches missed webhooks and
//!   downtime.
//! - **Fetch**: `received` rows (webhook hints, reminder button) are fetched over the API and
//!   stored `fetched` before anything is sent. Appointment reminders are first handed to
//!   external sending (`mark_external_sending`), so Provet does not send them too. 404 means
//!   settled elsewhere: the row becomes `reported` with the reason in `last_error`.
//! - **Report**: `sent`/`failed` rows are marked in Provet (`mark_successful`,
//!   `mark_failed(reason)`, `mark_sent` for appointment reminders) and only then stored
//!   `reported`. A 404 on a mark means already marked (a crash after the mark and before the
//!   store write): settled. Reminders with `send_method` 4 have no documented mark; the outbox
//!   row (unique per instance and id) is their memory, so each is sent once.
//!
//! - **Discover reminders** (opt-in, `reminder_poll_s`): `GET reminder/?send_method__is=4&
//!   planned_sending_date__lte=<today>`; each one planned within the last `max_age_days` is
//!   queued `received` (the outbox key (source, instance, id) keeps it once, across restarts and
//!   repeated polls) and goes through the fetch stage like a button press. Older ones are left
//!   alone: without this baseline the first poll would send every reminder Provet ever planned.
//! - **Stale work**: an external SMS whose `created_date` is more than `[outbound] max_age_days`
//!   before today, or a reminder past its `expiry_date`, is not sent: it fails with "too old to
//!   send (queued <date>, smshub was offline)", which `mark_failed` passes to Provet.
//! - **Refusals**: a reminder that cannot be sent (no text, unrenderable placeholders, no
//!   number, `no_sms`; [`crate::provet::ReminderError::Refused`]) fails with the reason and is never
//!   sent. An appointment reminder is handed to external sending only after it passed these
//!   checks, so a refused one stays Provet's to send.
//!
//! Errors: rate limits and transient failures back off (`retry_initial` doubling to
//! `retry_max`, at least `Retry-After`); a permanent refusal of a fetch fails the message; a
//! permanent refusal of a report is retried every `retry_max` and logged, never dropped; an
//! authentication failure is a box problem, not the message's, so it is retried at `retry_max`.
//!
//! Sending itself (opt-outs, parts, modem errors, unknown outcomes) is [`super::ModemSender`]'s.

use std::sync::Arc;
use std::time::Duration;

use crate::config::ProvetConfig;
use crate::phone::{PhoneNumber, mask_number};
use crate::provet::reminders::{format_day, parse_day, today};
use crate::provet::{MarkFailedForm, ProvetClient, ProvetError, ReminderError, ReminderKind};
use crate::shutdown::ShutdownSignal;
use crate::store::{OutboxId, OutboxState, ProvetWork, Queued, Store, StoreError, now_ms};

use super::Wake;

/// Rows taken per pass of the fetch or report loop.
const BATCH: usize = 50;

/// How long an idle loop sleeps before looking at the store again without a wake-up (rows
/// another process wrote). Wake-ups are not lost: each loop registers for the next one before it
/// looks at the store ([`tokio::sync::futures::Notified::enable`]), and [`Wake::all`] reaches
/// every registered loop of every instance.
const IDLE_RECHECK: Duration = Duration::from_secs(60);

/// The outbox `source` of external SMS.
pub const SOURCE_SMS: &str = "provet";

/// The kv key under which the `mark_failed` form Provet accepted is remembered.
pub fn mark_failed_form_key(instance: &str) -> String {
    format!("provet:{instance}:mark_failed_form")
}

/// Fetches, polls and reports for one Provet instance.
pub struct ProvetWorker {
    pub config: ProvetConfig,
    pub client: Arc<ProvetClient>,
    pub store: Store,
    pub wake: Wake,
    /// For numbers written without a country code.
    pub default_country: Option<String>,
    /// `[outbound] max_age_days`: older Provet work is not sent.
    pub max_age_days: u32,
    /// `smshub_messages_failed_total` for messages that cannot be fetched.
    pub metrics: crate::metrics::Metrics,
}

/// What to do after a failed Provet call.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Next {
    /// Try again after this long.
    RetryIn(Duration),
    /// Give up on the fetch: the message fails with this reason.
    Fail(String),
    /// Provet says the object is gone: settled, with this reason.
    Settled(String),
}

impl ProvetWorker {
    /// Runs the fetch/poll loop and the report loop until shutdown.
    pub async fn run(self, shutdown: ShutdownSignal) {
        let key = mark_failed_form_key(&self.config.name);
        match self.store.call(move |db| db.kv_get(&key)).await {
            Ok(Some(v)) => self.client.set_mark_failed_form(MarkFailedForm::parse(&v)),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(provet = %self.config.name, error = %e, "could not read the remembered mark_failed form")
            }
        }
        let me = Arc::new(self);
        tokio::join!(me.clone().fetch_loop(shutdown.clone()), me.report_loop(shutdown));
        tracing::debug!("provet worker stopped");
    }

    fn name(&self) -> &str {
        &self.config.name
    }

    async fn fetch_loop(self: Arc<Self>, mut shutdown: ShutdownSignal) {
        let mut next_poll = Some(tokio::time::Instant::now());
        let reminder_poll = self.config.reminder_poll;
        let mut next_reminder_poll = (!reminder_poll.is_zero()).then(tokio::time::Instant::now);
        loop {
            if shutdown.is_triggered() {
                return;
            }
            if next_poll.is_some_and(|at| at <= tokio::time::Instant::now()) {
                next_poll = match self.poll().await {
                    Ok(()) if self.config.poll_interval.is_zero() => None,
                    Ok(()) => Some(crate::deadline::tokio_in(self.config.poll_interval)),
                    Err(delay) => Some(crate::deadline::tokio_in(delay)),
                };
            }
            if next_reminder_poll.is_some_and(|at| at <= tokio::time::Instant::now()) {
                // After a failure, retry sooner than the next regular poll, never later.
                let delay = self.poll_reminders().await.unwrap_or_else(|d| d.min(reminder_poll));
                next_reminder_poll = Some(crate::deadline::tokio_in(delay));
            }
            let woken = self.wake.fetch.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let did = match self.fetch_batch(&shutdown).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(provet = %self.name(), error = %e, "store error in the fetch loop; will retry");
                    0
                }
            };
            if did > 0 {
                continue;
            }
            let mut wait = self.until_due().await;
            for at in [next_poll, next_reminder_poll].into_iter().flatten() {
                wait = wait.min(at.saturating_duration_since(tokio::time::Instant::now()));
            }
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = &mut woken => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn report_loop(self: Arc<Self>, mut shutdown: ShutdownSignal) {
        loop {
            if shutdown.is_triggered() {
                return;
            }
            let woken = self.wake.report.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let did = match self.report_batch(&shutdown).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(provet = %self.name(), error = %e, "store error in the report loop; will retry");
                    0
                }
            };
            if did > 0 {
                continue;
            }
            let wait = self.until_due().await;
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = &mut woken => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// How long until the next scheduled retry of this instance (at most [`IDLE_RECHECK`]).
    async fn until_due(&self) -> Duration {
        let name = self.config.name.clone();
        let due = self.store.call(move |db| db.provet_next_due(&name)).await.ok().flatten();
        crate::deadline::until_ms(due, now_ms(), IDLE_RECHECK)
    }

    /// Lists every unmarked external SMS and queues the ones not yet known. On a Provet error
    /// returns how long to wait before polling again.
    async fn poll(&self) -> Result<(), Duration> {
        let items = match self.client.list_external_sms_items().await {
            Ok(items) => items,
            Err(e) => {
                let delay = match self.classify(&e, 0, false) {
                    Next::RetryIn(d) => d,
                    _ => self.config.retry_max,
                };
                tracing::warn!(provet = %self.name(), error = %e, retry_in_s = delay.as_secs(), "polling Provet failed");
                return Err(delay);
            }
        };
        let mut queued = 0usize;
        for item in items {
            let (external_id, recipient, body) = match item {
                Ok(sms) => {
                    let number = match self.too_old(sms.created_date.as_deref()) {
                        Some(reason) => Err(reason),
                        None => PhoneNumber::parse(&sms.phone_number, self.default_country.as_deref())
                            .map_err(|e| format!("unusable phone number: {e}")),
                    };
                    (sms.id, number, sms.message)
                }
                Err(item) => match item.id {
                    Some(id) => {
                        (id, Err(format!("Provet sent a malformed external SMS: {}", item.reason)), String::new())
                    }
                    None => {
                        tracing::warn!(provet = %self.name(), reason = %crate::phone::mask_numbers_in(&item.reason), "Provet listed an external SMS without a usable id; skipped");
                        continue;
                    }
                },
            };
            let inst = self.config.name.clone();
            let res = self
                .store
                .call(move |db| {
                    db.provet_queue_fetched(
                        SOURCE_SMS,
                        &inst,
                        external_id,
                        recipient.as_ref().map_err(String::as_str),
                        &body,
                    )
                })
                .await;
            match res {
                Ok(Queued::New | Queued::Completed) => queued += 1,
                Ok(Queued::Known) => {}
                Err(e) => {
                    tracing::error!(provet = %self.name(), external_sms_id = external_id, error = %e, "could not store a polled SMS");
                    return Err(Duration::from_secs(1));
                }
            }
        }
        if queued > 0 {
            tracing::info!(provet = %self.name(), queued, "Provet poll queued messages");
            self.wake.send.notify_one();
            Wake::all(&self.wake.report);
        }
        Ok(())
    }

    /// The stale-work reason for work Provet created on `created_date`, if it is more than
    /// `max_age_days` before today. A missing or unreadable date is not stale (the field is
    /// optional in the documented example's sense; refusing it would stop every SMS).
    fn too_old(&self, created_date: Option<&str>) -> Option<String> {
        let day = parse_day(created_date?)?;
        (day < today() - i64::from(self.max_age_days))
            .then(|| format!("too old to send (queued {}, smshub was offline)", format_day(day)))
    }

    /// Lists due `send_method: 4` reminders and queues those planned within the last
    /// `max_age_days` (module doc). Returns how long until the next poll.
    async fn poll_reminders(&self) -> Result<Duration, Duration> {
        let today = today();
        let items = match self.client.list_due_reminders(today).await {
            Ok(items) => items,
            Err(e) => {
                let delay = match self.classify(&e, 0, false) {
                    Next::RetryIn(d) => d,
                    _ => self.config.retry_max,
                };
                tracing::warn!(provet = %self.name(), error = %e, retry_in_s = delay.as_secs(), "listing due reminders failed");
                return Err(delay);
            }
        };
        let oldest = today - i64::from(self.max_age_days);
        let (mut queued, mut old) = (0usize, 0usize);
        for item in items {
            // A listed item that does not parse but names its id is queued all the same: the
            // fetch stage reads it again and fails it with the reason, like any malformed object.
            let id = match item {
                Ok(r) => {
                    if r.planned_sending_date.as_deref().and_then(parse_day).is_none_or(|d| d < oldest) {
                        old += 1;
                        continue;
                    }
                    r.id
                }
                Err(e) => match e.id {
                    Some(id) => id,
                    None => {
                        tracing::warn!(provet = %self.name(), reason = %crate::phone::mask_numbers_in(&e.reason), "Provet listed a reminder without a usable id; skipped");
                        continue;
                    }
                },
            };
            let inst = self.config.name.clone();
            let source = ReminderKind::Reminder.as_str();
            let res = self.store.call(move |db| db.insert_received(source, &inst, id).map(|(_, new)| new)).await;
            match res {
                Ok(true) => queued += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(provet = %self.name(), reminder_id = id, error = %e, "could not store a due reminder");
                    return Err(Duration::from_secs(1));
                }
            }
        }
        if queued > 0 || old > 0 {
            tracing::info!(provet = %self.name(), queued, older_than_max_age = old, "due reminders listed");
        }
        if queued > 0 {
            Wake::all(&self.wake.fetch);
        }
        Ok(self.config.reminder_poll)
    }

    /// Fetches one batch of `received` rows; returns how many rows were handled.
    async fn fetch_batch(&self, shutdown: &ShutdownSignal) -> Result<usize, StoreError> {
        let inst = self.config.name.clone();
        let work = self.store.call(move |db| db.provet_to_fetch(&inst, now_ms(), BATCH)).await?;
        let n = work.len();
        for w in work {
            if shutdown.is_triggered() {
                break;
            }
            self.fetch_one(w).await?;
        }
        Ok(n)
    }

    async fn fetch_one(&self, w: ProvetWork) -> Result<(), StoreError> {
        let id = w.id;
        let fetched = self.fetch_content(&w).await;
        match fetched {
            Ok((raw_number, text)) => match PhoneNumber::parse(&raw_number, self.default_country.as_deref()) {
                Ok(number) => {
                    tracing::debug!(provet = %self.name(), outbox_id = id, to = %mask_number(number.as_str()), "fetched");
                    self.store.call(move |db| db.mark_fetched(id, &number, &text)).await?;
                    self.wake.send.notify_one();
                }
                Err(e) => {
                    let reason = format!("unusable phone number: {e}");
                    self.fail_fetch(id, reason).await?;
                }
            },
            Err(ReminderError::Refused(reason)) => self.fail_fetch(id, reason).await?,
            Err(ReminderError::Provet(e)) => match self.classify(&e, w.attempts, false) {
                Next::RetryIn(delay) => self.retry(id, &e, delay, "fetch").await?,
                Next::Fail(reason) => self.fail_fetch(id, reason).await?,
                Next::Settled(why) => {
                    tracing::info!(provet = %self.name(), outbox_id = id, source = %w.source, external_id = w.external_id, "already settled in Provet; not sending");
                    self.store.call(move |db| db.provet_settled(id, &why)).await?;
                }
            },
        }
        Ok(())
    }

    /// The number and text of a row, from the API, or why it is not sent. Appointment
    /// reminders are handed to external sending only after every check passed, so that Provet
    /// does not send them as well and a refused one stays Provet's.
    async fn fetch_content(&self, w: &ProvetWork) -> Result<(String, String), ReminderError> {
        match ReminderKind::parse(&w.source) {
            None => {
                let sms = self.client.get_external_sms(w.external_id).await?;
                if let Some(reason) = self.too_old(sms.created_date.as_deref()) {
                    return Err(ReminderError::Refused(reason));
                }
                Ok((sms.phone_number, sms.message))
            }
            Some(kind) => {
                let r = self.client.get_reminder(kind, w.external_id).await?;
                match r.expiry_day() {
                    Ok(Some(day)) if day < today() => {
                        return Err(ReminderError::Refused(format!(
                            "too old to send (expired {}, smshub was offline or the reminder came late)",
                            format_day(day)
                        )));
                    }
                    Ok(_) => {}
                    Err(why) => return Err(ReminderError::Refused(why)),
                }
                let text = self.client.reminder_text(&r).await?;
                if kind == ReminderKind::AppointmentReminder && !r.send_externally {
                    self.client.mark_external_sending(w.external_id).await?;
                }
                Ok((text.phone_number, text.text))
            }
        }
    }

    async fn fail_fetch(&self, id: OutboxId, reason: String) -> Result<(), StoreError> {
        tracing::warn!(provet = %self.name(), outbox_id = id, reason = %crate::phone::mask_numbers_in(&reason), "message cannot be fetched; it fails");
        let class_of = reason.clone();
        self.store.call(move |db| db.provet_fetch_failed(id, &reason)).await?;
        self.metrics.failed(&class_of);
        Wake::all(&self.wake.report);
        Ok(())
    }

    /// Reports one batch of `sent`/`failed` rows; returns how many rows were handled.
    async fn report_batch(&self, shutdown: &ShutdownSignal) -> Result<usize, StoreError> {
        let inst = self.config.name.clone();
        let work = self.store.call(move |db| db.provet_to_report(&inst, now_ms(), BATCH)).await?;
        let n = work.len();
        for w in work {
            if shutdown.is_triggered() {
                break;
            }
            self.report_one(w).await?;
        }
        Ok(n)
    }

    async fn report_one(&self, w: ProvetWork) -> Result<(), StoreError> {
        let id = w.id;
        let sent = w.state == OutboxState::Sent;
        let result = match (ReminderKind::parse(&w.source), sent) {
            (None, true) => self.client.mark_successful(w.external_id).await,
            (None, false) => {
                let reason = w.fail_reason.clone().unwrap_or_else(|| "failed".into());
                let before = self.client.mark_failed_form();
                let r = self.client.mark_failed(w.external_id, &reason).await;
                self.remember_form(before).await;
                r
            }
            (Some(ReminderKind::AppointmentReminder), true) => self.client.mark_sent(w.external_id).await,
            (Some(kind), _) => {
                // No documented mark: a failed appointment reminder stays "sending externally"
                // in Provet, and a send_method-4 reminder has no state at all. The store row is
                // the record (and stops a second send).
                if !sent {
                    tracing::warn!(
                        provet = %self.name(), outbox_id = id, kind = kind.as_str(), external_id = w.external_id,
                        reason = %crate::phone::mask_numbers_in(w.fail_reason.as_deref().unwrap_or("")),
                        "reminder failed; Provet has no endpoint to report it, see `smshub outbox list`"
                    );
                }
                Ok(())
            }
        };
        match result {
            Ok(()) => {
                tracing::info!(provet = %self.name(), outbox_id = id, source = %w.source, external_id = w.external_id,
                    outcome = if sent { "sent" } else { "failed" }, message_id = crate::logging::message_ids::PROVET_REPORTED, "reported to Provet");
                self.store.call(move |db| db.provet_reported(id)).await?;
            }
            Err(e) => match self.classify(&e, w.attempts, true) {
                Next::RetryIn(delay) => self.retry(id, &e, delay, "report").await?,
                // Not produced for reports; if it were, the report is still never dropped.
                Next::Fail(_) => self.retry(id, &e, self.config.retry_max, "report").await?,
                Next::Settled(why) => {
                    tracing::info!(provet = %self.name(), outbox_id = id, external_id = w.external_id, "already marked in Provet; settled");
                    self.store.call(move |db| db.provet_settled(id, &why)).await?;
                }
            },
        }
        Ok(())
    }

    /// Persists the `mark_failed` form when Provet's answer taught the client a new one.
    async fn remember_form(&self, before: Option<MarkFailedForm>) {
        let now = self.client.mark_failed_form();
        if let Some(form) = now.filter(|f| Some(*f) != before) {
            let key = mark_failed_form_key(&self.config.name);
            if let Err(e) = self.store.call(move |db| db.kv_set(&key, form.as_str())).await {
                tracing::warn!(provet = %self.name(), error = %e, "could not remember the mark_failed form");
            }
        }
    }

    async fn retry(
        &self,
        id: OutboxId,
        e: &ProvetError,
        delay: Duration,
        stage: &'static str,
    ) -> Result<(), StoreError> {
        let err = e.to_string();
        let attempts =
            self.store.call(move |db| db.schedule_retry(id, &err, crate::deadline::ms_after(now_ms(), delay))).await?;
        tracing::warn!(provet = %self.name(), outbox_id = id, stage, attempt = attempts, retry_in_ms = delay.as_millis() as u64, error = %e, "Provet call failed; will retry");
        Ok(())
    }

    /// Sorts a failed call. `report`: a report is never given up (permanent refusals are retried
    /// every `retry_max`), a fetch fails the message on a permanent refusal.
    fn classify(&self, e: &ProvetError, attempts: i64, report: bool) -> Next {
        let (initial, max) = (self.config.retry_initial, self.config.retry_max);
        let attempt = u32::try_from(attempts).unwrap_or(u32::MAX);
        match e {
            ProvetError::NotFound if report => {
                Next::Settled("Provet answered 404 to the mark: it was already marked (settled)".into())
            }
            ProvetError::NotFound => {
                Next::Settled("Provet answered 404 to the fetch: already marked or deleted there (settled)".into())
            }
            ProvetError::RateLimited { retry_after } => Next::RetryIn(
                crate::retry::backoff(attempt.saturating_add(1), initial, max).max(retry_after.unwrap_or_default()),
            ),
            ProvetError::Transient(_) => Next::RetryIn(crate::retry::backoff(attempt.saturating_add(1), initial, max)),
            ProvetError::Auth(_) => Next::RetryIn(max),
            ProvetError::Permanent { .. } | ProvetError::BadResponse(_) if report => Next::RetryIn(max),
            ProvetError::Permanent { .. } | ProvetError::BadResponse(_) => Next::Fail(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(dir: &tempfile::TempDir) -> ProvetWorker {
        let cfg = ProvetConfig {
            name: "h".into(),
            base_url: "https://provetcloud.com/1/api/0.1/".into(),
            token_url: "https://provetcloud.com/1/oauth2/token/".into(),
            client_id: "id".into(),
            client_secret: crate::config::Secret::new("s"),
            webhook_token: None,
            poll_interval: Duration::from_secs(60),
            reminder_poll: Duration::ZERO,
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            request_timeout: Duration::from_secs(5),
            allow_insecure_http: false,
            custom_integration: None,
        };
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        ProvetWorker {
            client: Arc::new(ProvetClient::new(&cfg).unwrap()),
            config: cfg,
            store,
            wake: Wake::default(),
            default_country: None,
            max_age_days: 2,
            metrics: Default::default(),
        }
    }

    #[tokio::test]
    async fn errors_are_sorted_into_retry_fail_and_settled() {
        let dir = tempfile::tempdir().unwrap();
        let w = worker(&dir);
        let max = Duration::from_secs(60);
        let rl = ProvetError::RateLimited { retry_after: Some(Duration::from_secs(30)) };
        match w.classify(&rl, 0, false) {
            Next::RetryIn(d) => assert!(d >= Duration::from_secs(30), "Retry-After is honoured: {d:?}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(w.classify(&ProvetError::Transient("x".into()), 3, true), Next::RetryIn(d) if d <= max));
        let perm = ProvetError::Permanent { status: 403, body_excerpt: "no".into() };
        assert!(matches!(w.classify(&perm, 0, false), Next::Fail(r) if r.contains("403")));
        assert_eq!(w.classify(&perm, 0, true), Next::RetryIn(max), "a report is never dropped");
        assert_eq!(w.classify(&ProvetError::Auth("x".into()), 0, false), Next::RetryIn(max));
        assert!(
            matches!(w.classify(&ProvetError::NotFound, 0, true), Next::Settled(r) if r.contains("already marked"))
        );
        assert!(matches!(w.classify(&ProvetError::NotFound, 0, false), Next::Settled(_)));
    }

    #[tokio::test]
    async fn work_older_than_max_age_days_is_too_old_and_unreadable_dates_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let w = worker(&dir);
        let day = |ago: i64| format_day(today() - ago);
        assert_eq!(w.too_old(Some(&day(0))), None);
        assert_eq!(w.too_old(Some(&day(2))), None, "max_age_days = 2: two days old is still sent");
        let reason = w.too_old(Some(&day(3))).unwrap();
        assert_eq!(reason, format!("too old to send (queued {}, smshub was offline)", day(3)));
        let with_time = format!("{}T08:00:00+02:00", day(3));
        assert!(w.too_old(Some(&with_time)).is_some(), "a date-time is read by its date");
        for unreadable in [None, Some(""), Some("yesterday"), Some("2025-02-30"), Some("99999-01-01")] {
            assert_eq!(w.too_old(unreadable), None, "{unreadable:?}");
        }
    }
}
