//! When the store's writes reach the disk: the SD card's wear against the guarantees.
//!
//! A database opened with [`Db::open`] commits at `synchronous=FULL`: every commit is synced
//! before it returns (the CLI, tests: short-lived processes with nothing to sync later).
//!
//! The daemon's connection uses **deferred syncs** ([`Db::defer_syncs`]): commits run at
//! `synchronous=NORMAL` (in WAL mode: written to the WAL, not yet synced; a process crash loses
//! nothing, a power cut may lose the last unsynced commits, never the database's consistency) and
//! the store syncs the WAL (one `fdatasync`, which makes every earlier commit durable) at the
//! points where a side effect outside the database depends on what was committed:
//!
//! - before a PDU is written to the modem (`part_begin`): a part is `sending` on disk first;
//! - before a PDU is deleted from the SIM (`store_inbound_part`), and before a status report is
//!   acknowledged to the network (`record_status_report_synced`, then `AT+CNMA`);
//! - before work is acknowledged: the Provet webhook (`insert_received`), the reminders button, an
//!   API, socket, web UI or panel send, an opt-out change;
//! - before Provet is told a message's outcome (`provet_to_report`) and before an event is posted
//!   (`due_event_deliveries`): what we tell others is on disk.
//!
//! Commits in between (a claim, an ack, `sent`, a delivery record) ride on the next
//! sync, so several commits share one write of the WAL's last page. A commit that gates nothing may be
//! lost by a power cut within at most [`MAX_UNSYNCED`] (the daemon's tick syncs older ones): the
//! effect is the one the crash recovery already handles (a part found `sending` becomes `unknown`;
//! a forward whose success was not recorded is repeated with the same id).
//!
//! Checkpoints are ours too (SQLite's automatic one is replaced by the WAL hook): when the WAL
//! passes [`CHECKPOINT_PAGES`], or after [`IDLE_CHECKPOINT`] without commits, so pages changed by
//! many commits are copied to the database file once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use super::{Db, Result, count_syncs, now_ms};

/// A checkpoint runs when the WAL holds this many pages (SQLite's default is 1000).
pub const CHECKPOINT_PAGES: i32 = 1000;
/// A WAL with frames and no commit for this long is checkpointed (and emptied).
pub const IDLE_CHECKPOINT: Duration = Duration::from_secs(30);
/// An unsynced commit older than this is synced by the daemon's tick.
pub const MAX_UNSYNCED: Duration = Duration::from_secs(5);
/// With no commit for this long, the health probe commits a heartbeat row; otherwise it runs the
/// write and rolls it back (see [`Db::tick`]).
pub const HEARTBEAT_AFTER: Duration = Duration::from_secs(600);

/// What the WAL hook saw; shared between the connection and the hook.
#[derive(Debug, Default)]
pub(super) struct WalState {
    /// Commits are deferred (`synchronous=NORMAL`).
    deferred: AtomicBool,
    /// Unix ms of the oldest commit not yet synced; 0 when everything is synced.
    unsynced_since: AtomicI64,
    /// Unix ms of the last commit that wrote to the WAL.
    last_commit: AtomicI64,
    /// Pages in the WAL after the last commit (0 after a truncating checkpoint).
    wal_pages: AtomicI64,
}

impl WalState {
    /// The WAL hook: runs after each commit that wrote pages.
    fn committed(&self, pages: i32) {
        let now = now_ms();
        self.last_commit.store(now, Ordering::Relaxed);
        self.wal_pages.store(i64::from(pages), Ordering::Relaxed);
        if self.deferred.load(Ordering::Relaxed) {
            let _ = self.unsynced_since.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        } else {
            count_syncs(1);
        }
    }

    fn synced(&self) {
        self.unsynced_since.store(0, Ordering::Relaxed);
    }
}

/// Installs the WAL hook on `conn` (replacing SQLite's automatic checkpoint).
pub(super) fn install(conn: &mut rusqlite::Connection) -> rusqlite::Result<Arc<WalState>> {
    let state = Arc::new(WalState::default());
    let hook_state = state.clone();
    conn.wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, pages: i32| {
        hook_state.committed(pages);
        if pages >= CHECKPOINT_PAGES {
            // PASSIVE: copies what no reader needs; syncs the WAL, then the database file.
            wal.checkpoint()?;
            count_syncs(2);
            hook_state.synced();
        }
        Ok(())
    }))?;
    Ok(state)
}

impl Db {
    /// Switches this connection to deferred syncs (the daemon): see the module doc.
    pub fn defer_syncs(&mut self) -> Result<()> {
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        self.wal.deferred.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Makes every commit so far durable: one `fdatasync` of the WAL, when some commit is not
    /// synced yet (nothing otherwise; always nothing at `synchronous=FULL`).
    pub fn sync(&self) -> Result<()> {
        if self.wal.unsynced_since.load(Ordering::Relaxed) == 0 {
            return Ok(());
        }
        let mut wal_path = self.path.clone().into_os_string();
        wal_path.push("-wal");
        let file = std::fs::File::open(&wal_path)
            .map_err(|e| super::StoreError::Sync(format!("{}: {e}", wal_path.to_string_lossy())))?;
        file.sync_data().map_err(|e| super::StoreError::Sync(format!("{}: {e}", wal_path.to_string_lossy())))?;
        count_syncs(1);
        self.wal.synced();
        Ok(())
    }

    /// [`Db::sync`], unless a transaction is open (its caller syncs after committing).
    pub(super) fn sync_outside_tx(&self) -> Result<()> {
        if self.conn.is_autocommit() { self.sync() } else { Ok(()) }
    }

    /// The daemon's tick: syncs a commit left unsynced longer than [`MAX_UNSYNCED`]; after
    /// [`IDLE_CHECKPOINT`] without commits, copies the WAL into the database and empties it; the
    /// health probe writes a heartbeat when nothing was committed for [`HEARTBEAT_AFTER`].
    pub fn tick(&self) -> Result<()> {
        let now = now_ms();
        let since = self.wal.unsynced_since.load(Ordering::Relaxed);
        if since != 0 && now.saturating_sub(since) >= crate::deadline::millis(MAX_UNSYNCED) {
            self.sync()?;
        }
        let last = self.wal.last_commit.load(Ordering::Relaxed);
        let idle = now.saturating_sub(last);
        if self.wal.wal_pages.load(Ordering::Relaxed) > 0 && idle >= crate::deadline::millis(IDLE_CHECKPOINT) {
            self.checkpoint()?;
        }
        if idle >= crate::deadline::millis(HEARTBEAT_AFTER) {
            self.kv_set("health:heartbeat", &now.to_string())?;
        } else {
            // The write probe without a commit: takes the write lock and runs the write (so a
            // lock held elsewhere, a read-only file or a refusing trigger shows), then rolls back;
            // nothing reaches the disk. A full disk shows in the free-space check.
            // Cached statements: no SQL is parsed at rest (see crate::memory).
            self.conn.prepare_cached("BEGIN")?.execute([])?;
            let probe = self.kv_set("health:heartbeat", &now.to_string());
            // A failed write may have ended the transaction already (SQLite rolls back on some
            // errors); the probe's own error is the one to report.
            let rolled_back = if self.conn.is_autocommit() {
                Ok(0)
            } else {
                self.conn.prepare_cached("ROLLBACK").and_then(|mut s| s.execute([]))
            };
            probe?;
            rolled_back?;
        }
        Ok(())
    }

    /// Copies the WAL into the database file and empties it (`wal_checkpoint(TRUNCATE)`).
    /// Returns how many WAL frames were copied.
    pub fn checkpoint(&self) -> Result<u64> {
        let (busy, frames, copied): (i64, i64, i64) = self
            .conn
            .prepare_cached("PRAGMA wal_checkpoint(TRUNCATE)")?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        if frames > 0 {
            count_syncs(2);
        }
        if busy == 0 {
            self.wal.wal_pages.store(0, Ordering::Relaxed);
            self.wal.synced();
        } else {
            tracing::debug!(frames, copied, "checkpoint could not finish: a reader holds the WAL");
        }
        Ok(u64::try_from(copied).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::{db, number};
    use crate::store::{NewPart, OutboxState, PartState};

    fn unsynced(db: &Db) -> bool {
        db.wal.unsynced_since.load(Ordering::Relaxed) != 0
    }

    #[test]
    fn deferred_commits_wait_for_the_sync_before_the_pdu_is_written() {
        let (_d, mut db) = db();
        db.defer_syncs().unwrap();
        let id = db.insert_local("cli", &number(), "x").unwrap();
        assert!(unsynced(&db), "a plain commit is not synced at once");
        db.begin_sending(id, &[NewPart { pdu: "00".into(), tpdu_len: 1 }], None).unwrap();
        assert!(unsynced(&db));
        db.part_begin(id, 1, "m").unwrap();
        assert!(!unsynced(&db), "`sending` (and everything before it) is on disk before the PDU goes out");
        db.part_acked_finishing(id, 1, 7, "m").unwrap();
        assert!(unsynced(&db), "the ack rides on the next sync");
        assert_eq!(db.get_outbox(id).unwrap().unwrap().summary.state, OutboxState::Sent);
        db.tick().unwrap();
        assert!(unsynced(&db), "younger than MAX_UNSYNCED: left for the next sync point");
        db.wal.unsynced_since.store(now_ms() - crate::deadline::millis(MAX_UNSYNCED) - 1, Ordering::Relaxed);
        db.tick().unwrap();
        assert!(!unsynced(&db), "the tick syncs what waited too long");
    }

    #[test]
    fn parts_stored_with_their_first_part_begun_are_on_disk_in_one_commit() {
        let (_d, mut db) = db();
        db.defer_syncs().unwrap();
        let id = db.insert_local("cli", &number(), "x").unwrap();
        let commits = || db.wal.last_commit.load(Ordering::Relaxed);
        db.wal.last_commit.store(0, Ordering::Relaxed);
        assert!(unsynced(&db));
        let parts = [NewPart { pdu: "00".into(), tpdu_len: 1 }, NewPart { pdu: "01".into(), tpdu_len: 1 }];
        assert!(db.begin_sending_first_part(id, &parts, Some(3), "m").unwrap());
        assert_ne!(commits(), 0, "committed");
        assert!(!unsynced(&db), "part 1 `sending` (and everything before it) is on disk before its PDU goes out");
        let states: Vec<_> =
            db.get_outbox(id).unwrap().unwrap().part_rows.iter().map(|p| (p.state, p.modem.clone())).collect();
        assert_eq!(
            states,
            [(PartState::Sending, Some("m".into())), (PartState::Pending, None)],
            "only part 1 is begun"
        );
    }

    #[test]
    fn a_full_connection_never_leaves_anything_unsynced() {
        let (_d, db) = db();
        db.insert_local("cli", &number(), "x").unwrap();
        assert!(!unsynced(&db));
        db.sync().unwrap();
    }

    #[test]
    fn the_health_probe_commits_nothing_while_commits_happen() {
        let (_d, mut db) = db();
        db.defer_syncs().unwrap();
        db.insert_local("cli", &number(), "x").unwrap();
        let before: Option<String> = db.kv_get("health:heartbeat").unwrap();
        db.tick().unwrap();
        assert_eq!(db.kv_get("health:heartbeat").unwrap(), before, "rolled back");
        db.wal.last_commit.store(now_ms() - crate::deadline::millis(HEARTBEAT_AFTER) - 1, Ordering::Relaxed);
        db.tick().unwrap();
        assert!(db.kv_get("health:heartbeat").unwrap().is_some(), "committed after a quiet spell");
    }
}
