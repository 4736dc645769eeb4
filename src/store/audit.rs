//! The audit list: who did what through the web UI or the panel (settings page).

use rusqlite::params;
use serde::Serialize;

use super::{Db, Result, now_ms};

/// One recorded action.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRow {
    pub at: i64,
    /// `user:<name>`, `panel:<instance>`, ...
    pub actor: String,
    /// e.g. `send`, `retry`, `cancel`, `optout.add`.
    pub action: String,
    /// The message id or number acted on.
    pub subject: Option<String>,
}

impl Db {
    /// Records that `actor` did `action` to `subject`.
    pub fn record_audit(&self, actor: &str, action: &str, subject: Option<&str>) -> Result<()> {
        self.conn.execute(
            "INSERT INTO audit (at, actor, action, subject) VALUES (?1, ?2, ?3, ?4)",
            params![now_ms(), actor, action, subject],
        )?;
        Ok(())
    }

    /// The newest `limit` actions, newest first.
    pub fn list_audit(&self, limit: usize) -> Result<Vec<AuditRow>> {
        let mut stmt =
            self.conn.prepare_cached("SELECT at, actor, action, subject FROM audit ORDER BY id DESC LIMIT ?1")?;
        let rows = stmt.query_map([limit as i64], |r| {
            Ok(AuditRow { at: r.get(0)?, actor: r.get(1)?, action: r.get(2)?, subject: r.get(3)? })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::test_support::db;

    #[test]
    fn actions_are_listed_newest_first() {
        let (_d, db) = db();
        db.record_audit("user:anna", "retry", Some("7")).unwrap();
        db.record_audit("panel:helsinki", "send", None).unwrap();
        let rows = db.list_audit(10).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].actor.as_str(), rows[0].action.as_str(), rows[0].subject.as_deref()),
            ("panel:helsinki", "send", None)
        );
        assert_eq!(rows[1].subject.as_deref(), Some("7"));
        assert_eq!(db.list_audit(1).unwrap().len(), 1);
    }
}
