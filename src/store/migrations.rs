//! Versioned schema migrations, kept in `PRAGMA user_version`.
//!
//! Each step runs in one transaction with the version bump, so a power cut mid-migration
//! leaves the previous version intact. A database whose version is newer than [`LATEST`] was
//! written by a newer smshub: it is refused and never modified (a downgrade must not eat data).

/// One schema step: the version it produces and its SQL.
pub(crate) struct Migration {
    pub version: u32,
    pub sql: &'static str,
}

/// Version 1: the outbound queue (Provet work and local sends) and the key-value table.
const V1: &str = r#"
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    source          TEXT    NOT NULL,      -- provet | cli | reply | reminder | appointment_reminder
    instance        TEXT,                  -- Provet instance name; NULL for local messages
    external_id     INTEGER,               -- Provet id (external_sms_id, reminder id)
    recipient       TEXT,                  -- E.164; NULL until fetched
    body            TEXT,                  -- NULL until fetched
    state           TEXT    NOT NULL CHECK (state IN ('received','fetched','sending','sent','failed','reported')),
    outcome         TEXT             CHECK (outcome IN ('sent','failed')),
    fail_reason     TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,   -- attempts at the current stage
    last_error      TEXT,
    next_attempt_at INTEGER,               -- unix ms; NULL = as soon as possible
    concat_ref      INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    UNIQUE (source, instance, external_id)
);
CREATE INDEX outbox_by_state ON outbox (state, next_attempt_at);

CREATE TABLE outbox_parts (
    outbox_id       INTEGER NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
    seq             INTEGER NOT NULL,      -- 1-based
    pdu             TEXT    NOT NULL,      -- hex, with the leading SMSC octet
    tpdu_len        INTEGER NOT NULL,      -- the number given to AT+CMGS
    state           TEXT    NOT NULL CHECK (state IN ('pending','sending','acked','failed','unknown')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    modem           TEXT,
    message_ref     INTEGER,               -- TP-MR from +CMGS
    acked_at        INTEGER,
    delivery_status INTEGER,               -- TP-ST from a status report
    delivered_at    INTEGER,
    PRIMARY KEY (outbox_id, seq)
);
CREATE INDEX parts_by_ref ON outbox_parts (modem, message_ref);

CREATE TABLE kv (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"#;

/// Version 2: the inbound side (inbox, forward deliveries), opt-outs and the event log.
const V2: &str = r#"
CREATE TABLE inbox (
    id           INTEGER PRIMARY KEY,
    uid          TEXT    NOT NULL UNIQUE,  -- stable random id: Twilio MessageSid, PBX message_id
    modem        TEXT    NOT NULL,
    sender       TEXT,
    body         TEXT,
    encoding     TEXT,
    parts        INTEGER NOT NULL DEFAULT 1,
    incomplete   INTEGER NOT NULL DEFAULT 0,
    decode_error TEXT,                     -- set when a PDU could not be decoded: kept raw
    keyword      TEXT,
    sent_at      TEXT,                     -- the sender's timestamp (SCTS), RFC 3339
    received_at  INTEGER NOT NULL
);

CREATE TABLE inbox_parts (
    id           INTEGER PRIMARY KEY,
    inbox_id     INTEGER REFERENCES inbox (id) ON DELETE CASCADE,  -- NULL while waiting for siblings
    modem        TEXT    NOT NULL,
    pdu          TEXT    NOT NULL,
    sender       TEXT,
    concat_ref   INTEGER,
    concat_total INTEGER,
    concat_seq   INTEGER,
    text         TEXT,
    encoding     TEXT,
    sent_at      TEXT,
    decode_error TEXT,
    received_at  INTEGER NOT NULL
);
CREATE INDEX inbox_parts_waiting ON inbox_parts (inbox_id, sender, concat_ref);

CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY,
    inbox_id        INTEGER NOT NULL REFERENCES inbox (id) ON DELETE CASCADE,
    forwarder       TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('pending','delivered','emailing','emailed','gave_up')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    last_error      TEXT,
    delivered_at    INTEGER,
    UNIQUE (inbox_id, forwarder)
);

CREATE TABLE delivery_attempts (
    id          INTEGER PRIMARY KEY,
    delivery_id INTEGER NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    at          INTEGER NOT NULL,
    channel     TEXT    NOT NULL CHECK (channel IN ('http','email')),
    http_status INTEGER,
    error       TEXT
);

CREATE TABLE optouts (
    number     TEXT PRIMARY KEY,
    source     TEXT    NOT NULL,           -- sms | cli
    created_at INTEGER NOT NULL
);

CREATE TABLE events (
    id      INTEGER PRIMARY KEY,
    at      INTEGER NOT NULL,
    kind    TEXT    NOT NULL,
    subject TEXT,
    detail  TEXT
);

CREATE TABLE webhook_calls (
    id        INTEGER PRIMARY KEY,
    at        INTEGER NOT NULL,
    direction TEXT    NOT NULL CHECK (direction IN ('in','out')),
    endpoint  TEXT    NOT NULL,
    status    INTEGER,
    detail    TEXT
);
"#;

/// Version 3: the claim of a message by one modem sender, taken and released in SQL (one
/// statement each), so two senders, even in two processes, can never take the same message.
const V3: &str = r#"
ALTER TABLE outbox ADD COLUMN claimed_by TEXT;   -- the modem whose sender works on it; NULL = free
"#;

/// Version 4: hostile data and failures.
///
/// - `outbox` is rebuilt (SQLite cannot alter a CHECK) to allow the state `refused`: an
///   automatic reply the reply policy refused, recorded with its reason and never sent. It also
///   gets `erased_at` (retention), `in_reply_to` (the inbox row an automatic reply answers, so
///   `inbox show` lists its replies, refused ones with the reason) and an index on `recipient`. The runner has foreign keys off
///   during migrations, so dropping the old table does not cascade to `outbox_parts`.
/// - A trigger refuses `→ sent` unless the message has parts and every one is `acked`: a false
///   success cannot be written, whatever the caller.
/// - `inbox_parts.slot` (`<mem>:<index>` for a PDU read from modem storage, NULL for `+CMT`) and
///   `slot_freed` (set once deleted there): a duplicate is only the same PDU in the same slot of
///   the same modem, not yet deleted. Indexed.
/// - `inbox_parts.sender_ton`: the sender's type of number, so no reply goes to a
///   network-specific or abbreviated (short code) sender.
/// - `outbox (source, created_at)`: the reply policy's hourly counts.
/// - `inbox.erased_at`: retention erased its body and sender.
const V4: &str = r#"
CREATE TABLE outbox_v4 (
    id              INTEGER PRIMARY KEY,
    source          TEXT    NOT NULL,
    instance        TEXT,
    external_id     INTEGER,
    recipient       TEXT,
    body            TEXT,
    state           TEXT    NOT NULL CHECK (state IN ('received','fetched','sending','sent','failed','reported','refused')),
    outcome         TEXT             CHECK (outcome IN ('sent','failed')),
    fail_reason     TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    next_attempt_at INTEGER,
    concat_ref      INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    claimed_by      TEXT,
    erased_at       INTEGER,               -- unix ms: retention erased recipient and body
    in_reply_to     INTEGER,               -- the inbox row an automatic reply answers
    UNIQUE (source, instance, external_id)
);
INSERT INTO outbox_v4 (id, source, instance, external_id, recipient, body, state, outcome, fail_reason, attempts,
                       last_error, next_attempt_at, concat_ref, created_at, updated_at, claimed_by)
    SELECT id, source, instance, external_id, recipient, body, state, outcome, fail_reason, attempts,
           last_error, next_attempt_at, concat_ref, created_at, updated_at, claimed_by FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_v4 RENAME TO outbox;
CREATE INDEX outbox_by_state ON outbox (state, next_attempt_at);
CREATE INDEX outbox_by_recipient ON outbox (recipient, created_at);
CREATE INDEX outbox_by_source ON outbox (source, created_at);   -- the reply policy's hourly count
CREATE INDEX outbox_by_reply_to ON outbox (in_reply_to) WHERE in_reply_to IS NOT NULL;

CREATE TRIGGER outbox_sent_needs_every_part_acked BEFORE UPDATE OF state ON outbox
WHEN NEW.state = 'sent' AND OLD.state <> 'sent' AND (
    NOT EXISTS (SELECT 1 FROM outbox_parts WHERE outbox_id = NEW.id)
    OR EXISTS (SELECT 1 FROM outbox_parts WHERE outbox_id = NEW.id AND state <> 'acked'))
BEGIN
    SELECT RAISE(ABORT, 'a message becomes sent only when every part is acked');
END;

ALTER TABLE inbox_parts ADD COLUMN sender_ton INTEGER;           -- type of number (TS 23.040 9.1.2.5)
ALTER TABLE inbox_parts ADD COLUMN slot TEXT;
ALTER TABLE inbox_parts ADD COLUMN slot_freed INTEGER NOT NULL DEFAULT 0;
CREATE INDEX inbox_parts_in_slot ON inbox_parts (modem, slot) WHERE slot IS NOT NULL AND slot_freed = 0;

ALTER TABLE inbox ADD COLUMN erased_at INTEGER;
"#;

/// Version 5: reminders-button requests already accepted, so a captured request cannot be
/// replayed (kept until its timestamp would be refused as stale anyway).
const V5: &str = r#"
CREATE TABLE button_requests (
    instance     TEXT    NOT NULL,
    timestamp    TEXT    NOT NULL,         -- exactly as received
    verification TEXT    NOT NULL,         -- lowercase hex
    seen_at      INTEGER NOT NULL,         -- unix ms
    PRIMARY KEY (instance, timestamp, verification)
) WITHOUT ROWID;
CREATE INDEX button_requests_by_age ON button_requests (seen_at);
"#;

/// Version 6: accounts for people (`users`, their `sessions`) and tokens for programs
/// (`api_tokens`). Only hashes of secrets are stored: the argon2id PHC string of a password, the
/// SHA-256 of a session id or a token (both random and long, so a fast hash is enough; a copy of
/// the database signs nobody in).
const V6: &str = r#"
CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    name          TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,         -- argon2id PHC string
    created_at    INTEGER NOT NULL
);

CREATE TABLE sessions (
    id_hash    BLOB    PRIMARY KEY,         -- SHA-256 of the cookie's random 128-bit id
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token TEXT    NOT NULL,            -- what the session's forms carry
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

CREATE TABLE api_tokens (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL,
    token_hash BLOB    NOT NULL UNIQUE,     -- SHA-256 of the token
    created_at INTEGER NOT NULL,
    revoked_at INTEGER                      -- NULL while the token is valid
);
-- One valid token per name; revoked ones stay listed and free the name.
CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens (name) WHERE revoked_at IS NULL;
"#;

/// Version 7: the clinic's window (event webhooks, the local API, the UI's audit list).
///
/// - `events` and `webhook_calls` of v2 were written by nothing that read them; they are replaced.
///   `events` is a transactional outbox: a row is inserted in the same transaction as the state
///   change it describes (a sent message, a received one, an opt-out), with one
///   `event_deliveries` row per `[[event_webhook]]` that wants its type. `uid` is the envelope's
///   `id` (a UUID v4), the same on every attempt; `data` is the v2 `data` object as JSON.
/// - `webhook_calls` is the call log: one row per attempt with what was sent and what came back
///   (the first 4 KiB of the answer), kept by the retention rule like `delivery_attempts`.
/// - `outbox.idempotency_key`: a local API send's key; one message per key (source `api`).
/// - `audit`: who did what in the web UI or the API (kept like the call log).
const V7: &str = r#"
DROP TABLE events;
DROP TABLE webhook_calls;

CREATE TABLE events (
    id         INTEGER PRIMARY KEY,
    uid        TEXT    NOT NULL UNIQUE,     -- UUID v4: the envelope id, the same on every attempt
    type       TEXT    NOT NULL,            -- sms.sent, optout.added, ...
    created_at INTEGER NOT NULL,            -- unix ms
    data       TEXT    NOT NULL             -- the v2 `data` object, JSON
);
CREATE INDEX events_by_time ON events (created_at);

CREATE TABLE event_deliveries (
    event_id        INTEGER NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    webhook         TEXT    NOT NULL,       -- [[event_webhook]] name
    state           TEXT    NOT NULL CHECK (state IN ('pending','delivered','gave_up')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,                -- unix ms; NULL = as soon as possible
    last_error      TEXT,
    settled_at      INTEGER,
    PRIMARY KEY (event_id, webhook)
) WITHOUT ROWID;
CREATE INDEX event_deliveries_due ON event_deliveries (webhook, next_attempt_at) WHERE state = 'pending';

CREATE TABLE webhook_calls (
    id               INTEGER PRIMARY KEY,
    event_id         INTEGER NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    webhook          TEXT    NOT NULL,
    at               INTEGER NOT NULL,      -- unix ms, when the request started
    url              TEXT    NOT NULL,      -- without user info or query secrets
    request_headers  TEXT    NOT NULL,      -- "Name: value" lines
    request_body     TEXT    NOT NULL,
    status           INTEGER,               -- HTTP status; NULL when no answer came
    response_headers TEXT,
    response_body    TEXT,                  -- the first 4 KiB, lossy UTF-8
    duration_ms      INTEGER NOT NULL,
    error            TEXT
);
CREATE INDEX webhook_calls_by_event ON webhook_calls (event_id);
CREATE INDEX webhook_calls_by_time ON webhook_calls (at);

ALTER TABLE outbox ADD COLUMN idempotency_key TEXT;
CREATE UNIQUE INDEX outbox_by_idempotency_key ON outbox (idempotency_key) WHERE idempotency_key IS NOT NULL;

CREATE TABLE audit (
    id      INTEGER PRIMARY KEY,
    at      INTEGER NOT NULL,               -- unix ms
    actor   TEXT    NOT NULL,               -- "user:<name>", "token:<name>", "cli", "panel:<instance>"
    action  TEXT    NOT NULL,               -- e.g. "send", "retry", "optout.add"
    subject TEXT                            -- the message id or number acted on
);
CREATE INDEX audit_by_time ON audit (at);
"#;

/// Version 8: a modem pool that keeps conversations whole.
///
/// - `outbox.via_modem`: the modem a message should leave through (the one that received the
///   SMS it answers, or the one its recipient last texted). A preference, not a binding: the
///   claim gives it to another modem when that one is not healthy or not configured any more.
/// - `inbox (sender)`: the "which modem did this number last text" lookup at queueing time
///   (one index seek, newest row by rowid). Partial, so erased rows (sender NULL) cost nothing.
const V8: &str = r#"
ALTER TABLE outbox ADD COLUMN via_modem TEXT;
CREATE INDEX inbox_by_sender ON inbox (sender) WHERE sender IS NOT NULL;
"#;

pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, sql: V1 },
    Migration { version: 2, sql: V2 },
    Migration { version: 3, sql: V3 },
    Migration { version: 4, sql: V4 },
    Migration { version: 5, sql: V5 },
    Migration { version: 6, sql: V6 },
    Migration { version: 7, sql: V7 },
    Migration { version: 8, sql: V8 },
];

/// The schema version this build writes.
pub const LATEST: u32 = 8;
