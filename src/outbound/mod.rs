//! The send pipeline: outbox rows → modem → `sent`/`failed`.
//!
//! One [`ModemSender`] task per modem claims the next sendable message (one SQL statement,
//! so two senders never take the same message): first those meant for its modem (`via_modem`,
//! see [`pool`]), then the oldest, leaving those meant for another healthy modem alone. It
//! sends the parts one `+CMGS` at a time:
//!
//! 1. `fetched`: refuse opted-out recipients; encode the text (GSM-7 or UCS-2, split into
//!    parts with one concatenation reference) and store the parts → `sending`.
//! 2. For each `pending` part: mark it `sending` in the store, *then* write it to the modem;
//!    on `+CMGS: <mr>` store `acked` with the reference before touching the next part.
//! 3. All parts acked → `sent`. A permanent `+CMS ERROR` → `failed` with the part number.
//!    A transient error → the part goes back to `pending` and the message is retried after a
//!    short backoff with the remaining parts (acked parts are never sent again, and the stored
//!    concatenation reference is reused). An unknown outcome (no answer after the PDU was
//!    written, or a crash in that window, or a part found still `sending` by a later pass
//!    because a store write failed) → `failed` unless `on_unknown_outcome = "resend"`. The store
//!    refuses `sent` unless every part is `acked`.
//!
//! Reporting to Provet (`sent`/`failed` → `reported`) is the Provet reporter's job; local
//! messages (CLI, replies) end at `sent`/`failed`.

pub mod local;
pub mod pool;
pub mod provet;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::config::{OutboundConfig, UnknownOutcome};
use crate::modem::driver::{ModemHandle, ModemState, SendError};
use crate::phone::mask_number;
use crate::shutdown::ShutdownSignal;
use crate::store::{NewPart, OutboxId, OutboxState, PartState, Store, StoreError, now_ms};

/// The outbox source of the STOP confirmation: the only message that goes to a number on the
/// opt-out list (it is queued once, right after the number opted out).
pub const OPTOUT_CONFIRMATION: &str = "optout_confirmation";

/// Shared by the pipeline's tasks: wakes the next stage when new work is queued.
///
/// `send` wakes one sender (any modem can take the message); `fetch` and `report` are waited on
/// by every Provet instance's worker, so [`Wake::all`] wakes them all (each checks the store for
/// its own work).
#[derive(Clone, Default)]
pub struct Wake {
    pub fetch: Arc<Notify>,
    pub send: Arc<Notify>,
    pub report: Arc<Notify>,
    /// The event webhooks' task (the store notifies it after writing an event).
    pub events: Arc<Notify>,
}

impl Wake {
    /// Wakes every task waiting on `n`, and leaves a permit for one that is about to wait (so a
    /// wake between its store check and its wait is not lost).
    pub fn all(n: &Notify) {
        n.notify_waiters();
        n.notify_one();
    }
}

/// What became of one pass over a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassOutcome {
    Sent,
    Failed(String),
    /// Parts remain; try again at the scheduled time (or when the modem is ready).
    Later,
}

/// With nothing due, a sender still looks at the outbox this often (rows written by another
/// process without waking the daemon).
pub const SAFETY_SWEEP: Duration = Duration::from_secs(60);

/// Sends the outbox through one modem.
pub struct ModemSender {
    pub modem_name: String,
    pub modem: ModemHandle,
    pub store: Store,
    pub config: OutboundConfig,
    pub wake: Wake,
    /// Sent, failed, parts and send durations for `/metrics`.
    pub metrics: crate::metrics::Metrics,
    /// Which other modems are healthy (whose messages this sender leaves alone).
    pub pool: pool::Pool,
}

impl ModemSender {
    /// Runs until shutdown: waits for the modem to be ready, takes work, sends it.
    pub async fn run(self, mut shutdown: ShutdownSignal) {
        let mut status = self.modem.status();
        loop {
            if shutdown.is_triggered() {
                break;
            }
            if status.borrow().state != ModemState::Ready {
                tokio::select! {
                    _ = shutdown.wait() => break,
                    changed = status.changed() => if changed.is_err() { break },
                }
                continue;
            }
            let claimed = match self.claim_next().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(modem = %self.modem_name, error = %e, "reading the outbox failed");
                    None
                }
            };
            let Some(id) = claimed else {
                let due = self.store.call(|db| db.next_send_due()).await.ok().flatten();
                // Woken by work (`wake.send`: a webhook's fetch, the API, the local socket, replies);
                // otherwise asleep until the next scheduled retry, or the slow sweep that finds rows
                // another process wrote (the CLI when the daemon's socket was not there).
                let wait = crate::deadline::until_ms(due, now_ms(), SAFETY_SWEEP);
                tokio::select! {
                    _ = shutdown.wait() => break,
                    _ = self.wake.send.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                    _ = status.changed() => {}
                }
                continue;
            };
            let outcome = self.send_message(id, &shutdown).await;
            let modem = self.modem_name.clone();
            if let Err(e) = self.store.call(move |db| db.release_claim(id, &modem)).await {
                // The claim stays until the next start; the message waits, nothing is lost.
                tracing::error!(modem = %self.modem_name, outbox_id = id, error = %e, "could not release a claimed message");
            }
            match outcome {
                Ok(PassOutcome::Sent) | Ok(PassOutcome::Failed(_)) => Wake::all(&self.wake.report),
                // Given back (e.g. this modem hung or vanished): another modem may take it now.
                Ok(PassOutcome::Later) => Wake::all(&self.wake.send),
                Err(e) => {
                    tracing::error!(modem = %self.modem_name, outbox_id = id, error = %e, "store error while sending; will retry");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        tracing::debug!(modem = %self.modem_name, "sender stopped");
    }

    async fn claim_next(&self) -> Result<Option<OutboxId>, StoreError> {
        let modem = self.modem_name.clone();
        let others = self.pool.healthy_others(&modem);
        self.store
            .call(move |db| {
                let others: Vec<&str> = others.iter().map(String::as_str).collect();
                db.claim_next(&modem, &others, now_ms())
            })
            .await
    }

    /// One pass over message `id`: see the module doc.
    pub async fn send_message(&self, id: OutboxId, shutdown: &ShutdownSignal) -> Result<PassOutcome, StoreError> {
        let Some(detail) = self.store.call(move |db| db.get_outbox(id)).await? else {
            return Ok(PassOutcome::Later);
        };
        let (Some(recipient), Some(body)) = (detail.summary.recipient.clone(), detail.body.clone()) else {
            return self.fail(id, "the message has no recipient or text".into()).await;
        };
        // The part this pass stored already `sending` (part 1 on a message's first pass).
        let mut begun: Option<i64> = None;
        if detail.summary.state == OutboxState::Fetched {
            let r = recipient.clone();
            let exempt = detail.summary.source == OPTOUT_CONFIRMATION;
            if !exempt && self.store.call(move |db| db.is_opted_out(&r)).await? {
                return self.fail(id, "recipient opted out".into()).await;
            }
            let concat_reference = fastrand::u8(..);
            let opts = crate::pdu::SubmitOptions {
                request_status_report: self.config.request_status_report,
                validity_minutes: None,
                concat_reference,
            };
            let parts = match crate::pdu::encode_submit(&recipient, &body, &opts) {
                Ok(p) => p,
                Err(e) => return self.fail(id, format!("cannot encode the message: {e}")).await,
            };
            let new_parts: Vec<NewPart> =
                parts.into_iter().map(|p| NewPart { pdu: p.hex, tpdu_len: p.tpdu_len }).collect();
            let reference = (new_parts.len() > 1).then_some(concat_reference);
            let modem = self.modem_name.clone();
            // Part 1 becomes `sending` in the same durable commit as the parts themselves.
            let first =
                self.store.call(move |db| db.begin_sending_first_part(id, &new_parts, reference, &modem)).await?;
            begun = first.then_some(1);
        }
        if begun.is_none() {
            // A part still `sending` here was left by a pass whose store write failed after the
            // PDU may have gone out: its outcome is unknown, never skipped (a skipped part would
            // let the message become `sent`). (Part 1 of a message stored just now is `sending`
            // because this pass began it.)
            let stale = self.store.call(move |db| db.unfinished_parts_unknown(id)).await?;
            if stale > 0 {
                tracing::warn!(modem = %self.modem_name, outbox_id = id, parts = stale, "parts left sending by an interrupted pass are now unknown");
            }
        }
        let Some(detail) = self.store.call(move |db| db.get_outbox(id)).await? else {
            return Ok(PassOutcome::Later);
        };
        let total = detail.part_rows.len();
        if let Some(p) = detail.part_rows.iter().find(|p| p.state == PartState::Unknown) {
            match self.config.on_unknown_outcome {
                UnknownOutcome::MarkFailed => {
                    let reason = format!(
                        "part {} of {total}: the modem may or may not have sent it ({}); not resent, to avoid a duplicate",
                        p.seq,
                        p.last_error.as_deref().unwrap_or("outcome unknown")
                    );
                    return self.fail(id, reason).await;
                }
                UnknownOutcome::Resend => {
                    self.store.call(move |db| db.requeue_unknown_parts(id)).await?;
                }
            }
        }
        if let Some(p) = detail.part_rows.iter().find(|p| p.state == PartState::Failed) {
            let reason = format!("part {} of {total}: {}", p.seq, p.last_error.as_deref().unwrap_or("failed"));
            return self.fail(id, reason).await;
        }
        let pending: Vec<_> = detail
            .part_rows
            .iter()
            .filter(|p| matches!(p.state, PartState::Pending | PartState::Unknown) || begun == Some(p.seq))
            .cloned()
            .collect();
        // Set when the last part's ack also made the message `sent` (one transaction).
        let mut sent = false;
        for part in pending {
            let (seq, modem) = (part.seq, self.modem_name.clone());
            let already_begun = begun == Some(seq);
            if shutdown.is_triggered() {
                if already_begun {
                    // Begun with the parts but not written: nothing left, so back to `pending`
                    // (else the next start would call its outcome unknown).
                    self.store.call(move |db| db.part_unbegin(id, seq)).await?;
                }
                return Ok(PassOutcome::Later);
            }
            if !already_begun {
                self.store.call(move |db| db.part_begin(id, seq, &modem)).await?;
            }
            tracing::debug!(modem = %self.modem_name, outbox_id = id, part = seq, total, "sending part");
            let handed_over = std::time::Instant::now();
            match self.modem.send_part(&part.pdu, part.tpdu_len as usize).await {
                Ok(mr) => {
                    self.metrics.part_sent(handed_over.elapsed());
                    let modem = self.modem_name.clone();
                    sent = self.store.call(move |db| db.part_acked_finishing(id, seq, mr, &modem)).await?;
                }
                Err(SendError::Permanent { code, reason }) => {
                    let err = format!("+CMS ERROR: {code} ({reason})");
                    let e2 = err.clone();
                    self.store.call(move |db| db.part_refused(id, seq, &e2, true)).await?;
                    return self.fail(id, format!("part {seq} of {total}: {err}")).await;
                }
                Err(SendError::Transient { reason }) => {
                    let r2 = reason.clone();
                    self.store.call(move |db| db.part_refused(id, seq, &r2, false)).await?;
                    return self.retry_later(id, format!("part {seq} of {total}: {reason}")).await;
                }
                Err(SendError::NotReady { state }) => {
                    // Nothing was sent and it is not the message's fault: no attempt counted;
                    // the sender waits for the modem to be ready again.
                    let why = format!("modem not ready: {state}");
                    self.store.call(move |db| db.part_refused(id, seq, &why, false)).await?;
                    return Ok(PassOutcome::Later);
                }
                Err(SendError::Unknown { reason }) => {
                    let r2 = reason.clone();
                    self.store.call(move |db| db.part_unknown(id, seq, &r2)).await?;
                    match self.config.on_unknown_outcome {
                        UnknownOutcome::MarkFailed => {
                            return self
                                .fail(
                                    id,
                                    format!(
                                        "part {seq} of {total}: outcome unknown ({reason}); not resent, to avoid a duplicate"
                                    ),
                                )
                                .await;
                        }
                        UnknownOutcome::Resend => {
                            self.store.call(move |db| db.requeue_unknown_parts(id)).await?;
                            return self
                                .retry_later(id, format!("part {seq} of {total}: outcome unknown ({reason})"))
                                .await;
                        }
                    }
                }
            }
        }
        if !sent {
            self.store.call(move |db| db.transition(id, OutboxState::Sent, None)).await?;
        }
        self.metrics.sent(&self.modem_name);
        tracing::info!(
            modem = %self.modem_name,
            outbox_id = id,
            to = %mask_number(&recipient),
            parts = total,
            message_id = crate::logging::message_ids::OUTBOX_SENT,
            "message sent"
        );
        Ok(PassOutcome::Sent)
    }

    /// Counts a failed attempt and schedules the next. When the failure left this modem not
    /// ready (it hung or vanished mid-send), the attempt still counts but is due at once: the
    /// message was not at fault, and another modem of the pool takes it now (with one modem
    /// the sender waits for the modem anyway).
    async fn retry_later(&self, id: OutboxId, error: String) -> Result<PassOutcome, StoreError> {
        let (initial, max, max_attempts) = (self.config.retry_initial, self.config.retry_max, self.config.max_attempts);
        let modem_down = self.modem.status().borrow().state != ModemState::Ready;
        let e2 = error.clone();
        let attempts = self
            .store
            .call(move |db| {
                let so_far = db.get_outbox(id)?.map(|d| d.summary.attempts).unwrap_or(0);
                let delay =
                    if modem_down { Duration::ZERO } else { crate::retry::backoff(so_far as u32 + 1, initial, max) };
                db.schedule_retry(id, &e2, crate::deadline::ms_after(now_ms(), delay))
            })
            .await?;
        if attempts >= i64::from(max_attempts) {
            return self.fail(id, format!("{error}; gave up after {attempts} attempts")).await;
        }
        tracing::warn!(modem = %self.modem_name, outbox_id = id, attempt = attempts, error = %error, "send failed for now; will retry");
        Ok(PassOutcome::Later)
    }

    async fn fail(&self, id: OutboxId, reason: String) -> Result<PassOutcome, StoreError> {
        let r2 = reason.clone();
        self.store.call(move |db| db.transition(id, OutboxState::Failed, Some(&r2))).await?;
        self.metrics.failed(&reason);
        self.metrics.modem_failed(&self.modem_name);
        tracing::warn!(modem = %self.modem_name, outbox_id = id, reason = %crate::phone::mask_numbers_in(&reason), message_id = crate::logging::message_ids::OUTBOX_FAILED, "message failed");
        Ok(PassOutcome::Failed(reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phone::PhoneNumber;

    #[tokio::test]
    async fn a_stop_between_storing_the_parts_and_writing_the_pdu_leaves_part_1_pending_and_sends_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let (modem, mut requests) = ModemHandle::detached(ModemState::Ready);
        let sender = ModemSender {
            modem_name: "a".into(),
            modem,
            store: store.clone(),
            config: crate::config::Config::parse(std::path::Path::new("t.toml"), "").unwrap().outbound,
            wake: Wake::default(),
            metrics: crate::metrics::Metrics::new(),
            pool: pool::Pool::default(),
        };
        let to = PhoneNumber::parse("+358401234567", None).unwrap();
        let id = store.call(move |db| db.insert_local("cli", &to, &"two parts ".repeat(20))).await.unwrap();
        let (stop, signal) = crate::shutdown::Shutdown::new();
        stop.trigger();
        assert_eq!(sender.send_message(id, &signal).await.unwrap(), PassOutcome::Later);
        assert_eq!(requests.requests(), Vec::<String>::new(), "nothing reached the modem");
        let detail = store.call(move |db| db.get_outbox(id)).await.unwrap().unwrap();
        assert_eq!(detail.summary.state, OutboxState::Sending);
        let states: Vec<_> = detail.part_rows.iter().map(|p| (p.state, p.attempts)).collect();
        assert_eq!(
            states,
            [(PartState::Pending, 0), (PartState::Pending, 0)],
            "part 1 is not left `sending` (unknown at the next start), and no attempt is counted"
        );
    }
}
