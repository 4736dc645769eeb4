//! Accounts for people (`users`, `sessions`) and tokens for programs (`api_tokens`).
//!
//! The store never sees a secret: callers hand it the argon2id PHC string of a password and the
//! SHA-256 of a session id or a token (`web::auth` makes them). A session or token is found by
//! its hash, so a lookup reveals nothing an attacker could use without the secret itself.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{Db, Result};

/// A user as `smshub user list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserRow {
    pub name: String,
    pub created_at: i64,
    /// Sessions that have not expired.
    pub sessions: i64,
}

/// A session found by its id's hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub user: String,
    pub csrf_token: String,
    pub expires_at: i64,
}

/// A new session: the hash of its id, whose it is, and when it ends (unix ms).
#[derive(Debug, Clone)]
pub struct NewSession<'a> {
    pub id_hash: &'a [u8],
    pub user: &'a str,
    pub csrf_token: &'a str,
    pub created_at: i64,
    pub expires_at: i64,
}

/// A token as `smshub token list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenRow {
    pub name: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

impl Db {
    /// Adds a user; false if the name is taken.
    pub fn add_user(&self, name: &str, password_hash: &str) -> Result<bool> {
        Ok(self.conn.execute(
            "INSERT OR IGNORE INTO users (name, password_hash, created_at) VALUES (?1, ?2, ?3)",
            params![name, password_hash, super::now_ms()],
        )? == 1)
    }

    /// Removes a user and ends its sessions; `None` if there is no such user, else how many
    /// live sessions ended.
    pub fn remove_user(&mut self, name: &str) -> Result<Option<usize>> {
        let tx = self.conn.transaction()?;
        let sessions: i64 = tx.query_row(
            "SELECT count(*) FROM sessions s JOIN users u ON u.id = s.user_id WHERE u.name = ?1 AND s.expires_at > ?2",
            params![name, super::now_ms()],
            |r| r.get(0),
        )?;
        // Sessions go with the user (ON DELETE CASCADE); said again here so nothing depends on
        // the foreign_keys pragma being on.
        tx.execute("DELETE FROM sessions WHERE user_id = (SELECT id FROM users WHERE name = ?1)", [name])?;
        let removed = tx.execute("DELETE FROM users WHERE name = ?1", [name])?;
        tx.commit()?;
        Ok((removed == 1).then_some(sessions as usize))
    }

    /// Every user, by name, with its live session count.
    pub fn list_users(&self) -> Result<Vec<UserRow>> {
        let mut stmt = self.conn.prepare(
            "SELECT u.name, u.created_at,
                    (SELECT count(*) FROM sessions s WHERE s.user_id = u.id AND s.expires_at > ?1)
             FROM users u ORDER BY u.name",
        )?;
        let rows = stmt.query_map([super::now_ms()], |r| {
            Ok(UserRow { name: r.get(0)?, created_at: r.get(1)?, sessions: r.get(2)? })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The PHC string of `name`'s password, if there is such a user.
    pub fn user_password_hash(&self, name: &str) -> Result<Option<String>> {
        Ok(self.conn.query_row("SELECT password_hash FROM users WHERE name = ?1", [name], |r| r.get(0)).optional()?)
    }

    /// Stores a session; false if its user no longer exists.
    pub fn create_session(&self, s: &NewSession<'_>) -> Result<bool> {
        Ok(self.conn.execute(
            "INSERT INTO sessions (id_hash, user_id, csrf_token, created_at, expires_at)
             SELECT ?1, id, ?3, ?4, ?5 FROM users WHERE name = ?2",
            params![s.id_hash, s.user, s.csrf_token, s.created_at, s.expires_at],
        )? == 1)
    }

    /// The session whose id hashes to `id_hash`, if it has not expired at `now`.
    pub fn session(&self, id_hash: &[u8], now: i64) -> Result<Option<SessionRow>> {
        Ok(self
            .conn
            .query_row(
                "SELECT u.name, s.csrf_token, s.expires_at FROM sessions s JOIN users u ON u.id = s.user_id
                 WHERE s.id_hash = ?1 AND s.expires_at > ?2",
                params![id_hash, now],
                |r| Ok(SessionRow { user: r.get(0)?, csrf_token: r.get(1)?, expires_at: r.get(2)? }),
            )
            .optional()?)
    }

    /// Ends a session (logout); false if there was none.
    pub fn end_session(&self, id_hash: &[u8]) -> Result<bool> {
        Ok(self.conn.execute("DELETE FROM sessions WHERE id_hash = ?1", [id_hash])? == 1)
    }

    /// Deletes sessions expired at `now`; returns how many.
    pub fn prune_sessions(&self, now: i64) -> Result<usize> {
        Ok(self.conn.execute("DELETE FROM sessions WHERE expires_at <= ?1", [now])?)
    }

    /// Stores a token's hash under `name`; false if a valid token already has that name.
    pub fn add_token(&self, name: &str, token_hash: &[u8]) -> Result<bool> {
        Ok(self.conn.execute(
            "INSERT OR IGNORE INTO api_tokens (name, token_hash, created_at) VALUES (?1, ?2, ?3)",
            params![name, token_hash, super::now_ms()],
        )? == 1)
    }

    /// Every token, valid ones first, then by name and age.
    pub fn list_tokens(&self) -> Result<Vec<TokenRow>> {
        let mut stmt = self.conn.prepare(
            "SELECT name, created_at, revoked_at FROM api_tokens
             ORDER BY revoked_at IS NOT NULL, name, created_at DESC",
        )?;
        let rows =
            stmt.query_map([], |r| Ok(TokenRow { name: r.get(0)?, created_at: r.get(1)?, revoked_at: r.get(2)? }))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Revokes the valid token called `name`; false if there is none.
    pub fn revoke_token(&self, name: &str) -> Result<bool> {
        Ok(self.conn.execute(
            "UPDATE api_tokens SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
            params![name, super::now_ms()],
        )? == 1)
    }

    /// The name of the valid token whose hash is `token_hash`.
    pub fn token_name(&self, token_hash: &[u8]) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row("SELECT name FROM api_tokens WHERE token_hash = ?1 AND revoked_at IS NULL", [token_hash], |r| {
                r.get(0)
            })
            .optional()?)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::db;
    use super::*;

    fn session<'a>(id: &'a [u8], user: &'a str, expires_at: i64) -> NewSession<'a> {
        NewSession { id_hash: id, user, csrf_token: "csrf", created_at: 1, expires_at }
    }

    #[test]
    fn a_session_is_found_by_its_hash_until_it_expires() {
        let (_d, db) = db();
        assert!(db.add_user("anna", "$argon2id$x").unwrap());
        assert!(!db.add_user("anna", "$argon2id$y").unwrap(), "names are unique");
        assert!(db.create_session(&session(b"h1", "anna", 1000)).unwrap());
        assert!(!db.create_session(&session(b"h2", "nobody", 1000)).unwrap(), "no user, no session");
        let found = db.session(b"h1", 999).unwrap().unwrap();
        assert_eq!((found.user.as_str(), found.csrf_token.as_str()), ("anna", "csrf"));
        assert_eq!(db.session(b"h1", 1000).unwrap(), None, "expired at its expiry");
        assert_eq!(db.session(b"other", 0).unwrap(), None);
        assert_eq!(db.prune_sessions(1000).unwrap(), 1);
        assert_eq!(db.prune_sessions(1000).unwrap(), 0);
    }

    #[test]
    fn removing_a_user_ends_its_sessions() {
        let (_d, mut db) = db();
        db.add_user("anna", "h").unwrap();
        db.add_user("ben", "h").unwrap();
        let far = i64::MAX;
        db.create_session(&session(b"a1", "anna", far)).unwrap();
        db.create_session(&session(b"a2", "anna", far)).unwrap();
        db.create_session(&session(b"b1", "ben", far)).unwrap();
        assert_eq!(db.list_users().unwrap().iter().map(|u| u.sessions).collect::<Vec<_>>(), vec![2, 1]);
        assert_eq!(db.remove_user("anna").unwrap(), Some(2));
        assert_eq!(db.remove_user("anna").unwrap(), None);
        assert_eq!(db.session(b"a1", 0).unwrap(), None);
        assert!(db.session(b"b1", 0).unwrap().is_some());
        assert!(db.end_session(b"b1").unwrap());
        assert!(!db.end_session(b"b1").unwrap());
    }

    #[test]
    fn a_revoked_token_is_refused_and_frees_its_name() {
        let (_d, db) = db();
        assert!(db.add_token("nagios", b"t1").unwrap());
        assert!(!db.add_token("nagios", b"t2").unwrap(), "one valid token per name");
        assert_eq!(db.token_name(b"t1").unwrap().as_deref(), Some("nagios"));
        assert!(db.revoke_token("nagios").unwrap());
        assert!(!db.revoke_token("nagios").unwrap());
        assert_eq!(db.token_name(b"t1").unwrap(), None);
        assert!(db.add_token("nagios", b"t2").unwrap(), "a revoked token frees the name");
        let list = db.list_tokens().unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].revoked_at, None, "valid tokens first");
        assert!(list[1].revoked_at.is_some());
    }
}
