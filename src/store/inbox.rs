//! Inbox queries: received messages, their parts, and their forward deliveries.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{Db, Result};

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
            "SELECT forwarder, state, attempts, next_attempt_at, last_error, delivered_at FROM deliveries WHERE inbox_id = ?1 ORDER BY forwarder",
        )?;
        let deliveries = stmt
            .query_map(params![id], |r| {
                Ok(DeliveryRow {
                    forwarder: r.get(0)?,
                    state: r.get(1)?,
                    attempts: r.get(2)?,
                    next_attempt_at: r.get(3)?,
                    last_error: r.get(4)?,
                    delivered_at: r.get(5)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(Some(InboxDetail { summary, body, encoding, sent_at, part_rows, deliveries }))
    }
}
