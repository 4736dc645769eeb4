//! Forward deliveries: which are due, the message each one carries, and the record of every
//! attempt. Each outcome is stored in one transaction (attempt row + new delivery state, and
//! for a delivered Twilio webhook the TwiML replies it asked for), so a crash between two
//! attempts loses nothing and a 200 that was recorded is never sent again.
//!
//! Also the keyword bookkeeping of received messages: which inbox rows have been looked at
//! (a watermark in `kv`), and the per-number auto-reply rate limit (`kv` keys `reply:<number>`).

use rusqlite::{OptionalExtension, params};

use super::{Db, OutboxId, Result, now_ms};
use crate::phone::PhoneNumber;

/// A delivery that is due (or in progress), with what its forwarder needs to decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueDelivery {
    pub id: i64,
    pub inbox_id: i64,
    pub forwarder: String,
    /// `pending` (webhook attempts) or `emailing` (the PBX fallback e-mail).
    pub state: String,
    /// Webhook attempts so far.
    pub attempts: u32,
    /// Fallback e-mail attempts so far.
    pub email_attempts: u32,
    pub last_error: Option<String>,
}

/// A received message as a forwarder sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMessage {
    pub inbox_id: i64,
    pub uid: String,
    /// The modem that received it.
    pub modem: String,
    /// `None` when no part could be decoded.
    pub sender: Option<String>,
    /// The sender's type of number, when known (see [`super::NewInboxPart::sender_ton`]).
    pub sender_ton: Option<u8>,
    pub body: String,
    /// `gsm7`, `ucs2`, `8bit`, or for a message that is not text `mms`, `wap_push`, `binary`
    /// ([`super::CONTENT_MMS`] …).
    pub encoding: Option<String>,
    pub parts: u32,
    pub decode_error: Option<String>,
    /// Unix ms.
    pub received_at: i64,
}

/// The channel of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptChannel {
    Http,
    Email,
}

impl AttemptChannel {
    fn as_str(self) -> &'static str {
        match self {
            AttemptChannel::Http => "http",
            AttemptChannel::Email => "email",
        }
    }
}

/// One attempt and what it did to its delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    pub channel: AttemptChannel,
    pub http_status: Option<u16>,
    /// What went wrong, or a note on a successful attempt (e.g. a skipped TwiML reply).
    pub error: Option<String>,
    /// The delivery's new state: pending, delivered, emailing, emailed or gave_up.
    pub new_state: &'static str,
    /// Webhook attempts after this one.
    pub attempts: u32,
    /// When to try again (unix ms); `None` for a final state or "at once".
    pub next_attempt_at: Option<i64>,
    pub last_error: Option<String>,
}

/// An auto-reply or TwiML reply to queue with a recorded outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedReply {
    pub to: PhoneNumber,
    pub body: String,
}

/// An automatic reply the reply policy refused before counting (who it would go to, how long
/// it is): recorded as an outbox row `refused`, never sent. `to` is the target as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedReply {
    pub to: String,
    pub body: String,
    pub reason: String,
}

/// The counted part of the reply policy (`[replies]`), checked when a reply is queued, in the
/// same transaction, against the outbox rows of automatic SMS of the last hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyLimits {
    pub per_number_per_hour: u32,
    pub per_hour: u32,
}

impl Default for ReplyLimits {
    fn default() -> Self {
        ReplyLimits { per_number_per_hour: 10, per_hour: 200 }
    }
}

/// Automatic replies to record with an attempt: those that passed the policy's checks of
/// target and length (still to be counted) and those refused already.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplyBatch {
    pub queued: Vec<QueuedReply>,
    pub refused: Vec<RefusedReply>,
}

/// The outbox rows a batch became.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepliesRecorded {
    pub queued: Vec<OutboxId>,
    /// Refused rows with their reason.
    pub refused: Vec<(OutboxId, String)>,
}

/// The outbox sources of automatic SMS: what the reply policy counts.
const AUTOMATIC_SOURCES: &str = "('reply', 'optout_confirmation')";
/// The outbox sources of SMS people type (web UI, Provet side panel): counted apart from
/// automatic ones, with the same `[replies]` limits.
const STAFF_SOURCES: &str = "('ui', 'panel')";

/// Whose SMS a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SendClass {
    Automatic,
    Staff,
}

impl SendClass {
    fn sources(self) -> &'static str {
        match self {
            SendClass::Automatic => AUTOMATIC_SOURCES,
            SendClass::Staff => STAFF_SOURCES,
        }
    }

    fn words(self) -> &'static str {
        match self {
            SendClass::Automatic => "automatic SMS",
            SendClass::Staff => "SMS sent by staff (web UI, Provet panel)",
        }
    }
}
const HOUR_MS: i64 = 3_600_000;

/// A received message the keyword step has not looked at yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeywordCandidate {
    pub inbox_id: i64,
    pub sender: Option<String>,
    pub sender_ton: Option<u8>,
    pub body: Option<String>,
}

const WATERMARK_KEY: &str = "keywords:done_through";

impl Db {
    /// Deliveries of `forwarder` that are due at `now` (unix ms), oldest schedule first.
    pub fn due_deliveries(&self, forwarder: &str, now: i64, limit: usize) -> Result<Vec<DueDelivery>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT d.id, d.inbox_id, d.forwarder, d.state, d.attempts, d.last_error, \
             (SELECT count(*) FROM delivery_attempts a WHERE a.delivery_id = d.id AND a.channel = 'email') \
             FROM deliveries d WHERE d.forwarder = ?1 AND d.state IN ('pending','emailing') \
             AND (d.next_attempt_at IS NULL OR d.next_attempt_at <= ?2) \
             ORDER BY coalesce(d.next_attempt_at, 0), d.id LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![forwarder, now, limit as i64], |r| {
            Ok(DueDelivery {
                id: r.get(0)?,
                inbox_id: r.get(1)?,
                forwarder: r.get(2)?,
                state: r.get(3)?,
                attempts: u32::try_from(r.get::<_, i64>(4)?).unwrap_or(u32::MAX),
                last_error: r.get(5)?,
                email_attempts: u32::try_from(r.get::<_, i64>(6)?).unwrap_or(u32::MAX),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The earliest `next_attempt_at` of `forwarder`'s open deliveries (0 when one is due at
    /// once), or `None` when it has nothing to do.
    pub fn next_delivery_due(&self, forwarder: &str) -> Result<Option<i64>> {
        Ok(self.conn.prepare_cached(
            "SELECT min(coalesce(next_attempt_at, 0)) FROM deliveries WHERE forwarder = ?1 AND state IN ('pending','emailing')",
        )?
        .query_row([forwarder], |r| r.get(0))?)
    }

    /// The message of inbox row `inbox_id`, as the forwarders send it.
    pub fn inbound_message(&self, inbox_id: i64) -> Result<Option<InboundMessage>> {
        Ok(self
            .conn
            .query_row(
                "SELECT id, uid, sender, body, parts, decode_error, received_at, \
                 (SELECT sender_ton FROM inbox_parts p WHERE p.inbox_id = inbox.id ORDER BY p.id LIMIT 1), encoding, modem \
                 FROM inbox WHERE id = ?1",
                [inbox_id],
                |r| {
                    Ok(InboundMessage {
                        inbox_id: r.get(0)?,
                        uid: r.get(1)?,
                        sender: r.get(2)?,
                        body: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                        parts: u32::try_from(r.get::<_, i64>(4)?).unwrap_or(u32::MAX),
                        decode_error: r.get(5)?,
                        received_at: r.get(6)?,
                        sender_ton: r.get::<_, Option<i64>>(7)?.and_then(|t| u8::try_from(t).ok()),
                        encoding: r.get(8)?,
                        modem: r.get(9)?,
                    })
                },
            )
            .optional()?)
    }

    /// Stores one attempt and the delivery's new state together, and queues `replies` as
    /// outbound SMS (source `reply`) in the same transaction: after a crash either all of it
    /// is there or none of it. Returns the outbox ids of the replies.
    pub fn record_delivery_attempt(
        &self,
        delivery_id: i64,
        attempt: &AttemptRecord,
        replies: &ReplyBatch,
        limits: &ReplyLimits,
    ) -> Result<RepliesRecorded> {
        let tx = self.conn.unchecked_transaction()?;
        let now = now_ms();
        tx.execute(
            "INSERT INTO delivery_attempts (delivery_id, at, channel, http_status, error) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![delivery_id, now, attempt.channel.as_str(), attempt.http_status, attempt.error],
        )?;
        let delivered_at = matches!(attempt.new_state, "delivered" | "emailed").then_some(now);
        tx.execute(
            "UPDATE deliveries SET state = ?2, attempts = ?3, next_attempt_at = ?4, last_error = ?5, \
             delivered_at = coalesce(?6, delivered_at) WHERE id = ?1",
            params![
                delivery_id,
                attempt.new_state,
                i64::from(attempt.attempts),
                attempt.next_attempt_at,
                attempt.last_error,
                delivered_at
            ],
        )?;
        let inbox_id: Option<i64> =
            tx.query_row("SELECT inbox_id FROM deliveries WHERE id = ?1", [delivery_id], |r| r.get(0)).optional()?;
        let recorded = self.record_replies(replies, limits, inbox_id)?;
        tx.commit()?;
        Ok(recorded)
    }

    /// Queues each reply of `batch` (source `reply`) unless the counts refuse it, and records
    /// the refused ones; one outbox row each. Call inside a transaction.
    fn record_replies(
        &self,
        batch: &ReplyBatch,
        limits: &ReplyLimits,
        inbox_id: Option<i64>,
    ) -> Result<RepliesRecorded> {
        let mut out = RepliesRecorded::default();
        for r in &batch.refused {
            let id = self.insert_refused_reply("reply", &r.to, &r.body, &r.reason)?;
            out.refused.push((id, r.reason.clone()));
        }
        for r in &batch.queued {
            match self.reply_limit_reached(&r.to, limits)? {
                None => out.queued.push(self.insert_local("reply", &r.to, &r.body)?),
                Some(reason) => {
                    let id = self.insert_refused_reply("reply", r.to.as_str(), &r.body, &reason)?;
                    out.refused.push((id, reason));
                }
            }
        }
        self.link_replies(&out, inbox_id)?;
        Ok(out)
    }

    fn link_replies(&self, out: &RepliesRecorded, inbox_id: Option<i64>) -> Result<()> {
        if let Some(inbox_id) = inbox_id {
            for id in out.queued.iter().chain(out.refused.iter().map(|(id, _)| id)) {
                // A reply leaves through the modem that received the message it answers.
                self.conn.execute(
                    "UPDATE outbox SET in_reply_to = ?2, via_modem = (SELECT modem FROM inbox WHERE id = ?2) WHERE id = ?1",
                    params![id, inbox_id],
                )?;
            }
        }
        Ok(())
    }

    /// Why one more automatic SMS to `to` now would break `limits`, if it would.
    pub fn reply_limit_reached(&self, to: &PhoneNumber, limits: &ReplyLimits) -> Result<Option<String>> {
        self.send_limit_reached(to, limits, SendClass::Automatic)
    }

    /// Why one more SMS of `class` to `to` now would break `limits`, if it would: the one
    /// counter behind the reply policy, also used for what staff send by hand.
    pub(crate) fn send_limit_reached(
        &self,
        to: &PhoneNumber,
        limits: &ReplyLimits,
        class: SendClass,
    ) -> Result<Option<String>> {
        let (sources, what) = (class.sources(), class.words());
        let since = now_ms().saturating_sub(HOUR_MS);
        let to_number: i64 = self.conn.query_row(
            &format!(
                "SELECT count(*) FROM outbox WHERE recipient = ?1 AND created_at > ?2 AND source IN {sources} AND state <> 'refused'"
            ),
            params![to.as_str(), since],
            |r| r.get(0),
        )?;
        if to_number >= i64::from(limits.per_number_per_hour) {
            return Ok(Some(format!(
                "{to_number} {what} to this number in the last hour; [replies] per_number_per_hour is {}",
                limits.per_number_per_hour
            )));
        }
        let to_anyone: i64 = self.conn.query_row(
            &format!(
                "SELECT count(*) FROM outbox WHERE source IN {sources} AND created_at > ?1 AND state <> 'refused'"
            ),
            [since],
            |r| r.get(0),
        )?;
        if to_anyone >= i64::from(limits.per_hour) {
            return Ok(Some(format!("{to_anyone} {what} in the last hour; [replies] per_hour is {}", limits.per_hour)));
        }
        Ok(None)
    }

    /// Records an automatic reply that is not sent: outbox state `refused` with `reason`.
    pub fn insert_refused_reply(&self, source: &str, to: &str, body: &str, reason: &str) -> Result<OutboxId> {
        let now = now_ms();
        self.conn.execute(
            "INSERT INTO outbox (source, recipient, body, state, fail_reason, created_at, updated_at) \
             VALUES (?1, ?2, ?3, 'refused', ?4, ?5, ?5)",
            params![source, to, body, reason, now],
        )?;
        let id = self.conn.last_insert_rowid();
        self.emit_outbox_outcome(id, super::EventType::SmsFailed)?;
        Ok(id)
    }

    /// Inbox rows not yet looked at for keywords, in arrival order.
    ///
    /// On a database that never had keyword handling, messages received before `started_at`
    /// (unix ms: when this daemon started) are skipped, so an upgrade does not act on old STOPs
    /// a second time, while messages of this run are never missed.
    pub fn inbox_for_keywords(&self, started_at: i64, limit: usize) -> Result<Vec<KeywordCandidate>> {
        let done = match self.kv_get(WATERMARK_KEY)? {
            Some(v) => v.parse::<i64>().unwrap_or(0),
            None => {
                let max: i64 = self.conn.query_row(
                    "SELECT coalesce(max(id), 0) FROM inbox WHERE received_at < ?1",
                    [started_at],
                    |r| r.get(0),
                )?;
                self.kv_set(WATERMARK_KEY, &max.to_string())?;
                max
            }
        };
        // A message that is not text (MMS notification, binary) gets no body here, so no
        // keyword or unknown-sender reply runs on it.
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT id, sender, CASE WHEN encoding IN {} THEN NULL ELSE body END, \
             (SELECT sender_ton FROM inbox_parts p WHERE p.inbox_id = inbox.id ORDER BY p.id LIMIT 1) \
             FROM inbox WHERE id > ?1 ORDER BY id LIMIT ?2",
            super::inbox::BINARY_CONTENT_SQL
        ))?;
        let rows = stmt.query_map(params![done, limit as i64], |r| {
            Ok(KeywordCandidate {
                inbox_id: r.get(0)?,
                sender: r.get(1)?,
                body: r.get(2)?,
                sender_ton: r.get::<_, Option<i64>>(3)?.and_then(|t| u8::try_from(t).ok()),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Marks the keyword step of inbox row `inbox_id` done, in one transaction: its keyword,
    /// the opt-out change (`Some(true)` add, `Some(false)` remove), the auto-reply (counted
    /// against `limits`, and starting the number's `reply_min_interval`) or its refusal, and the
    /// watermark. The STOP confirmation is not counted: it goes once per opt-out.
    pub fn record_keyword_step(
        &self,
        inbox_id: i64,
        keyword: Option<&str>,
        optout: Option<(bool, &str)>,
        replies: &ReplyBatch,
        limits: &ReplyLimits,
    ) -> Result<RepliesRecorded> {
        let tx = self.conn.unchecked_transaction()?;
        if let Some(k) = keyword {
            tx.execute("UPDATE inbox SET keyword = ?2 WHERE id = ?1", params![inbox_id, k])?;
        }
        match optout {
            Some((true, number)) => {
                self.add_optout(number, "sms")?;
            }
            Some((false, number)) => {
                self.remove_optout(number, "sms")?;
            }
            None => {}
        }
        let recorded = if keyword == Some("STOP") {
            // The STOP confirmation is the one reply that may go to an opted-out number.
            let mut out = RepliesRecorded::default();
            for r in &replies.queued {
                self.kv_set(&format!("reply:{}", r.to.as_str()), &now_ms().to_string())?;
                out.queued.push(self.insert_local(crate::outbound::OPTOUT_CONFIRMATION, &r.to, &r.body)?);
            }
            for r in &replies.refused {
                let id = self.insert_refused_reply(crate::outbound::OPTOUT_CONFIRMATION, &r.to, &r.body, &r.reason)?;
                out.refused.push((id, r.reason.clone()));
            }
            self.link_replies(&out, Some(inbox_id))?;
            out
        } else {
            let out = self.record_replies(replies, limits, Some(inbox_id))?;
            if !out.queued.is_empty() {
                for r in &replies.queued {
                    self.kv_set(&format!("reply:{}", r.to.as_str()), &now_ms().to_string())?;
                }
            }
            out
        };
        self.kv_set(WATERMARK_KEY, &inbox_id.to_string())?;
        tx.commit()?;
        Ok(recorded)
    }

    /// When an auto-reply last went to `number` (unix ms).
    pub fn last_auto_reply(&self, number: &PhoneNumber) -> Result<Option<i64>> {
        Ok(self.kv_get(&format!("reply:{}", number.as_str()))?.and_then(|v| v.parse().ok()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NewInboxPart, PartStored};

    use crate::store::test_support::db;

    fn receive(db: &Db, pdu: &str, sender: &str, text: &str, forwarders: &[&str]) -> i64 {
        let part = NewInboxPart {
            modem: "main".into(),
            pdu: pdu.into(),
            sender: Some(sender.into()),
            text: Some(text.into()),
            ..Default::default()
        };
        let fw: Vec<String> = forwarders.iter().map(|s| s.to_string()).collect();
        match db.store_inbound_part(&part, &fw).unwrap() {
            PartStored::Message(id) => id,
            other => panic!("{other:?}"),
        }
    }

    fn number(s: &str) -> PhoneNumber {
        PhoneNumber::parse(s, None).unwrap()
    }

    fn failed(attempts: u32, next: i64) -> AttemptRecord {
        AttemptRecord {
            channel: AttemptChannel::Http,
            http_status: Some(503),
            error: Some("HTTP 503".into()),
            new_state: "pending",
            attempts,
            next_attempt_at: Some(next),
            last_error: Some("HTTP 503".into()),
        }
    }

    #[test]
    fn new_deliveries_are_due_at_once_and_only_for_their_forwarder() {
        let (_d, db) = db();
        let id = receive(&db, "aa", "+358401234567", "hi", &["tw", "pbx"]);
        let due = db.due_deliveries("tw", now_ms(), 10).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!((due[0].inbox_id, due[0].state.as_str(), due[0].attempts), (id, "pending", 0));
        assert_eq!(db.next_delivery_due("tw").unwrap(), Some(0));
        assert!(db.due_deliveries("other", now_ms(), 10).unwrap().is_empty());
        let m = db.inbound_message(id).unwrap().unwrap();
        assert_eq!((m.sender.as_deref(), m.body.as_str(), m.parts), (Some("+358401234567"), "hi", 1));
    }

    #[test]
    fn a_failed_attempt_schedules_the_next_and_is_recorded() {
        let (_d, db) = db();
        receive(&db, "aa", "+358401234567", "hi", &["tw"]);
        let d = db.due_deliveries("tw", now_ms(), 10).unwrap().remove(0);
        let later = now_ms() + 60_000;
        db.record_delivery_attempt(d.id, &failed(1, later), &ReplyBatch::default(), &ReplyLimits::default()).unwrap();
        assert!(db.due_deliveries("tw", now_ms(), 10).unwrap().is_empty(), "not due before its time");
        assert_eq!(db.next_delivery_due("tw").unwrap(), Some(later));
        let again = db.due_deliveries("tw", later, 10).unwrap();
        assert_eq!(again[0].attempts, 1);
        assert_eq!(again[0].last_error.as_deref(), Some("HTTP 503"));
        let n: i64 = db.conn.query_row("SELECT count(*) FROM delivery_attempts", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn a_delivered_attempt_queues_its_replies_in_the_same_step_and_is_never_due_again() {
        let (_d, db) = db();
        let inbox = receive(&db, "aa", "+358401234567", "hi", &["tw"]);
        let d = db.due_deliveries("tw", now_ms(), 10).unwrap().remove(0);
        let done = AttemptRecord {
            channel: AttemptChannel::Http,
            http_status: Some(200),
            error: None,
            new_state: "delivered",
            attempts: 1,
            next_attempt_at: None,
            last_error: None,
        };
        let reply = QueuedReply { to: number("+358401234567"), body: "Thanks!".into() };
        let batch = ReplyBatch { queued: vec![reply], refused: vec![] };
        let ids = db.record_delivery_attempt(d.id, &done, &batch, &ReplyLimits::default()).unwrap().queued;
        assert_eq!(ids.len(), 1);
        let queued = db.get_outbox(ids[0]).unwrap().unwrap();
        assert_eq!(queued.summary.source, "reply");
        assert_eq!(queued.body.as_deref(), Some("Thanks!"));
        assert!(db.due_deliveries("tw", now_ms() + 1_000_000, 10).unwrap().is_empty());
        assert_eq!(db.next_delivery_due("tw").unwrap(), None);
        let shown = db.get_inbox(inbox).unwrap().unwrap();
        assert_eq!(shown.deliveries[0].state, "delivered");
        assert!(shown.deliveries[0].delivered_at.is_some());
    }

    #[test]
    fn email_attempts_are_counted_apart_from_webhook_attempts() {
        let (_d, db) = db();
        receive(&db, "aa", "+61400111222", "hi", &["pbx"]);
        let d = db.due_deliveries("pbx", now_ms(), 10).unwrap().remove(0);
        let to_email = AttemptRecord { new_state: "emailing", next_attempt_at: None, ..failed(10, 0) };
        db.record_delivery_attempt(d.id, &to_email, &ReplyBatch::default(), &ReplyLimits::default()).unwrap();
        let mail_failed = AttemptRecord {
            channel: AttemptChannel::Email,
            http_status: None,
            error: Some("SMTP 451".into()),
            new_state: "emailing",
            attempts: 10,
            next_attempt_at: None,
            last_error: Some("SMTP 451".into()),
        };
        db.record_delivery_attempt(d.id, &mail_failed, &ReplyBatch::default(), &ReplyLimits::default()).unwrap();
        let d = db.due_deliveries("pbx", now_ms(), 10).unwrap().remove(0);
        assert_eq!((d.state.as_str(), d.attempts, d.email_attempts), ("emailing", 10, 1));
    }

    #[test]
    fn the_keyword_step_sees_each_message_once_and_applies_opt_outs_atomically() {
        let (_d, db) = db();
        // A database that existed before keyword handling: old messages are not looked at.
        receive(&db, "old", "+358401234567", "STOP", &[]);
        let started = now_ms() + 1;
        assert!(db.inbox_for_keywords(started, 10).unwrap().is_empty());
        let id = receive(&db, "new", "+358401234567", "stop", &[]);
        let todo = db.inbox_for_keywords(started, 10).unwrap();
        let expected = KeywordCandidate {
            inbox_id: id,
            sender: Some("+358401234567".into()),
            body: Some("stop".into()),
            sender_ton: None,
        };
        assert_eq!(todo, vec![expected]);
        let reply = QueuedReply { to: number("+358401234567"), body: "ok".into() };
        let before = now_ms();
        let batch = ReplyBatch { queued: vec![reply], refused: vec![] };
        db.record_keyword_step(id, Some("STOP"), Some((true, "+358401234567")), &batch, &ReplyLimits::default())
            .unwrap();
        assert!(db.is_opted_out("+358401234567").unwrap());
        assert!(db.last_auto_reply(&number("+358401234567")).unwrap().unwrap() >= before);
        assert!(db.inbox_for_keywords(started, 10).unwrap().is_empty());
        assert_eq!(db.get_inbox(id).unwrap().unwrap().summary.keyword.as_deref(), Some("STOP"));
        let start = receive(&db, "start", "+358401234567", "START", &[]);
        db.record_keyword_step(
            start,
            Some("START"),
            Some((false, "+358401234567")),
            &ReplyBatch::default(),
            &ReplyLimits::default(),
        )
        .unwrap();
        assert!(!db.is_opted_out("+358401234567").unwrap());
    }

    #[test]
    fn automatic_replies_are_counted_per_number_and_per_hour_and_refusals_recorded() {
        let (_d, db) = db();
        let limits = ReplyLimits { per_number_per_hour: 2, per_hour: 3 };
        let to = |n: &str| QueuedReply { to: number(n), body: "auto".into() };
        let batch = ReplyBatch {
            queued: vec![
                to("+358401111111"),
                to("+358401111111"),
                to("+358401111111"),
                to("+358402222222"),
                to("+358403333333"),
            ],
            refused: vec![RefusedReply { to: "ExampleVet".into(), body: "auto".into(), reason: "alphanumeric".into() }],
        };
        let got = db.record_replies(&batch, &limits, None).unwrap();
        assert_eq!(got.queued.len(), 3, "two to the first number, one to the second; then the hour is full");
        let reasons: Vec<&str> = got.refused.iter().map(|(_, r)| r.as_str()).collect();
        assert_eq!(reasons.len(), 3, "{reasons:?}");
        assert_eq!(reasons[0], "alphanumeric");
        assert!(reasons[1].contains("per_number_per_hour is 2"), "{reasons:?}");
        assert!(reasons[2].contains("per_hour is 3"), "{reasons:?}");
        let row = db.get_outbox(got.refused[1].0).unwrap().unwrap();
        assert_eq!(row.summary.state, crate::store::OutboxState::Refused);
        assert!(
            db.claim_next("m", &[], now_ms()).unwrap().is_some_and(|id| got.queued.contains(&id)),
            "refused rows are never claimed"
        );
    }
}
