//! Inbox queries: received messages, their parts, and their forward deliveries.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{Db, Result};

/// `encoding` of a received WAP push MMS notification (the body is empty; see
/// `inbound::receive::binary_kind`).
pub const CONTENT_MMS: &str = "mms";
/// `encoding` of another WAP push message.
pub const CONTENT_WAP_PUSH: &str = "wap_push";
/// `encoding` of any other port-addressed 8-bit message.
pub const CONTENT_BINARY: &str = "binary";
/// SQL list of the three, for queries that skip or flag them.
pub(crate) const BINARY_CONTENT_SQL: &str = "('mms','wap_push','binary')";

/// A line of `smshub inbox list`.
#[derive(Debug, Clone, Serialize)]
pub struct InboxSummary {
    pub id: i64,
    pub uid: String,
    pub modem: String,
    pub sender: Option<String>,
    pub parts: i64,
    pub incomplete: bool,
    pub decode_error: Option<String>,
    pub keyword: Option<String>,
    pub received_at: i64,
    pub deliveries_pending: i64,
}

/// One stored part (raw PDU kept).
#[derive(Debug, Clone, Serialize)]
pub struct InboxPartRow {
    pub concat_seq: Option<i64>,
    pub concat_total: Option<i64>,
    pub pdu: String,
    pub decode_error: Option<String>,
}

/// `smshub inbox show`.
#[derive(Debug, Clone, Serialize)]
pub struct InboxDetail {
    #[serde(flatten)]
    pub summary: InboxSummary,
    pub body: Option<String>,
    pub encoding: Option<String>,
    pub sent_at: Option<String>,
    pub part_rows: Vec<InboxPartRow>,
    pub deliveries: Vec<DeliveryRow>,
    /// Automatic replies to this message (keyword, TwiML), refused ones with the reason.
    pub replies: Vec<ReplyRow>,
}

/// An automatic reply to a received message.
#[derive(Debug, Clone, Serialize)]
pub struct ReplyRow {
    pub outbox_id: i64,
    pub recipient: Option<String>,
    pub state: String,
    pub reason: Option<String>,
}

/// A forward delivery and where it stands.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryRow {
    pub forwarder: String,
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: Option<i64>,
    pub last_error: Option<String>,
    pub delivered_at: Option<i64>,
    /// Every attempt, oldest first.
    pub attempt_log: Vec<DeliveryAttemptRow>,
}

/// One attempt of a forward delivery.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryAttemptRow {
    pub at: i64,
    /// `http` or `email`.
    pub channel: String,
    pub http_status: Option<i64>,
    pub error: Option<String>,
}

const SUMMARY: &str = "i.id, i.uid, i.modem, i.sender, i.parts, i.incomplete, i.decode_error, i.keyword, i.received_at, \
    (SELECT count(*) FROM deliveries d WHERE d.inbox_id = i.id AND d.state IN ('pending','emailing'))";

fn summary(r: &rusqlite::Row<'_>) -> rusqlite::Result<InboxSummary> {
    Ok(InboxSummary {
        id: r.get(0)?,
        uid: r.get(1)?,
        modem: r.get(2)?,
        sender: r.get(3)?,
        parts: r.get(4)?,
        incomplete: r.get::<_, i64>(5)? != 0,
        decode_error: r.get(6)?,
        keyword: r.get(7)?,
        received_at: r.get(8)?,
        deliveries_pending: r.get(9)?,
    })
}

impl Db {
    /// Received messages, newest first.
    pub fn list_inbox(&self, limit: usize) -> Result<Vec<InboxSummary>> {
        let mut stmt = self.conn.prepare(&format!("SELECT {SUMMARY} FROM inbox i ORDER BY i.id DESC LIMIT ?1"))?;
        let rows = stmt.query_map([limit as i64], summary)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// How many received messages have a body matching the SQL `LIKE` pattern (the soak bench).
    pub fn count_inbox_bodies_like(&self, pattern: &str) -> Result<usize> {
        let n: i64 = self.conn.query_row("SELECT count(*) FROM inbox WHERE body LIKE ?1", [pattern], |r| r.get(0))?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// One received message with its parts and deliveries.
    pub fn get_inbox(&self, id: i64) -> Result<Option<InboxDetail>> {
        let found = self
            .conn
            .query_row(
                &format!("SELECT {SUMMARY}, i.body, i.encoding, i.sent_at FROM inbox i WHERE i.id = ?1"),
                [id],
                |r| Ok((summary(r)?, r.get(10)?, r.get(11)?, r.get(12)?)),
            )
            .optional()?;
        let Some((summary, body, encoding, sent_at)) = found else {
            return Ok(None);
        };
        let mut stmt = self.conn.prepare(
            "SELECT concat_seq, concat_total, pdu, decode_error FROM inbox_parts WHERE inbox_id = ?1 ORDER BY concat_seq, id",
        )?;
        let part_rows = stmt
            .query_map([id], |r| {
                Ok(InboxPartRow {
                    concat_seq: r.get(0)?,
                    concat_total: r.get(1)?,
                    pdu: r.get(2)?,
                    decode_error: r.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        let mut stmt = self.conn.prepare(
            "SELECT forwarder, state, attempts, next_attempt_at, last_error, delivered_at, id FROM deliveries WHERE inbox_id = ?1 ORDER BY forwarder",
        )?;
        let mut attempts = self.conn.prepare_cached(
            "SELECT at, channel, http_status, error FROM delivery_attempts WHERE delivery_id = ?1 ORDER BY id",
        )?;
        let deliveries = stmt
            .query_map(params![id], |r| {
                let delivery_id: i64 = r.get(6)?;
                let attempt_log = attempts
                    .query_map([delivery_id], |a| {
                        Ok(DeliveryAttemptRow {
                            at: a.get(0)?,
                            channel: a.get(1)?,
                            http_status: a.get(2)?,
                            error: a.get(3)?,
                        })
                    })?
                    .collect::<rusqlite::Result<_>>()?;
                Ok(DeliveryRow {
                    forwarder: r.get(0)?,
                    state: r.get(1)?,
                    attempts: r.get(2)?,
                    next_attempt_at: r.get(3)?,
                    last_error: r.get(4)?,
                    delivered_at: r.get(5)?,
                    attempt_log,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        let mut stmt = self.conn.prepare(
            "SELECT id, recipient, state, coalesce(fail_reason, last_error) FROM outbox WHERE in_reply_to = ?1 ORDER BY id",
        )?;
        let replies = stmt
            .query_map([id], |r| {
                Ok(ReplyRow { outbox_id: r.get(0)?, recipient: r.get(1)?, state: r.get(2)?, reason: r.get(3)? })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(Some(InboxDetail { summary, body, encoding, sent_at, part_rows, deliveries, replies }))
    }
}

/// One PDU read from a modem, decoded as far as it goes (a PDU that does not decode is kept
/// raw with the error: never dropped).
#[derive(Debug, Clone, Default)]
pub struct NewInboxPart {
    pub modem: String,
    /// Where the modem keeps it (`<mem>:<index>`, e.g. `SM:3`) until it is deleted; `None` for a
    /// directly delivered `+CMT` (every one of those is a new message).
    pub slot: Option<String>,
    pub pdu: String,
    pub sender: Option<String>,
    /// The sender's type of number (TON, TS 23.040 9.1.2.5): 1 international, 2 national,
    /// 3 network specific, 5 alphanumeric, 6 abbreviated.
    pub sender_ton: Option<u8>,
    pub concat: Option<(u16, u8, u8)>,
    pub text: Option<String>,
    pub encoding: Option<String>,
    pub sent_at: Option<String>,
    pub decode_error: Option<String>,
}

/// What storing a part did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartStored {
    /// The same PDU in the same slot of the same modem is stored and not yet deleted there (it
    /// was read again after a restart before it could be deleted): nothing new. Two identical
    /// texts in two slots, or one after the other in one slot, are two messages.
    Duplicate,
    /// Stored; its message is not complete yet.
    Waiting,
    /// Stored, and message `id` is now complete (or was a single part).
    Message(i64),
}

fn new_uid() -> String {
    format!("{:032x}", fastrand::u128(..))
}

impl Db {
    /// Stores one part and, when it completes a message, creates the message with one
    /// delivery row per forwarder — all in one transaction, so the caller may delete the PDU
    /// from the modem as soon as this returns.
    pub fn store_inbound_part(&self, part: &NewInboxPart, forwarders: &[String]) -> Result<PartStored> {
        let tx = self.conn.unchecked_transaction()?;
        if let Some(slot) = &part.slot {
            // Indexed (`inbox_parts_in_slot`): only parts still in a slot are looked at.
            let mut stmt = tx.prepare_cached(
                "SELECT pdu FROM inbox_parts WHERE modem = ?1 AND slot = ?2 AND slot IS NOT NULL AND slot_freed = 0",
            )?;
            let in_slot: Vec<String> =
                stmt.query_map(params![part.modem, slot], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
            if in_slot.contains(&part.pdu) {
                return Ok(PartStored::Duplicate);
            }
            if !in_slot.is_empty() {
                // The slot holds another PDU now, so the earlier one was deleted (the delete's
                // record was lost in a crash).
                tx.execute(
                    "UPDATE inbox_parts SET slot_freed = 1 WHERE modem = ?1 AND slot = ?2 AND slot_freed = 0",
                    params![part.modem, slot],
                )?;
            }
        }
        let now = super::now_ms();
        let (cref, ctotal, cseq) = match part.concat {
            Some((r, t, s)) => (Some(i64::from(r)), Some(i64::from(t)), Some(i64::from(s))),
            None => (None, None, None),
        };
        tx.execute(
            "INSERT INTO inbox_parts (modem, pdu, sender, concat_ref, concat_total, concat_seq, text, encoding, sent_at, decode_error, received_at, slot, sender_ton) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            params![part.modem, part.pdu, part.sender, cref, ctotal, cseq, part.text, part.encoding, part.sent_at, part.decode_error, now, part.slot, part.sender_ton],
        )?;
        let part_id = tx.last_insert_rowid();
        let result = match part.concat {
            None => PartStored::Message(self.create_message(&[part_id], false, forwarders)?),
            Some((r, t, _)) => {
                let ids = self.waiting_siblings(&part.modem, part.sender.as_deref(), r, t)?;
                // Complete when every sequence number 1..=total is present.
                let seqs: std::collections::BTreeSet<i64> = ids.iter().map(|(_, s)| *s).collect();
                if (1..=i64::from(t)).all(|s| seqs.contains(&s)) {
                    let ordered: Vec<i64> = ids.iter().map(|(id, _)| *id).collect();
                    PartStored::Message(self.create_message(&ordered, false, forwarders)?)
                } else {
                    PartStored::Waiting
                }
            }
        };
        tx.commit()?;
        // The PDU is deleted from the SIM next.
        self.sync()?;
        Ok(result)
    }

    /// The modem deleted what it kept in `slot`: a PDU read there from now on is new.
    pub fn inbound_slot_freed(&self, modem: &str, slot: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE inbox_parts SET slot_freed = 1 WHERE modem = ?1 AND slot = ?2 AND slot IS NOT NULL AND slot_freed = 0",
            params![modem, slot],
        )?;
        Ok(())
    }

    /// Parts of one concatenated message still waiting: (part id, seq) ordered by seq.
    /// The first arrival of each seq wins if a sender repeats one.
    fn waiting_siblings(&self, modem: &str, sender: Option<&str>, r: u16, t: u8) -> Result<Vec<(i64, i64)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT min(id), concat_seq FROM inbox_parts WHERE inbox_id IS NULL AND modem = ?1 AND sender IS ?2 \
             AND concat_ref = ?3 AND concat_total = ?4 GROUP BY concat_seq ORDER BY concat_seq",
        )?;
        let rows =
            stmt.query_map(params![modem, sender, i64::from(r), i64::from(t)], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Joins parts (in the given order) into an inbox message with its deliveries.
    fn create_message(&self, part_ids: &[i64], incomplete: bool, forwarders: &[String]) -> Result<i64> {
        struct Row {
            modem: String,
            sender: Option<String>,
            text: Option<String>,
            encoding: Option<String>,
            sent_at: Option<String>,
            error: Option<String>,
        }
        let mut rows = Vec::with_capacity(part_ids.len());
        for id in part_ids {
            rows.push(self.conn.query_row(
                "SELECT modem, sender, text, encoding, sent_at, decode_error FROM inbox_parts WHERE id = ?1",
                [id],
                |r| {
                    Ok(Row {
                        modem: r.get(0)?,
                        sender: r.get(1)?,
                        text: r.get(2)?,
                        encoding: r.get(3)?,
                        sent_at: r.get(4)?,
                        error: r.get(5)?,
                    })
                },
            )?);
        }
        let body: String = rows.iter().map(|r| r.text.as_deref().unwrap_or("")).collect();
        let errors: Vec<String> = rows.iter().filter_map(|r| r.error.clone()).collect();
        let first = rows.into_iter().next();
        let (modem, sender, encoding, sent_at) =
            first.map(|r| (r.modem, r.sender, r.encoding, r.sent_at)).unwrap_or_default();
        let decode_error = (!errors.is_empty()).then(|| errors.join("; "));
        self.conn.execute(
            "INSERT INTO inbox (uid, modem, sender, body, encoding, parts, incomplete, decode_error, sent_at, received_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![new_uid(), modem, sender, body, encoding, part_ids.len() as i64, incomplete, decode_error, sent_at, super::now_ms()],
        )?;
        let id = self.conn.last_insert_rowid();
        for p in part_ids {
            self.conn.execute("UPDATE inbox_parts SET inbox_id = ?1 WHERE id = ?2", params![id, p])?;
        }
        for f in forwarders {
            self.conn.execute(
                "INSERT INTO deliveries (inbox_id, forwarder, state) VALUES (?1, ?2, 'pending')",
                params![id, f],
            )?;
        }
        self.emit_received(id)?;
        Ok(id)
    }

    /// Releases concatenated messages whose first part arrived before `older_than` (unix ms)
    /// and whose other parts never came: joined from what arrived, flagged incomplete.
    pub fn release_stale_parts(&self, older_than: i64, forwarders: &[String]) -> Result<Vec<i64>> {
        // The receiver asks every few seconds; nearly always nothing waits (indexed, no transaction).
        let waiting: bool = self
            .conn
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM inbox_parts WHERE inbox_id IS NULL AND received_at < ?1)")?
            .query_row([older_than], |r| r.get(0))?;
        if !waiting {
            return Ok(Vec::new());
        }
        let tx = self.conn.unchecked_transaction()?;
        let groups: Vec<(String, Option<String>, i64, i64)> = {
            let mut stmt = self.conn.prepare(
                "SELECT modem, sender, concat_ref, concat_total FROM inbox_parts WHERE inbox_id IS NULL \
                 GROUP BY modem, sender, concat_ref, concat_total HAVING min(received_at) < ?1",
            )?;
            let rows = stmt.query_map([older_than], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let mut created = Vec::new();
        for (modem, sender, r, t) in groups {
            let ids: Vec<i64> = {
                let mut stmt = self.conn.prepare(
                    "SELECT min(id) FROM inbox_parts WHERE inbox_id IS NULL AND modem = ?1 AND sender IS ?2 \
                     AND concat_ref = ?3 AND concat_total = ?4 GROUP BY concat_seq ORDER BY concat_seq",
                )?;
                let rows = stmt.query_map(params![modem, sender, r, t], |row| row.get(0))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            created.push(self.create_message(&ids, true, forwarders)?);
        }
        tx.commit()?;
        Ok(created)
    }

    /// A status report for message reference `mr` on `modem`: updates the newest acked part
    /// with that reference (references wrap at 256, so only the last week counts). Returns
    /// the outbox id it matched, if any.
    pub fn record_status_report(&self, modem: &str, mr: u8, status: u8) -> Result<Option<i64>> {
        let week_ago = super::now_ms() - 7 * 24 * 3600 * 1000;
        let found: Option<(i64, i64, Option<i64>)> = self
            .conn
            .query_row(
                "SELECT outbox_id, seq, delivery_status FROM outbox_parts WHERE modem = ?1 AND message_ref = ?2 AND state = 'acked' AND acked_at > ?3 \
                 ORDER BY acked_at DESC LIMIT 1",
                params![modem, i64::from(mr), week_ago],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((outbox_id, seq, recorded)) = found else { return Ok(None) };
        // The same report again (the network resent a `+CDS` whose ack it did not get, or a stored
        // copy was read twice): nothing changes and no second event is written.
        if recorded == Some(i64::from(status)) {
            return Ok(Some(outbox_id));
        }
        self.atomically(|| {
            self.conn.execute(
                "UPDATE outbox_parts SET delivery_status = ?3, delivered_at = ?4 WHERE outbox_id = ?1 AND seq = ?2",
                params![outbox_id, seq, i64::from(status), super::now_ms()],
            )?;
            self.emit_status_report(outbox_id, status)
        })?;
        Ok(Some(outbox_id))
    }

    /// [`Db::record_status_report`] for a report the modem delivered directly (`+CDS`), synced
    /// before it returns: the caller then acknowledges it (`AT+CNMA`), after which no copy exists
    /// anywhere but here.
    pub fn record_status_report_synced(&self, modem: &str, mr: u8, status: u8) -> Result<Option<i64>> {
        let recorded = self.record_status_report(modem, mr, status)?;
        self.sync()?;
        Ok(recorded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(pdu: &str, sender: &str, concat: Option<(u16, u8, u8)>, text: &str) -> NewInboxPart {
        NewInboxPart {
            modem: "main".into(),
            pdu: pdu.into(),
            sender: Some(sender.into()),
            concat,
            text: Some(text.into()),
            encoding: Some("gsm7".into()),
            ..Default::default()
        }
    }

    use crate::store::test_support::db;

    #[test]
    fn multipart_is_joined_in_order_when_parts_arrive_out_of_order() {
        let (_d, db) = db();
        let fw = vec!["twilio1".to_string(), "pbx".to_string()];
        assert_eq!(db.store_inbound_part(&part("p3", "+1", Some((7, 3, 3)), "C"), &fw).unwrap(), PartStored::Waiting);
        assert_eq!(db.store_inbound_part(&part("p1", "+1", Some((7, 3, 1)), "A"), &fw).unwrap(), PartStored::Waiting);
        // Same reference from another sender never mixes in.
        assert_eq!(db.store_inbound_part(&part("x2", "+2", Some((7, 3, 2)), "X"), &fw).unwrap(), PartStored::Waiting);
        let PartStored::Message(id) = db.store_inbound_part(&part("p2", "+1", Some((7, 3, 2)), "B"), &fw).unwrap()
        else {
            panic!("should complete")
        };
        let m = db.get_inbox(id).unwrap().unwrap();
        assert_eq!(m.body.as_deref(), Some("ABC"));
        assert_eq!(m.summary.parts, 3);
        assert!(!m.summary.incomplete);
        assert_eq!(m.deliveries.len(), 2);
        assert_eq!(m.summary.deliveries_pending, 2);
    }

    fn in_slot(slot: &str, p: NewInboxPart) -> NewInboxPart {
        NewInboxPart { slot: Some(slot.into()), ..p }
    }

    #[test]
    fn the_same_pdu_read_twice_from_one_slot_is_stored_once() {
        let (_d, db) = db();
        let a = || in_slot("SM:1", part("aa", "+1", None, "hi"));
        assert!(matches!(db.store_inbound_part(&a(), &[]).unwrap(), PartStored::Message(_)));
        assert_eq!(db.store_inbound_part(&a(), &[]).unwrap(), PartStored::Duplicate);
        assert_eq!(db.list_inbox(10).unwrap().len(), 1);
    }

    #[test]
    fn identical_texts_in_two_slots_or_after_a_delete_are_two_messages() {
        let (_d, db) = db();
        let same = |slot: &str| in_slot(slot, part("aa", "+1", None, "hi"));
        assert!(matches!(db.store_inbound_part(&same("SM:1"), &[]).unwrap(), PartStored::Message(_)));
        assert!(matches!(db.store_inbound_part(&same("SM:2"), &[]).unwrap(), PartStored::Message(_)));
        // Deleted from slot 1, then the same bytes arrive there again: a new message.
        db.inbound_slot_freed("main", "SM:1").unwrap();
        assert!(matches!(db.store_inbound_part(&same("SM:1"), &[]).unwrap(), PartStored::Message(_)));
        // Directly delivered (+CMT, no slot): every copy is a message.
        let direct = part("aa", "+1", None, "hi");
        assert!(matches!(db.store_inbound_part(&direct, &[]).unwrap(), PartStored::Message(_)));
        assert!(matches!(db.store_inbound_part(&direct, &[]).unwrap(), PartStored::Message(_)));
        // Another modem's slot 1 is another slot.
        let other = NewInboxPart { modem: "second".into(), ..same("SM:2") };
        assert!(matches!(db.store_inbound_part(&other, &[]).unwrap(), PartStored::Message(_)));
        assert_eq!(db.list_inbox(10).unwrap().len(), 6);
    }

    #[test]
    fn the_duplicate_lookup_uses_the_slot_index() {
        let (_d, db) = db();
        let plan: Vec<String> = db
            .conn
            .prepare(
                "EXPLAIN QUERY PLAN SELECT pdu FROM inbox_parts WHERE modem = 'm' AND slot = 'SM:1' AND slot IS NOT NULL AND slot_freed = 0",
            )
            .unwrap()
            .query_map([], |r| r.get(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert!(plan.iter().any(|l| l.contains("inbox_parts_in_slot")), "{plan:?}");
        let plan: Vec<String> = db
            .conn
            .prepare("EXPLAIN QUERY PLAN SELECT count(*) FROM outbox WHERE recipient = '+1' AND created_at > 0")
            .unwrap()
            .query_map([], |r| r.get(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert!(plan.iter().any(|l| l.contains("outbox_by_recipient")), "{plan:?}");
    }

    #[test]
    fn stale_parts_are_released_as_incomplete() {
        let (_d, db) = db();
        db.store_inbound_part(&part("p1", "+1", Some((9, 3, 1)), "A"), &[]).unwrap();
        db.store_inbound_part(&part("p3", "+1", Some((9, 3, 3)), "C"), &[]).unwrap();
        assert!(db.release_stale_parts(0, &[]).unwrap().is_empty(), "not old enough yet");
        let ids = db.release_stale_parts(now_ms() + 1, &["f".into()]).unwrap();
        assert_eq!(ids.len(), 1);
        let m = db.get_inbox(ids[0]).unwrap().unwrap();
        assert!(m.summary.incomplete);
        assert_eq!(m.body.as_deref(), Some("AC"));
    }

    #[test]
    fn an_undecodable_pdu_is_kept_raw_with_its_error() {
        let (_d, db) = db();
        let p = NewInboxPart {
            modem: "main".into(),
            pdu: "ZZ".into(),
            decode_error: Some("bad hex at octet 0".into()),
            ..Default::default()
        };
        let PartStored::Message(id) = db.store_inbound_part(&p, &[]).unwrap() else { panic!() };
        let m = db.get_inbox(id).unwrap().unwrap();
        assert_eq!(m.summary.decode_error.as_deref(), Some("bad hex at octet 0"));
        assert_eq!(m.part_rows[0].pdu, "ZZ");
    }

    use super::super::now_ms;
}
