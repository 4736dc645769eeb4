//! What the web UI and the Provet panel read and write per phone number: the conversation
//! (both directions), the list of threads, and the one checked insert of a message a person typed ([`Db::queue_staff_send`]).

use rusqlite::params;
use serde::Serialize;

use super::deliveries::SendClass;
use super::{Db, OutboxId, ReplyLimits, Result};
use crate::phone::PhoneNumber;

/// Which way a message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    In,
    Out,
}

/// One message of a conversation.
#[derive(Debug, Clone, Serialize)]
pub struct ConversationEntry {
    pub direction: Direction,
    /// The inbox or outbox id (by `direction`).
    pub id: i64,
    /// Unix ms: received, or queued.
    pub at: i64,
    pub body: Option<String>,
    /// Outbound only: the state (`sent`, `failed`, ...).
    pub state: Option<String>,
    /// Outbound only: who queued it (`ui`, `panel`, `provet`, `reply`, ...).
    pub source: Option<String>,
    /// Outbound only: why it failed or was refused.
    pub reason: Option<String>,
}

/// One line of the conversations list: a number and its newest message.
#[derive(Debug, Clone, Serialize)]
pub struct ThreadSummary {
    pub number: String,
    pub last_at: i64,
    pub last_direction: Direction,
    pub messages: i64,
}

/// Why a message a person typed was not queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalRefusal {
    /// The number is on the opt-out list (it sent STOP, or staff added it).
    OptedOut,
    /// A limit of `[replies]` was reached (the reason names it).
    Limit(String),
}

impl std::fmt::Display for LocalRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LocalRefusal::OptedOut => write!(
                f,
                "this number is on the opt-out list (it sent STOP or was added by staff); nothing is sent to it until it sends START or is removed from the list"
            ),
            LocalRefusal::Limit(why) => write!(f, "limit reached: {why}"),
        }
    }
}

impl Db {
    /// Both directions with `number`, newest first, at most `limit` of each.
    pub fn conversation(&self, number: &str, limit: usize) -> Result<Vec<ConversationEntry>> {
        let limit = limit as i64;
        let mut out: Vec<ConversationEntry> = Vec::new();
        let mut inbound = self
            .conn
            .prepare_cached("SELECT id, received_at, body FROM inbox WHERE sender = ?1 ORDER BY id DESC LIMIT ?2")?;
        for row in inbound.query_map(params![number, limit], |r| {
            Ok(ConversationEntry {
                direction: Direction::In,
                id: r.get(0)?,
                at: r.get(1)?,
                body: r.get(2)?,
                state: None,
                source: None,
                reason: None,
            })
        })? {
            out.push(row?);
        }
        let mut outbound = self.conn.prepare_cached(
            "SELECT id, created_at, body, state, source, coalesce(fail_reason, last_error) FROM outbox \
             WHERE recipient = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        for row in outbound.query_map(params![number, limit], |r| {
            Ok(ConversationEntry {
                direction: Direction::Out,
                id: r.get(0)?,
                at: r.get(1)?,
                body: r.get(2)?,
                state: r.get(3)?,
                source: r.get(4)?,
                reason: r.get(5)?,
            })
        })? {
            out.push(row?);
        }
        out.sort_by(|a, b| b.at.cmp(&a.at).then(b.id.cmp(&a.id)));
        out.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(out)
    }

    /// The numbers with messages, the most recently active first.
    pub fn conversation_threads(&self, limit: usize) -> Result<Vec<ThreadSummary>> {
        // One pass over both tables; `dir` is taken from the row holding max(at) (SQLite's
        // documented bare-column rule for min/max aggregates).
        let mut stmt = self.conn.prepare_cached(
            "SELECT number, max(at), count(*), dir \
             FROM (SELECT sender AS number, received_at AS at, 'in' AS dir FROM inbox WHERE sender IS NOT NULL \
                   UNION ALL SELECT recipient, created_at, 'out' FROM outbox WHERE recipient IS NOT NULL) \
             GROUP BY number ORDER BY max(at) DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit as i64], |r| {
            let dir: Option<String> = r.get(3)?;
            Ok(ThreadSummary {
                number: r.get(0)?,
                last_at: r.get(1)?,
                messages: r.get(2)?,
                last_direction: if dir.as_deref() == Some("in") { Direction::In } else { Direction::Out },
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Queues a message a person typed (web UI `ui`, Provet panel `panel`) to `to` unless the
    /// number opted out or the `[replies]` limits, counted over staff sends, are reached; one
    /// transaction, so two sends at once cannot both pass a limit of one.
    pub fn queue_staff_send(
        &self,
        source: &str,
        to: &PhoneNumber,
        body: &str,
        limits: &ReplyLimits,
    ) -> Result<std::result::Result<OutboxId, LocalRefusal>> {
        let queued = self.atomically(|| {
            if self.is_opted_out(to.as_str())? {
                return Ok(Err(LocalRefusal::OptedOut));
            }
            if let Some(why) = self.send_limit_reached(to, limits, SendClass::Staff)? {
                return Ok(Err(LocalRefusal::Limit(why)));
            }
            Ok(Ok(self.insert_local(source, to, body)?))
        })?;
        // The person is told "queued" next: the message must be on disk.
        self.sync_outside_tx()?;
        Ok(queued)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewInboxPart;
    use crate::store::test_support::{db, number};

    fn receive(db: &Db, sender: &str, body: &str) {
        let part = NewInboxPart {
            modem: "main".into(),
            pdu: "00".into(),
            sender: Some(sender.into()),
            text: Some(body.into()),
            ..Default::default()
        };
        db.store_inbound_part(&part, &[]).unwrap();
    }

    #[test]
    fn a_conversation_has_both_directions_newest_first_and_only_its_number() {
        let (_d, db) = db();
        let n = number();
        receive(&db, n.as_str(), "hello?");
        // Times are in ms: keep the two apart so "newest first" has one answer.
        std::thread::sleep(std::time::Duration::from_millis(5));
        let out = db.insert_local("ui", &n, "hi there").unwrap();
        receive(&db, "+358409999999", "someone else");
        let conv = db.conversation(n.as_str(), 50).unwrap();
        assert_eq!(conv.len(), 2, "{conv:?}");
        assert_eq!(conv[0].direction, Direction::Out);
        assert_eq!(conv[0].id, out);
        assert_eq!(conv[0].source.as_deref(), Some("ui"));
        assert_eq!(conv[1].body.as_deref(), Some("hello?"));
        let threads = db.conversation_threads(10).unwrap();
        assert_eq!(threads.len(), 2);
        let mine = threads.iter().find(|t| t.number == n.as_str()).unwrap();
        assert_eq!((mine.messages, mine.last_direction), (2, Direction::Out), "the newest was sent");
        let other = threads.iter().find(|t| t.number == "+358409999999").unwrap();
        assert_eq!(other.last_direction, Direction::In);
        assert_eq!(db.conversation(n.as_str(), 1).unwrap().len(), 1);
    }

    #[test]
    fn staff_sends_are_refused_to_opted_out_numbers_and_past_the_limits() {
        let (_d, db) = db();
        let n = number();
        let limits = ReplyLimits { per_number_per_hour: 2, per_hour: 100 };
        assert!(db.queue_staff_send("ui", &n, "1", &limits).unwrap().is_ok());
        // Automatic replies are counted apart from staff sends.
        db.insert_local("reply", &n, "auto").unwrap();
        assert!(db.queue_staff_send("panel", &n, "2", &limits).unwrap().is_ok());
        match db.queue_staff_send("ui", &n, "3", &limits).unwrap() {
            Err(LocalRefusal::Limit(why)) => assert!(why.contains("per_number_per_hour is 2"), "{why}"),
            other => panic!("{other:?}"),
        }
        let other = PhoneNumber::parse("+358409999999", None).unwrap();
        db.add_optout(other.as_str(), "sms").unwrap();
        assert_eq!(db.queue_staff_send("ui", &other, "x", &limits).unwrap(), Err(LocalRefusal::OptedOut));
        assert_eq!(db.conversation(other.as_str(), 10).unwrap().len(), 0, "nothing stored for a refusal");
    }
}
