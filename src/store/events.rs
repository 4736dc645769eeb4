//! Event webhooks' side of the store: a transactional outbox.
//!
//! An event row is inserted by the same store call, in the same transaction, as the state change
//! it describes (`transition` to `sent`/`failed`, a refused reply, a joined inbox message, a status
//! report, an opt-out change), together with one `event_deliveries` row per `[[event_webhook]]`
//! that wants its type. So a crash can never leave a sent message without its `sms.sent`, nor an
//! event for a change that was rolled back; the event's `uid` is fixed at insert, so every
//! attempt carries the same envelope id. When no webhook wants a type, nothing is written (an
//! SD card pays for events only when someone listens).
//!
//! Delivery bookkeeping (`due_event_deliveries`, `record_event_call`) and the call log queries
//! (`list_events`, `event_detail`) live here too; `crate::events` does the HTTP.

use std::sync::Arc;

use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use serde_json::{Value, json};

use super::{Db, Result, now_ms};

/// The event types, as named on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum EventType {
    #[serde(rename = "sms.received")]
    SmsReceived,
    #[serde(rename = "sms.sent")]
    SmsSent,
    #[serde(rename = "sms.failed")]
    SmsFailed,
    #[serde(rename = "sms.delivered")]
    SmsDelivered,
    #[serde(rename = "sms.undelivered")]
    SmsUndelivered,
    #[serde(rename = "optout.added")]
    OptoutAdded,
    #[serde(rename = "optout.removed")]
    OptoutRemoved,
    #[serde(rename = "modem.online")]
    ModemOnline,
    #[serde(rename = "modem.offline")]
    ModemOffline,
}

impl EventType {
    pub const ALL: [EventType; 9] = [
        EventType::SmsReceived,
        EventType::SmsSent,
        EventType::SmsFailed,
        EventType::SmsDelivered,
        EventType::SmsUndelivered,
        EventType::OptoutAdded,
        EventType::OptoutRemoved,
        EventType::ModemOnline,
        EventType::ModemOffline,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::SmsReceived => "sms.received",
            EventType::SmsSent => "sms.sent",
            EventType::SmsFailed => "sms.failed",
            EventType::SmsDelivered => "sms.delivered",
            EventType::SmsUndelivered => "sms.undelivered",
            EventType::OptoutAdded => "optout.added",
            EventType::OptoutRemoved => "optout.removed",
            EventType::ModemOnline => "modem.online",
            EventType::ModemOffline => "modem.offline",
        }
    }

    pub fn parse(s: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which webhooks receive which event types (from the config's `[[event_webhook]]` sections).
/// Empty: no events are written at all.
#[derive(Debug, Clone, Default)]
pub struct EventRoutes {
    webhooks: Vec<(String, Vec<EventType>)>,
    /// Notified after an event is written, so the delivery loops start at once.
    wake: Option<Arc<tokio::sync::Notify>>,
}

impl EventRoutes {
    /// `webhooks`: each webhook's name and the types it wants.
    pub fn new(webhooks: Vec<(String, Vec<EventType>)>) -> EventRoutes {
        EventRoutes { webhooks, wake: None }
    }

    /// The same routes, notifying `wake` after each event written.
    pub fn waking(mut self, wake: Arc<tokio::sync::Notify>) -> EventRoutes {
        self.wake = Some(wake);
        self
    }

    fn subscribers(&self, ty: EventType) -> impl Iterator<Item = &str> {
        self.webhooks.iter().filter(move |(_, types)| types.contains(&ty)).map(|(name, _)| name.as_str())
    }
}

/// A UUID v4 in its usual text form. fastrand's generator is seeded from the OS at start; the
/// id must be unique (the column is `UNIQUE`), not secret.
fn uuid_v4() -> String {
    let mut b = fastrand::u128(..).to_be_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

fn secs(ms: i64) -> i64 {
    ms.div_euclid(1000)
}

/// One delivery due: the event and the webhook that should receive it.
#[derive(Debug, Clone)]
pub struct DueEvent {
    pub event_id: i64,
    pub uid: String,
    pub event_type: String,
    pub created_at: i64,
    pub data: Value,
    pub webhook: String,
    pub attempts: u32,
}

/// One HTTP attempt as the call log keeps it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WebhookCall {
    pub id: i64,
    pub event_id: i64,
    pub webhook: String,
    pub at: i64,
    pub url: String,
    pub request_headers: String,
    pub request_body: String,
    pub status: Option<u16>,
    pub response_headers: Option<String>,
    pub response_body: Option<String>,
    pub duration_ms: i64,
    pub error: Option<String>,
}

/// The states of an event delivery (the schema's CHECK), for filters.
pub const DELIVERY_STATES: [&str; 3] = ["pending", "delivered", "gave_up"];

/// What an attempt changes in the delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventDeliveryState {
    Delivered,
    /// Try again at this time (unix ms).
    RetryAt(i64),
    GaveUp,
}

/// One event with its deliveries (the call log's list view).
#[derive(Debug, Clone, Serialize)]
pub struct EventSummary {
    pub id: i64,
    pub uid: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub created_at: i64,
    pub deliveries: Vec<EventDeliveryRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EventDeliveryRow {
    pub webhook: String,
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: Option<i64>,
    pub last_error: Option<String>,
    pub settled_at: Option<i64>,
}

/// One event in full: its data and every attempt.
#[derive(Debug, Clone, Serialize)]
pub struct EventDetail {
    #[serde(flatten)]
    pub summary: EventSummary,
    pub data: Value,
    pub calls: Vec<WebhookCall>,
}

/// Filters of the call log list.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub event_type: Option<String>,
    /// A delivery state: the event is listed if any of its deliveries is in it.
    pub state: Option<String>,
    pub limit: usize,
}

impl Db {
    /// The event routes this connection writes by (see [`EventRoutes`]).
    pub fn route_events(&mut self, routes: EventRoutes) {
        self.events = routes;
    }

    /// Runs `f` in a transaction, or inside the caller's if one is open: the state change and
    /// its event commit together either way.
    pub(crate) fn atomically<R>(&self, f: impl FnOnce() -> Result<R>) -> Result<R> {
        if !self.conn.is_autocommit() {
            return f();
        }
        let tx = self.conn.unchecked_transaction()?;
        let r = f()?;
        tx.commit()?;
        Ok(r)
    }

    /// Writes event `ty` with `data` for every webhook that wants it. Call it inside the
    /// transaction of the change it describes. Returns the event id, or `None` when no webhook
    /// wants the type (nothing written).
    pub(crate) fn emit(&self, ty: EventType, data: Value) -> Result<Option<i64>> {
        let subscribers: Vec<&str> = self.events.subscribers(ty).collect();
        if subscribers.is_empty() {
            return Ok(None);
        }
        self.conn.execute(
            "INSERT INTO events (uid, type, created_at, data) VALUES (?1, ?2, ?3, ?4)",
            params![uuid_v4(), ty.as_str(), now_ms(), data.to_string()],
        )?;
        let id = self.conn.last_insert_rowid();
        for w in subscribers {
            self.conn.execute(
                "INSERT INTO event_deliveries (event_id, webhook, state) VALUES (?1, ?2, 'pending')",
                params![id, w],
            )?;
        }
        if let Some(wake) = &self.events.wake {
            wake.notify_one();
        }
        Ok(Some(id))
    }

    /// The `data` of an `sms.*` event about outbox message `id`, in its current state.
    pub(crate) fn outbox_event_data(&self, id: i64) -> Result<Value> {
        let row = self.conn.query_row(
            "SELECT source, instance, external_id, recipient, state, fail_reason, created_at, updated_at, \
             (SELECT count(*) FROM outbox_parts WHERE outbox_id = outbox.id), in_reply_to \
             FROM outbox WHERE id = ?1",
            [id],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, i64>(6)?,
                    r.get::<_, i64>(7)?,
                    r.get::<_, i64>(8)?,
                    r.get::<_, Option<i64>>(9)?,
                ))
            },
        )?;
        let (source, instance, external_id, to, state, reason, created, updated, parts, in_reply_to) = row;
        let mut data = json!({
            "id": id,
            "to": to,
            "parts": parts,
            "source": source,
            "created_at": secs(created),
        });
        let at_key = match state.as_str() {
            "sent" => "sent_at",
            _ => "failed_at",
        };
        data[at_key] = json!(secs(updated));
        if state != "sent" {
            data["reason"] = json!(reason);
        }
        if state == "refused" {
            // An automatic reply the reply policy refused: it never reached the modem.
            data["refused"] = json!(true);
        }
        if let Some(instance) = instance {
            data["provet_instance"] = json!(instance);
            let id_key = if source == "provet" { "external_sms_id" } else { "reminder_id" };
            data[id_key] = json!(external_id);
        }
        if let Some(inbox_id) = in_reply_to {
            data["in_reply_to"] = json!(inbox_id);
        }
        Ok(data)
    }

    /// `sms.sent` or `sms.failed` for message `id`, which just reached that state.
    pub(crate) fn emit_outbox_outcome(&self, id: i64, ty: EventType) -> Result<()> {
        if self.events.subscribers(ty).next().is_none() {
            return Ok(());
        }
        let data = self.outbox_event_data(id)?;
        self.emit(ty, data)?;
        Ok(())
    }

    /// `sms.received` for the inbox message `id`, just joined.
    pub(crate) fn emit_received(&self, id: i64) -> Result<()> {
        if self.events.subscribers(EventType::SmsReceived).next().is_none() {
            return Ok(());
        }
        let data = self.conn.query_row(
            "SELECT uid, modem, sender, body, encoding, parts, incomplete, decode_error, sent_at, received_at FROM inbox WHERE id = ?1",
            [id],
            |r| {
                Ok(json!({
                    "id": id,
                    "uid": r.get::<_, String>(0)?,
                    "modem": r.get::<_, String>(1)?,
                    "from": r.get::<_, Option<String>>(2)?,
                    "body": r.get::<_, Option<String>>(3)?,
                    "encoding": r.get::<_, Option<String>>(4)?,
                    "parts": r.get::<_, i64>(5)?,
                    "incomplete": r.get::<_, bool>(6)?,
                    "decode_error": r.get::<_, Option<String>>(7)?,
                    "sent_at": r.get::<_, Option<String>>(8)?,
                    "received_at": secs(r.get::<_, i64>(9)?),
                    "source": "modem",
                }))
            },
        )?;
        self.emit(EventType::SmsReceived, data)?;
        Ok(())
    }

    /// After a status report for a part of message `id`: `sms.delivered` once every part
    /// reported delivery (TP-ST 0x00–0x1F), `sms.undelivered` at the first part the network
    /// gave up on (TP-ST 0x40 and above; 0x20–0x3F means it is still trying). Each at most once.
    pub(crate) fn emit_status_report(&self, id: i64, status: u8) -> Result<()> {
        let (parts, delivered, undelivered): (i64, i64, i64) = self.conn.query_row(
            "SELECT count(*), count(*) FILTER (WHERE delivery_status BETWEEN 0 AND 31), \
             count(*) FILTER (WHERE delivery_status >= 64) FROM outbox_parts WHERE outbox_id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let ty = if status >= 64 && undelivered == 1 {
            EventType::SmsUndelivered
        } else if status < 32 && delivered == parts && undelivered == 0 {
            EventType::SmsDelivered
        } else {
            return Ok(());
        };
        if self.events.subscribers(ty).next().is_none() {
            return Ok(());
        }
        let mut data = self.outbox_event_data(id)?;
        if let Some(map) = data.as_object_mut() {
            map.remove("failed_at");
            map.remove("reason");
            map.remove("sent_at");
        }
        data["status"] = json!(status);
        data["reported_at"] = json!(secs(now_ms()));
        self.emit(ty, data)?;
        Ok(())
    }

    /// `modem.online` / `modem.offline` (not a database change: written when the daemon sees it).
    pub fn emit_modem_state(&self, modem: &str, online: bool, state: &str) -> Result<()> {
        let ty = if online { EventType::ModemOnline } else { EventType::ModemOffline };
        self.emit(ty, json!({"modem": modem, "state": state, "at": secs(now_ms())}))?;
        Ok(())
    }

    /// Deliveries due for `webhook` at `now`, oldest event first.
    pub fn due_event_deliveries(&self, webhook: &str, now: i64, limit: usize) -> Result<Vec<DueEvent>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT e.id, e.uid, e.type, e.created_at, e.data, d.attempts FROM event_deliveries d \
             JOIN events e ON e.id = d.event_id \
             WHERE d.webhook = ?1 AND d.state = 'pending' AND (d.next_attempt_at IS NULL OR d.next_attempt_at <= ?2) \
             ORDER BY e.id LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![webhook, now, limit as i64], |r| {
            let data: String = r.get(4)?;
            Ok(DueEvent {
                event_id: r.get(0)?,
                uid: r.get(1)?,
                event_type: r.get(2)?,
                created_at: r.get(3)?,
                // Written by us from a `Value`; a row edited by hand to garbage is sent as null.
                data: serde_json::from_str(&data).unwrap_or(Value::Null),
                webhook: webhook.to_string(),
                attempts: u32::try_from(r.get::<_, i64>(5)?).unwrap_or(u32::MAX),
            })
        })?;
        let due: Vec<DueEvent> = rows.collect::<rusqlite::Result<_>>()?;
        if !due.is_empty() {
            // What is posted next must be on disk (no event for a change a power cut could undo).
            self.sync()?;
        }
        Ok(due)
    }

    /// When the next delivery for `webhook` is due (unix ms), if any is pending.
    pub fn next_event_due(&self, webhook: &str) -> Result<Option<i64>> {
        Ok(self.conn.prepare_cached(
            "SELECT min(coalesce(next_attempt_at, 0)) FROM event_deliveries WHERE webhook = ?1 AND state = 'pending'",
        )?
        .query_row([webhook], |r| r.get(0))?)
    }

    /// Records one attempt and its consequence for the delivery, in one transaction.
    pub fn record_event_call(&self, call: &WebhookCall, outcome: EventDeliveryState) -> Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        tx.execute(
            "INSERT INTO webhook_calls (event_id, webhook, at, url, request_headers, request_body, status, \
             response_headers, response_body, duration_ms, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                call.event_id,
                call.webhook,
                call.at,
                call.url,
                call.request_headers,
                call.request_body,
                call.status,
                call.response_headers,
                call.response_body,
                call.duration_ms,
                call.error
            ],
        )?;
        let now = now_ms();
        let (state, next, settled) = match outcome {
            EventDeliveryState::Delivered => ("delivered", None, Some(now)),
            EventDeliveryState::RetryAt(at) => ("pending", Some(at), None),
            EventDeliveryState::GaveUp => ("gave_up", None, Some(now)),
        };
        tx.execute(
            "UPDATE event_deliveries SET state = ?3, attempts = attempts + 1, next_attempt_at = ?4, last_error = ?5, \
             settled_at = ?6 WHERE event_id = ?1 AND webhook = ?2",
            params![call.event_id, call.webhook, state, next, call.error, settled],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Queues a new attempt of event `event_id` for `webhook` (every webhook it went to when
    /// `None`), whatever the deliveries' states. Returns how many deliveries were queued.
    /// In the daemon (the web UI's replay) the delivery task is woken at once.
    pub fn replay_event(&self, event_id: i64, webhook: Option<&str>) -> Result<usize> {
        let queued = self.conn.execute(
            "UPDATE event_deliveries SET state = 'pending', next_attempt_at = NULL, settled_at = NULL \
             WHERE event_id = ?1 AND (?2 IS NULL OR webhook = ?2)",
            params![event_id, webhook],
        )?;
        if queued > 0
            && let Some(wake) = &self.events.wake
        {
            wake.notify_one();
        }
        Ok(queued)
    }

    /// The id of the event whose numeric id or envelope id (UUID) is `key`.
    pub fn find_event(&self, key: &str) -> Result<Option<i64>> {
        if let Ok(id) = key.parse::<i64>() {
            return Ok(self.conn.query_row("SELECT id FROM events WHERE id = ?1", [id], |r| r.get(0)).optional()?);
        }
        Ok(self
            .conn
            .query_row("SELECT id FROM events WHERE uid = ?1", [key.to_ascii_lowercase()], |r| r.get(0))
            .optional()?)
    }

    fn event_deliveries_of(&self, event_id: i64) -> Result<Vec<EventDeliveryRow>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT webhook, state, attempts, next_attempt_at, last_error, settled_at FROM event_deliveries \
             WHERE event_id = ?1 ORDER BY webhook",
        )?;
        let rows = stmt.query_map([event_id], |r| {
            Ok(EventDeliveryRow {
                webhook: r.get(0)?,
                state: r.get(1)?,
                attempts: r.get(2)?,
                next_attempt_at: r.get(3)?,
                last_error: r.get(4)?,
                settled_at: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The call log's list: newest first.
    pub fn list_events(&self, filter: &EventFilter) -> Result<Vec<EventSummary>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, uid, type, created_at FROM events e WHERE (?1 IS NULL OR type = ?1) \
             AND (?2 IS NULL OR EXISTS (SELECT 1 FROM event_deliveries d WHERE d.event_id = e.id AND d.state = ?2)) \
             ORDER BY id DESC LIMIT ?3",
        )?;
        let heads: Vec<(i64, String, String, i64)> = stmt
            .query_map(params![filter.event_type, filter.state, filter.limit.max(1) as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        heads
            .into_iter()
            .map(|(id, uid, event_type, created_at)| {
                Ok(EventSummary { id, uid, event_type, created_at, deliveries: self.event_deliveries_of(id)? })
            })
            .collect()
    }

    /// One event with its data and every attempt, oldest attempt first.
    pub fn event_detail(&self, id: i64) -> Result<Option<EventDetail>> {
        let head: Option<(String, String, i64, String)> = self
            .conn
            .query_row("SELECT uid, type, created_at, data FROM events WHERE id = ?1", [id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()?;
        let Some((uid, event_type, created_at, data)) = head else { return Ok(None) };
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, event_id, webhook, at, url, request_headers, request_body, status, response_headers, \
             response_body, duration_ms, error FROM webhook_calls WHERE event_id = ?1 ORDER BY id",
        )?;
        let calls = stmt
            .query_map([id], |r| {
                Ok(WebhookCall {
                    id: r.get(0)?,
                    event_id: r.get(1)?,
                    webhook: r.get(2)?,
                    at: r.get(3)?,
                    url: r.get(4)?,
                    request_headers: r.get(5)?,
                    request_body: r.get(6)?,
                    status: r.get::<_, Option<i64>>(7)?.and_then(|s| u16::try_from(s).ok()),
                    response_headers: r.get(8)?,
                    response_body: r.get(9)?,
                    duration_ms: r.get(10)?,
                    error: r.get(11)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(Some(EventDetail {
            summary: EventSummary { id, uid, event_type, created_at, deliveries: self.event_deliveries_of(id)? },
            data: serde_json::from_str(&data).unwrap_or(Value::Null),
            calls,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::{db, number};
    use crate::store::{NewInboxPart, NewPart, OutboxState};

    fn routed(types: &[EventType]) -> (tempfile::TempDir, Db) {
        let (d, mut db) = db();
        db.route_events(EventRoutes::new(vec![("hook".into(), types.to_vec()), ("second".into(), types.to_vec())]));
        (d, db)
    }

    fn events(db: &Db) -> Vec<(String, Value)> {
        let mut stmt = db.conn.prepare("SELECT type, data FROM events ORDER BY id").unwrap();
        stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .unwrap()
            .map(|r| {
                let (t, d) = r.unwrap();
                (t, serde_json::from_str(&d).unwrap())
            })
            .collect()
    }

    fn sent_message(db: &Db) -> i64 {
        let id = db.insert_local("cli", &number(), "hello").unwrap();
        db.begin_sending(
            id,
            &[NewPart { pdu: "00".into(), tpdu_len: 1 }, NewPart { pdu: "01".into(), tpdu_len: 1 }],
            Some(7),
        )
        .unwrap();
        for seq in 1..=2 {
            db.part_begin(id, seq, "main").unwrap();
            db.part_acked(id, seq, seq as u8 + 10).unwrap();
        }
        db.transition(id, OutboxState::Sent, None).unwrap();
        id
    }

    #[test]
    fn uuids_are_version_4_and_distinct() {
        let a = uuid_v4();
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "{a}");
        assert_ne!(a, uuid_v4());
    }

    #[test]
    fn nothing_is_written_without_a_webhook_that_wants_the_type() {
        let (_d, db) = db();
        sent_message(&db);
        let (_d2, mut db2) = crate::store::test_support::db();
        db2.route_events(EventRoutes::new(vec![("hook".into(), vec![EventType::SmsFailed])]));
        sent_message(&db2);
        assert!(events(&db).is_empty());
        assert!(events(&db2).is_empty(), "only sms.failed is wanted");
    }

    #[test]
    fn a_sent_message_writes_one_event_with_a_delivery_per_webhook_that_wants_it() {
        let (_d, db) = routed(&[EventType::SmsSent]);
        let id = sent_message(&db);
        let ev = events(&db);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].0, "sms.sent");
        assert_eq!(ev[0].1["id"], json!(id));
        assert_eq!(ev[0].1["to"], json!("+358401234567"));
        assert_eq!(ev[0].1["parts"], json!(2));
        assert_eq!(ev[0].1["source"], json!("cli"));
        assert!(ev[0].1["sent_at"].is_i64());
        let due = db.due_event_deliveries("hook", now_ms(), 10).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(db.due_event_deliveries("second", now_ms(), 10).unwrap()[0].uid, due[0].uid, "one event, one id");
    }

    #[test]
    fn a_rolled_back_change_leaves_no_event() {
        let (_d, db) = routed(&[EventType::SmsFailed]);
        let id = db.insert_local("cli", &number(), "x").unwrap();
        let tx = db.conn.unchecked_transaction().unwrap();
        db.transition(id, OutboxState::Failed, Some("because")).unwrap();
        assert_eq!(events(&db).len(), 1, "written inside the caller's transaction");
        drop(tx);
        assert!(events(&db).is_empty());
        assert_eq!(db.get_outbox(id).unwrap().unwrap().summary.state, OutboxState::Fetched);
    }

    #[test]
    fn failed_provet_work_names_its_instance_and_reason() {
        let (_d, db) = routed(&[EventType::SmsFailed]);
        let (id, _) = db.insert_received("provet", "helsinki", 42).unwrap();
        db.transition(id, OutboxState::Failed, Some("Provet refused")).unwrap();
        let ev = events(&db);
        assert_eq!(ev[0].1["provet_instance"], json!("helsinki"));
        assert_eq!(ev[0].1["external_sms_id"], json!(42));
        assert_eq!(ev[0].1["reason"], json!("Provet refused"));
        assert_eq!(ev[0].1["to"], Value::Null, "never fetched");
    }

    #[test]
    fn status_reports_give_delivered_once_all_parts_report_and_undelivered_once() {
        let (_d, db) = routed(&[EventType::SmsDelivered, EventType::SmsUndelivered]);
        let id = sent_message(&db);
        db.record_status_report("main", 11, 0).unwrap();
        assert!(events(&db).is_empty(), "one of two parts");
        db.record_status_report("main", 12, 0).unwrap();
        assert_eq!(events(&db).len(), 1);
        assert_eq!(events(&db)[0].0, "sms.delivered");
        assert_eq!(events(&db)[0].1["id"], json!(id));
        let delivered_at = |db: &Db| -> i64 {
            db.conn.query_row("SELECT delivered_at FROM outbox_parts WHERE message_ref = 12", [], |r| r.get(0)).unwrap()
        };
        let first = delivered_at(&db);
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(db.record_status_report_synced("main", 12, 0).unwrap(), Some(id), "a resent report");
        assert_eq!(events(&db).len(), 1, "the same report twice is recorded once");
        assert_eq!(delivered_at(&db), first);

        let id2 = sent_message(&db);
        db.conn.execute("UPDATE outbox_parts SET message_ref = message_ref + 100 WHERE outbox_id = ?1", [id2]).unwrap();
        db.record_status_report("main", 111, 0x20).unwrap();
        assert_eq!(events(&db).len(), 1, "temporary: the network still tries");
        db.record_status_report("main", 111, 0x41).unwrap();
        db.record_status_report("main", 112, 0x46).unwrap();
        let ev = events(&db);
        assert_eq!(ev.len(), 2, "undelivered once");
        assert_eq!(ev[1].0, "sms.undelivered");
        assert_eq!(ev[1].1["status"], json!(0x41));
    }

    #[test]
    fn received_messages_and_opt_out_changes_write_events() {
        let (_d, db) = routed(&[EventType::SmsReceived, EventType::OptoutAdded, EventType::OptoutRemoved]);
        let part = NewInboxPart {
            modem: "main".into(),
            pdu: "07".into(),
            sender: Some("+358401234567".into()),
            text: Some("STOP".into()),
            ..Default::default()
        };
        db.store_inbound_part(&part, &[]).unwrap();
        assert!(db.add_optout("+358401234567", "sms").unwrap());
        assert!(!db.add_optout("+358401234567", "sms").unwrap(), "already there: no event");
        assert!(db.remove_optout("+358401234567", "cli").unwrap());
        let ev = events(&db);
        let types: Vec<&str> = ev.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(types, ["sms.received", "optout.added", "optout.removed"]);
        assert_eq!(ev[0].1["from"], json!("+358401234567"));
        assert_eq!(ev[0].1["body"], json!("STOP"));
        assert_eq!(ev[1].1["number"], json!("+358401234567"));
        assert_eq!(ev[1].1["source"], json!("sms"));
    }

    #[test]
    fn attempts_are_logged_and_a_replay_queues_the_same_event_again() {
        let (_d, db) = routed(&[EventType::SmsSent]);
        sent_message(&db);
        let due = db.due_event_deliveries("hook", now_ms(), 10).unwrap().remove(0);
        let call = |status: Option<u16>| WebhookCall {
            event_id: due.event_id,
            webhook: "hook".into(),
            at: now_ms(),
            url: "http://x/".into(),
            status,
            ..Default::default()
        };
        db.record_event_call(&call(Some(500)), EventDeliveryState::RetryAt(now_ms() + 60_000)).unwrap();
        assert!(db.due_event_deliveries("hook", now_ms(), 10).unwrap().is_empty(), "not due yet");
        assert!(db.next_event_due("hook").unwrap().is_some());
        db.record_event_call(&call(Some(204)), EventDeliveryState::Delivered).unwrap();
        assert_eq!(db.next_event_due("hook").unwrap(), None);
        let d = db.event_detail(due.event_id).unwrap().unwrap();
        assert_eq!(d.calls.iter().map(|c| c.status).collect::<Vec<_>>(), [Some(500), Some(204)]);
        assert_eq!(d.summary.deliveries.len(), 2, "both webhooks");
        let hook = d.summary.deliveries.iter().find(|r| r.webhook == "hook").unwrap();
        assert_eq!((hook.state.as_str(), hook.attempts), ("delivered", 2));

        assert_eq!(db.replay_event(due.event_id, Some("hook")).unwrap(), 1);
        let again = db.due_event_deliveries("hook", now_ms(), 10).unwrap();
        assert_eq!(again[0].uid, due.uid, "the same id on a replay");
        assert_eq!(db.find_event(&due.uid.to_uppercase()).unwrap(), Some(due.event_id));
        assert_eq!(db.find_event("999").unwrap(), None);
        let listed =
            db.list_events(&EventFilter { state: Some("pending".into()), limit: 10, ..Default::default() }).unwrap();
        assert_eq!(listed.len(), 1);
    }
}
