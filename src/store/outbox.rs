//! Outbox queries: messages to send and their parts.

use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;

use super::{Db, EventType, OutboxState, PartState, Result, StoreError, now_ms};
use crate::phone::PhoneNumber;

/// The row id of an outbox message.
pub type OutboxId = i64;

/// One encoded part, ready for AT+CMGS.
#[derive(Debug, Clone)]
pub struct NewPart {
    pub pdu: String,
    pub tpdu_len: usize,
}

/// A line of `smshub outbox list`.
#[derive(Debug, Clone, Serialize)]
pub struct OutboxSummary {
    pub id: OutboxId,
    pub source: String,
    pub instance: Option<String>,
    pub external_id: Option<i64>,
    pub recipient: Option<String>,
    pub state: OutboxState,
    pub outcome: Option<String>,
    pub fail_reason: Option<String>,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub parts: i64,
    pub parts_acked: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One part as stored.
#[derive(Debug, Clone, Serialize)]
pub struct PartRow {
    pub seq: i64,
    pub state: PartState,
    pub tpdu_len: i64,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub modem: Option<String>,
    pub message_ref: Option<i64>,
    pub acked_at: Option<i64>,
    pub delivery_status: Option<i64>,
    pub delivered_at: Option<i64>,
    pub pdu: String,
}

/// `smshub outbox show`: the message, its body and its parts.
#[derive(Debug, Clone, Serialize)]
pub struct OutboxDetail {
    #[serde(flatten)]
    pub summary: OutboxSummary,
    pub body: Option<String>,
    pub concat_ref: Option<i64>,
    pub next_attempt_at: Option<i64>,
    pub part_rows: Vec<PartRow>,
}

/// One modem's work over a period (`/status`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ModemFigures {
    /// Messages whose last part this modem sent, ended `sent`.
    pub sent: i64,
    /// Messages that failed after this modem had a part of them (a failure before any part
    /// reached a modem, e.g. an opted-out recipient, belongs to none).
    pub failed: i64,
    /// Messages it received.
    pub received: i64,
}

/// Which messages `list_outbox` returns.
#[derive(Debug, Clone, Default)]
pub struct OutboxFilter {
    pub state: Option<OutboxState>,
    /// Exactly this source (`provet`, `ui`, `reply`, ...).
    pub source: Option<String>,
    /// Recipients containing this text (digits of a number, `+358`).
    pub number: Option<String>,
    pub limit: Option<usize>,
}

const SUMMARY_COLUMNS: &str = "o.id, o.source, o.instance, o.external_id, o.recipient, o.state, o.outcome, o.fail_reason, \
     o.attempts, o.last_error, o.created_at, o.updated_at, \
     (SELECT count(*) FROM outbox_parts p WHERE p.outbox_id = o.id), \
     (SELECT count(*) FROM outbox_parts p WHERE p.outbox_id = o.id AND p.state = 'acked')";

fn summary_from_row(r: &Row<'_>) -> rusqlite::Result<OutboxSummary> {
    let state: String = r.get(5)?;
    Ok(OutboxSummary {
        id: r.get(0)?,
        source: r.get(1)?,
        instance: r.get(2)?,
        external_id: r.get(3)?,
        recipient: r.get(4)?,
        state: state
            .parse()
            .map_err(|e: String| rusqlite::Error::FromSqlConversionFailure(5, rusqlite::types::Type::Text, e.into()))?,
        outcome: r.get(6)?,
        fail_reason: r.get(7)?,
        attempts: r.get(8)?,
        last_error: r.get(9)?,
        created_at: r.get(10)?,
        updated_at: r.get(11)?,
        parts: r.get(12)?,
        parts_acked: r.get(13)?,
    })
}

/// The modem the number `?N` last texted (newest inbox row), as an SQL expression for the
/// `via_modem` of a message to that number: an outbound message to a number that last texted
/// modem X prefers X, so the client sees one clinic number. Uses `inbox_by_sender`.
pub(super) fn last_modem_of(param: &str) -> String {
    format!("(SELECT modem FROM inbox WHERE sender = {param} ORDER BY id DESC LIMIT 1)")
}

impl Db {
    /// Queues a message whose text and number are known (CLI `send`, TwiML and keyword
    /// replies): it starts in `fetched`.
    pub fn insert_local(&self, source: &str, recipient: &PhoneNumber, body: &str) -> Result<OutboxId> {
        let now = now_ms();
        let sql = format!(
            "INSERT INTO outbox (source, recipient, body, state, created_at, updated_at, via_modem) \
             VALUES (?1, ?2, ?3, 'fetched', ?4, ?4, {})",
            last_modem_of("?2")
        );
        self.conn.prepare_cached(&sql)?.execute(params![source, recipient.as_str(), body, now])?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Records that Provet instance `instance` has work `external_id` of kind `source`. Returns
    /// the id and whether it was new; a repeated webhook for the same id changes nothing.
    pub fn insert_received(&self, source: &str, instance: &str, external_id: i64) -> Result<(OutboxId, bool)> {
        let now = now_ms();
        let inserted = self.conn.execute(
            "INSERT OR IGNORE INTO outbox (source, instance, external_id, state, created_at, updated_at) VALUES (?1, ?2, ?3, 'received', ?4, ?4)",
            params![source, instance, external_id, now],
        )?;
        let id: i64 = self.conn.query_row(
            "SELECT id FROM outbox WHERE source = ?1 AND instance = ?2 AND external_id = ?3",
            params![source, instance, external_id],
            |r| r.get(0),
        )?;
        // The webhook is answered next: accepted work must be on disk.
        self.sync_outside_tx()?;
        Ok((id, inserted == 1))
    }

    fn state_of(&self, id: OutboxId) -> Result<OutboxState> {
        let state: Option<String> =
            self.conn.query_row("SELECT state FROM outbox WHERE id = ?1", [id], |r| r.get(0)).optional()?;
        let state = state.ok_or(StoreError::NotFound(id))?;
        state
            .parse()
            .map_err(|e: String| StoreError::Sql(rusqlite::Error::InvalidColumnType(0, e, rusqlite::types::Type::Text)))
    }

    /// Moves message `id` to `to` if the state machine allows it from its current state;
    /// `reason` is recorded for `failed`. Resets the per-stage attempt counter.
    /// Reaching `sent` or `failed` writes `sms.sent` / `sms.failed` in the same transaction.
    pub fn transition(&self, id: OutboxId, to: OutboxState, reason: Option<&str>) -> Result<()> {
        self.atomically(|| self.transition_now(id, to, reason))
    }

    fn transition_now(&self, id: OutboxId, to: OutboxState, reason: Option<&str>) -> Result<()> {
        let from = self.state_of(id)?;
        if !from.can_become(to) {
            return Err(StoreError::IllegalTransition { id, from, to });
        }
        if to == OutboxState::Sent {
            // Never a false success (the schema's trigger says the same): every part acked.
            let (parts, left): (i64, i64) = self.conn.query_row(
                "SELECT count(*), count(*) FILTER (WHERE state <> 'acked') FROM outbox_parts WHERE outbox_id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            if parts == 0 || left > 0 {
                return Err(StoreError::PartsNotAcked { id, left: left.max(1) });
            }
        }
        let outcome = match to {
            OutboxState::Sent => Some("sent"),
            OutboxState::Failed => Some("failed"),
            _ => None,
        };
        let now = now_ms();
        match to {
            OutboxState::Sent | OutboxState::Failed | OutboxState::Fetched => {
                self.conn.execute(
                    "UPDATE outbox SET state = ?2, outcome = ?3, fail_reason = ?4, attempts = 0, next_attempt_at = NULL, updated_at = ?5 WHERE id = ?1",
                    params![id, to.as_str(), outcome, reason, now],
                )?;
            }
            _ => {
                self.conn.execute(
                    "UPDATE outbox SET state = ?2, attempts = 0, next_attempt_at = NULL, updated_at = ?3 WHERE id = ?1",
                    params![id, to.as_str(), now],
                )?;
            }
        }
        match to {
            OutboxState::Sent => self.emit_outbox_outcome(id, EventType::SmsSent),
            OutboxState::Failed => self.emit_outbox_outcome(id, EventType::SmsFailed),
            _ => Ok(()),
        }
    }

    /// Stores the text and number of a received message: `received → fetched`.
    pub fn mark_fetched(&self, id: OutboxId, recipient: &PhoneNumber, body: &str) -> Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        self.transition(id, OutboxState::Fetched, None)?;
        let sql =
            format!("UPDATE outbox SET recipient = ?2, body = ?3, via_modem = {} WHERE id = ?1", last_modem_of("?2"));
        tx.execute(&sql, params![id, recipient.as_str(), body])?;
        tx.commit()?;
        Ok(())
    }

    /// `fetched → sending`, storing the encoded parts and their concatenation reference the
    /// first time. On a later pass (after a retry) the existing parts are kept, so acknowledged
    /// parts are never sent again and the reference stays the same.
    pub fn begin_sending(&self, id: OutboxId, parts: &[NewPart], concat_ref: Option<u8>) -> Result<()> {
        self.atomically(|| self.store_parts(id, parts, concat_ref)).map(|_| ())
    }

    /// [`Db::begin_sending`] and, when the parts were stored just now, [`Db::part_begin`] of part 1
    /// for `modem`, in one transaction, synced before it returns (the PDU is written next). Returns
    /// whether part 1 is now `sending`; when the parts were already there (a later pass) nothing
    /// is begun and the caller begins its parts one by one as usual.
    ///
    /// One durable commit where there were two: the parts' page and its index were written twice,
    /// once as `pending` and once as `sending` (issue 16; ARCHITECTURE.md, "Syncs where a side
    /// effect depends on them"). [`Db::part_unbegin`] undoes the begin if the PDU is not written.
    pub fn begin_sending_first_part(
        &self,
        id: OutboxId,
        parts: &[NewPart],
        concat_ref: Option<u8>,
        modem: &str,
    ) -> Result<bool> {
        let begun = self.atomically(|| {
            if !self.store_parts(id, parts, concat_ref)? || parts.is_empty() {
                return Ok(false);
            }
            self.mark_part_sending(id, 1, modem)?;
            Ok(true)
        })?;
        self.sync_outside_tx()?;
        Ok(begun)
    }

    /// `→ sending`, and the parts stored unless the message has some already. Returns whether
    /// they were stored now. Call inside a transaction.
    fn store_parts(&self, id: OutboxId, parts: &[NewPart], concat_ref: Option<u8>) -> Result<bool> {
        self.transition(id, OutboxState::Sending, None)?;
        let existing: i64 =
            self.conn.query_row("SELECT count(*) FROM outbox_parts WHERE outbox_id = ?1", [id], |r| r.get(0))?;
        if existing > 0 {
            return Ok(false);
        }
        for (i, p) in parts.iter().enumerate() {
            self.conn.execute(
                "INSERT INTO outbox_parts (outbox_id, seq, pdu, tpdu_len, state) VALUES (?1, ?2, ?3, ?4, 'pending')",
                params![id, i as i64 + 1, p.pdu, p.tpdu_len as i64],
            )?;
        }
        self.conn.execute("UPDATE outbox SET concat_ref = ?2 WHERE id = ?1", params![id, concat_ref.map(i64::from)])?;
        Ok(true)
    }

    /// Marks part `seq` as handed to the modem (before the PDU is written). Refused unless
    /// the message is `sending` and the part is `pending`, so a part is never sent twice.
    pub fn part_begin(&self, id: OutboxId, seq: i64, modem: &str) -> Result<()> {
        self.mark_part_sending(id, seq, modem)?;
        // The PDU is written next: `sending` (and every commit before it) must be on disk first.
        self.sync_outside_tx()
    }

    fn mark_part_sending(&self, id: OutboxId, seq: i64, modem: &str) -> Result<()> {
        let changed = self.conn.execute(
            "UPDATE outbox_parts SET state = 'sending', modem = ?3, attempts = attempts + 1 \
             WHERE outbox_id = ?1 AND seq = ?2 AND state = 'pending' \
             AND (SELECT state FROM outbox WHERE id = ?1) = 'sending'",
            params![id, seq, modem],
        )?;
        if changed != 1 {
            let from = self.state_of(id)?;
            return Err(StoreError::IllegalTransition { id, from, to: OutboxState::Sending });
        }
        Ok(())
    }

    /// Part `seq`, begun but never handed to the modem (the daemon is stopping), is `pending` again
    /// and its attempt is not counted.
    pub fn part_unbegin(&self, id: OutboxId, seq: i64) -> Result<()> {
        self.conn.execute(
            "UPDATE outbox_parts SET state = 'pending', attempts = max(attempts - 1, 0) \
             WHERE outbox_id = ?1 AND seq = ?2 AND state = 'sending'",
            params![id, seq],
        )?;
        Ok(())
    }

    /// The modem acknowledged part `seq` with message reference `mr`.
    pub fn part_acked(&self, id: OutboxId, seq: i64, mr: u8) -> Result<()> {
        self.conn.execute(
            "UPDATE outbox_parts SET state = 'acked', message_ref = ?3, acked_at = ?4, last_error = NULL \
             WHERE outbox_id = ?1 AND seq = ?2 AND state = 'sending'",
            params![id, seq, i64::from(mr), now_ms()],
        )?;
        Ok(())
    }

    /// [`Db::part_acked`], and when that was the message's last unacknowledged part, `→ sent` and
    /// the claim of `modem` released, in the same transaction (one commit where three were: the
    /// SD card's bytes, see `durability.rs`). Returns whether the message is now `sent`.
    pub fn part_acked_finishing(&self, id: OutboxId, seq: i64, mr: u8, modem: &str) -> Result<bool> {
        self.atomically(|| {
            self.part_acked(id, seq, mr)?;
            let left: i64 = self.conn.query_row(
                "SELECT count(*) FROM outbox_parts WHERE outbox_id = ?1 AND state <> 'acked'",
                [id],
                |r| r.get(0),
            )?;
            if left > 0 {
                return Ok(false);
            }
            self.transition(id, OutboxState::Sent, None)?;
            self.release_claim(id, modem)?;
            Ok(true)
        })
    }

    /// Part `seq` was refused before the network took it: back to `pending` for a retry
    /// (`permanent = false`) or `failed`.
    pub fn part_refused(&self, id: OutboxId, seq: i64, error: &str, permanent: bool) -> Result<()> {
        let state = if permanent { "failed" } else { "pending" };
        self.conn.execute(
            "UPDATE outbox_parts SET state = ?3, last_error = ?4 WHERE outbox_id = ?1 AND seq = ?2 AND state = 'sending'",
            params![id, seq, state, error],
        )?;
        Ok(())
    }

    /// Part `seq` may or may not have gone out (timeout after the PDU was written).
    pub fn part_unknown(&self, id: OutboxId, seq: i64, error: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE outbox_parts SET state = 'unknown', last_error = ?3 WHERE outbox_id = ?1 AND seq = ?2 AND state = 'sending'",
            params![id, seq, error],
        )?;
        Ok(())
    }

    /// At start-up: parts left in `sending` were in the crash window; they become `unknown`.
    /// Returns how many.
    pub fn recover_interrupted_parts(&self) -> Result<usize> {
        Ok(self.conn.execute(
            "UPDATE outbox_parts SET state = 'unknown', last_error = 'smshub stopped while the modem had this part; it may or may not have been sent' WHERE state = 'sending'",
            [],
        )?)
    }

    /// At the start of a pass over message `id` (claimed, so no sender is working on it): a part
    /// still `sending` was in a pass that ended without recording the modem's answer (a store
    /// write failed); it may or may not have gone out, so it becomes `unknown`. Returns how many.
    pub fn unfinished_parts_unknown(&self, id: OutboxId) -> Result<usize> {
        Ok(self.conn.execute(
            "UPDATE outbox_parts SET state = 'unknown', \
             last_error = 'an earlier pass ended before the answer of the modem was recorded; it may or may not have been sent' \
             WHERE outbox_id = ?1 AND state = 'sending'",
            [id],
        )?)
    }

    /// The operator's retry: `failed → fetched`; parts that failed or whose outcome is unknown
    /// go back to `pending`, acknowledged parts stay acknowledged.
    pub fn retry(&self, id: OutboxId) -> Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        self.transition(id, OutboxState::Fetched, None)?;
        tx.execute(
            "UPDATE outbox_parts SET state = 'pending', attempts = 0 WHERE outbox_id = ?1 AND state IN ('failed','unknown')",
            [id],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The operator's cancel: the message becomes `failed` with `reason`, if it is not yet
    /// sent and no part is in the modem's hands right now.
    pub fn cancel(&self, id: OutboxId, reason: &str) -> Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        let in_modem: i64 =
            tx.query_row("SELECT count(*) FROM outbox_parts WHERE outbox_id = ?1 AND state = 'sending'", [id], |r| {
                r.get(0)
            })?;
        if in_modem > 0 {
            let from = self.state_of(id)?;
            return Err(StoreError::IllegalTransition { id, from, to: OutboxState::Failed });
        }
        self.transition(id, OutboxState::Failed, Some(reason))?;
        tx.commit()?;
        Ok(())
    }

    /// Claims the next message `modem` may work on: `fetched`, or `sending` with parts left,
    /// whose retry time has come and that no sender holds. Messages that should leave through
    /// `modem` (`via_modem`) come first, then the oldest; a message meant for another modem is
    /// taken only when that modem is not in `healthy_others` (the other modems that are ready,
    /// or were until a moment ago), so a message never waits on a modem that is gone. One
    /// statement, so the claim is atomic: two senders (or two processes) can never take the
    /// same message.
    pub fn claim_next(&self, modem: &str, healthy_others: &[&str], now: i64) -> Result<Option<OutboxId>> {
        let mut stmt = self.conn.prepare_cached(
            "UPDATE outbox SET claimed_by = ?1 WHERE id = (\
               SELECT id FROM outbox WHERE state IN ('fetched','sending') AND claimed_by IS NULL \
               AND (next_attempt_at IS NULL OR next_attempt_at <= ?2) \
               AND (via_modem IS NULL OR via_modem = ?1 OR via_modem NOT IN (SELECT value FROM json_each(?3))) \
               ORDER BY via_modem IS ?1 DESC, id LIMIT 1) \
             RETURNING id",
        )?;
        let others = serde_json::to_string(healthy_others).unwrap_or_else(|_| "[]".into());
        Ok(stmt.query_row(params![modem, now, others], |r| r.get(0)).optional()?)
    }

    /// Gives message `id` back, if `modem` holds it.
    pub fn release_claim(&self, id: OutboxId, modem: &str) -> Result<()> {
        self.conn
            .execute("UPDATE outbox SET claimed_by = NULL WHERE id = ?1 AND claimed_by = ?2", params![id, modem])?;
        Ok(())
    }

    /// Frees every claim: at start, no sender of a previous run is working on anything any more.
    pub fn release_all_claims(&self) -> Result<usize> {
        Ok(self.conn.execute("UPDATE outbox SET claimed_by = NULL WHERE claimed_by IS NOT NULL", [])?)
    }

    /// When the next scheduled retry of a sendable message is due (unix ms), if any.
    pub fn next_send_due(&self) -> Result<Option<i64>> {
        Ok(self.conn.prepare_cached(
            "SELECT min(next_attempt_at) FROM outbox WHERE state IN ('fetched','sending') AND next_attempt_at IS NOT NULL",
        )?
        .query_row([], |r| r.get(0))?)
    }

    /// Records a failed attempt at the current stage and when to try again; returns the
    /// number of attempts so far.
    pub fn schedule_retry(&self, id: OutboxId, error: &str, retry_at: i64) -> Result<i64> {
        self.conn.execute(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?2, next_attempt_at = ?3, updated_at = ?4 WHERE id = ?1",
            params![id, error, retry_at, now_ms()],
        )?;
        Ok(self.conn.query_row("SELECT attempts FROM outbox WHERE id = ?1", [id], |r| r.get(0))?)
    }

    /// Puts parts whose outcome is unknown back to `pending` (the `resend` policy).
    pub fn requeue_unknown_parts(&self, id: OutboxId) -> Result<usize> {
        Ok(self
            .conn
            .execute("UPDATE outbox_parts SET state = 'pending' WHERE outbox_id = ?1 AND state = 'unknown'", [id])?)
    }

    /// Whether the clinic has sent anything to `number` through this box (auto-replies not
    /// counted): smshub's notion of a "known" sender, as it has no client list.
    pub fn has_sent_to(&self, number: &str) -> Result<bool> {
        let n: i64 = self.conn.query_row(
            "SELECT count(*) FROM outbox WHERE recipient = ?1 AND source NOT IN ('reply', 'optout_confirmation')",
            [number],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    }

    /// How many messages are in each state (for the status page).
    pub fn outbox_counts(&self) -> Result<std::collections::BTreeMap<String, i64>> {
        let mut stmt = self.conn.prepare("SELECT state, count(*) FROM outbox GROUP BY state")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Each modem's sent, failed and received messages since `since` (unix ms). A message
    /// belongs to the modem of its last part that reached a modem (the one that finished it
    /// after a hand-over). Reads only; scans the outbox rows finished since then.
    pub fn modem_figures_since(&self, since: i64) -> Result<std::collections::BTreeMap<String, ModemFigures>> {
        let mut out = std::collections::BTreeMap::<String, ModemFigures>::new();
        let mut stmt = self.conn.prepare_cached(
            "SELECT (SELECT p.modem FROM outbox_parts p WHERE p.outbox_id = o.id AND p.modem IS NOT NULL \
                     ORDER BY p.seq DESC LIMIT 1) AS m, o.outcome, count(*) \
             FROM outbox o WHERE o.outcome IS NOT NULL AND o.updated_at >= ?1 GROUP BY m, o.outcome",
        )?;
        let rows = stmt.query_map([since], |r| {
            Ok((r.get::<_, Option<String>>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?))
        })?;
        for row in rows {
            let (modem, outcome, n) = row?;
            let Some(modem) = modem else { continue };
            let f = out.entry(modem).or_default();
            if outcome == "sent" {
                f.sent += n;
            } else {
                f.failed += n;
            }
        }
        let mut stmt =
            self.conn.prepare_cached("SELECT modem, count(*) FROM inbox WHERE received_at >= ?1 GROUP BY modem")?;
        let rows = stmt.query_map([since], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        for row in rows {
            let (modem, n) = row?;
            out.entry(modem).or_default().received += n;
        }
        Ok(out)
    }

    /// Messages, newest first.
    pub fn list_outbox(&self, filter: &OutboxFilter) -> Result<Vec<OutboxSummary>> {
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS} FROM outbox o WHERE (?1 IS NULL OR o.state = ?1) AND (?3 IS NULL OR o.source = ?3) \
             AND (?4 IS NULL OR instr(o.recipient, ?4) > 0) ORDER BY o.id DESC LIMIT ?2"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let limit = filter.limit.map(|l| l as i64).unwrap_or(-1);
        let rows = stmt.query_map(
            params![filter.state.map(|s| s.as_str()), limit, filter.source, filter.number],
            summary_from_row,
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// One message with its body and parts.
    pub fn get_outbox(&self, id: OutboxId) -> Result<Option<OutboxDetail>> {
        let sql =
            format!("SELECT {SUMMARY_COLUMNS}, o.body, o.concat_ref, o.next_attempt_at FROM outbox o WHERE o.id = ?1");
        let found = self
            .conn
            .query_row(&sql, [id], |r| Ok((summary_from_row(r)?, r.get(14)?, r.get(15)?, r.get(16)?)))
            .optional()?;
        let Some((summary, body, concat_ref, next_attempt_at)) = found else {
            return Ok(None);
        };
        let mut stmt = self.conn.prepare(
            "SELECT seq, state, tpdu_len, attempts, last_error, modem, message_ref, acked_at, delivery_status, pdu, delivered_at \
             FROM outbox_parts WHERE outbox_id = ?1 ORDER BY seq",
        )?;
        let part_rows = stmt
            .query_map([id], |r| {
                let state: String = r.get(1)?;
                Ok(PartRow {
                    seq: r.get(0)?,
                    state: state.parse().map_err(|e: String| {
                        rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, e.into())
                    })?,
                    tpdu_len: r.get(2)?,
                    attempts: r.get(3)?,
                    last_error: r.get(4)?,
                    modem: r.get(5)?,
                    message_ref: r.get(6)?,
                    acked_at: r.get(7)?,
                    delivery_status: r.get(8)?,
                    pdu: r.get(9)?,
                    delivered_at: r.get(10)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(Some(OutboxDetail { summary, body, concat_ref, next_attempt_at, part_rows }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::test_support::db;

    use crate::store::test_support::number;

    fn parts(n: usize) -> Vec<NewPart> {
        (0..n).map(|i| NewPart { pdu: format!("00{i:02X}"), tpdu_len: 1 }).collect()
    }

    #[test]
    fn a_repeated_provet_id_is_stored_once() {
        let (_d, db) = db();
        let (a, new_a) = db.insert_received("provet", "helsinki", 123).unwrap();
        let (b, new_b) = db.insert_received("provet", "helsinki", 123).unwrap();
        let (c, new_c) = db.insert_received("provet", "espoo", 123).unwrap();
        assert!(new_a && !new_b && new_c);
        assert_eq!(a, b);
        assert_ne!(a, c, "the key is (instance, id)");
        assert_eq!(db.list_outbox(&OutboxFilter::default()).unwrap().len(), 2);
    }

    #[test]
    fn illegal_transitions_are_rejected_and_change_nothing() {
        let (_d, db) = db();
        let (id, _) = db.insert_received("provet", "x", 1).unwrap();
        let err = db.begin_sending(id, &parts(1), None).unwrap_err();
        assert!(
            matches!(err, StoreError::IllegalTransition { from: OutboxState::Received, to: OutboxState::Sending, .. }),
            "{err}"
        );
        assert_eq!(db.get_outbox(id).unwrap().unwrap().part_rows.len(), 0, "the rejected step stored no parts");
        db.mark_fetched(id, &number(), "hello").unwrap();
        db.begin_sending(id, &parts(1), None).unwrap();
        db.part_begin(id, 1, "main").unwrap();
        db.part_acked(id, 1, 7).unwrap();
        db.transition(id, OutboxState::Sent, None).unwrap();
        let err = db.transition(id, OutboxState::Failed, Some("x")).unwrap_err();
        assert!(err.to_string().contains("is sent; it cannot become failed"), "{err}");
        db.transition(id, OutboxState::Reported, None).unwrap();
        assert!(db.retry(id).is_err(), "a reported message cannot be retried");
        assert!(matches!(db.transition(999, OutboxState::Sent, None), Err(StoreError::NotFound(999))));
    }

    #[test]
    fn the_first_part_is_begun_with_the_parts_only_when_they_are_stored_now() {
        let (_d, db) = db();
        let id = db.insert_local("cli", &number(), "two parts").unwrap();
        assert!(db.begin_sending_first_part(id, &parts(2), Some(5), "a").unwrap());
        let detail = db.get_outbox(id).unwrap().unwrap();
        assert_eq!(detail.summary.state, OutboxState::Sending);
        let rows: Vec<_> = detail.part_rows.iter().map(|p| (p.seq, p.state, p.modem.clone(), p.attempts)).collect();
        assert_eq!(rows, [(1, PartState::Sending, Some("a".into()), 1), (2, PartState::Pending, None, 0)]);
        assert!(db.part_begin(id, 1, "a").is_err(), "a begun part is not begun twice");
        // Not handed to the modem after all (a stop): pending again, the attempt not counted.
        db.part_unbegin(id, 1).unwrap();
        db.part_unbegin(id, 2).unwrap();
        let rows: Vec<_> =
            db.get_outbox(id).unwrap().unwrap().part_rows.iter().map(|p| (p.state, p.attempts)).collect();
        assert_eq!(rows, [(PartState::Pending, 0), (PartState::Pending, 0)], "a pending part is left as it is");
        db.part_begin(id, 1, "a").unwrap();

        // A later pass (after a retry) keeps the stored parts and begins nothing.
        db.part_refused(id, 1, "refused", true).unwrap();
        db.transition(id, OutboxState::Failed, Some("part 1 refused")).unwrap();
        db.retry(id).unwrap();
        assert!(!db.begin_sending_first_part(id, &parts(3), Some(6), "b").unwrap());
        let rows: Vec<_> =
            db.get_outbox(id).unwrap().unwrap().part_rows.iter().map(|p| (p.state, p.modem.clone())).collect();
        assert_eq!(
            rows,
            [(PartState::Pending, Some("a".into())), (PartState::Pending, None)],
            "the first pass's parts"
        );

        // Refused as a whole: nothing stored, nothing begun.
        let received = db.insert_received("provet", "i", 1).unwrap().0;
        assert!(db.begin_sending_first_part(received, &parts(1), None, "a").is_err());
        assert!(db.get_outbox(received).unwrap().unwrap().part_rows.is_empty());
        assert_eq!(db.get_outbox(received).unwrap().unwrap().summary.state, OutboxState::Received);
        // No parts at all: nothing to begin.
        let empty = db.insert_local("cli", &number(), "x").unwrap();
        assert!(!db.begin_sending_first_part(empty, &[], None, "a").unwrap());
    }

    #[test]
    fn a_claimed_message_is_not_claimed_again_until_released() {
        let (_d, db) = db();
        let a = db.insert_local("cli", &number(), "a").unwrap();
        let b = db.insert_local("cli", &number(), "b").unwrap();
        let later = db.insert_local("cli", &number(), "c").unwrap();
        db.schedule_retry(later, "busy", now_ms() + 60_000).unwrap();
        assert_eq!(db.claim_next("m1", &[], now_ms()).unwrap(), Some(a), "oldest first");
        assert_eq!(db.claim_next("m2", &[], now_ms()).unwrap(), Some(b));
        assert_eq!(db.claim_next("m1", &[], now_ms()).unwrap(), None, "a retry that is not due is not claimed");
        db.release_claim(a, "m2").unwrap();
        assert_eq!(db.claim_next("m2", &[], now_ms()).unwrap(), None, "only the holder releases a claim");
        db.release_claim(a, "m1").unwrap();
        assert_eq!(db.claim_next("m2", &[], now_ms()).unwrap(), Some(a));
        assert_eq!(db.release_all_claims().unwrap(), 2);
        assert_eq!(db.claim_next("m1", &[], now_ms() + 120_000).unwrap(), Some(a));
    }

    #[test]
    fn a_message_to_a_number_prefers_the_modem_it_last_texted_unless_that_modem_is_unhealthy() {
        let (_d, db) = db();
        db.conn
            .execute_batch(
                "INSERT INTO inbox (uid, modem, sender, body, received_at) VALUES ('i1', 'a', '+358401234567', 'hi', 1); \
                 INSERT INTO inbox (uid, modem, sender, body, received_at) VALUES ('i2', 'b', '+358401234567', 'again', 2); \
                 INSERT INTO inbox (uid, modem, sender, body, received_at) VALUES ('i3', 'a', '+358409999999', 'x', 3);",
            )
            .unwrap();
        let plain =
            db.insert_local("cli", &PhoneNumber::parse("+358405555555", None).unwrap(), "nobody texted").unwrap();
        let to_b = db.insert_local("cli", &number(), "last texted b").unwrap();
        let via = |id| -> Option<String> {
            db.conn.query_row("SELECT via_modem FROM outbox WHERE id = ?1", [id], |r| r.get(0)).unwrap()
        };
        assert_eq!(via(plain), None);
        assert_eq!(via(to_b).as_deref(), Some("b"), "the newest inbox row decides");
        let sql = format!("EXPLAIN QUERY PLAN SELECT {}", last_modem_of("'+358401234567'"));
        let mut stmt = db.conn.prepare(&sql).unwrap();
        let plan: Vec<String> = stmt.query_map([], |r| r.get(3)).unwrap().collect::<rusqlite::Result<_>>().unwrap();
        let plan = plan.join("; ");
        assert!(plan.contains("inbox_by_sender"), "the lookup is an index seek: {plan}");

        // b is healthy: a takes only what is not b's; b takes its own first.
        assert_eq!(db.claim_next("a", &["b"], now_ms()).unwrap(), Some(plain));
        assert_eq!(db.claim_next("a", &["b"], now_ms()).unwrap(), None, "b's message waits for b");
        let newer = db.insert_local("cli", &PhoneNumber::parse("+358406666666", None).unwrap(), "x").unwrap();
        db.release_claim(plain, "a").unwrap();
        assert_eq!(db.claim_next("b", &["a"], now_ms()).unwrap(), Some(to_b), "its own before older free ones");
        db.release_claim(to_b, "b").unwrap();
        // b is not healthy (or not configured any more): a takes b's message too, oldest first.
        assert_eq!(db.claim_next("a", &[], now_ms()).unwrap(), Some(plain));
        assert_eq!(db.claim_next("a", &[], now_ms()).unwrap(), Some(to_b));
        assert_eq!(db.claim_next("a", &["c"], now_ms()).unwrap(), Some(newer));
    }

    #[test]
    fn modem_figures_count_each_message_for_the_modem_that_finished_it() {
        let (_d, db) = db();
        let sent_a = db.insert_local("cli", &number(), "a").unwrap();
        let moved = db.insert_local("cli", &number(), "moved from a to b").unwrap();
        let failed_b = db.insert_local("cli", &number(), "b fails").unwrap();
        let no_modem = db.insert_local("cli", &number(), "never reached a modem").unwrap();
        for (id, n) in [(sent_a, 1), (moved, 2), (failed_b, 1)] {
            db.begin_sending(id, &parts(n), None).unwrap();
        }
        db.part_begin(sent_a, 1, "a").unwrap();
        db.part_acked(sent_a, 1, 1).unwrap();
        db.transition(sent_a, OutboxState::Sent, None).unwrap();
        db.part_begin(moved, 1, "a").unwrap();
        db.part_acked(moved, 1, 2).unwrap();
        db.part_begin(moved, 2, "b").unwrap();
        db.part_acked(moved, 2, 3).unwrap();
        db.transition(moved, OutboxState::Sent, None).unwrap();
        db.part_begin(failed_b, 1, "b").unwrap();
        db.part_refused(failed_b, 1, "+CMS ERROR: 38", true).unwrap();
        db.transition(failed_b, OutboxState::Failed, Some("x")).unwrap();
        db.transition(no_modem, OutboxState::Failed, Some("recipient opted out")).unwrap();
        db.conn
            .execute_batch(
                "INSERT INTO inbox (uid, modem, sender, body, received_at) VALUES ('i1', 'a', '+358401234567', 'hi', 5); \
                 INSERT INTO inbox (uid, modem, sender, body, received_at) VALUES ('i0', 'b', '+358401234567', 'old', 1);",
            )
            .unwrap();
        let f = db.modem_figures_since(2).unwrap();
        assert_eq!(f.get("a"), Some(&ModemFigures { sent: 1, failed: 0, received: 1 }));
        assert_eq!(f.get("b"), Some(&ModemFigures { sent: 1, failed: 1, received: 0 }), "the old inbox row is outside");
        assert_eq!(f.len(), 2, "a failure before any modem belongs to none: {f:?}");
        assert!(db.modem_figures_since(now_ms() + 1).unwrap().is_empty());
    }

    #[test]
    fn a_hostile_modem_name_in_the_health_list_is_only_data() {
        let (_d, db) = db();
        let id = db.insert_local("cli", &number(), "x").unwrap();
        db.conn.execute("UPDATE outbox SET via_modem = 'b\"]' WHERE id = ?1", [id]).unwrap();
        assert_eq!(db.claim_next("a", &["b\"]", "') OR 1=1 --"], now_ms()).unwrap(), None);
        assert_eq!(db.claim_next("a", &["b"], now_ms()).unwrap(), Some(id));
    }

    #[test]
    fn two_connections_racing_for_messages_never_claim_the_same_one() {
        let (dir, db) = db();
        let ids: Vec<OutboxId> =
            (0..200).map(|i| db.insert_local("cli", &number(), &format!("m{i}")).unwrap()).collect();
        let path = dir.path().join("t.db");
        let racers: Vec<_> = ["m1", "m2", "m3"]
            .into_iter()
            .map(|modem| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let db = Db::open(&path).unwrap();
                    let mut mine = Vec::new();
                    while let Some(id) = db.claim_next(modem, &[], now_ms()).unwrap() {
                        mine.push(id);
                    }
                    mine
                })
            })
            .collect();
        let mut claimed: Vec<OutboxId> = racers.into_iter().flat_map(|r| r.join().unwrap()).collect();
        claimed.sort();
        assert_eq!(claimed, ids, "every message claimed exactly once");
    }

    #[test]
    fn a_message_becomes_sent_only_when_every_part_is_acked() {
        let (_d, db) = db();
        let id = db.insert_local("cli", &number(), "two parts").unwrap();
        db.begin_sending(id, &parts(2), Some(1)).unwrap();
        db.part_begin(id, 1, "main").unwrap();
        db.part_acked(id, 1, 1).unwrap();
        db.part_begin(id, 2, "main").unwrap();
        // Part 2 is `sending` (its acked write failed): not sent.
        let err = db.transition(id, OutboxState::Sent, None).unwrap_err();
        assert!(matches!(err, StoreError::PartsNotAcked { left: 1, .. }), "{err}");
        // The schema refuses it too, whatever writes the row.
        let raw = db.conn.execute("UPDATE outbox SET state = 'sent' WHERE id = ?1", [id]);
        assert!(raw.unwrap_err().to_string().contains("every part is acked"));
        // A new pass finds it and makes it unknown; acked parts stay acked.
        assert_eq!(db.unfinished_parts_unknown(id).unwrap(), 1);
        let states: Vec<PartState> = db.get_outbox(id).unwrap().unwrap().part_rows.iter().map(|p| p.state).collect();
        assert_eq!(states, [PartState::Acked, PartState::Unknown]);
        assert!(db.transition(id, OutboxState::Sent, None).is_err());
        // A message with no parts at all is never sent either.
        let empty = db.insert_local("cli", &number(), "x").unwrap();
        db.begin_sending(empty, &[], None).unwrap();
        assert!(matches!(db.transition(empty, OutboxState::Sent, None), Err(StoreError::PartsNotAcked { .. })));
    }

    #[test]
    fn an_acknowledged_part_cannot_be_begun_again() {
        let (_d, db) = db();
        let id = db.insert_local("cli", &number(), "hi").unwrap();
        db.begin_sending(id, &parts(2), Some(42)).unwrap();
        db.part_begin(id, 1, "main").unwrap();
        db.part_acked(id, 1, 1).unwrap();
        assert!(db.part_begin(id, 1, "main").is_err());
        db.part_begin(id, 2, "main").unwrap();
        assert!(db.part_begin(id, 2, "main").is_err(), "a part in the modem's hands is not begun twice");
    }

    #[test]
    fn a_crash_while_sending_leaves_the_part_unknown_and_retry_keeps_acked_parts() {
        let (_d, db) = db();
        let id = db.insert_local("cli", &number(), "long").unwrap();
        db.begin_sending(id, &parts(3), Some(9)).unwrap();
        db.part_begin(id, 1, "main").unwrap();
        db.part_acked(id, 1, 10).unwrap();
        db.part_begin(id, 2, "main").unwrap();
        // crash here; next start:
        assert_eq!(db.recover_interrupted_parts().unwrap(), 1);
        let d = db.get_outbox(id).unwrap().unwrap();
        assert_eq!(d.part_rows[1].state, PartState::Unknown);
        db.transition(id, OutboxState::Failed, Some("outcome unknown")).unwrap();
        db.retry(id).unwrap();
        db.begin_sending(id, &parts(3), Some(99)).unwrap();
        let d = db.get_outbox(id).unwrap().unwrap();
        let states: Vec<PartState> = d.part_rows.iter().map(|p| p.state).collect();
        assert_eq!(states, [PartState::Acked, PartState::Pending, PartState::Pending]);
        assert_eq!(d.concat_ref, Some(9), "the reference is kept so the phone joins the parts");
        assert_eq!(d.part_rows[0].message_ref, Some(10));
    }

    #[test]
    fn cancel_works_before_sending_and_not_while_the_modem_has_a_part() {
        let (_d, db) = db();
        let a = db.insert_local("cli", &number(), "a").unwrap();
        db.cancel(a, "cancelled by operator").unwrap();
        let d = db.get_outbox(a).unwrap().unwrap();
        assert_eq!(d.summary.state, OutboxState::Failed);
        assert_eq!(d.summary.fail_reason.as_deref(), Some("cancelled by operator"));
        let b = db.insert_local("cli", &number(), "b").unwrap();
        db.begin_sending(b, &parts(1), None).unwrap();
        db.part_begin(b, 1, "main").unwrap();
        assert!(db.cancel(b, "x").is_err());
    }

    #[test]
    fn list_filters_by_state_newest_first() {
        let (_d, db) = db();
        let a = db.insert_local("cli", &number(), "a").unwrap();
        let b = db.insert_local("cli", &number(), "b").unwrap();
        db.cancel(a, "x").unwrap();
        let all = db.list_outbox(&OutboxFilter::default()).unwrap();
        assert_eq!(all.iter().map(|s| s.id).collect::<Vec<_>>(), [b, a]);
        let failed = db.list_outbox(&OutboxFilter { state: Some(OutboxState::Failed), ..Default::default() }).unwrap();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].id, a);
        let other = PhoneNumber::parse("+358409999999", None).unwrap();
        let c = db.insert_local("ui", &other, "c").unwrap();
        let by_source = db.list_outbox(&OutboxFilter { source: Some("ui".into()), ..Default::default() }).unwrap();
        assert_eq!(by_source.iter().map(|s| s.id).collect::<Vec<_>>(), [c]);
        let by_number = db.list_outbox(&OutboxFilter { number: Some("9999".into()), ..Default::default() }).unwrap();
        assert_eq!(by_number.iter().map(|s| s.id).collect::<Vec<_>>(), [c]);
        let none = db.list_outbox(&OutboxFilter { number: Some("%".into()), ..Default::default() }).unwrap();
        assert!(none.is_empty(), "the number filter is a plain substring, not a LIKE pattern");
    }
}
