//! Inbox → the clinic's software. The [`Forwarders`] task wakes when a receiver stored a
//! complete message (the shared `Notify`) and runs the keyword step
//! ([`super::keyword_actions`]); one loop per configured forwarder then delivers that
//! forwarder's due deliveries, each on its own schedule, sleeping until the earliest
//! `next_attempt_at` in between.
//!
//! - Twilio: a 2xx is delivered; the TwiML `<Message>`s are queued as outbound SMS (source
//!   `reply`, to the sender or the `to` attribute) in the same transaction that records the
//!   delivery. A target that is not a phone number (alphanumeric, malformed) is recorded on
//!   the attempt and skipped. Failures are retried with [`backoff`] until `give_up_after`
//!   (counted from receipt) has passed, then `gave_up`.
//! - PBX: only 200 counts. After `max_attempts` failures the delivery becomes `emailing` and
//!   the fallback e-mail is sent (retried with the same backoff until the SMTP server accepts
//!   it → `emailed`); without `fallback_email` it ends `gave_up` with the reason.
//!
//! Every attempt, HTTP or e-mail, is a `delivery_attempts` row committed with the delivery's
//! new state right after the answer. A shutdown abandons only a call still on the wire (it is
//! tried again after the restart: receivers see the same MessageSid / message_id and can
//! drop the duplicate); an answer that arrived is always recorded, so a recorded 200 is never
//! sent again. The crash window between an answer and its commit is the only way a receiver
//! can get a message twice (at least once, never lost).
//!
//! A message with no decodable part (no sender, no text) is not forwarded: its deliveries end
//! `gave_up` with the reason, and the raw PDU stays in the inbox.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::config::{Config, ForwarderConfig, PbxForwarder, TwilioForwarder};
use crate::forward::smtp::send_fallback_email;
use crate::forward::{DeliveryOutcome, ForwardClient, InboundSms, TwimlReply, backoff, deliver_pbx, deliver_twilio};
use crate::outbound::Wake;
use crate::phone::mask_number;
use crate::shutdown::ShutdownSignal;
use crate::store::{AttemptChannel, AttemptRecord, DueDelivery, InboundMessage, ReplyBatch, Store, now_ms};

/// Each webhook call must be answered within this (Twilio gives receivers 15 s as well).
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(15);
/// A forwarder with nothing due still looks at the store this often.
const IDLE_RECHECK: Duration = Duration::from_secs(60);
/// After a store error, so a broken database does not turn into a tight loop of webhook calls.
const STORE_ERROR_PAUSE: Duration = Duration::from_secs(1);
/// Deliveries taken per store round trip.
const BATCH: usize = 20;

/// The forwarding task of the daemon.
pub struct Forwarders {
    pub store: Store,
    pub config: Arc<Config>,
    pub client: ForwardClient,
    /// Notified by the receivers when a message is complete.
    pub wake_forward: Arc<Notify>,
    /// `wake.send` is notified when replies are queued.
    pub wake: Wake,
    /// Set with `[keywords] unknown_sender = "not_in_provet"` and an `unknown_sender_reply`.
    pub lookup: Option<super::provet_lookup::ClientLookup>,
    /// `smshub_forward_attempts_total`.
    pub metrics: crate::metrics::Metrics,
}

impl Forwarders {
    pub fn new(
        store: Store,
        config: Arc<Config>,
        wake_forward: Arc<Notify>,
        wake: Wake,
        metrics: crate::metrics::Metrics,
    ) -> Forwarders {
        let wanted = config.keywords.unknown_sender == crate::config::UnknownSender::NotInProvet
            && config.keywords.unknown_sender_reply.is_some();
        let lookup = wanted.then(|| {
            let clients = config
                .provet
                .iter()
                .filter_map(|p| match crate::provet::ProvetClient::new(p) {
                    Ok(c) => Some(Arc::new(c)),
                    Err(e) => {
                        tracing::warn!(provet = %p.name, error = %e, "no client lookup on this Provet instance");
                        None
                    }
                })
                .collect();
            super::provet_lookup::ClientLookup::new(clients)
        });
        Forwarders { store, config, client: ForwardClient::new(FORWARD_TIMEOUT), wake_forward, wake, lookup, metrics }
    }

    /// Runs until shutdown.
    pub async fn run(self, mut shutdown: ShutdownSignal) {
        let started_at = now_ms();
        let this = Arc::new(self);
        let mut loops = tokio::task::JoinSet::new();
        let mut kicks = Vec::new();
        for f in &this.config.forwarders {
            let kick = Arc::new(Notify::new());
            kicks.push(kick.clone());
            loops.spawn(this.clone().forwarder_loop(f.clone(), kick, shutdown.clone()));
        }
        loop {
            this.keyword_step(started_at).await;
            for k in &kicks {
                k.notify_one();
            }
            tokio::select! {
                _ = shutdown.wait() => break,
                _ = this.wake_forward.notified() => {}
                _ = tokio::time::sleep(IDLE_RECHECK) => {}
            }
        }
        while loops.join_next().await.is_some() {}
        tracing::debug!("forwarders stopped");
    }

    async fn keyword_step(&self, started_at: i64) {
        let cfg = self.config.keywords.clone();
        let replies = self.config.replies.clone();
        let country = self.config.default_country.clone();
        let clients = self.provet_clients(started_at).await;
        let res = self
            .store
            .call(move |db| {
                super::keyword_actions::apply_keywords(db, &cfg, &replies, country.as_deref(), started_at, &clients)
            })
            .await;
        match res {
            Ok(0) => {}
            Ok(_) => self.wake.send.notify_one(),
            Err(e) => tracing::error!(error = %e, "keyword step failed; it is retried with the next message"),
        }
    }

    /// The senders of the messages the keyword step is about to judge that Provet has a client
    /// for (empty without `not_in_provet`; at most [`super::provet_lookup::BATCH_DEADLINE`]).
    async fn provet_clients(&self, started_at: i64) -> std::collections::HashSet<String> {
        let Some(lookup) = &self.lookup else { return Default::default() };
        let country = self.config.default_country.clone();
        let senders = self
            .store
            .call(move |db| {
                Ok(db
                    .inbox_for_keywords(started_at, 50)?
                    .into_iter()
                    .filter(|c| c.body.is_some())
                    .filter_map(|c| c.sender)
                    .map(|s| super::keyword_actions::optout_key(&s, country.as_deref()))
                    .filter(|k| k.starts_with('+'))
                    .collect::<Vec<String>>())
            })
            .await;
        match senders {
            Ok(senders) if !senders.is_empty() => lookup.clients_among(&senders).await,
            Ok(_) => Default::default(),
            Err(e) => {
                tracing::warn!(error = %e, "could not read the senders to look up in Provet");
                Default::default()
            }
        }
    }

    async fn forwarder_loop(self: Arc<Self>, fwd: ForwarderConfig, kick: Arc<Notify>, mut shutdown: ShutdownSignal) {
        let name = fwd.name().to_string();
        loop {
            if shutdown.is_triggered() {
                break;
            }
            let n = name.clone();
            let due = self.store.call(move |db| db.due_deliveries(&n, now_ms(), BATCH)).await;
            match due {
                Ok(due) if !due.is_empty() => {
                    for d in due {
                        if shutdown.is_triggered() {
                            break;
                        }
                        self.deliver_one(&fwd, d, &mut shutdown).await;
                    }
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(forwarder = %name, error = %e, "reading due deliveries failed");
                    tokio::time::sleep(STORE_ERROR_PAUSE).await;
                }
            }
            let n = name.clone();
            let next = self.store.call(move |db| db.next_delivery_due(&n)).await.ok().flatten();
            let wait = crate::deadline::until_ms(next, now_ms(), IDLE_RECHECK);
            tokio::select! {
                _ = shutdown.wait() => break,
                _ = kick.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        tracing::debug!(forwarder = %name, "forwarder stopped");
    }

    /// One attempt of one delivery, recorded.
    async fn deliver_one(&self, fwd: &ForwarderConfig, d: DueDelivery, shutdown: &mut ShutdownSignal) {
        let inbox_id = d.inbox_id;
        let msg = match self.store.call(move |db| db.inbound_message(inbox_id)).await {
            Ok(Some(m)) => m,
            Ok(None) => {
                let note = "the inbox message is gone".to_string();
                self.record(&d, give_up(&d, AttemptChannel::Http, None, note), ReplyBatch::default()).await;
                return;
            }
            Err(e) => {
                tracing::error!(forwarder = %d.forwarder, inbox_id, error = %e, "loading a message to forward failed");
                tokio::time::sleep(STORE_ERROR_PAUSE).await;
                return;
            }
        };
        let to = self.config.modem_number(&msg.modem).map(|n| n.as_str().to_string());
        let Some(sms) = inbound_sms(&msg, &self.config.inbound, to) else {
            let note = format!(
                "not forwarded: no part could be decoded ({}); the raw PDU is kept in the inbox",
                msg.decode_error.as_deref().unwrap_or("no sender")
            );
            self.record(&d, give_up(&d, AttemptChannel::Http, None, note), ReplyBatch::default()).await;
            return;
        };
        let (record, replies) = match fwd {
            ForwarderConfig::Twilio(t) => {
                let outcome = tokio::select! {
                    o = deliver_twilio(&self.client, t, &sms) => o,
                    _ = shutdown.wait() => return,
                };
                self.twilio_result(t, &d, &msg, outcome)
            }
            ForwarderConfig::Pbx(p) if d.state == "emailing" => match self.email(p, &d, &sms, shutdown).await {
                Some(r) => (r, ReplyBatch::default()),
                None => return,
            },
            ForwarderConfig::Pbx(p) => {
                let outcome = tokio::select! {
                    o = deliver_pbx(&self.client, p, &sms) => o,
                    _ = shutdown.wait() => return,
                };
                (self.pbx_result(p, &d, outcome), ReplyBatch::default())
            }
        };
        match record.new_state {
            "gave_up" => {
                tracing::warn!(forwarder = %d.forwarder, inbox_id, attempts = record.attempts, "gave up forwarding: {}", record.last_error.as_deref().unwrap_or(""))
            }
            "emailing" if d.state != "emailing" => {
                tracing::warn!(forwarder = %d.forwarder, inbox_id, attempts = record.attempts, "PBX webhook failed {} times: e-mailing the message to the fallback address", record.attempts)
            }
            "emailed" => tracing::info!(forwarder = %d.forwarder, inbox_id, "message e-mailed to the fallback address"),
            _ => {
                tracing::debug!(forwarder = %d.forwarder, inbox_id, state = record.new_state, next_attempt_at = ?record.next_attempt_at, "delivery attempt recorded")
            }
        }
        self.record(&d, record, replies).await;
    }

    async fn record(&self, d: &DueDelivery, record: AttemptRecord, replies: ReplyBatch) {
        let id = d.id;
        let delivered = matches!(record.new_state, "delivered" | "emailed");
        self.metrics.forward_attempt(&d.forwarder, delivered);
        let limits = self.config.replies.limits();
        // Those refused before counting were logged with the answer's note already.
        let refused_before = replies.refused.len();
        let res = self.store.call(move |db| db.record_delivery_attempt(id, &record, &replies, &limits)).await;
        match res {
            Ok(recorded) => {
                if let Some((_, reason)) = recorded.refused.get(refused_before) {
                    tracing::warn!(forwarder = %d.forwarder, inbox_id = d.inbox_id, refused = recorded.refused.len() - refused_before, first_reason = %crate::phone::mask_numbers_in(reason), "TwiML replies over the reply limits (recorded as refused)");
                }
                if !recorded.queued.is_empty() {
                    tracing::info!(forwarder = %d.forwarder, inbox_id = d.inbox_id, replies = recorded.queued.len(), "TwiML replies queued");
                    self.wake.send.notify_one();
                }
            }
            Err(e) => {
                tracing::error!(forwarder = %d.forwarder, inbox_id = d.inbox_id, error = %e, "recording a delivery attempt failed");
                tokio::time::sleep(STORE_ERROR_PAUSE).await;
            }
        }
    }

    fn twilio_result(
        &self,
        t: &TwilioForwarder,
        d: &DueDelivery,
        msg: &InboundMessage,
        outcome: DeliveryOutcome,
    ) -> (AttemptRecord, ReplyBatch) {
        let attempts = d.attempts.saturating_add(1);
        match outcome {
            DeliveryOutcome::Delivered { status, replies } => {
                let sender = msg.sender.as_deref().unwrap_or_default();
                let (batch, note) = reply_targets(
                    sender,
                    msg.sender_ton,
                    &replies,
                    &self.config.replies,
                    self.config.default_country.as_deref(),
                );
                if let Some(note) = &note {
                    // One line per answer, however many replies it held.
                    tracing::warn!(forwarder = %t.name, inbox_id = msg.inbox_id, "{note}");
                }
                let record = AttemptRecord {
                    channel: AttemptChannel::Http,
                    http_status: Some(status),
                    error: note,
                    new_state: "delivered",
                    attempts,
                    next_attempt_at: None,
                    last_error: None,
                };
                (record, batch)
            }
            DeliveryOutcome::Failed { status, error, retryable } => {
                let now = now_ms();
                let horizon =
                    msg.received_at.saturating_add(i64::try_from(t.give_up_after.as_millis()).unwrap_or(i64::MAX));
                let record = if !retryable || now >= horizon {
                    AttemptRecord {
                        channel: AttemptChannel::Http,
                        http_status: status,
                        error: Some(error.clone()),
                        new_state: "gave_up",
                        attempts,
                        next_attempt_at: None,
                        last_error: Some(if retryable {
                            format!("gave up after {attempts} attempts over {}s: {error}", t.give_up_after.as_secs())
                        } else {
                            format!("gave up: {error}")
                        }),
                    }
                } else {
                    let wait = backoff(attempts, t.retry_initial, t.retry_max);
                    retry(
                        AttemptChannel::Http,
                        status,
                        error,
                        "pending",
                        attempts,
                        now.saturating_add(ms(wait)).min(horizon),
                    )
                };
                (record, ReplyBatch::default())
            }
        }
    }

    fn pbx_result(&self, p: &PbxForwarder, d: &DueDelivery, outcome: DeliveryOutcome) -> AttemptRecord {
        let attempts = d.attempts.saturating_add(1);
        match outcome {
            DeliveryOutcome::Delivered { status, .. } => AttemptRecord {
                channel: AttemptChannel::Http,
                http_status: Some(status),
                error: None,
                new_state: "delivered",
                attempts,
                next_attempt_at: None,
                last_error: None,
            },
            DeliveryOutcome::Failed { status, error, retryable } if retryable && attempts < p.max_attempts => {
                let wait = backoff(attempts, p.retry_initial, p.retry_max);
                retry(AttemptChannel::Http, status, error, "pending", attempts, now_ms().saturating_add(ms(wait)))
            }
            DeliveryOutcome::Failed { status, error, .. } => {
                if p.fallback_email.is_some() && self.config.smtp.is_some() {
                    AttemptRecord {
                        next_attempt_at: None,
                        ..retry(AttemptChannel::Http, status, error, "emailing", attempts, 0)
                    }
                } else {
                    AttemptRecord {
                        channel: AttemptChannel::Http,
                        http_status: status,
                        error: Some(error.clone()),
                        new_state: "gave_up",
                        attempts,
                        next_attempt_at: None,
                        last_error: Some(format!(
                            "PBX webhook failed {attempts} times and no fallback_email is configured: {error}"
                        )),
                    }
                }
            }
        }
    }

    /// One fallback e-mail attempt; `None` when a shutdown interrupted it.
    async fn email(
        &self,
        p: &PbxForwarder,
        d: &DueDelivery,
        sms: &InboundSms,
        shutdown: &mut ShutdownSignal,
    ) -> Option<AttemptRecord> {
        let (Some(to), Some(smtp)) = (p.fallback_email.as_deref(), self.config.smtp.as_ref()) else {
            let note = "the fallback e-mail is no longer configured (fallback_email and [smtp])".to_string();
            return Some(give_up(d, AttemptChannel::Email, None, note));
        };
        let sent = tokio::select! {
            r = send_fallback_email(smtp, to, sms, p, d.attempts) => r,
            _ = shutdown.wait() => return None,
        };
        Some(match sent {
            Ok(()) => AttemptRecord {
                channel: AttemptChannel::Email,
                http_status: None,
                error: None,
                new_state: "emailed",
                attempts: d.attempts,
                next_attempt_at: None,
                last_error: None,
            },
            Err(e) => {
                if e.is_permanent() {
                    tracing::error!(forwarder = %p.name, inbox_id = d.inbox_id, "the SMTP server refused the fallback e-mail permanently; still retrying: {e}");
                }
                let wait = backoff(d.email_attempts.saturating_add(1), p.retry_initial, p.retry_max);
                retry(
                    AttemptChannel::Email,
                    None,
                    e.to_string(),
                    "emailing",
                    d.attempts,
                    now_ms().saturating_add(ms(wait)),
                )
            }
        })
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn retry(
    channel: AttemptChannel,
    status: Option<u16>,
    error: String,
    state: &'static str,
    attempts: u32,
    next: i64,
) -> AttemptRecord {
    AttemptRecord {
        channel,
        http_status: status,
        error: Some(error.clone()),
        new_state: state,
        attempts,
        next_attempt_at: Some(next),
        last_error: Some(error),
    }
}

fn give_up(d: &DueDelivery, channel: AttemptChannel, status: Option<u16>, note: String) -> AttemptRecord {
    AttemptRecord {
        channel,
        http_status: status,
        error: Some(note.clone()),
        new_state: "gave_up",
        attempts: d.attempts,
        next_attempt_at: None,
        last_error: Some(note),
    }
}

/// The forwarders' view of an inbox message; `None` when nothing of it could be decoded. A
/// message that is not text (an MMS notification, a binary SMS) is forwarded as the configured
/// placeholder: receivers get a readable note instead of garbage, and Twilio's `NumMedia` stays
/// 0 because smshub has no media to offer. `to` is the receiving modem's `number`, if configured.
pub fn inbound_sms(msg: &InboundMessage, cfg: &crate::config::InboundConfig, to: Option<String>) -> Option<InboundSms> {
    let from = msg.sender.clone()?;
    let body = match msg.encoding.as_deref() {
        Some(crate::store::CONTENT_MMS | crate::store::CONTENT_WAP_PUSH) => cfg.mms_placeholder.clone(),
        Some(crate::store::CONTENT_BINARY) => cfg.binary_placeholder.clone(),
        _ => msg.body.clone(),
    };
    Some(InboundSms {
        uid: msg.uid.clone(),
        from,
        to,
        body,
        segments: msg.parts,
        received_at_unix: msg.received_at.div_euclid(1000),
    })
}

/// The TwiML replies of one answer through the reply policy ([`super::reply_policy`]): each goes
/// to its `to`, else the original sender. Returns the batch to record (queued ones are counted
/// by the store) and one summary note for the attempt's record when any was refused or empty
/// (numbers masked). Pure.
pub fn reply_targets(
    sender: &str,
    sender_ton: Option<u8>,
    replies: &[TwimlReply],
    cfg: &crate::config::RepliesConfig,
    default_country: Option<&str>,
) -> (ReplyBatch, Option<String>) {
    let mut batch = ReplyBatch::default();
    let mut empty = 0usize;
    for r in replies {
        if r.body.trim().is_empty() {
            empty += 1;
            continue;
        }
        match super::reply_policy::judge(sender, sender_ton, r.to.as_deref(), &r.body, cfg, default_country) {
            super::reply_policy::Verdict::Queue(q) => batch.queued.push(q),
            super::reply_policy::Verdict::Refuse(refused) => batch.refused.push(refused),
        }
    }
    let mut notes = Vec::new();
    if empty > 0 {
        notes.push(format!("{empty} TwiML repl{} with empty text skipped", if empty == 1 { "y" } else { "ies" }));
    }
    if let Some(first) = batch.refused.first() {
        notes.push(format!(
            "{} TwiML repl{} refused (first: to {}: {})",
            batch.refused.len(),
            if batch.refused.len() == 1 { "y" } else { "ies" },
            mask_number(&first.to),
            first.reason
        ));
    }
    (batch, (!notes.is_empty()).then(|| notes.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(to: Option<&str>, body: &str) -> TwimlReply {
        TwimlReply { to: to.map(str::to_string), body: body.to_string() }
    }

    #[test]
    fn twiml_replies_go_through_the_reply_policy_with_one_note_per_answer() {
        let cfg = crate::config::RepliesConfig::default();
        let replies = [
            reply(None, "Thanks!"),
            reply(Some("+61400111222"), "Copy"),
            reply(Some("ExampleVet"), "no"),
            reply(Some("040 123 4567"), "national"),
            reply(None, "   "),
        ];
        let (batch, note) = reply_targets("+358401234567", Some(1), &replies, &cfg, None);
        let got: Vec<(&str, &str)> = batch.queued.iter().map(|q| (q.to.as_str(), q.body.as_str())).collect();
        assert_eq!(got, [("+358401234567", "Thanks!")], "no allowed_destinations: only the sender");
        assert_eq!(batch.refused.len(), 3, "{batch:?}");
        let note = note.unwrap();
        assert!(note.contains("3 TwiML replies refused") && note.contains("1 TwiML reply with empty text"), "{note}");
        assert!(!note.contains("61400111222"), "numbers are masked: {note}");
        let (batch, _) = reply_targets("+358401234567", Some(1), &replies[3..4], &cfg, Some("358"));
        assert_eq!(batch.queued[0].to.as_str(), "+358401234567", "a national to= that is the sender");
        let (batch, note) = reply_targets("+358401234567", Some(1), &vec![reply(None, "ok"); 500], &cfg, None);
        assert_eq!(batch.queued.len(), 500, "counted later by the store");
        assert!(note.is_none());
    }

    #[test]
    fn an_alphanumeric_sender_gets_no_reply_without_an_explicit_to() {
        let cfg = crate::config::RepliesConfig::default();
        let (batch, note) = reply_targets("ExampleVet", Some(5), &[reply(None, "Thanks!")], &cfg, None);
        assert!(batch.queued.is_empty());
        assert_eq!(batch.refused.len(), 1);
        assert!(note.unwrap().contains("alphanumeric"));
    }

    #[test]
    fn an_undecodable_message_is_not_turned_into_a_webhook() {
        let msg = InboundMessage {
            sender_ton: None,
            inbox_id: 1,
            uid: "u".into(),
            modem: "main".into(),
            sender: None,
            body: String::new(),
            parts: 1,
            decode_error: Some("bad".into()),
            received_at: 1_700_000_000_123,
            encoding: None,
        };
        let cfg = crate::config::InboundConfig {
            concat_timeout: Duration::from_secs(600),
            mms_placeholder: "[MMS]".into(),
            binary_placeholder: "[binary]".into(),
        };
        assert!(inbound_sms(&msg, &cfg, None).is_none());
        let ok = InboundMessage { sender: Some("+358401234567".into()), body: "hi".into(), ..msg };
        let sms = inbound_sms(&ok, &cfg, None).unwrap();
        assert_eq!((sms.received_at_unix, sms.segments, sms.body.as_str()), (1_700_000_000, 1, "hi"));
        for (encoding, body) in [("mms", "[MMS]"), ("wap_push", "[MMS]"), ("binary", "[binary]"), ("8bit", "hi")] {
            let m = InboundMessage { encoding: Some(encoding.into()), ..ok.clone() };
            assert_eq!(inbound_sms(&m, &cfg, None).unwrap().body, body, "{encoding}");
        }
    }
}
