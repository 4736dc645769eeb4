//! What the dashboard reads besides the outbox counts: messages of the last day and how each
//! pipeline's queue stands (Provet instances, forwarders, event webhooks).

use serde::Serialize;

use super::{Db, Result};

/// Messages since a moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DayCounts {
    pub sent: i64,
    pub received: i64,
    pub failed: i64,
}

/// How one pipeline's queue stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Backlog {
    /// `provet`, `forwarder` or `webhook`.
    pub kind: &'static str,
    pub name: String,
    /// Work waiting.
    pub pending: i64,
    /// Of those, how many have failed at least once (the pipeline is not getting through).
    pub failing: i64,
    /// The newest error among the failing.
    pub last_error: Option<String>,
}

impl Db {
    /// Messages sent (every part acknowledged), received, and failed or refused since `since`
    /// (unix ms).
    pub fn counts_since(&self, since: i64) -> Result<DayCounts> {
        let sent: i64 = self.conn.query_row(
            "SELECT count(*) FROM outbox o WHERE o.outcome = 'sent' \
             AND (SELECT max(acked_at) FROM outbox_parts p WHERE p.outbox_id = o.id) >= ?1",
            [since],
            |r| r.get(0),
        )?;
        let failed: i64 = self.conn.query_row(
            "SELECT count(*) FROM outbox WHERE (outcome = 'failed' OR state = 'refused') AND updated_at >= ?1",
            [since],
            |r| r.get(0),
        )?;
        let received: i64 =
            self.conn.query_row("SELECT count(*) FROM inbox WHERE received_at >= ?1", [since], |r| r.get(0))?;
        Ok(DayCounts { sent, received, failed })
    }

    /// The queue of every Provet instance, forwarder and event webhook that has work waiting.
    pub fn backlogs(&self) -> Result<Vec<Backlog>> {
        let queries: [(&'static str, &str); 3] = [
            (
                "provet",
                "SELECT instance, count(*), sum(attempts > 0), \
                   (SELECT last_error FROM outbox x WHERE x.instance = o.instance AND x.last_error IS NOT NULL \
                    AND x.state IN ('received','sent','failed') ORDER BY updated_at DESC LIMIT 1) \
                 FROM outbox o WHERE instance IS NOT NULL AND state IN ('received','sent','failed') GROUP BY instance",
            ),
            (
                "forwarder",
                "SELECT forwarder, count(*), sum(attempts > 0), \
                   (SELECT last_error FROM deliveries x WHERE x.forwarder = d.forwarder AND x.last_error IS NOT NULL \
                    AND x.state IN ('pending','emailing') ORDER BY id DESC LIMIT 1) \
                 FROM deliveries d WHERE state IN ('pending','emailing') GROUP BY forwarder",
            ),
            (
                "webhook",
                "SELECT webhook, count(*), sum(attempts > 0), \
                   (SELECT last_error FROM event_deliveries x WHERE x.webhook = e.webhook AND x.last_error IS NOT NULL \
                    AND x.state = 'pending' ORDER BY event_id DESC LIMIT 1) \
                 FROM event_deliveries e WHERE state = 'pending' GROUP BY webhook",
            ),
        ];
        let mut out = Vec::new();
        for (kind, sql) in queries {
            let mut stmt = self.conn.prepare_cached(sql)?;
            let rows = stmt.query_map([], |r| {
                Ok(Backlog {
                    kind,
                    name: r.get(0)?,
                    pending: r.get(1)?,
                    failing: r.get::<_, Option<i64>>(2)?.unwrap_or(0),
                    last_error: r.get(3)?,
                })
            })?;
            for row in rows {
                out.push(row?);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::{db, number};
    use crate::store::{NewInboxPart, NewPart, OutboxState};

    #[test]
    fn day_counts_count_sent_received_and_failed() {
        let (_d, db) = db();
        let since = crate::store::now_ms() - 1000;
        let part = NewInboxPart {
            modem: "main".into(),
            pdu: "00".into(),
            sender: Some("+358401234567".into()),
            text: Some("x".into()),
            ..Default::default()
        };
        db.store_inbound_part(&part, &["pbx".into()]).unwrap();
        let a = db.insert_local("ui", &number(), "a").unwrap();
        db.begin_sending(a, &[NewPart { pdu: "00".into(), tpdu_len: 1 }], None).unwrap();
        db.part_begin(a, 1, "main").unwrap();
        db.part_acked(a, 1, 3).unwrap();
        db.transition(a, OutboxState::Sent, None).unwrap();
        let b = db.insert_local("ui", &number(), "b").unwrap();
        db.cancel(b, "cancelled").unwrap();
        assert_eq!(db.counts_since(since).unwrap(), DayCounts { sent: 1, received: 1, failed: 1 });
        assert_eq!(db.counts_since(crate::store::now_ms() + 60_000).unwrap(), DayCounts::default());
        let backlogs = db.backlogs().unwrap();
        assert_eq!(
            backlogs,
            [Backlog { kind: "forwarder", name: "pbx".into(), pending: 1, failing: 0, last_error: None }]
        );
    }
}
