//! Queries of the local API (`web/api/`): a send with its idempotency key, rate count and audit
//! row in one transaction; the inbox as a cursor; opt-out changes with their audit row; and the
//! figures `/metrics` reads (start values of the counters, gauges at scrape time).

use std::collections::BTreeMap;

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{Db, OutboxId, OutboxState, Result, now_ms};
use crate::phone::PhoneNumber;

/// The outbox source of a message sent through the API.
pub const API_SOURCE: &str = "api";

/// One hour in milliseconds: the window of `[api] per_hour`.
const HOUR_MS: i64 = 3_600_000;

/// What became of an API send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiSendOutcome {
    /// Queued now (`fetched`).
    Queued(OutboxId),
    /// The key was used before with the same number and text: that message, nothing new.
    Repeated(OutboxId, OutboxState),
    /// The key was used before for another number or text.
    KeyConflict(OutboxId),
    /// The number is on the opt-out list.
    OptedOut,
    /// `per_hour` API messages were accepted in the last hour; the oldest leaves the window in
    /// `retry_after_s` seconds.
    RateLimited { per_hour: u32, retry_after_s: u64 },
}

/// One received message as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ApiInboxRow {
    pub id: i64,
    pub from: Option<String>,
    pub text: Option<String>,
    pub modem: String,
    pub parts: i64,
    pub incomplete: bool,
    pub keyword: Option<String>,
    /// The sender's timestamp (SCTS), RFC 3339.
    pub sent_at: Option<String>,
    /// Unix milliseconds.
    pub received_at: i64,
}

/// What `/metrics` derives from the store when the daemon starts (counters) or at each scrape
/// (gauges).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsBaseline {
    pub sent: u64,
    /// (fail reason, count): the caller sorts the reasons into classes.
    pub failed: Vec<(Option<String>, u64)>,
    pub received: u64,
    pub parts_sent: u64,
    /// ((forwarder, outcome), count), outcome `delivered` or `failed`.
    pub forward_attempts: BTreeMap<(String, String), u64>,
    /// ((webhook, outcome), count) from the call log, outcome `delivered` (2xx) or `failed`.
    pub event_deliveries: BTreeMap<(String, String), u64>,
}

/// The outbox gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PendingFigures {
    /// Messages not yet sent or failed (`received`, `fetched`, `sending`).
    pub pending: u64,
    /// Unix ms of the oldest of them.
    pub oldest_created_at: Option<i64>,
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl Db {
    /// An API send, in one transaction: the idempotency key is looked up first (a repeat
    /// changes nothing), then the opt-out list, then the hourly count of API messages; only
    /// then is the message queued (`fetched`, source `api`) with its audit row.
    pub fn api_send(
        &self,
        actor: &str,
        to: &PhoneNumber,
        text: &str,
        key: Option<&str>,
        per_hour: u32,
    ) -> Result<ApiSendOutcome> {
        let tx = self.conn.unchecked_transaction()?;
        if let Some(key) = key {
            let found: Option<(OutboxId, Option<String>, Option<String>, String)> = tx
                .query_row("SELECT id, recipient, body, state FROM outbox WHERE idempotency_key = ?1", [key], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .optional()?;
            if let Some((id, recipient, body, state)) = found {
                // Erased by retention (older than keep_days): the key still names that message.
                let erased = recipient.is_none() && body.is_none();
                let same = recipient.as_deref() == Some(to.as_str()) && body.as_deref() == Some(text);
                if !(same || erased) {
                    return Ok(ApiSendOutcome::KeyConflict(id));
                }
                let state = state.parse().unwrap_or(OutboxState::Failed);
                return Ok(ApiSendOutcome::Repeated(id, state));
            }
        }
        if self.is_opted_out(to.as_str())? {
            return Ok(ApiSendOutcome::OptedOut);
        }
        let now = now_ms();
        let (in_window, oldest): (i64, Option<i64>) = tx.query_row(
            "SELECT count(*), min(created_at) FROM outbox WHERE source = ?1 AND created_at > ?2",
            params![API_SOURCE, now - HOUR_MS],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        if in_window >= i64::from(per_hour) {
            let leaves_at = oldest.unwrap_or(now).saturating_add(HOUR_MS);
            let retry_after_s = count(leaves_at.saturating_sub(now)).div_ceil(1000).clamp(1, 3600);
            return Ok(ApiSendOutcome::RateLimited { per_hour, retry_after_s });
        }
        let sql = format!(
            "INSERT INTO outbox (source, recipient, body, state, created_at, updated_at, idempotency_key, via_modem) \
             VALUES (?1, ?2, ?3, 'fetched', ?4, ?4, ?5, {})",
            super::outbox::last_modem_of("?2")
        );
        tx.execute(&sql, params![API_SOURCE, to.as_str(), text, now, key])?;
        let id = tx.last_insert_rowid();
        self.record_audit(actor, "send", Some(&id.to_string()))?;
        tx.commit()?;
        // Answered 202 next: the message must be on disk.
        self.sync()?;
        Ok(ApiSendOutcome::Queued(id))
    }

    /// Adds `number` to the opt-out list for `actor`, with its audit row; false if it was there.
    pub fn api_optout_add(&self, actor: &str, number: &str) -> Result<bool> {
        let tx = self.conn.unchecked_transaction()?;
        let added = self.add_optout(number, API_SOURCE)?;
        if added {
            self.record_audit(actor, "optout.add", Some(number))?;
        }
        tx.commit()?;
        self.sync()?;
        Ok(added)
    }

    /// Removes `number` from the opt-out list for `actor`, with its audit row; false if it was
    /// not there.
    pub fn api_optout_remove(&self, actor: &str, number: &str) -> Result<bool> {
        let tx = self.conn.unchecked_transaction()?;
        let removed = self.remove_optout(number, API_SOURCE)?;
        if removed {
            self.record_audit(actor, "optout.remove", Some(number))?;
        }
        tx.commit()?;
        self.sync()?;
        Ok(removed)
    }

    /// Received messages for the API. With `after` (an inbox id): those with a larger id,
    /// oldest first (a cursor: pass the last id seen); without: the newest, newest first.
    pub fn api_inbox(&self, after: Option<i64>, limit: usize) -> Result<Vec<ApiInboxRow>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = match after {
            Some(_) => {
                "SELECT id, sender, body, modem, parts, incomplete, keyword, sent_at, received_at FROM inbox \
                 WHERE id > ?1 ORDER BY id LIMIT ?2"
            }
            None => {
                "SELECT id, sender, body, modem, parts, incomplete, keyword, sent_at, received_at FROM inbox \
                 WHERE ?1 IS NULL ORDER BY id DESC LIMIT ?2"
            }
        };
        let mut stmt = self.conn.prepare(sql)?;
        let rows = stmt.query_map(params![after, limit], |r| {
            Ok(ApiInboxRow {
                id: r.get(0)?,
                from: r.get(1)?,
                text: r.get(2)?,
                modem: r.get(3)?,
                parts: r.get(4)?,
                incomplete: r.get::<_, i64>(5)? != 0,
                keyword: r.get(6)?,
                sent_at: r.get(7)?,
                received_at: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The counters' truth as the store knows it (read once at daemon start).
    pub fn metrics_baseline(&self) -> Result<MetricsBaseline> {
        let one = |sql: &str| -> Result<u64> { Ok(count(self.conn.query_row(sql, [], |r| r.get(0))?)) };
        let sent = one("SELECT count(*) FROM outbox WHERE outcome = 'sent'")?;
        let received = one("SELECT count(*) FROM inbox")?;
        let parts_sent = one("SELECT count(*) FROM outbox_parts WHERE state = 'acked'")?;
        let mut stmt = self
            .conn
            .prepare("SELECT fail_reason, count(*) FROM outbox WHERE outcome = 'failed' GROUP BY fail_reason")?;
        let failed =
            stmt.query_map([], |r| Ok((r.get(0)?, count(r.get(1)?))))?.collect::<rusqlite::Result<Vec<_>>>()?;
        let mut stmt = self.conn.prepare(
            "SELECT d.forwarder, CASE WHEN a.error IS NULL AND (a.http_status IS NULL OR a.http_status BETWEEN 200 AND 299) \
             THEN 'delivered' ELSE 'failed' END AS outcome, count(*) \
             FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id GROUP BY 1, 2",
        )?;
        let forward_attempts =
            stmt.query_map([], |r| Ok(((r.get(0)?, r.get(1)?), count(r.get(2)?))))?.collect::<rusqlite::Result<_>>()?;
        let mut stmt = self.conn.prepare(
            "SELECT webhook, CASE WHEN status BETWEEN 200 AND 299 THEN 'delivered' ELSE 'failed' END, count(*) \
             FROM webhook_calls GROUP BY 1, 2",
        )?;
        let event_deliveries =
            stmt.query_map([], |r| Ok(((r.get(0)?, r.get(1)?), count(r.get(2)?))))?.collect::<rusqlite::Result<_>>()?;
        Ok(MetricsBaseline { sent, failed, received, parts_sent, forward_attempts, event_deliveries })
    }

    /// How many messages wait to be sent, and since when.
    pub fn pending_figures(&self) -> Result<PendingFigures> {
        let (n, oldest): (i64, Option<i64>) = self.conn.query_row(
            "SELECT count(*), min(created_at) FROM outbox WHERE state IN ('received','fetched','sending')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(PendingFigures { pending: count(n), oldest_created_at: oldest })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::{db, number};

    #[test]
    fn a_repeated_key_returns_the_same_message_and_another_text_under_it_conflicts() {
        let (_d, db) = db();
        let first = db.api_send("token:crm", &number(), "hi", Some("k1"), 10).unwrap();
        let ApiSendOutcome::Queued(id) = first else { panic!("{first:?}") };
        assert_eq!(
            db.api_send("token:crm", &number(), "hi", Some("k1"), 10).unwrap(),
            ApiSendOutcome::Repeated(id, OutboxState::Fetched)
        );
        assert_eq!(
            db.api_send("token:crm", &number(), "other", Some("k1"), 10).unwrap(),
            ApiSendOutcome::KeyConflict(id)
        );
        assert_eq!(db.list_outbox(&Default::default()).unwrap().len(), 1);
        assert_eq!(db.list_audit(10).unwrap().len(), 1, "one send, one audit row");
        let row = db.list_audit(1).unwrap().remove(0);
        assert_eq!((row.actor.as_str(), row.action.as_str(), row.subject), ("token:crm", "send", Some(id.to_string())));
    }

    #[test]
    fn opted_out_numbers_and_the_hourly_limit_refuse_without_queueing() {
        let (_d, db) = db();
        db.api_optout_add("token:crm", number().as_str()).unwrap();
        assert_eq!(db.api_send("t", &number(), "hi", None, 10).unwrap(), ApiSendOutcome::OptedOut);
        assert!(db.api_optout_remove("t", number().as_str()).unwrap());
        assert!(!db.api_optout_remove("t", number().as_str()).unwrap());
        assert!(matches!(db.api_send("t", &number(), "a", None, 2).unwrap(), ApiSendOutcome::Queued(_)));
        assert!(matches!(db.api_send("t", &number(), "b", None, 2).unwrap(), ApiSendOutcome::Queued(_)));
        match db.api_send("t", &number(), "c", None, 2).unwrap() {
            ApiSendOutcome::RateLimited { per_hour: 2, retry_after_s } => {
                assert!((3500..=3600).contains(&retry_after_s))
            }
            other => panic!("{other:?}"),
        }
        // Other sources do not count against the API's limit.
        db.insert_local("cli", &number(), "d").unwrap();
        assert_eq!(db.list_outbox(&Default::default()).unwrap().len(), 3);
        let actions: Vec<String> = db.list_audit(10).unwrap().into_iter().map(|a| a.action).collect();
        assert_eq!(actions, ["send", "send", "optout.remove", "optout.add"]);
    }

    #[test]
    fn the_baseline_counts_what_the_store_knows() {
        let (_d, db) = db();
        let a = db.insert_local("cli", &number(), "a").unwrap();
        db.begin_sending(a, &[crate::store::NewPart { pdu: "00".into(), tpdu_len: 1 }], None).unwrap();
        db.part_begin(a, 1, "m").unwrap();
        db.part_acked(a, 1, 1).unwrap();
        db.transition(a, OutboxState::Sent, None).unwrap();
        let b = db.insert_local("cli", &number(), "b").unwrap();
        db.cancel(b, "cancelled by operator").unwrap();
        db.insert_local("cli", &number(), "c").unwrap();
        let base = db.metrics_baseline().unwrap();
        assert_eq!((base.sent, base.parts_sent, base.received), (1, 1, 0));
        assert_eq!(base.failed, vec![(Some("cancelled by operator".to_string()), 1)]);
        // Event webhook calls: 2xx is delivered, anything else (or no answer) failed.
        db.conn
            .execute_batch(
                "INSERT INTO events (id, uid, type, created_at, data) VALUES (1, 'u1', 'sms.sent', 1, '{}'); \
                 INSERT INTO webhook_calls (event_id, webhook, at, url, request_headers, request_body, status, duration_ms) VALUES \
                   (1, 'crm', 1, 'https://crm.example/', '', '{}', 503, 5), (1, 'crm', 2, 'https://crm.example/', '', '{}', NULL, 5), \
                   (1, 'crm', 3, 'https://crm.example/', '', '{}', 204, 5);",
            )
            .unwrap();
        let events = db.metrics_baseline().unwrap().event_deliveries;
        assert_eq!(events.get(&("crm".to_string(), "failed".to_string())), Some(&2));
        assert_eq!(events.get(&("crm".to_string(), "delivered".to_string())), Some(&1));
        // Forward attempts: an answered 2xx (or a sent e-mail) is delivered; an error is failed.
        db.conn
            .execute_batch(
                "INSERT INTO inbox (id, uid, modem, sender, body, received_at) VALUES (1, 'i1', 'm', '+358401234567', 'hi', 1); \
                 INSERT INTO deliveries (id, inbox_id, forwarder, state) VALUES (1, 1, 'pbx', 'emailed'); \
                 INSERT INTO delivery_attempts (delivery_id, at, channel, http_status, error) VALUES \
                   (1, 1, 'http', 500, 'HTTP 500'), (1, 2, 'http', NULL, 'timed out'), (1, 3, 'email', NULL, NULL);",
            )
            .unwrap();
        let base = db.metrics_baseline().unwrap();
        assert_eq!(base.received, 1);
        assert_eq!(base.forward_attempts.get(&("pbx".to_string(), "failed".to_string())), Some(&2));
        assert_eq!(base.forward_attempts.get(&("pbx".to_string(), "delivered".to_string())), Some(&1));
        let pending = db.pending_figures().unwrap();
        assert_eq!(pending.pending, 1);
        assert!(pending.oldest_created_at.is_some());
    }
}
