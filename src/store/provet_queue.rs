//! Store queries of the Provet worker (`outbound::provet`): which rows of an instance wait for
//! a fetch or a report, and the steps that settle them.
//!
//! Each function is one transaction, so a crash between a Provet call and the store write
//! repeats the Provet call on the next start (fetches and marks are idempotent from smshub's
//! side: a repeated mark answers 404, which settles the row).

use rusqlite::params;

use super::{Db, OutboxId, OutboxState, Result, StoreError, now_ms};
use crate::phone::PhoneNumber;

/// A row waiting for the Provet worker: its id, kind (`source`) and Provet id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvetWork {
    pub id: OutboxId,
    /// `provet`, `appointment_reminder` or `reminder`.
    pub source: String,
    pub external_id: i64,
    /// Attempts at the current stage so far (for the backoff).
    pub attempts: i64,
    /// For a report: `sent` or `failed`; for a fetch: `received`.
    pub state: OutboxState,
    /// For a failed message: why, to be passed to `mark_failed`.
    pub fail_reason: Option<String>,
}

/// What [`Db::provet_queue_fetched`] did with a listed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    /// New, stored as `fetched` (or `failed` when its number was unusable).
    New,
    /// Known and still `received` (a webhook came first): now `fetched`/`failed`.
    Completed,
    /// Already past `received`: nothing changed.
    Known,
}

const WORK_COLUMNS: &str = "id, source, external_id, attempts, state, fail_reason";

fn work_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ProvetWork> {
    let state: String = r.get(4)?;
    Ok(ProvetWork {
        id: r.get(0)?,
        source: r.get(1)?,
        external_id: r.get(2)?,
        attempts: r.get(3)?,
        state: state
            .parse()
            .map_err(|e: String| rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, e.into()))?,
        fail_reason: r.get(5)?,
    })
}

impl Db {
    /// `received` rows of `instance` whose retry time has come, oldest first.
    pub fn provet_to_fetch(&self, instance: &str, now: i64, limit: usize) -> Result<Vec<ProvetWork>> {
        self.provet_rows(instance, "state = 'received'", now, limit)
    }

    /// `sent`/`failed` rows of `instance` (Provet work, not local sends) whose retry time has
    /// come, oldest first.
    pub fn provet_to_report(&self, instance: &str, now: i64, limit: usize) -> Result<Vec<ProvetWork>> {
        let rows = self.provet_rows(instance, "state IN ('sent','failed')", now, limit)?;
        if !rows.is_empty() {
            // Provet is told these outcomes next: they must be on disk first.
            self.sync()?;
        }
        Ok(rows)
    }

    fn provet_rows(&self, instance: &str, which: &str, now: i64, limit: usize) -> Result<Vec<ProvetWork>> {
        let sql = format!(
            "SELECT {WORK_COLUMNS} FROM outbox WHERE instance = ?1 AND external_id IS NOT NULL AND {which} \
             AND (next_attempt_at IS NULL OR next_attempt_at <= ?2) ORDER BY id LIMIT ?3"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params![instance, now, limit as i64], work_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// When the next scheduled fetch or report retry of `instance` is due (unix ms), if any.
    pub fn provet_next_due(&self, instance: &str) -> Result<Option<i64>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT min(next_attempt_at) FROM outbox WHERE instance = ?1 AND external_id IS NOT NULL \
             AND state IN ('received','sent','failed') AND next_attempt_at IS NOT NULL",
            )?
            .query_row([instance], |r| r.get(0))?)
    }

    /// A message seen in Provet's list (text and number known at once): stored as `fetched`,
    /// or `failed` with `recipient`'s error. A row that is already past `received` is left alone.
    pub fn provet_queue_fetched(
        &self,
        source: &str,
        instance: &str,
        external_id: i64,
        recipient: std::result::Result<&PhoneNumber, &str>,
        body: &str,
    ) -> Result<Queued> {
        // Two steps, not one transaction (`mark_fetched` has its own): a crash in between
        // leaves a `received` row, which the fetch stage completes.
        let (id, new) = self.insert_received(source, instance, external_id)?;
        let state = self.outbox_state(id)?;
        if state != OutboxState::Received {
            return Ok(Queued::Known);
        }
        match recipient {
            Ok(number) => self.mark_fetched(id, number, body)?,
            Err(reason) => self.transition(id, OutboxState::Failed, Some(reason))?,
        }
        Ok(if new { Queued::New } else { Queued::Completed })
    }

    /// A `received` row whose content cannot be fetched for good: `failed` with `reason`, to be
    /// reported as failed.
    pub fn provet_fetch_failed(&self, id: OutboxId, reason: &str) -> Result<()> {
        self.transition(id, OutboxState::Failed, Some(reason))
    }

    /// Provet says the object is settled elsewhere (404 on fetch or mark): `reported`, with why
    /// in `last_error`, so it is neither sent nor retried.
    pub fn provet_settled(&self, id: OutboxId, why: &str) -> Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        self.transition(id, OutboxState::Reported, None)?;
        tx.execute("UPDATE outbox SET last_error = ?2, updated_at = ?3 WHERE id = ?1", params![id, why, now_ms()])?;
        tx.commit()?;
        Ok(())
    }

    /// The report reached Provet (or there is nothing to report): `sent`/`failed` → `reported`.
    pub fn provet_reported(&self, id: OutboxId) -> Result<()> {
        self.transition(id, OutboxState::Reported, None)
    }

    fn outbox_state(&self, id: OutboxId) -> Result<OutboxState> {
        let state: String = self.conn.query_row("SELECT state FROM outbox WHERE id = ?1", [id], |r| r.get(0))?;
        state
            .parse()
            .map_err(|e: String| StoreError::Sql(rusqlite::Error::InvalidColumnType(0, e, rusqlite::types::Type::Text)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::OutboxFilter;

    use crate::store::test_support::db;

    use crate::store::test_support::number;

    #[test]
    fn listed_messages_are_queued_once_and_complete_a_webhook_row() {
        let (_d, db) = db();
        assert_eq!(db.provet_queue_fetched("provet", "h", 1, Ok(&number()), "a").unwrap(), Queued::New);
        assert_eq!(db.provet_queue_fetched("provet", "h", 1, Ok(&number()), "a").unwrap(), Queued::Known);
        let (id, _) = db.insert_received("provet", "h", 2).unwrap();
        assert_eq!(db.provet_queue_fetched("provet", "h", 2, Ok(&number()), "b").unwrap(), Queued::Completed);
        let d = db.get_outbox(id).unwrap().unwrap();
        assert_eq!(d.summary.state, OutboxState::Fetched);
        assert_eq!(d.body.as_deref(), Some("b"));
        assert_eq!(db.provet_queue_fetched("provet", "h", 3, Err("bad number"), "c").unwrap(), Queued::New);
        let failed = db.list_outbox(&OutboxFilter { state: Some(OutboxState::Failed), ..Default::default() }).unwrap();
        assert_eq!(failed[0].fail_reason.as_deref(), Some("bad number"));
    }

    #[test]
    fn fetch_and_report_queues_belong_to_one_instance_and_honour_retry_times() {
        let (_d, db) = db();
        let (a, _) = db.insert_received("provet", "h", 1).unwrap();
        let (_b, _) = db.insert_received("provet", "e", 1).unwrap();
        let local = db.insert_local("cli", &number(), "x").unwrap();
        db.cancel(local, "x").unwrap();
        let fetch = db.provet_to_fetch("h", now_ms(), 10).unwrap();
        assert_eq!(fetch.iter().map(|w| w.id).collect::<Vec<_>>(), [a]);
        db.schedule_retry(a, "503", now_ms() + 60_000).unwrap();
        assert!(db.provet_to_fetch("h", now_ms(), 10).unwrap().is_empty(), "not before its retry time");
        assert!(db.provet_next_due("h").unwrap().is_some());
        db.provet_fetch_failed(a, "HTTP 403").unwrap();
        let report = db.provet_to_report("h", now_ms(), 10).unwrap();
        assert_eq!(report.len(), 1, "the local message is not Provet's to report");
        assert_eq!((report[0].state, report[0].fail_reason.as_deref()), (OutboxState::Failed, Some("HTTP 403")));
        db.provet_reported(a).unwrap();
        assert!(db.provet_to_report("h", now_ms(), 10).unwrap().is_empty());
    }

    #[test]
    fn a_settled_row_is_reported_with_the_reason() {
        let (_d, db) = db();
        let (a, _) = db.insert_received("provet", "h", 1).unwrap();
        db.provet_settled(a, "Provet answered 404: already marked").unwrap();
        let d = db.get_outbox(a).unwrap().unwrap();
        assert_eq!(d.summary.state, OutboxState::Reported);
        assert!(d.summary.last_error.unwrap().contains("404"));
    }
}
