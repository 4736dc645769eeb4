//! The Provet reminders button: each verified request (instance, timestamp, verification) is
//! accepted once, and all the reminders it selects are queued in the same transaction.

use rusqlite::params;

use super::{Db, Result, now_ms};

/// What became of a button request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ButtonOutcome {
    /// Queued; the ids that were new (a reminder queued by an earlier click is not queued again).
    Queued { new: Vec<i64> },
    /// This exact request was accepted before: nothing queued.
    Replayed,
}

impl Db {
    /// Accepts the request `(instance, timestamp, verification)` once and queues `ids` of
    /// `source` (`appointment_reminder` or `reminder`) as `received` rows, all in one
    /// transaction. Remembered requests older than `keep_ms` are forgotten first (by then their
    /// timestamp is stale and the check refuses them anyway).
    pub fn queue_button_request(
        &self,
        instance: &str,
        timestamp: &str,
        verification: &str,
        source: &str,
        ids: &[i64],
        keep_ms: i64,
    ) -> Result<ButtonOutcome> {
        let now = now_ms();
        let tx = self.conn.unchecked_transaction()?;
        tx.execute("DELETE FROM button_requests WHERE seen_at < ?1", [now.saturating_sub(keep_ms)])?;
        let first = tx.execute(
            "INSERT OR IGNORE INTO button_requests (instance, timestamp, verification, seen_at) VALUES (?1, ?2, ?3, ?4)",
            params![instance, timestamp, verification.to_ascii_lowercase(), now],
        )?;
        if first == 0 {
            return Ok(ButtonOutcome::Replayed);
        }
        let mut new = Vec::new();
        for id in ids {
            let (_, is_new) = self.insert_received(source, instance, *id)?;
            if is_new {
                new.push(*id);
            }
        }
        tx.commit()?;
        self.sync()?;
        Ok(ButtonOutcome::Queued { new })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::OutboxFilter;
    use crate::store::test_support::db;

    #[test]
    fn a_request_is_accepted_once_and_queues_all_its_ids_together() {
        let (_d, db) = db();
        let hour = 3_600_000;
        let first = db.queue_button_request("hki", "1700000000", "abc", "reminder", &[1, 2, 3], hour).unwrap();
        assert_eq!(first, ButtonOutcome::Queued { new: vec![1, 2, 3] });
        let again = db.queue_button_request("hki", "1700000000", "ABC", "reminder", &[4], hour).unwrap();
        assert_eq!(again, ButtonOutcome::Replayed, "the same pair is refused, whatever ids it now carries");
        let other = db.queue_button_request("espoo", "1700000000", "abc", "reminder", &[1], hour).unwrap();
        assert_eq!(other, ButtonOutcome::Queued { new: vec![1] }, "another instance is another request");
        let next = db.queue_button_request("hki", "1700000060", "def", "reminder", &[3, 5], hour).unwrap();
        assert_eq!(next, ButtonOutcome::Queued { new: vec![5] }, "a reminder already queued is not queued twice");
        assert_eq!(db.list_outbox(&OutboxFilter::default()).unwrap().len(), 5);
    }

    #[test]
    fn remembered_requests_are_forgotten_after_the_window() {
        let (_d, db) = db();
        db.queue_button_request("hki", "1", "abc", "reminder", &[1], 60_000).unwrap();
        // A window of zero forgets everything older than now.
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(
            db.queue_button_request("hki", "1", "abc", "reminder", &[1], 0).unwrap(),
            ButtonOutcome::Queued { new: vec![] }
        );
    }
}
