//! Retention: the clinic's data-protection lever (`[store] keep_days`, default 90).
//!
//! What goes, for anything older than the cut-off:
//! - finished outbox messages (`reported`, `refused`, and local ones that ended `sent`/`failed`):
//!   recipient, text and the PDUs of their parts are erased; the row, its state and outcome stay
//!   (so counts and history stay true);
//! - received messages whose deliveries are all finished: sender and text, and the raw PDUs and
//!   texts of their parts, are erased; the row stays;
//! - `delivery_attempts`, `webhook_calls` and `audit` rows are deleted, events once no event
//!   webhook still has to receive them (with their calls), and the reply rate-limit stamps
//!   (`kv` `reply:<number>`), which hold numbers.
//!
//! The opt-out list is kept: it is what keeps the clinic from texting someone who said STOP.
//!
//! Work is done in batches of [`BATCH`] rows, one transaction each, so the daemon's pipeline
//! waits at most one small batch; [`Db::purge`] with `dry_run` only counts.

use rusqlite::params;
use serde::Serialize;

use super::{Db, Result, now_ms};

/// Rows per transaction.
pub const BATCH: usize = 500;

/// What a purge erased or deleted (or would, for a dry run).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PurgeCounts {
    pub outbox_erased: usize,
    pub inbox_erased: usize,
    pub attempts_deleted: usize,
    pub webhook_calls_deleted: usize,
    pub events_deleted: usize,
    pub audit_deleted: usize,
    pub reply_stamps_deleted: usize,
}

fn cutoff(keep_days: u64) -> i64 {
    let keep_ms = i64::try_from(keep_days.saturating_mul(86_400_000)).unwrap_or(i64::MAX);
    now_ms().saturating_sub(keep_ms)
}

impl PurgeCounts {
    pub fn is_empty(&self) -> bool {
        *self == PurgeCounts::default()
    }

    pub fn add(&mut self, other: &PurgeCounts) {
        self.outbox_erased += other.outbox_erased;
        self.inbox_erased += other.inbox_erased;
        self.attempts_deleted += other.attempts_deleted;
        self.webhook_calls_deleted += other.webhook_calls_deleted;
        self.events_deleted += other.events_deleted;
        self.audit_deleted += other.audit_deleted;
        self.reply_stamps_deleted += other.reply_stamps_deleted;
    }
}

const FINISHED_OUTBOX: &str = "erased_at IS NULL AND updated_at < ?1 AND \
    (state IN ('reported', 'refused') OR (state IN ('sent', 'failed') AND instance IS NULL))";
const FINISHED_INBOX: &str = "erased_at IS NULL AND received_at < ?1 AND NOT EXISTS \
    (SELECT 1 FROM deliveries d WHERE d.inbox_id = inbox.id AND d.state IN ('pending', 'emailing'))";
const SETTLED_EVENT: &str = "created_at < ?1 AND NOT EXISTS \
    (SELECT 1 FROM event_deliveries d WHERE d.event_id = events.id AND d.state = 'pending')";

impl Db {
    /// Erases and deletes what is older than `keep_days` (see the module doc); with `dry_run`,
    /// counts what would go and changes nothing. Runs batch after batch until nothing is left,
    /// calling `between` after each batch (the daemon yields there).
    pub fn purge(&self, keep_days: u64, dry_run: bool, mut between: impl FnMut()) -> Result<PurgeCounts> {
        let cutoff = cutoff(keep_days);
        if dry_run {
            return self.purge_counts(cutoff);
        }
        let mut total = PurgeCounts::default();
        loop {
            let batch = self.purge_batch(cutoff)?;
            total.add(&batch);
            if batch.is_empty() {
                return Ok(total);
            }
            between();
        }
    }

    /// One batch of [`Db::purge`] (the daemon sends one per store call, so the pipeline's jobs
    /// run between batches). All zero when nothing is left.
    pub fn purge_one_batch(&self, keep_days: u64) -> Result<PurgeCounts> {
        self.purge_batch(cutoff(keep_days))
    }

    fn purge_counts(&self, cutoff: i64) -> Result<PurgeCounts> {
        let count = |sql: &str| -> Result<usize> {
            let n: i64 = self.conn.query_row(sql, [cutoff], |r| r.get(0))?;
            Ok(usize::try_from(n).unwrap_or(0))
        };
        Ok(PurgeCounts {
            outbox_erased: count(&format!("SELECT count(*) FROM outbox WHERE {FINISHED_OUTBOX}"))?,
            inbox_erased: count(&format!("SELECT count(*) FROM inbox WHERE {FINISHED_INBOX}"))?,
            attempts_deleted: count("SELECT count(*) FROM delivery_attempts WHERE at < ?1")?,
            webhook_calls_deleted: count("SELECT count(*) FROM webhook_calls WHERE at < ?1")?,
            events_deleted: count(&format!("SELECT count(*) FROM events WHERE {SETTLED_EVENT}"))?,
            audit_deleted: count("SELECT count(*) FROM audit WHERE at < ?1")?,
            reply_stamps_deleted: count(
                "SELECT count(*) FROM kv WHERE key LIKE 'reply:%' AND CAST(value AS INTEGER) < ?1",
            )?,
        })
    }

    /// One batch of each kind, in one transaction.
    fn purge_batch(&self, cutoff: i64) -> Result<PurgeCounts> {
        let tx = self.conn.unchecked_transaction()?;
        let now = now_ms();
        let limit = BATCH as i64;
        let outbox_ids: Vec<i64> = {
            let mut stmt =
                tx.prepare(&format!("SELECT id FROM outbox WHERE {FINISHED_OUTBOX} ORDER BY id LIMIT ?2"))?;
            stmt.query_map(params![cutoff, limit], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?
        };
        for id in &outbox_ids {
            tx.execute(
                "UPDATE outbox SET recipient = NULL, body = NULL, erased_at = ?2 WHERE id = ?1",
                params![id, now],
            )?;
            tx.execute("UPDATE outbox_parts SET pdu = '' WHERE outbox_id = ?1", [id])?;
        }
        let inbox_ids: Vec<i64> = {
            let mut stmt = tx.prepare(&format!("SELECT id FROM inbox WHERE {FINISHED_INBOX} ORDER BY id LIMIT ?2"))?;
            stmt.query_map(params![cutoff, limit], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?
        };
        for id in &inbox_ids {
            tx.execute("UPDATE inbox SET sender = NULL, body = NULL, erased_at = ?2 WHERE id = ?1", params![id, now])?;
            tx.execute("UPDATE inbox_parts SET pdu = '', sender = NULL, text = NULL WHERE inbox_id = ?1", [id])?;
        }
        let delete = |table: &str| -> Result<usize> {
            Ok(tx.execute(
                &format!("DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE at < ?1 ORDER BY id LIMIT ?2)"),
                params![cutoff, limit],
            )?)
        };
        let attempts_deleted = delete("delivery_attempts")?;
        let webhook_calls_deleted = delete("webhook_calls")?;
        let audit_deleted = delete("audit")?;
        // An event goes when it is old and no webhook still has to receive it (its calls and
        // delivery rows go with it).
        let events_deleted = tx.execute(
            &format!(
                "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE {SETTLED_EVENT} ORDER BY id LIMIT ?2)"
            ),
            params![cutoff, limit],
        )?;
        let reply_stamps_deleted = tx.execute(
            "DELETE FROM kv WHERE key IN (SELECT key FROM kv WHERE key LIKE 'reply:%' AND CAST(value AS INTEGER) < ?1 LIMIT ?2)",
            params![cutoff, limit],
        )?;
        tx.commit()?;
        Ok(PurgeCounts {
            outbox_erased: outbox_ids.len(),
            inbox_erased: inbox_ids.len(),
            attempts_deleted,
            webhook_calls_deleted,
            events_deleted,
            audit_deleted,
            reply_stamps_deleted,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::{db, number};
    use crate::store::{NewInboxPart, OutboxState};

    fn insert_event(db: &Db, kind: &str, at: i64) {
        db.conn
            .execute(
                "INSERT INTO events (uid, type, created_at, data) VALUES (lower(hex(randomblob(16))), ?1, ?2, '{}')",
                params![kind, at],
            )
            .unwrap();
    }

    #[test]
    fn old_finished_messages_lose_texts_and_numbers_but_keep_their_rows() {
        let (_d, db) = db();
        let old = now_ms() - 100 * 86_400_000;
        // An old sent local message, an old message still waiting, and a recent one.
        let done = db.insert_local("cli", &number(), "old secret").unwrap();
        db.begin_sending(done, &[crate::store::NewPart { pdu: "0011AA".into(), tpdu_len: 3 }], None).unwrap();
        db.part_begin(done, 1, "m").unwrap();
        db.part_acked(done, 1, 1).unwrap();
        db.transition(done, OutboxState::Sent, None).unwrap();
        let waiting = db.insert_local("cli", &number(), "still to send").unwrap();
        let recent = db.insert_local("reply", &number(), "recent").unwrap();
        db.transition(recent, OutboxState::Failed, Some("x")).unwrap();
        db.conn.execute("UPDATE outbox SET updated_at = ?1 WHERE id IN (?2, ?3)", params![old, done, waiting]).unwrap();
        let part = NewInboxPart {
            modem: "m".into(),
            pdu: "07AA".into(),
            sender: Some("+358401234567".into()),
            text: Some("private".into()),
            ..Default::default()
        };
        db.store_inbound_part(&part, &[]).unwrap();
        db.conn.execute("UPDATE inbox SET received_at = ?1", [old]).unwrap();
        insert_event(&db, "x", old);
        db.kv_set("reply:+358401234567", &old.to_string()).unwrap();

        let dry = db.purge(90, true, || {}).unwrap();
        let expected = PurgeCounts {
            outbox_erased: 1,
            inbox_erased: 1,
            events_deleted: 1,
            reply_stamps_deleted: 1,
            ..Default::default()
        };
        assert_eq!(dry, expected);
        assert_eq!(
            db.get_outbox(done).unwrap().unwrap().body.as_deref(),
            Some("old secret"),
            "a dry run changes nothing"
        );

        assert_eq!(db.purge(90, false, || {}).unwrap(), expected);
        let d = db.get_outbox(done).unwrap().unwrap();
        assert_eq!((d.body, d.summary.recipient), (None, None));
        assert_eq!(d.summary.state, OutboxState::Sent, "the row and its outcome stay");
        assert_eq!(d.part_rows[0].pdu, "", "the PDU held the number and text");
        assert_eq!(db.get_outbox(waiting).unwrap().unwrap().body.as_deref(), Some("still to send"));
        assert_eq!(db.get_outbox(recent).unwrap().unwrap().body.as_deref(), Some("recent"));
        let m = db.get_inbox(db.list_inbox(1).unwrap()[0].id).unwrap().unwrap();
        assert_eq!((m.body, m.summary.sender.clone(), m.part_rows[0].pdu.as_str()), (None, None, ""));
        assert_eq!(db.purge(90, false, || {}).unwrap(), PurgeCounts::default(), "nothing twice");
    }

    #[test]
    fn a_large_backlog_goes_in_batches() {
        let (_d, db) = db();
        for _ in 0..(BATCH + 20) {
            insert_event(&db, "e", 0);
        }
        let mut batches = 0;
        let done = db.purge(1, false, || batches += 1).unwrap();
        assert_eq!(done.events_deleted, BATCH + 20);
        assert_eq!(batches, 2, "two batches, each its own transaction");
    }
}
