//! SQLite: the truth for every message. The only module that writes SQL; everything else
//! calls the typed functions on [`Db`].
//!
//! - WAL mode, `synchronous=FULL` (a power cut on a Pi is a normal event, and every write here
//!   is a queue state change that must survive it), foreign keys on, a busy timeout so the CLI
//!   and the daemon can share the file.
//! - Migrations run at open, each in its own transaction; a database from a newer smshub is
//!   refused before anything is written to it.
//! - [`Store`] is the async handle: one thread owns the read-write connection and runs closures
//!   sent to it, so async code never blocks the runtime on disk I/O and there is one writer; a
//!   second thread owns a read-only connection for HTTP-driven reads ([`Store::read`]).
//! - `retention.rs`: `[store] keep_days`, erasing texts and numbers of old finished messages.

mod accounts;
mod api;
mod audit;
mod button;
mod conversations;
mod dashboard;
mod deliveries;
mod durability;
mod events;
mod inbox;
pub(crate) mod migrations;
mod outbox;
mod provet_queue;
mod retention;
mod state;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

pub use accounts::{NewSession, SessionRow, TokenRow, UserRow};
pub use api::{API_SOURCE, ApiInboxRow, ApiSendOutcome, MetricsBaseline, PendingFigures};
pub use audit::AuditRow;
pub use button::ButtonOutcome;
pub use conversations::{ConversationEntry, Direction, LocalRefusal, ThreadSummary};
pub use dashboard::{Backlog, DayCounts};
pub use deliveries::{
    AttemptChannel, AttemptRecord, DueDelivery, InboundMessage, KeywordCandidate, QueuedReply, RefusedReply,
    RepliesRecorded, ReplyBatch, ReplyLimits,
};
pub use durability::{CHECKPOINT_PAGES, HEARTBEAT_AFTER, IDLE_CHECKPOINT, MAX_UNSYNCED};
pub use events::{
    DELIVERY_STATES as EVENT_DELIVERY_STATES, DueEvent, EventDeliveryRow, EventDeliveryState, EventDetail, EventFilter,
    EventRoutes, EventSummary, EventType, WebhookCall,
};
pub use inbox::{
    CONTENT_BINARY, CONTENT_MMS, CONTENT_WAP_PUSH, DeliveryAttemptRow, DeliveryRow, InboxDetail, InboxPartRow,
    InboxSummary, NewInboxPart, PartStored,
};
pub use migrations::LATEST as SCHEMA_VERSION;
pub use outbox::{ModemFigures, NewPart, OutboxDetail, OutboxFilter, OutboxId, OutboxSummary, PartRow};
pub use provet_queue::{ProvetWork, Queued};
pub use retention::{BATCH as PURGE_BATCH, PurgeCounts};
pub use state::{OutboxState, PartState};

/// What can go wrong in the store. Messages name the database file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database {path}: {source}")]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error(
        "database {path} was written by a newer smshub (schema version {found}, this smshub knows up to {known}); it was not modified. Install the newer smshub again, or restore a backup of the database"
    )]
    NewerSchema { path: PathBuf, found: u32, known: u32 },
    #[error("migrating database {path} to schema version {version} failed (nothing was changed): {source}")]
    Migration { path: PathBuf, version: u32, source: rusqlite::Error },
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("outbox message {0} not found")]
    NotFound(i64),
    #[error("outbox message {id} is {from}; it cannot become {to}")]
    IllegalTransition { id: i64, from: OutboxState, to: OutboxState },
    #[error("outbox message {id} cannot become sent: {left} of its parts are not acknowledged")]
    PartsNotAcked { id: i64, left: i64 },
    #[error("cannot sync the database's log to disk: {0}")]
    Sync(String),
    #[error("the store thread has stopped")]
    Closed,
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Free space (bytes, for an unprivileged process) on the filesystem holding `path`'s
/// directory.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let st = nix::sys::statvfs::statvfs(dir).map_err(std::io::Error::from)?;
    // 32-bit targets have narrower block counts; widen there, a no-op on 64-bit.
    #[allow(clippy::useless_conversion)]
    let (blocks, size) = (u64::from(st.blocks_available()), u64::from(st.fragment_size()));
    Ok(blocks.saturating_mul(size))
}

/// Why the database's filesystem is too full, if it is: below `[store] min_free_mb`.
pub fn disk_problem(db_path: &Path, min_free_mb: u64) -> Option<String> {
    match free_bytes(db_path) {
        Ok(free) if free / (1024 * 1024) < min_free_mb => Some(format!(
            "{} MB free on the database's filesystem, below [store] min_free_mb = {min_free_mb}",
            free / (1024 * 1024)
        )),
        Ok(_) => None,
        Err(e) => Some(format!("cannot read the free space of the database's filesystem: {e}")),
    }
}

/// The page size of a new database (bytes): SQLite's smallest. A commit writes every page it
/// changed to the WAL whole, so the page size is what each row and index entry touched costs the
/// SD card. Measured with `smshub bench storage` (ARCHITECTURE.md, "Syncs where a side effect depends
/// on them"): 1 KiB pages 35.8 KB per sent SMS, 512-byte pages 27.2 KB.
pub const PAGE_SIZE: i64 = 512;

/// Durable syncs this process asked of the disk through the store (see [`syncs`]).
static SYNCS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many durable syncs (fsync/fdatasync) this process's store connections have caused: one per
/// commit at `synchronous=FULL` (SQLite syncs the WAL at each), one per explicit WAL sync, two per
/// checkpoint (the WAL, then the database file). `smshub bench storage` reports it per message.
pub fn syncs() -> u64 {
    SYNCS.load(std::sync::atomic::Ordering::Relaxed)
}

fn count_syncs(n: u64) {
    SYNCS.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
}

/// Milliseconds since the Unix epoch: the store's clock for every timestamp.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Prepared statements kept per connection (rusqlite's default is 16).
const STATEMENT_CACHE: usize = 32;

/// Makes a connection's cached statements last: room for every statement the loops run at rest
/// plus the busy paths' cached ones, and the query planner stability guarantee (QPSG). Without
/// QPSG, SQLite plans a statement with a bound `LIMIT ?n` (or a `LIKE ?n`) for the value bound at
/// the time, and marks it to be planned again when that value is rebound; rusqlite clears the
/// bindings when it puts a statement back in its cache, which counts as a rebind, so every such
/// statement was parsed and planned again on each use. The sweeps at rest use them (`provet_rows`,
/// the forwarders' due list), so SQLite's parser and planner ran every minute, half of the
/// daemon's instructions at rest, and their code stayed in its resting set (see crate::memory).
/// Our plans do not depend on a bound value: every such statement reads by an index or the
/// primary key and stops at the limit.
fn keep_statements(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(())
}

/// A synchronous connection with the typed queries. The CLI uses it directly; the daemon
/// reaches it through [`Store`].
pub struct Db {
    conn: Connection,
    path: PathBuf,
    /// Which event webhooks want which events (none: no event rows are written).
    events: EventRoutes,
    /// What the WAL hook saw (see `durability.rs`).
    wal: std::sync::Arc<durability::WalState>,
}

impl Db {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Db> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
            && !dir.exists()
        {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Open {
                path: path.to_path_buf(),
                source: rusqlite::Error::InvalidPath(PathBuf::from(format!("{}: {e}", dir.display()))),
            })?;
        }
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE)
            .map_err(|source| StoreError::Open { path: path.to_path_buf(), source })?;
        Self::setup(conn, path)
    }

    /// Opens an existing database without creating or migrating it (for `doctor`).
    pub fn open_existing_read_only(path: &Path) -> Result<Db> {
        let open_err = |source| StoreError::Open { path: path.to_path_buf(), source };
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(open_err)?;
        keep_statements(&conn).map_err(open_err)?;
        Ok(Db { conn, path: path.to_path_buf(), events: EventRoutes::default(), wal: Default::default() })
    }

    fn setup(mut conn: Connection, path: &Path) -> Result<Db> {
        let open_err = |source| StoreError::Open { path: path.to_path_buf(), source };
        conn.busy_timeout(Duration::from_secs(10)).map_err(open_err)?;
        // Check the version before anything writes to the file (journal_mode=WAL does).
        let version: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(open_err)?;
        if version > migrations::LATEST {
            return Err(StoreError::NewerSchema {
                path: path.to_path_buf(),
                found: version,
                known: migrations::LATEST,
            });
        }
        // A new, empty file gets small pages (store/durability.rs: each commit writes whole pages
        // to the WAL, so the page size is what a state change costs the SD card). Only possible
        // before the first write; an existing database keeps its page size.
        let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0)).map_err(open_err)?;
        if pages == 0 {
            conn.pragma_update(None, "page_size", PAGE_SIZE).map_err(open_err)?;
        }
        let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0)).map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %path.display(), mode, "database is not in WAL mode");
        }
        conn.pragma_update(None, "synchronous", "FULL").map_err(open_err)?;
        keep_statements(&conn).map_err(open_err)?;
        // Foreign keys stay off while migrating: a step that rebuilds a table (v4) must not
        // cascade the drop of the old one; they are checked, then switched on, afterwards.
        conn.pragma_update(None, "foreign_keys", false).map_err(open_err)?;
        for m in migrations::MIGRATIONS.iter().filter(|m| m.version > version) {
            let migrate = |conn: &mut Connection| -> rusqlite::Result<()> {
                let tx = conn.transaction()?;
                tx.execute_batch(m.sql)?;
                tx.pragma_update(None, "user_version", m.version)?;
                tx.commit()
            };
            migrate(&mut conn).map_err(|source| StoreError::Migration {
                path: path.to_path_buf(),
                version: m.version,
                source,
            })?;
            tracing::info!(path = %path.display(), version = m.version, "database schema migrated");
        }
        let broken: Option<String> =
            conn.query_row("PRAGMA foreign_key_check", [], |r| r.get(0)).optional().map_err(open_err)?;
        if let Some(table) = broken {
            tracing::warn!(path = %path.display(), table, "database has rows whose parent is missing");
        }
        conn.pragma_update(None, "foreign_keys", true).map_err(open_err)?;
        let wal = durability::install(&mut conn).map_err(open_err)?;
        Ok(Db { conn, path: path.to_path_buf(), events: EventRoutes::default(), wal })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version in the file.
    pub fn schema_version(&self) -> Result<u32> {
        Ok(self.conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    /// `PRAGMA integrity_check`: `Ok(())` or the problems SQLite lists.
    pub fn integrity_check(&self) -> Result<std::result::Result<(), Vec<String>>> {
        let mut stmt = self.conn.prepare("PRAGMA integrity_check")?;
        let rows: Vec<String> = stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
        if rows.len() == 1 && rows[0] == "ok" { Ok(Ok(())) } else { Ok(Err(rows)) }
    }

    pub fn kv_get(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .prepare_cached("SELECT value FROM kv WHERE key = ?1")?
            .query_row([key], |r| r.get(0))
            .optional()?)
    }

    pub fn kv_set(&self, key: &str, value: &str) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO kv (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![key, value])?;
        Ok(())
    }

    /// Whether `number` asked not to receive SMS (STOP).
    pub fn is_opted_out(&self, number: &str) -> Result<bool> {
        Ok(self.conn.query_row("SELECT count(*) FROM optouts WHERE number = ?1", [number], |r| r.get::<_, i64>(0))? > 0)
    }

    /// Adds `number` to the opt-out list; returns false if it was already there.
    /// Writes `optout.added` with the change.
    pub fn add_optout(&self, number: &str, source: &str) -> Result<bool> {
        self.atomically(|| {
            let added = self.conn.execute(
                "INSERT OR IGNORE INTO optouts (number, source, created_at) VALUES (?1, ?2, ?3)",
                params![number, source, now_ms()],
            )? == 1;
            if added {
                self.emit(EventType::OptoutAdded, serde_json::json!({"number": number, "source": source}))?;
            }
            Ok(added)
        })
        .and_then(|added| {
            // An opt-out must not be lost to a power cut once someone was told it is done.
            self.sync_outside_tx()?;
            Ok(added)
        })
    }

    /// Removes `number` from the opt-out list; returns false if it was not there. Writes
    /// `optout.removed` with the change (`source`: who removed it, as for [`Db::add_optout`]).
    pub fn remove_optout(&self, number: &str, source: &str) -> Result<bool> {
        self.atomically(|| {
            let removed = self.conn.execute("DELETE FROM optouts WHERE number = ?1", [number])? == 1;
            if removed {
                self.emit(EventType::OptoutRemoved, serde_json::json!({"number": number, "source": source}))?;
            }
            Ok(removed)
        })
        .and_then(|removed| {
            self.sync_outside_tx()?;
            Ok(removed)
        })
    }

    /// The opt-out list: (number, source, created_at), newest first.
    pub fn list_optouts(&self) -> Result<Vec<(String, String, i64)>> {
        let mut stmt = self.conn.prepare("SELECT number, source, created_at FROM optouts ORDER BY created_at DESC")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Sent parts with a status report recorded (benchmarks wait on it).
    pub fn parts_with_status_report(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM outbox_parts WHERE delivery_status IS NOT NULL", [], |r| r.get(0))?)
    }

    /// Forward deliveries in `state` (benchmarks wait on it).
    pub fn deliveries_in_state(&self, state: &str) -> Result<i64> {
        Ok(self.conn.query_row("SELECT count(*) FROM deliveries WHERE state = ?1", [state], |r| r.get(0))?)
    }
}

type Job = Box<dyn FnOnce(&mut Db) + Send>;

/// The async handle to the database: cheap to clone. Every write (and every pipeline read)
/// runs on the store thread, which owns the read-write connection; reads for HTTP callers
/// (`/status`, later the UI and API) run on a second thread with its own read-only connection,
/// so any number of them never queue in front of the pipeline (WAL: readers do not block the
/// writer).
#[derive(Clone)]
pub struct Store {
    jobs: std::sync::mpsc::Sender<Job>,
    reads: std::sync::mpsc::Sender<Job>,
    path: PathBuf,
}

impl Store {
    /// Opens the database (migrating it) and starts the store thread and the reader thread.
    pub fn open(path: &Path) -> Result<Store> {
        let db = Db::open(path)?;
        let reader = Db::open_existing_read_only(path)?;
        reader
            .conn
            .busy_timeout(Duration::from_secs(10))
            .map_err(|source| StoreError::Open { path: path.to_path_buf(), source })?;
        let jobs = Self::spawn_thread("smshub-store", db, path)?;
        let reads = Self::spawn_thread("smshub-store-read", reader, path)?;
        Ok(Store { jobs, reads, path: path.to_path_buf() })
    }

    fn spawn_thread(name: &str, mut db: Db, path: &Path) -> Result<std::sync::mpsc::Sender<Job>> {
        let (jobs, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                for job in rx {
                    job(&mut db);
                }
            })
            .map_err(|e| StoreError::Open {
                path: path.to_path_buf(),
                source: rusqlite::Error::InvalidPath(PathBuf::from(e.to_string())),
            })?;
        Ok(jobs)
    }

    /// Runs the read-only `f` on the reader thread (for HTTP callers): it never waits behind
    /// the pipeline's writes, nor they behind it. A write there fails (read-only connection).
    pub async fn read<R, F>(&self, f: F) -> Result<R>
    where
        F: FnOnce(&Db) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.reads
            .send(Box::new(move |db| {
                let _ = tx.send(f(db));
            }))
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the store thread and waits for its result without blocking the runtime.
    pub async fn call<R, F>(&self, f: F) -> Result<R>
    where
        F: FnOnce(&mut Db) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move |db| {
                let _ = tx.send(f(db));
            }))
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

/// Fixtures shared by the store's unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use super::Db;
    use crate::phone::PhoneNumber;

    /// A fresh database in a temporary directory (kept alive by the returned guard).
    pub fn db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db")).unwrap();
        (dir, db)
    }

    pub fn number() -> PhoneNumber {
        PhoneNumber::parse("+358401234567", None).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_statement_with_a_bound_limit_is_not_planned_again_on_its_next_use() {
        let (dir, db) = test_support::db();
        let reader = Db::open_existing_read_only(&dir.path().join("t.db")).unwrap();
        for conn in [&db.conn, &reader.conn] {
            let sql = "SELECT key FROM kv WHERE key > ?1 ORDER BY key LIMIT ?2";
            for limit in [5, 7, 5] {
                let mut stmt = conn.prepare_cached(sql).unwrap();
                let rows = stmt.query_map(rusqlite::params!["", limit], |r| r.get::<_, String>(0)).unwrap();
                rows.collect::<rusqlite::Result<Vec<_>>>().unwrap();
            }
            let stmt = conn.prepare_cached(sql).unwrap();
            assert_eq!(
                stmt.get_status(rusqlite::StatementStatus::RePrepare),
                0,
                "the cached statement was parsed and planned again (readonly: {})",
                conn.is_readonly(rusqlite::MAIN_DB).unwrap()
            );
        }
    }

    #[test]
    fn a_fresh_database_gets_the_latest_schema_in_wal_mode() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("new.db")).unwrap();
        assert_eq!(db.schema_version().unwrap(), SCHEMA_VERSION);
        let mode: String = db.conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = db.conn.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
        assert_eq!(sync, 2, "synchronous=FULL");
        let fk: i64 = db.conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0)).unwrap();
        assert_eq!(fk, 1);
        let page: i64 = db.conn.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
        assert_eq!(page, 512, "small pages: a commit writes whole pages to the WAL");
        assert_eq!(db.integrity_check().unwrap(), Ok(()));
    }

    #[test]
    fn a_version_1_database_is_upgraded_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(migrations::MIGRATIONS[0].sql).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute(
                "INSERT INTO outbox (source, recipient, body, state, created_at, updated_at) VALUES ('cli', '+358401234567', 'hi', 'fetched', 1, 1)",
                [],
            )
            .unwrap();
            conn.execute("INSERT INTO kv (key, value) VALUES ('k', 'v')", []).unwrap();
        }
        let db = Db::open(&path).unwrap();
        assert_eq!(db.schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(db.kv_get("k").unwrap().as_deref(), Some("v"));
        let outbox = db.list_outbox(&OutboxFilter::default()).unwrap();
        assert_eq!(outbox.len(), 1);
        assert_eq!(outbox[0].state, OutboxState::Fetched);
        assert!(db.list_inbox(10).unwrap().is_empty());
        // Version 3: the old row is unclaimed and can be claimed.
        assert_eq!(db.claim_next("main", &[], now_ms()).unwrap(), Some(outbox[0].id));
        // Version 6: the account tables exist.
        assert!(db.list_users().unwrap().is_empty());
        assert!(db.list_tokens().unwrap().is_empty());
    }

    #[test]
    fn a_version_3_database_keeps_its_parts_when_the_outbox_is_rebuilt_for_version_4() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v3.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "foreign_keys", true).unwrap();
            for m in &migrations::MIGRATIONS[..3] {
                conn.execute_batch(m.sql).unwrap();
            }
            conn.pragma_update(None, "user_version", 3).unwrap();
            conn.execute_batch(
                "INSERT INTO outbox (id, source, recipient, body, state, created_at, updated_at, claimed_by) \
                 VALUES (7, 'cli', '+358401234567', 'hi', 'sending', 1, 1, 'main'); \
                 INSERT INTO outbox_parts (outbox_id, seq, pdu, tpdu_len, state) VALUES (7, 1, '00', 1, 'acked'), (7, 2, '00', 1, 'pending');",
            )
            .unwrap();
        }
        let db = Db::open(&path).unwrap();
        assert_eq!(db.schema_version().unwrap(), SCHEMA_VERSION);
        let d = db.get_outbox(7).unwrap().unwrap();
        assert_eq!(d.part_rows.len(), 2, "dropping the old outbox did not cascade to its parts");
        assert_eq!(d.summary.state, OutboxState::Sending);
        let fk: i64 = db.conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0)).unwrap();
        assert_eq!(fk, 1);
        assert!(db.transition(7, OutboxState::Sent, None).is_err(), "part 2 is not acked");
        assert_eq!(db.integrity_check().unwrap(), Ok(()));
    }

    #[test]
    fn a_database_from_a_newer_smshub_is_refused_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("future.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch("CREATE TABLE future (x); PRAGMA user_version = 99;").unwrap();
        }
        let before = std::fs::read(&path).unwrap();
        let err = Db::open(&path).err().expect("must refuse");
        let msg = err.to_string();
        assert!(msg.contains("newer smshub"), "{msg}");
        assert!(msg.contains("schema version 99"), "{msg}");
        assert!(msg.contains("not modified"), "{msg}");
        assert_eq!(std::fs::read(&path).unwrap(), before, "the file must not change");
        assert!(!dir.path().join("future.db-wal").exists());
    }

    #[test]
    fn a_failing_migration_leaves_the_previous_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clash.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(migrations::MIGRATIONS[0].sql).unwrap();
            // A table that version 2 wants to create already exists: its migration fails.
            conn.execute_batch("CREATE TABLE events (x); PRAGMA user_version = 1;").unwrap();
        }
        let err = Db::open(&path).err().expect("migration must fail");
        assert!(err.to_string().contains("schema version 2"), "{err}");
        let conn = Connection::open(&path).unwrap();
        let v: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, 1);
        let inbox: i64 =
            conn.query_row("SELECT count(*) FROM sqlite_master WHERE name = 'inbox'", [], |r| r.get(0)).unwrap();
        assert_eq!(inbox, 0, "the half-done step was rolled back");
    }

    #[tokio::test]
    async fn the_async_handle_runs_queries_on_the_store_thread() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a.db")).unwrap();
        store.call(|db| db.kv_set("a", "1")).await.unwrap();
        let v = store.call(|db| db.kv_get("a")).await.unwrap();
        assert_eq!(v.as_deref(), Some("1"));
    }
}
