//! The embedded store: one SQLite file in WAL mode (DESIGN "Embedded
//! default").
//!
//! Admin commands open the same file while a server runs, so nothing is
//! cached in memory: every call reads and writes the file, and every
//! multi-step operation is one `BEGIN IMMEDIATE` transaction, which takes
//! SQLite's write lock before its first read. That is what makes a rotation
//! or a code redemption atomic across connections and processes (DESIGN
//! invariants 2 and 6). Rotations that arrive together share one such
//! transaction, each in a savepoint of its own (`commit_rotations`).

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

use crate::domain::{
    AuthCode, AuthorizationRequest, Client, Consent, DeviceCode, DeviceDecision, Flow, Grant,
    Interaction, RefreshToken, RefreshView, Scopes, Session, User,
};
use crate::ports::{Failures, Redeemed, Rotated, Store, StoreError};

/// Bumped whenever the schema changes; a file written by a newer build is
/// refused rather than misread.
const SCHEMA_VERSION: i64 = 4;

/// Long enough to ride out another process's write transaction (they are
/// all a few statements), short enough that a stuck writer becomes a 503
/// rather than a hung request.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Expired rows are invisible to every read, so deleting them is only
/// housekeeping; once per this many redemptions and rotations is plenty.
const GC_EVERY: u64 = 64;

/// How often a thread of the store's own copies the log's pages into the
/// database file (a passive checkpoint, which never waits for anyone). At
/// saturation the log grows by about 25,000 pages a second, but a
/// checkpoint copies each page once, whatever its number of versions, and
/// the rotations of an instant write the same few pages: the last pages of
/// the table and of its key index (refresh keys sort by when they were
/// made, `secret::refresh_key`), a leaf of the expiry index for each grant
/// in use (a token expires with its grant), and the grants' rows. Copying
/// often keeps each checkpoint's fsyncs short, and so the checkpoint a
/// commit must run now and then (below). In the refresh benchmark, 15, 30
/// and 250 ms gave p99 3.0-3.4, 3.0-3.5 and 3.9-4.2 ms. With nothing to
/// copy, a checkpoint reads the log's index and returns.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(30);

/// Log pages after which a commit checkpoints by itself (SQLite's default
/// is 1000). Under writes that never pause, this is what restarts the log:
/// SQLite rewinds it only after a checkpoint that no commit interrupted, and
/// that checkpoint's fsyncs are waited for by the request that runs it.
/// At 1,000 pages the refresh benchmark's p99 was 5.0-5.6 ms; at 30,000,
/// 40,000 and 100,000 its tail was no shorter than at 10,000.
const AUTOCHECKPOINT_PAGES: i64 = 10_000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS clients (
    id          TEXT PRIMARY KEY NOT NULL,
    -- Client::secret_hash is not serialized, so it lives in its own column.
    secret_hash TEXT,
    record      TEXT NOT NULL
) STRICT;

CREATE TABLE IF NOT EXISTS users (
    id            TEXT PRIMARY KEY NOT NULL,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    email         TEXT,
    created_at    INTEGER NOT NULL,
    totp_secret   TEXT,
    -- The last TOTP step whose code was used (RFC 6238 §5.2).
    totp_step     INTEGER
) STRICT;

CREATE TABLE IF NOT EXISTS interactions (
    id           TEXT PRIMARY KEY NOT NULL,
    csrf_hash    TEXT NOT NULL,
    browser_hash TEXT NOT NULL,
    request      TEXT NOT NULL,
    user_id      TEXT,
    auth_time    INTEGER,
    amr          TEXT NOT NULL,
    expires_at   INTEGER NOT NULL,
    -- Interaction::flow as JSON (schema version 3); NULL reads as the default.
    flow         TEXT
) STRICT;
CREATE INDEX IF NOT EXISTS interactions_by_expiry ON interactions (expires_at);

CREATE TABLE IF NOT EXISTS sessions (
    hash       TEXT PRIMARY KEY NOT NULL,
    user_id    TEXT NOT NULL,
    auth_time  INTEGER NOT NULL,
    amr        TEXT NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS sessions_by_expiry ON sessions (expires_at);

CREATE TABLE IF NOT EXISTS consents (
    user_id    TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    granted_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, client_id)
) STRICT;

CREATE TABLE IF NOT EXISTS codes (
    hash           TEXT PRIMARY KEY NOT NULL,
    client_id      TEXT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    scopes         TEXT NOT NULL,
    nonce          TEXT,
    code_challenge TEXT,
    auth_time      INTEGER NOT NULL,
    amr            TEXT NOT NULL,
    grant_id       TEXT NOT NULL,
    expires_at     INTEGER NOT NULL,
    consumed_at    INTEGER
) STRICT;
CREATE INDEX IF NOT EXISTS codes_by_expiry ON codes (expires_at);

CREATE TABLE IF NOT EXISTS grants (
    id           TEXT PRIMARY KEY NOT NULL,
    user_id      TEXT NOT NULL,
    client_id    TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    auth_time    INTEGER NOT NULL,
    amr          TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    revoked_at   INTEGER,
    last_used_at INTEGER NOT NULL
) STRICT;
-- Bulk revocation and \"list my grants\" (DESIGN: revoke-by-user and by-client use an index).
CREATE INDEX IF NOT EXISTS grants_by_user ON grants (user_id, client_id);
CREATE INDEX IF NOT EXISTS grants_by_client ON grants (client_id);

-- Failed attempts per throttling key (password grant: per user, per client).
CREATE TABLE IF NOT EXISTS failures (
    key        TEXT PRIMARY KEY NOT NULL,
    count      INTEGER NOT NULL,
    last_at    INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS failures_by_expiry ON failures (expires_at);

-- Invariant 4: a token belongs to exactly one grant, and revoking the grant
-- (one UPDATE) kills the token because every use joins the grant. A token is
-- inserted only in the transaction that reads or creates its grant. There is
-- no foreign key to grants and no index by grant (schema version 4): the
-- rotations would write that index at each grant's place, a page for each
-- grant in use, and a foreign key without it makes a grant's delete scan
-- the table.
CREATE TABLE IF NOT EXISTS refresh_tokens (
    hash            TEXT PRIMARY KEY NOT NULL,
    grant_id        TEXT NOT NULL,
    client_id       TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    idle_expires_at INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    consumed_at     INTEGER,
    successor_hash  TEXT
) STRICT;
CREATE INDEX IF NOT EXISTS refresh_tokens_by_expiry ON refresh_tokens (expires_at);

-- Device authorization (RFC 8628), schema version 3. Rows are kept until
-- kept_until, past the codes' own expires_at, so that late polls hear
-- expired_token; a user code may be reused once its row is no longer kept.
CREATE TABLE IF NOT EXISTS device_codes (
    hash           TEXT PRIMARY KEY NOT NULL,
    user_code_hash TEXT NOT NULL UNIQUE,
    client_id      TEXT NOT NULL,
    scopes         TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    kept_until     INTEGER NOT NULL,
    interval       INTEGER NOT NULL,
    last_polled_at INTEGER,
    decision       TEXT,
    consumed_at    INTEGER,
    grant_id       TEXT
) STRICT;
CREATE INDEX IF NOT EXISTS device_codes_by_expiry ON device_codes (kept_until);
";

const DEVICE_COLUMNS: &str = "hash, user_code_hash, client_id, scopes, created_at, expires_at, kept_until, interval, last_polled_at, decision, consumed_at";

const GRANT_COLUMNS: &str = "id, user_id, client_id, scopes, auth_time, amr, created_at, expires_at, revoked_at, last_used_at";
const REFRESH_COLUMNS: &str = "hash, grant_id, client_id, user_id, created_at, idle_expires_at, expires_at, consumed_at, successor_hash";

/// A [`Store`] on one SQLite file. Cheap to clone: clones share the
/// connection.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// One connection, used by one operation at a time. SQLite
    /// serializes writers anyway, and other processes get their own.
    conn: Mutex<Connection>,
    /// Counts redemptions and rotations, to run the housekeeping now and then.
    writes: AtomicU64,
    /// Rotations waiting to be committed together (see `commit_rotations`).
    rotations: Mutex<Vec<Rotation>>,
}

/// One refresh-token rotation waiting for its group's commit.
struct Rotation {
    old_hash: String,
    successor: RefreshToken,
    leeway: i64,
    now: i64,
    reply: oneshot::Sender<Result<Rotated, StoreError>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if missing) the database file at `path` and brings
    /// its schema up to date. Safe to call from several processes at once.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        create_private_file(path)?;
        let conn = Connection::open(path).map_err(|e| open_error(path, &e.to_string()))?;
        let store = Self::init(conn, true).map_err(|e| open_error(path, &e.to_string()))?;
        store.checkpoint_in_background(path);
        Ok(store)
    }

    /// Starts the checkpointing thread, on a connection of its own; it ends
    /// within `CHECKPOINT_EVERY` of the store's last clone being dropped.
    /// Without it the commits' own checkpoints still bound the log.
    fn checkpoint_in_background(&self, path: &Path) {
        let store = Arc::downgrade(&self.inner);
        let path = path.to_owned();
        let spawned = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                let conn = match Connection::open(&path) {
                    Ok(conn) => conn,
                    Err(e) => {
                        tracing::warn!(error = %e, "sqlite: no checkpointing connection");
                        return;
                    }
                };
                loop {
                    std::thread::sleep(CHECKPOINT_EVERY);
                    if store.strong_count() == 0 {
                        return;
                    }
                    let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                    if let Err(e) = done {
                        tracing::warn!(error = %e, "sqlite: checkpoint failed");
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "sqlite: no checkpointing thread");
        }
    }

    /// A private database that lives as long as this value (tests, demos).
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory()
            .map_err(|e| open_error(Path::new(":memory:"), &e.to_string()))?;
        Self::init(conn, false).map_err(|e| open_error(Path::new(":memory:"), &e.to_string()))
    }

    fn init(mut conn: Connection, wal: bool) -> Result<Self, Failure> {
        // Set first, so that even the schema setup waits for a busy writer.
        conn.busy_timeout(BUSY_TIMEOUT)?;
        if wal {
            // WAL lets admin commands in other processes read beside the
            // server's writes; it is a property of the file, so this also
            // converts a file created without it.
            let mode: String =
                conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(Failure::Corrupt("the database refused WAL journal mode"));
            }
            conn.pragma_update(None, "wal_autocheckpoint", AUTOCHECKPOINT_PAGES)?;
        }
        // In WAL mode NORMAL cannot corrupt the file; a power cut may lose
        // the last commits, which costs users a sign-in, not a security property.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;

        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(Failure::Corrupt(
                "the database was written by a newer tokenfn (schema version too new)",
            ));
        }
        if (1..4).contains(&version) {
            // Version 4 dropped the refresh tokens' foreign key and grant
            // index. SQLite cannot drop a foreign key in place: the old table
            // steps aside (its indexes go with it), SCHEMA makes the new one,
            // and the rows move across below.
            tx.execute_batch(
                "ALTER TABLE refresh_tokens RENAME TO refresh_tokens_v3;
                 DROP INDEX IF EXISTS refresh_tokens_by_grant;
                 DROP INDEX IF EXISTS refresh_tokens_by_expiry;",
            )?;
        }
        tx.execute_batch(SCHEMA)?;
        if (1..4).contains(&version) {
            tx.execute_batch(&format!(
                "INSERT INTO refresh_tokens ({REFRESH_COLUMNS})
                     SELECT {REFRESH_COLUMNS} FROM refresh_tokens_v3;
                 DROP TABLE refresh_tokens_v3;"
            ))?;
        }
        if version == 1 {
            // Version 2 added the second factor to users.
            tx.execute_batch(
                "ALTER TABLE users ADD COLUMN totp_secret TEXT;
                 ALTER TABLE users ADD COLUMN totp_step INTEGER;",
            )?;
        }
        if (1..3).contains(&version) {
            // Version 3 added the interaction's flow (second factor, purpose).
            tx.execute_batch("ALTER TABLE interactions ADD COLUMN flow TEXT;")?;
        }
        if version < SCHEMA_VERSION {
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        }
        tx.commit()?;

        Ok(Self {
            inner: Arc::new(Inner {
                conn: Mutex::new(conn),
                writes: AtomicU64::new(0),
                rotations: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Runs `body` (consume a code of some kind, create the grant and its
    /// first refresh token) in one immediate transaction, committed when
    /// `wrote` says its outcome changed something.
    async fn redeem<T: Send + 'static>(
        &self,
        op: &'static str,
        r: Redemption,
        body: RedeemBody<T>,
        wrote: fn(&T) -> bool,
    ) -> Result<T, StoreError> {
        let gc = self.gc_due(1);
        self.run(op, move |conn| {
            let outcome = atomically(
                conn,
                |tx| body(tx, &r.hash, &r.grant, r.refresh.as_ref(), r.now),
                wrote,
            )?;
            after_write(conn, gc, r.now);
            Ok(outcome)
        })
        .await
    }

    /// Revokes every active grant whose `column` is `value`.
    async fn revoke_where(
        &self,
        what: &'static str,
        column: &'static str,
        value: &str,
        now: i64,
    ) -> Result<u64, StoreError> {
        self.run(what, move |conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "UPDATE grants SET revoked_at = ?2
                     WHERE {column} = ?1 AND revoked_at IS NULL AND expires_at > ?2"
                ))?
                .execute(params![value, now])? as u64)
        })
        .await
    }

    /// Runs `op` on the connection, on the calling task's thread. Each op is
    /// a few statements on a WAL file with `synchronous=NORMAL`, so a commit
    /// writes the log without waiting for the disk: tens of microseconds.
    /// Handing that to the blocking pool cost more than the work itself (in
    /// a profile of the refresh benchmark, 40% of the server's time went to
    /// switching threads for it). An op waits longer only behind another
    /// process's write (an admin command), for at most `BUSY_TIMEOUT`.
    async fn run<T, F>(&self, what: &'static str, op: F) -> Result<T, StoreError>
    where
        F: FnOnce(&mut Connection) -> Result<T, Failure>,
    {
        self.run_now(what, op)
    }

    /// [`Self::run`], for callers that are not async.
    fn run_now<T, F>(&self, what: &'static str, op: F) -> Result<T, StoreError>
    where
        F: FnOnce(&mut Connection) -> Result<T, Failure>,
    {
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            // A panic while the lock was held happened inside a statement or
            // a transaction, which SQLite rolled back (Transaction rolls back
            // on drop), so the connection is still sound.
            let mut conn = self
                .inner
                .conn
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            op(&mut conn)
        }));
        match outcome {
            Ok(result) => result.map_err(|failure| failure.into_store_error(what)),
            // The panic message is not forwarded: it could quote a value.
            Err(_) => Err(StoreError::Unavailable(format!(
                "sqlite {what}: operation panicked"
            ))),
        }
    }

    /// Commits every waiting rotation in one IMMEDIATE transaction, each in
    /// a savepoint of its own: a rotation that fails is rolled back alone,
    /// and each is answered only once the group has committed. A commit
    /// (the write lock, the log's frames, the shared-memory locks) costs
    /// more than a rotation's statements, and rotations of one instant share
    /// pages (the tables' last pages, the grant), so a group writes far less
    /// than its rotations would one by one. Under load the group is every
    /// rotation that arrived while the previous one was being written; alone,
    /// a rotation is a group of one. Outcomes are those of running the
    /// group's rotations one after another, in the order they arrived.
    fn commit_rotations(&self) {
        let jobs = std::mem::take(
            &mut *self
                .inner
                .rotations
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let Some(now) = jobs.iter().map(|j| j.now).max() else {
            return;
        };
        let gc = self.gc_due(jobs.len() as u64);
        let outcomes = self.run_now("rotate_refresh", |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let outcomes: Vec<_> = jobs
                .iter()
                .map(|j| {
                    in_savepoint(&tx, |c| {
                        rotate_in(c, &j.old_hash, &j.successor, j.leeway, j.now)
                    })
                })
                .collect::<Result<_, Failure>>()?;
            if outcomes.iter().any(|o| matches!(o, Ok(Rotated::Rotated))) {
                tx.commit()?;
            } else {
                tx.rollback()?;
            }
            after_write(conn, gc, now);
            Ok(outcomes)
        });
        match outcomes {
            Ok(outcomes) => {
                for (job, outcome) in jobs.into_iter().zip(outcomes) {
                    let outcome = outcome.map_err(|f| f.into_store_error("rotate_refresh"));
                    // A receiver that is gone belonged to a dropped request.
                    let _ = job.reply.send(outcome);
                }
            }
            Err(e) => {
                for job in jobs {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    }

    /// The client and one more record, read in one transaction: both as of
    /// the same commit.
    async fn client_and<T>(
        &self,
        what: &'static str,
        client_id: &str,
        other: impl FnOnce(&Connection) -> Result<Option<T>, Failure>,
    ) -> Result<(Option<Client>, Option<T>), StoreError> {
        self.run(what, |conn| {
            let tx = conn.transaction()?;
            Ok((client_in(&tx, client_id)?, other(&tx)?))
        })
        .await
    }

    /// Counts `writes` more redemptions or rotations; whether they bring the
    /// count to a multiple of `GC_EVERY`, so that the housekeeping is due.
    fn gc_due(&self, writes: u64) -> bool {
        let before = self.inner.writes.fetch_add(writes, Ordering::Relaxed);
        before / GC_EVERY != (before + writes) / GC_EVERY
    }
}

/// Deletes rows that every read already treats as absent (DESIGN invariant
/// 5). Consumed refresh tokens stay until their `expires_at`, the grant's
/// absolute expiry, because reuse detection needs them (invariant 3).
/// Grants are kept: `get_grant` has no clock and reports them as they are.
fn collect_garbage(conn: &Connection, now: i64) -> rusqlite::Result<usize> {
    let mut deleted = 0;
    for table in [
        "interactions",
        "sessions",
        "codes",
        "refresh_tokens",
        "failures",
    ] {
        deleted += conn
            .prepare_cached(&format!("DELETE FROM {table} WHERE expires_at <= ?1"))?
            .execute([now])?;
    }
    deleted += conn
        .prepare_cached("DELETE FROM device_codes WHERE kept_until <= ?1")?
        .execute([now])?;
    Ok(deleted)
}

/// The body of a redemption inside its transaction: the code's hash, the
/// grant, its first refresh token, now.
type RedeemBody<T> =
    fn(&Transaction<'_>, &str, &Grant, Option<&RefreshToken>, i64) -> Result<T, Failure>;

/// What a redemption writes.
struct Redemption {
    hash: String,
    grant: Grant,
    refresh: Option<RefreshToken>,
    now: i64,
}

impl Redemption {
    fn new(hash: &str, grant: &Grant, refresh: Option<&RefreshToken>, now: i64) -> Self {
        Self {
            hash: hash.to_owned(),
            grant: grant.clone(),
            refresh: refresh.cloned(),
            now,
        }
    }
}

/// Housekeeping after a write has committed (or rolled back), outside its
/// transaction so that the write lock is not held longer than the operation.
/// Runs `op` in one IMMEDIATE transaction and commits only when `wrote`
/// says its outcome changed something; otherwise nothing it did stays, and
/// ending the transaction releases the lock.
fn atomically<T>(
    conn: &mut Connection,
    op: impl FnOnce(&Transaction<'_>) -> Result<T, Failure>,
    wrote: impl FnOnce(&T) -> bool,
) -> Result<T, Failure> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let outcome = op(&tx)?;
    if wrote(&outcome) {
        tx.commit()?;
    } else {
        tx.rollback()?;
    }
    Ok(outcome)
}

/// Runs `op` in a savepoint of the open transaction on `conn`: its writes
/// stay when it succeeds and are undone when it fails. The inner result is
/// the operation's; the outer one fails when the savepoint itself does,
/// which leaves the transaction in doubt.
fn in_savepoint<T>(
    conn: &Connection,
    op: impl FnOnce(&Connection) -> Result<T, Failure>,
) -> Result<Result<T, Failure>, Failure> {
    conn.prepare_cached("SAVEPOINT one_of_group")?.execute([])?;
    let outcome = op(conn);
    if outcome.is_err() {
        conn.prepare_cached("ROLLBACK TO one_of_group")?
            .execute([])?;
    }
    conn.prepare_cached("RELEASE one_of_group")?.execute([])?;
    Ok(outcome)
}

fn code_in(conn: &Connection, hash: &str, now: i64) -> Result<Option<AuthCode>, Failure> {
    Ok(conn
        .prepare_cached(
            "SELECT hash, client_id, redirect_uri, user_id, scopes, nonce, code_challenge,
                 auth_time, amr, grant_id, expires_at, consumed_at
             FROM codes WHERE hash = ?1 AND expires_at > ?2",
        )?
        .query_row(params![hash, now], |row| {
            Ok(AuthCode {
                hash: row.get(0)?,
                client_id: row.get(1)?,
                redirect_uri: row.get(2)?,
                user_id: row.get(3)?,
                scopes: scopes_column(row, 4)?,
                nonce: row.get(5)?,
                code_challenge: row.get(6)?,
                auth_time: row.get(7)?,
                amr: json_column(row, 8)?,
                grant_id: row.get(9)?,
                expires_at: row.get(10)?,
                consumed_at: row.get(11)?,
            })
        })
        .optional()?)
}

fn client_in(conn: &Connection, id: &str) -> Result<Option<Client>, Failure> {
    Ok(conn
        .prepare_cached("SELECT secret_hash, record FROM clients WHERE id = ?1")?
        .query_row([id], |row| {
            let mut client: Client = json_column(row, 1)?;
            client.secret_hash = row.get(0)?;
            Ok(client)
        })
        .optional()?)
}

fn refresh_in(conn: &Connection, hash: &str, now: i64) -> Result<Option<RefreshView>, Failure> {
    let sql = format!(
        "SELECT {}, {} FROM refresh_tokens t JOIN grants g ON g.id = t.grant_id
         WHERE t.hash = ?1 AND t.expires_at > ?2",
        prefixed("t", REFRESH_COLUMNS),
        prefixed("g", GRANT_COLUMNS)
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params![hash, now], |row| {
            Ok(RefreshView {
                token: refresh_from_row(row, 0)?,
                grant: grant_from_row(row, 9)?,
            })
        })
        .optional()?)
}

fn after_write(conn: &Connection, gc: bool, now: i64) {
    if gc {
        // Best effort: a failure here must not fail the operation that committed.
        if let Err(e) = collect_garbage(conn, now) {
            tracing::warn!(error = %e, "sqlite: deleting expired rows failed");
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn put_client(&self, client: &Client) -> Result<(), StoreError> {
        self.run("put_client", move |conn| {
            let record = to_json(&client)?;
            conn.prepare_cached(
                "INSERT INTO clients (id, secret_hash, record) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET secret_hash = excluded.secret_hash, record = excluded.record",
            )?
            .execute(params![client.id, client.secret_hash, record])?;
            Ok(())
        })
        .await
    }

    async fn get_client(&self, id: &str) -> Result<Option<Client>, StoreError> {
        self.run("get_client", move |conn| client_in(conn, id))
            .await
    }

    async fn add_user(&self, user: &User) -> Result<(), StoreError> {
        self.run("add_user", move |conn| {
            let inserted = conn
                .prepare_cached(
                    "INSERT INTO users (id, username, password_hash, email, created_at, totp_secret)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    user.id,
                    user.username,
                    user.password_hash,
                    user.email,
                    user.created_at,
                    user.totp_secret
                ]);
            match inserted {
                Ok(_) => Ok(()),
                Err(e) => Err(match constraint_kind(&e) {
                    Some(rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE) => {
                        Failure::Conflict("a user with this username exists".into())
                    }
                    Some(rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY) => {
                        Failure::Conflict("a user with this id exists".into())
                    }
                    _ => Failure::Db(e),
                }),
            }
        })
        .await
    }

    async fn get_user(&self, id: &str) -> Result<Option<User>, StoreError> {
        self.run("get_user", move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT id, username, password_hash, email, created_at, totp_secret
                     FROM users WHERE id = ?1",
                )?
                .query_row([&id], user_from_row)
                .optional()?)
        })
        .await
    }

    async fn find_user(&self, username: &str) -> Result<Option<User>, StoreError> {
        self.run("find_user", move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT id, username, password_hash, email, created_at, totp_secret
                     FROM users WHERE username = ?1",
                )?
                .query_row([&username], user_from_row)
                .optional()?)
        })
        .await
    }

    async fn set_totp(&self, user_id: &str, secret: Option<&str>) -> Result<bool, StoreError> {
        let (id, secret) = (user_id.to_owned(), secret.map(str::to_owned));
        self.run("set_totp", move |conn| {
            let n = conn
                .prepare_cached(
                    "UPDATE users SET totp_secret = ?2, totp_step = NULL WHERE id = ?1",
                )?
                .execute(params![id, secret])?;
            Ok(n == 1)
        })
        .await
    }

    async fn claim_totp_step(&self, user_id: &str, step: i64) -> Result<bool, StoreError> {
        self.run("claim_totp_step", move |conn| {
            let n = conn
                .prepare_cached(
                    "UPDATE users SET totp_step = ?2
                     WHERE id = ?1 AND (totp_step IS NULL OR totp_step < ?2)",
                )?
                .execute(params![user_id, step])?;
            Ok(n == 1)
        })
        .await
    }

    async fn put_interaction(&self, interaction: &Interaction) -> Result<(), StoreError> {
        let i = interaction;
        self.run("put_interaction", move |conn| {
            let request = to_json(&i.request)?;
            let amr = to_json(&i.amr)?;
            let flow = to_json(&i.flow)?;
            conn.prepare_cached(
                "INSERT OR REPLACE INTO interactions
                     (id, csrf_hash, browser_hash, request, user_id, auth_time, amr, expires_at, flow)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                i.id,
                i.csrf_hash,
                i.browser_hash,
                request,
                i.user_id,
                i.auth_time,
                amr,
                i.expires_at,
                flow
            ])?;
            Ok(())
        })
        .await
    }

    async fn get_interaction(&self, id: &str, now: i64) -> Result<Option<Interaction>, StoreError> {
        self.run("get_interaction", move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT id, csrf_hash, browser_hash, request, user_id, auth_time, amr, expires_at, flow
                     FROM interactions WHERE id = ?1 AND expires_at > ?2",
                )?
                .query_row(params![id, now], |row| {
                    let request: AuthorizationRequest = json_column(row, 3)?;
                    let flow: Option<String> = row.get(8)?;
                    let flow: Flow = match flow {
                        None => Flow::default(),
                        Some(_) => json_column(row, 8)?,
                    };
                    Ok(Interaction {
                        id: row.get(0)?,
                        csrf_hash: row.get(1)?,
                        browser_hash: row.get(2)?,
                        request,
                        user_id: row.get(4)?,
                        auth_time: row.get(5)?,
                        amr: json_column(row, 6)?,
                        expires_at: row.get(7)?,
                        flow,
                    })
                })
                .optional()?)
        })
        .await
    }

    async fn delete_interaction(&self, id: &str) -> Result<(), StoreError> {
        self.run("delete_interaction", move |conn| {
            conn.prepare_cached("DELETE FROM interactions WHERE id = ?1")?
                .execute([&id])?;
            Ok(())
        })
        .await
    }

    async fn put_session(&self, session: &Session) -> Result<(), StoreError> {
        let s = session.clone();
        self.run("put_session", move |conn| {
            let amr = to_json(&s.amr)?;
            conn.prepare_cached(
                "INSERT OR REPLACE INTO sessions (hash, user_id, auth_time, amr, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![s.hash, s.user_id, s.auth_time, amr, s.expires_at])?;
            Ok(())
        })
        .await
    }

    async fn get_session(&self, hash: &str, now: i64) -> Result<Option<Session>, StoreError> {
        self.run("get_session", move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT hash, user_id, auth_time, amr, expires_at
                     FROM sessions WHERE hash = ?1 AND expires_at > ?2",
                )?
                .query_row(params![hash, now], |row| {
                    Ok(Session {
                        hash: row.get(0)?,
                        user_id: row.get(1)?,
                        auth_time: row.get(2)?,
                        amr: json_column(row, 3)?,
                        expires_at: row.get(4)?,
                    })
                })
                .optional()?)
        })
        .await
    }

    async fn get_consent(
        &self,
        user_id: &str,
        client_id: &str,
    ) -> Result<Option<Consent>, StoreError> {
        let (user_id, client_id) = (user_id.to_owned(), client_id.to_owned());
        self.run("get_consent", move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT user_id, client_id, scopes, granted_at
                     FROM consents WHERE user_id = ?1 AND client_id = ?2",
                )?
                .query_row(params![user_id, client_id], |row| {
                    Ok(Consent {
                        user_id: row.get(0)?,
                        client_id: row.get(1)?,
                        scopes: scopes_column(row, 2)?,
                        granted_at: row.get(3)?,
                    })
                })
                .optional()?)
        })
        .await
    }

    async fn put_consent(&self, consent: &Consent) -> Result<(), StoreError> {
        let c = consent.clone();
        self.run("put_consent", move |conn| {
            conn.prepare_cached(
                "INSERT OR REPLACE INTO consents (user_id, client_id, scopes, granted_at)
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                c.user_id,
                c.client_id,
                c.scopes.to_string(),
                c.granted_at
            ])?;
            Ok(())
        })
        .await
    }

    async fn put_code(&self, code: &AuthCode) -> Result<(), StoreError> {
        let c = code.clone();
        self.run("put_code", move |conn| {
            let amr = to_json(&c.amr)?;
            // An insert, never an upsert: rewriting a consumed code as
            // unconsumed would let it be redeemed twice (invariant 6).
            let inserted = conn
                .prepare_cached(
                    "INSERT INTO codes (hash, client_id, redirect_uri, user_id, scopes, nonce,
                     code_challenge, auth_time, amr, grant_id, expires_at, consumed_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                )?
                .execute(params![
                    c.hash,
                    c.client_id,
                    c.redirect_uri,
                    c.user_id,
                    c.scopes.to_string(),
                    c.nonce,
                    c.code_challenge,
                    c.auth_time,
                    amr,
                    c.grant_id,
                    c.expires_at,
                    c.consumed_at
                ]);
            match inserted {
                Ok(_) => Ok(()),
                Err(e)
                    if constraint_kind(&e) == Some(rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY) =>
                {
                    Err(Failure::Conflict("a code with this hash exists".into()))
                }
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    async fn find_code(&self, hash: &str, now: i64) -> Result<Option<AuthCode>, StoreError> {
        self.run("find_code", move |conn| code_in(conn, hash, now))
            .await
    }

    async fn client_and_code(
        &self,
        client_id: &str,
        hash: &str,
        now: i64,
    ) -> Result<(Option<Client>, Option<AuthCode>), StoreError> {
        self.client_and("client_and_code", client_id, |tx| code_in(tx, hash, now))
            .await
    }

    async fn redeem_code(
        &self,
        hash: &str,
        grant: &Grant,
        refresh: Option<&RefreshToken>,
        now: i64,
    ) -> Result<Redeemed, StoreError> {
        let redemption = Redemption::new(hash, grant, refresh, now);
        self.redeem("redeem_code", redemption, redeem_in, |o| {
            *o == Redeemed::Issued
        })
        .await
    }

    async fn create_grant(
        &self,
        grant: &Grant,
        refresh: Option<&RefreshToken>,
    ) -> Result<(), StoreError> {
        self.run("create_grant", move |conn| {
            atomically(conn, |tx| insert_grant_with(tx, grant, refresh), |_| true)
        })
        .await
    }

    async fn revoke_oldest_grants(
        &self,
        user_id: &str,
        client_id: &str,
        keep: usize,
        now: i64,
    ) -> Result<u64, StoreError> {
        let (user_id, client_id) = (user_id.to_owned(), client_id.to_owned());
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        self.run("revoke_oldest_grants", move |conn| {
            let revoked = conn
                .prepare_cached(
                    "UPDATE grants SET revoked_at = ?4 WHERE id IN (
                         SELECT id FROM grants
                         WHERE user_id = ?1 AND client_id = ?2
                           AND revoked_at IS NULL AND expires_at > ?4
                         ORDER BY created_at DESC, id DESC LIMIT -1 OFFSET ?3)",
                )?
                .execute(params![user_id, client_id, keep, now])?;
            Ok(revoked as u64)
        })
        .await
    }

    async fn get_failures(&self, key: &str, now: i64) -> Result<Failures, StoreError> {
        self.run("get_failures", move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT count, last_at FROM failures WHERE key = ?1 AND expires_at > ?2",
                )?
                .query_row(params![key, now], |row| {
                    Ok(Failures {
                        count: row.get(0)?,
                        last_at: row.get(1)?,
                    })
                })
                .optional()?
                .unwrap_or_default())
        })
        .await
    }

    async fn add_failure(&self, key: &str, now: i64, ttl: i64) -> Result<Failures, StoreError> {
        self.run("add_failure", move |conn| {
            Ok(conn
                .prepare_cached(
                    "INSERT INTO failures (key, count, last_at, expires_at) VALUES (?1, 1, ?2, ?3)
                     ON CONFLICT (key) DO UPDATE SET
                         count = CASE WHEN failures.expires_at > ?2 THEN failures.count + 1 ELSE 1 END,
                         last_at = ?2, expires_at = ?3
                     RETURNING count, last_at",
                )?
                .query_row(params![key, now, now + ttl], |row| {
                    Ok(Failures {
                        count: row.get(0)?,
                        last_at: row.get(1)?,
                    })
                })?)
        })
        .await
    }

    async fn clear_failures(&self, key: &str) -> Result<(), StoreError> {
        self.run("clear_failures", move |conn| {
            conn.prepare_cached("DELETE FROM failures WHERE key = ?1")?
                .execute([key])?;
            Ok(())
        })
        .await
    }

    async fn find_refresh(&self, hash: &str, now: i64) -> Result<Option<RefreshView>, StoreError> {
        self.run("find_refresh", move |conn| refresh_in(conn, hash, now))
            .await
    }

    async fn client_and_refresh(
        &self,
        client_id: &str,
        hash: &str,
        now: i64,
    ) -> Result<(Option<Client>, Option<RefreshView>), StoreError> {
        self.client_and("client_and_refresh", client_id, |tx| {
            refresh_in(tx, hash, now)
        })
        .await
    }

    async fn rotate_refresh(
        &self,
        old_hash: &str,
        successor: &RefreshToken,
        leeway: i64,
        now: i64,
    ) -> Result<Rotated, StoreError> {
        let (reply, answer) = oneshot::channel();
        let job = Rotation {
            old_hash: old_hash.to_owned(),
            successor: successor.clone(),
            leeway,
            now,
            reply,
        };
        let first = {
            let mut queue = self
                .inner
                .rotations
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            queue.push(job);
            queue.len() == 1
        };
        if first {
            // A task of its own, so that the group is committed even if the
            // request that opened it is dropped (its client hung up).
            let store = self.clone();
            tokio::spawn(async move {
                // Let the requests that are ready to run join the group.
                tokio::task::yield_now().await;
                store.commit_rotations();
            });
        }
        answer.await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                "sqlite rotate_refresh: the group commit was dropped".into(),
            ))
        })
    }

    async fn undo_redemption(
        &self,
        code_hash: &str,
        grant_id: &str,
        refresh_hash: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.run("undo_redemption", move |conn| {
            let undone = atomically(
                conn,
                |tx| {
                    let reset = "consumed_at = NULL";
                    let refresh = refresh_hash;
                    undo_consumption_in(tx, "codes", reset, code_hash, grant_id, refresh)
                },
                |undone| *undone,
            )?;
            Ok(undone)
        })
        .await
    }

    async fn undo_rotation(
        &self,
        presented_hash: &str,
        successor_hash: &str,
    ) -> Result<bool, StoreError> {
        self.run("undo_rotation", move |conn| {
            let undone = atomically(
                conn,
                |tx| undo_rotation_in(tx, presented_hash, successor_hash),
                |undone| *undone,
            )?;
            Ok(undone)
        })
        .await
    }

    async fn get_grant(&self, id: &str) -> Result<Option<Grant>, StoreError> {
        self.run("get_grant", move |conn| {
            Ok(conn
                .prepare_cached(&format!("SELECT {GRANT_COLUMNS} FROM grants WHERE id = ?1"))?
                .query_row([&id], |row| grant_from_row(row, 0))
                .optional()?)
        })
        .await
    }

    async fn list_grants(&self, user_id: &str, now: i64) -> Result<Vec<Grant>, StoreError> {
        self.run("list_grants", move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {GRANT_COLUMNS} FROM grants
                 WHERE user_id = ?1 AND revoked_at IS NULL AND expires_at > ?2
                 ORDER BY created_at DESC, id DESC"
            ))?;
            let grants = stmt
                .query_map(params![user_id, now], |row| grant_from_row(row, 0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(grants)
        })
        .await
    }

    async fn revoke_grant(&self, id: &str, now: i64) -> Result<u64, StoreError> {
        self.run("revoke_grant", move |conn| {
            Ok(conn
                .prepare_cached(
                    "UPDATE grants SET revoked_at = ?2
                     WHERE id = ?1 AND revoked_at IS NULL AND expires_at > ?2",
                )?
                .execute(params![id, now])? as u64)
        })
        .await
    }

    async fn revoke_user(&self, user_id: &str, now: i64) -> Result<u64, StoreError> {
        self.revoke_where("revoke_user", "user_id", user_id, now)
            .await
    }

    async fn revoke_client(&self, client_id: &str, now: i64) -> Result<u64, StoreError> {
        self.revoke_where("revoke_client", "client_id", client_id, now)
            .await
    }

    async fn revoke_consent(
        &self,
        user_id: &str,
        client_id: &str,
        now: i64,
    ) -> Result<u64, StoreError> {
        let (user_id, client_id) = (user_id.to_owned(), client_id.to_owned());
        self.run("revoke_consent", move |conn| {
            // One transaction, so that no grant can be issued on the old
            // consent between the two writes being seen.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.prepare_cached("DELETE FROM consents WHERE user_id = ?1 AND client_id = ?2")?
                .execute(params![user_id, client_id])?;
            let revoked = tx
                .prepare_cached(
                    "UPDATE grants SET revoked_at = ?3
                     WHERE user_id = ?1 AND client_id = ?2 AND revoked_at IS NULL AND expires_at > ?3",
                )?
                .execute(params![user_id, client_id, now])?;
            tx.commit()?;
            Ok(revoked as u64)
        })
        .await
    }

    // Device authorization (RFC 8628).

    async fn put_device_code(&self, device: &DeviceCode) -> Result<(), StoreError> {
        let d = device.clone();
        self.run("put_device_code", move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            // A user code is free again once its old record is no longer kept.
            tx.prepare_cached(
                "DELETE FROM device_codes WHERE user_code_hash = ?1 AND kept_until <= ?2",
            )?
            .execute(params![d.user_code_hash, d.created_at])?;
            let decision = d.decision.as_ref().map(to_json).transpose()?;
            let inserted = tx
                .prepare_cached(&format!(
                    "INSERT INTO device_codes ({DEVICE_COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
                ))?
                .execute(params![
                    d.hash,
                    d.user_code_hash,
                    d.client_id,
                    d.scopes.to_string(),
                    d.created_at,
                    d.expires_at,
                    d.kept_until,
                    d.interval,
                    d.last_polled_at,
                    decision,
                    d.consumed_at
                ]);
            match inserted {
                Ok(_) => {}
                Err(e) if constraint_kind(&e).is_some() => {
                    return Err(Failure::Conflict(
                        "a device code with this device or user code exists".into(),
                    ));
                }
                Err(e) => return Err(e.into()),
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn find_device_code(
        &self,
        hash: &str,
        now: i64,
    ) -> Result<Option<DeviceCode>, StoreError> {
        self.run("find_device_code", move |conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {DEVICE_COLUMNS} FROM device_codes WHERE hash = ?1 AND kept_until > ?2"
                ))?
                .query_row(params![hash, now], device_from_row)
                .optional()?)
        })
        .await
    }

    async fn find_user_code(
        &self,
        user_code_hash: &str,
        now: i64,
    ) -> Result<Option<DeviceCode>, StoreError> {
        self.run("find_user_code", move |conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {DEVICE_COLUMNS} FROM device_codes
                     WHERE user_code_hash = ?1 AND kept_until > ?2"
                ))?
                .query_row(params![user_code_hash, now], device_from_row)
                .optional()?)
        })
        .await
    }

    async fn decide_device_code(
        &self,
        hash: &str,
        decision: &DeviceDecision,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.run("decide_device_code", move |conn| {
            let decision = to_json(&decision)?;
            let n = conn
                .prepare_cached(
                    "UPDATE device_codes SET decision = ?2
                     WHERE hash = ?1 AND decision IS NULL AND consumed_at IS NULL
                       AND expires_at > ?3",
                )?
                .execute(params![hash, decision, now])?;
            Ok(n == 1)
        })
        .await
    }

    async fn record_device_poll(
        &self,
        hash: &str,
        last_polled_at: Option<i64>,
        interval: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.run("record_device_poll", move |conn| {
            let n = conn
                .prepare_cached(
                    "UPDATE device_codes SET last_polled_at = ?3, interval = ?4
                     WHERE hash = ?1 AND last_polled_at IS ?2 AND kept_until > ?3",
                )?
                .execute(params![hash, last_polled_at, now, interval])?;
            Ok(n == 1)
        })
        .await
    }

    async fn redeem_device_code(
        &self,
        hash: &str,
        grant: &Grant,
        refresh: Option<&RefreshToken>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let redemption = Redemption::new(hash, grant, refresh, now);
        self.redeem("redeem_device_code", redemption, redeem_device_in, |o| *o)
            .await
    }

    async fn undo_device_redemption(
        &self,
        hash: &str,
        grant_id: &str,
        refresh_hash: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.run("undo_device_redemption", move |conn| {
            atomically(
                conn,
                |tx| {
                    let reset = "consumed_at = NULL, grant_id = NULL";
                    let refresh = refresh_hash;
                    undo_consumption_in(tx, "device_codes", reset, hash, grant_id, refresh)
                },
                |undone| *undone,
            )
        })
        .await
    }
}

/// The body of `redeem_device_code`, inside its immediate transaction.
/// Writes only when it returns `true`.
fn redeem_device_in(
    tx: &Transaction<'_>,
    hash: &str,
    grant: &Grant,
    refresh: Option<&RefreshToken>,
    now: i64,
) -> Result<bool, Failure> {
    let decision: Option<Option<String>> = tx
        .prepare_cached(
            "SELECT decision FROM device_codes
             WHERE hash = ?1 AND consumed_at IS NULL AND expires_at > ?2",
        )?
        .query_row(params![hash, now], |row| row.get(0))
        .optional()?;
    let approved_for = match decision.flatten() {
        Some(raw) => match serde_json::from_str::<DeviceDecision>(&raw) {
            Ok(DeviceDecision::Approved { user_id, .. }) => user_id,
            Ok(DeviceDecision::Denied) => return Ok(false),
            Err(_) => return Err(Failure::Corrupt("a device code has an unreadable decision")),
        },
        None => return Ok(false),
    };
    if approved_for != grant.user_id {
        return Ok(false);
    }
    tx.prepare_cached("UPDATE device_codes SET consumed_at = ?2, grant_id = ?3 WHERE hash = ?1")?
        .execute(params![hash, now, grant.id])?;
    insert_grant_with(tx, grant, refresh)?;
    Ok(true)
}

fn device_from_row(row: &Row<'_>) -> rusqlite::Result<DeviceCode> {
    let decision: Option<String> = row.get(9)?;
    Ok(DeviceCode {
        hash: row.get(0)?,
        user_code_hash: row.get(1)?,
        client_id: row.get(2)?,
        scopes: scopes_column(row, 3)?,
        created_at: row.get(4)?,
        expires_at: row.get(5)?,
        kept_until: row.get(6)?,
        interval: row.get(7)?,
        last_polled_at: row.get(8)?,
        decision: match decision {
            None => None,
            Some(_) => Some(json_column(row, 9)?),
        },
        consumed_at: row.get(10)?,
    })
}

/// The body of `redeem_code`, inside its immediate transaction. Only the
/// `Issued` outcome writes.
fn redeem_in(
    tx: &Transaction<'_>,
    hash: &str,
    grant: &Grant,
    refresh: Option<&RefreshToken>,
    now: i64,
) -> Result<Redeemed, Failure> {
    let code: Option<(Option<i64>, String)> = tx
        .prepare_cached(
            "SELECT consumed_at, grant_id FROM codes WHERE hash = ?1 AND expires_at > ?2",
        )?
        .query_row(params![hash, now], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    match code {
        None => Ok(Redeemed::Invalid),
        Some((Some(_), grant_id)) => Ok(Redeemed::Replayed { grant_id }),
        Some((None, _)) => {
            tx.prepare_cached("UPDATE codes SET consumed_at = ?2 WHERE hash = ?1")?
                .execute(params![hash, now])?;
            insert_grant_with(tx, grant, refresh)?;
            Ok(Redeemed::Issued)
        }
    }
}

/// The body of `rotate_refresh`, inside its immediate transaction. Only the
/// `Rotated` outcome writes.
fn rotate_in(
    tx: &Connection,
    old_hash: &str,
    successor: &RefreshToken,
    leeway: i64,
    now: i64,
) -> Result<Rotated, Failure> {
    struct Old {
        consumed_at: Option<i64>,
        idle_expires_at: i64,
        successor_hash: Option<String>,
        grant_id: String,
        grant_active: bool,
    }
    let old = tx
        .prepare_cached(
            "SELECT t.consumed_at, t.idle_expires_at, t.successor_hash, t.grant_id,
                    g.revoked_at IS NULL AND g.expires_at > ?2
             FROM refresh_tokens t JOIN grants g ON g.id = t.grant_id
             WHERE t.hash = ?1 AND t.expires_at > ?2",
        )?
        .query_row(params![old_hash, now], |row| {
            Ok(Old {
                consumed_at: row.get(0)?,
                idle_expires_at: row.get(1)?,
                successor_hash: row.get(2)?,
                grant_id: row.get(3)?,
                grant_active: row.get(4)?,
            })
        })
        .optional()?;
    let Some(old) = old else {
        return Ok(Rotated::Invalid);
    };
    if !old.grant_active {
        return Ok(Rotated::Invalid);
    }

    let from = match old.consumed_at {
        None if now >= old.idle_expires_at => return Ok(Rotated::Invalid),
        None => old_hash.to_owned(),
        Some(consumed_at) => {
            // A client that lost the response to its last refresh may retry
            // with the same token for `leeway` seconds; it then continues
            // from the token that was issued to it and never received. Only
            // one step back: anything older is reuse (DESIGN invariant 3).
            let within = leeway > 0 && now - consumed_at <= leeway;
            let live_successor = match (&old.successor_hash, within) {
                (Some(next), true) => is_rotatable(tx, next, now)?,
                _ => false,
            };
            match (live_successor, old.successor_hash) {
                (true, Some(next)) => next,
                _ => {
                    return Ok(Rotated::Reused {
                        grant_id: old.grant_id,
                    });
                }
            }
        }
    };

    if successor.grant_id != old.grant_id {
        return Err(Failure::Conflict(
            "the successor belongs to another grant".into(),
        ));
    }
    let consumed = tx
        .prepare_cached(
            "UPDATE refresh_tokens SET consumed_at = ?2, successor_hash = ?3
             WHERE hash = ?1 AND consumed_at IS NULL",
        )?
        .execute(params![from, now, successor.hash])?;
    if consumed != 1 {
        // Cannot happen under the write lock taken by BEGIN IMMEDIATE; refuse
        // rather than store a second successor.
        return Ok(Rotated::Reused {
            grant_id: old.grant_id,
        });
    }
    insert_refresh(tx, successor)?;
    tx.prepare_cached("UPDATE grants SET last_used_at = ?2 WHERE id = ?1")?
        .execute(params![old.grant_id, now])?;
    Ok(Rotated::Rotated)
}

/// Deletes a grant that is still unrevoked and its first refresh token
/// (`refresh_hash`, if any) while unconsumed. `false` when either condition
/// fails: the caller's transaction must then roll back, for the grant was
/// used or revoked and stands.
fn delete_new_grant(
    tx: &Transaction<'_>,
    grant_id: &str,
    refresh_hash: Option<&str>,
) -> Result<bool, Failure> {
    let grant_unrevoked = tx
        .prepare_cached("SELECT 1 FROM grants WHERE id = ?1 AND revoked_at IS NULL")?
        .query_row([grant_id], |_| Ok(()))
        .optional()?
        .is_some();
    if !grant_unrevoked {
        return Ok(false);
    }
    if let Some(refresh_hash) = refresh_hash {
        let deleted = tx
            .prepare_cached(
                "DELETE FROM refresh_tokens
                 WHERE hash = ?1 AND grant_id = ?2 AND consumed_at IS NULL",
            )?
            .execute(params![refresh_hash, grant_id])?;
        if deleted != 1 {
            // Rotated already (or never stored): the redemption stands.
            return Ok(false);
        }
    }
    // The indexes on grants follow the row.
    tx.prepare_cached("DELETE FROM grants WHERE id = ?1")?
        .execute([grant_id])?;
    Ok(true)
}

/// The body of `undo_redemption` and `undo_device_redemption`, inside its
/// immediate transaction: the row `hash` of `table` (codes or device codes)
/// consumed for `grant_id` becomes unconsumed (`reset` says how), and the
/// grant goes. Writes only when it returns `true`.
///
/// Besides the port's conditions, the grant must exist and be unrevoked: a
/// grant revoked since the redemption (a replay of the code, an admin) is
/// never taken back, or the code would become redeemable again and the
/// revocation would be forgotten.
fn undo_consumption_in(
    tx: &Transaction<'_>,
    table: &str,
    reset: &str,
    hash: &str,
    grant_id: &str,
    refresh_hash: Option<&str>,
) -> Result<bool, Failure> {
    let consumed_for_grant = tx
        .prepare_cached(&format!(
            "SELECT 1 FROM {table}
             WHERE hash = ?1 AND consumed_at IS NOT NULL AND grant_id = ?2"
        ))?
        .query_row(params![hash, grant_id], |_| Ok(()))
        .optional()?
        .is_some();
    if !consumed_for_grant || !delete_new_grant(tx, grant_id, refresh_hash)? {
        return Ok(false);
    }
    tx.prepare_cached(&format!("UPDATE {table} SET {reset} WHERE hash = ?1"))?
        .execute([hash])?;
    Ok(true)
}

/// The body of `undo_rotation`, inside its immediate transaction. Writes
/// only when it returns `true`.
fn undo_rotation_in(
    tx: &Transaction<'_>,
    presented_hash: &str,
    successor_hash: &str,
) -> Result<bool, Failure> {
    // The token that `successor_hash` replaced: the presented one, or (after
    // a rotation within the leeway) the presented one's successor.
    let Some(next) = successor_of(tx, presented_hash)? else {
        return Ok(false);
    };
    let predecessor = if next == successor_hash {
        presented_hash.to_owned()
    } else if successor_of(tx, &next)?.as_deref() == Some(successor_hash) {
        next
    } else {
        return Ok(false);
    };
    let deleted = tx
        .prepare_cached(
            "DELETE FROM refresh_tokens
             WHERE hash = ?1 AND consumed_at IS NULL
               AND grant_id = (SELECT grant_id FROM refresh_tokens WHERE hash = ?2)",
        )?
        .execute(params![successor_hash, predecessor])?;
    if deleted != 1 {
        // The successor was rotated in turn (or is gone): it was delivered.
        return Ok(false);
    }
    let restored = tx
        .prepare_cached(
            "UPDATE refresh_tokens SET consumed_at = NULL, successor_hash = NULL
             WHERE hash = ?1 AND successor_hash = ?2",
        )?
        .execute(params![predecessor, successor_hash])?;
    // Cannot be 0 under the write lock after the reads above; if it were,
    // returning false rolls the deletion back.
    Ok(restored == 1)
}

/// The successor named by the token `hash`, if it exists and has one.
fn successor_of(tx: &Transaction<'_>, hash: &str) -> Result<Option<String>, Failure> {
    Ok(tx
        .prepare_cached("SELECT successor_hash FROM refresh_tokens WHERE hash = ?1")?
        .query_row([hash], |row| row.get::<_, Option<String>>(0))
        .optional()?
        .flatten())
}

/// Whether the token `hash` exists, is unconsumed and within its idle lifetime.
fn is_rotatable(tx: &Connection, hash: &str, now: i64) -> Result<bool, Failure> {
    Ok(tx
        .prepare_cached(
            "SELECT 1 FROM refresh_tokens
             WHERE hash = ?1 AND consumed_at IS NULL AND idle_expires_at > ?2 AND expires_at > ?2",
        )?
        .query_row(params![hash, now], |_| Ok(()))
        .optional()?
        .is_some())
}

fn insert_grant(tx: &Transaction<'_>, g: &Grant) -> Result<(), Failure> {
    let amr = to_json(&g.amr)?;
    let inserted = tx
        .prepare_cached(&format!(
            "INSERT INTO grants ({GRANT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
        ))?
        .execute(params![
            g.id,
            g.user_id,
            g.client_id,
            g.scopes.to_string(),
            g.auth_time,
            amr,
            g.created_at,
            g.expires_at,
            g.revoked_at,
            g.last_used_at
        ]);
    match inserted {
        Ok(_) => Ok(()),
        Err(e) if constraint_kind(&e) == Some(rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY) => {
            Err(Failure::Conflict("a grant with this id exists".into()))
        }
        Err(e) => Err(e.into()),
    }
}

/// `grant` and its first refresh token, which must be the grant's: nothing
/// else ties a token to an existing grant (see the schema).
fn insert_grant_with(
    tx: &Transaction<'_>,
    grant: &Grant,
    refresh: Option<&RefreshToken>,
) -> Result<(), Failure> {
    insert_grant(tx, grant)?;
    match refresh {
        Some(token) if token.grant_id != grant.id => Err(Failure::Conflict(
            "the refresh token belongs to another grant".into(),
        )),
        Some(token) => insert_refresh(tx, token),
        None => Ok(()),
    }
}

fn insert_refresh(tx: &Connection, t: &RefreshToken) -> Result<(), Failure> {
    let inserted = tx
        .prepare_cached(&format!(
            "INSERT INTO refresh_tokens ({REFRESH_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
        ))?
        .execute(params![
            t.hash,
            t.grant_id,
            t.client_id,
            t.user_id,
            t.created_at,
            t.idle_expires_at,
            t.expires_at,
            t.consumed_at,
            t.successor_hash
        ]);
    match inserted {
        Ok(_) => Ok(()),
        Err(e) if constraint_kind(&e) == Some(rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY) => Err(
            Failure::Conflict("a refresh token with this hash exists".into()),
        ),
        Err(e) => Err(e.into()),
    }
}

fn user_from_row(row: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: row.get(0)?,
        username: row.get(1)?,
        password_hash: row.get(2)?,
        email: row.get(3)?,
        created_at: row.get(4)?,
        totp_secret: row.get(5)?,
    })
}

/// Reads [`GRANT_COLUMNS`] starting at column `at`.
fn grant_from_row(row: &Row<'_>, at: usize) -> rusqlite::Result<Grant> {
    Ok(Grant {
        id: row.get(at)?,
        user_id: row.get(at + 1)?,
        client_id: row.get(at + 2)?,
        scopes: scopes_column(row, at + 3)?,
        auth_time: row.get(at + 4)?,
        amr: json_column(row, at + 5)?,
        created_at: row.get(at + 6)?,
        expires_at: row.get(at + 7)?,
        revoked_at: row.get(at + 8)?,
        last_used_at: row.get(at + 9)?,
    })
}

/// Reads [`REFRESH_COLUMNS`] starting at column `at`.
fn refresh_from_row(row: &Row<'_>, at: usize) -> rusqlite::Result<RefreshToken> {
    Ok(RefreshToken {
        hash: row.get(at)?,
        grant_id: row.get(at + 1)?,
        client_id: row.get(at + 2)?,
        user_id: row.get(at + 3)?,
        created_at: row.get(at + 4)?,
        idle_expires_at: row.get(at + 5)?,
        expires_at: row.get(at + 6)?,
        consumed_at: row.get(at + 7)?,
        successor_hash: row.get(at + 8)?,
    })
}

fn prefixed(alias: &str, columns: &str) -> String {
    columns
        .split(", ")
        .map(|c| format!("{alias}.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn scopes_column(row: &Row<'_>, idx: usize) -> rusqlite::Result<Scopes> {
    let raw: String = row.get(idx)?;
    Scopes::parse(&raw).map_err(|_| corrupt_column(idx, "unparseable scopes"))
}

fn json_column<T: DeserializeOwned>(row: &Row<'_>, idx: usize) -> rusqlite::Result<T> {
    let raw: String = row.get(idx)?;
    // serde_json's message can quote the value, so it is dropped.
    serde_json::from_str(&raw).map_err(|_| corrupt_column(idx, "unparseable JSON"))
}

fn to_json<T: Serialize>(value: &T) -> Result<String, Failure> {
    serde_json::to_string(value)
        .map_err(|_| Failure::Corrupt("a record could not be encoded as JSON"))
}

fn corrupt_column(idx: usize, what: &'static str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(Corrupt(what)))
}

#[derive(Debug)]
struct Corrupt(&'static str);

impl std::fmt::Display for Corrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Corrupt {}

fn constraint_kind(e: &rusqlite::Error) -> Option<i32> {
    match e {
        rusqlite::Error::SqliteFailure(err, _)
            if err.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Some(err.extended_code)
        }
        _ => None,
    }
}

/// Why an operation failed, before it becomes a [`StoreError`].
#[derive(Debug)]
enum Failure {
    Db(rusqlite::Error),
    Conflict(String),
    Corrupt(&'static str),
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Self {
        Self::Db(e)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // SQLite's messages name tables, columns and constraints, never values.
            Self::Db(e) => write!(f, "{e}"),
            Self::Conflict(what) => f.write_str(what),
            Self::Corrupt(what) => f.write_str(what),
        }
    }
}

impl Failure {
    fn into_store_error(self, what: &str) -> StoreError {
        match self {
            Self::Conflict(msg) => StoreError::Conflict(msg),
            other => StoreError::Unavailable(format!("sqlite {what}: {other}")),
        }
    }
}

fn open_error(path: &Path, msg: &str) -> StoreError {
    StoreError::Unavailable(format!("sqlite: cannot open {}: {msg}", path.display()))
}

/// Creates the database file readable by its owner only: it holds password
/// hashes. SQLite gives its -wal and -shm files the same mode.
fn create_private_file(path: &Path) -> Result<(), StoreError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(open_error(path, &e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::secret::hash;

    use crate::store::fixtures::{T, code, grant};

    /// A grant with a first refresh token `secret`, through a code.
    async fn issue(store: &SqliteStore, g: &Grant, secret: &str) -> RefreshToken {
        let first = RefreshToken::issue(hash(secret), g, 3_600, T);
        let c = code(&format!("code {secret}"), &g.id);
        store.put_code(&c).await.unwrap();
        assert_eq!(
            store
                .redeem_code(&c.hash, g, Some(&first), T)
                .await
                .unwrap(),
            Redeemed::Issued
        );
        first
    }

    fn raw(path: &Path) -> Connection {
        Connection::open(path).unwrap()
    }

    #[tokio::test]
    async fn reopening_keeps_the_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let store = SqliteStore::open(&path).unwrap();
        let first = issue(&store, &grant("g1"), "r0").await;
        drop(store);

        let store = SqliteStore::open(&path).unwrap();
        let view = store.find_refresh(&first.hash, T).await.unwrap().unwrap();
        assert_eq!(view.token, first);
        assert_eq!(view.grant, grant("g1"));
    }

    #[tokio::test]
    async fn a_version_3_file_keeps_its_refresh_tokens_without_the_foreign_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let store = SqliteStore::open(&path).unwrap();
        let first = issue(&store, &grant("g1"), "r0").await;
        drop(store);
        // The refresh-token table as version 3 made it: today's, with the
        // foreign key to grants and the index by grant.
        let conn = raw(&path);
        let today: String = conn
            .query_row(
                "SELECT sql FROM sqlite_schema WHERE name = 'refresh_tokens'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let v3 = today.replacen(
            "grant_id        TEXT NOT NULL,",
            "grant_id TEXT NOT NULL REFERENCES grants (id) ON DELETE CASCADE,",
            1,
        );
        assert_ne!(v3, today);
        conn.execute_batch(&format!(
            "ALTER TABLE refresh_tokens RENAME TO t4;
                 DROP INDEX refresh_tokens_by_expiry;
                 {v3};
                 CREATE INDEX refresh_tokens_by_grant ON refresh_tokens (grant_id);
                 CREATE INDEX refresh_tokens_by_expiry ON refresh_tokens (expires_at);
                 INSERT INTO refresh_tokens SELECT {REFRESH_COLUMNS} FROM t4;
                 DROP TABLE t4;
                 PRAGMA user_version = 3;"
        ))
        .unwrap();
        drop(conn);

        let store = SqliteStore::open(&path).unwrap();
        let view = store.find_refresh(&first.hash, T).await.unwrap().unwrap();
        assert_eq!(view.token, first);
        let conn = raw(&path);
        let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
        assert_eq!(count("PRAGMA user_version"), SCHEMA_VERSION);
        assert_eq!(
            count("SELECT count(*) FROM pragma_foreign_key_list('refresh_tokens')"),
            0
        );
        assert_eq!(
            count(
                "SELECT count(*) FROM sqlite_schema
                 WHERE name IN ('refresh_tokens_by_grant', 'refresh_tokens_v3')"
            ),
            0
        );
        assert_eq!(
            count(
                "SELECT count(*) FROM sqlite_schema
                 WHERE name = 'refresh_tokens_by_expiry' AND tbl_name = 'refresh_tokens'"
            ),
            1
        );
        let next = RefreshToken::issue(hash("r1"), &grant("g1"), 3_600, T + 1);
        assert_eq!(
            store
                .rotate_refresh(&first.hash, &next, 0, T + 1)
                .await
                .unwrap(),
            Rotated::Rotated
        );
    }

    #[tokio::test]
    async fn a_refresh_token_of_another_grant_is_refused() {
        let store = SqliteStore::open_in_memory().unwrap();
        let first = issue(&store, &grant("g1"), "r0").await;
        let strays = RefreshToken::issue(hash("stray"), &grant("g2"), 3_600, T);
        assert!(matches!(
            store.create_grant(&grant("g3"), Some(&strays)).await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(store.get_grant("g3").await.unwrap(), None);
        assert!(matches!(
            store.rotate_refresh(&first.hash, &strays, 0, T + 1).await,
            Err(StoreError::Conflict(_))
        ));
        let view = store
            .find_refresh(&first.hash, T + 1)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(view.token.consumed_at, None, "the failed rotation left it");
        assert_eq!(store.find_refresh(&strays.hash, T).await.unwrap(), None);
    }

    #[tokio::test]
    async fn file_is_wal_normal_with_a_schema_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let _store = SqliteStore::open(&path).unwrap();
        let conn = raw(&path);
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        // Connection-level settings are checked on the store's own connection.
        let inner = _store.inner.conn.lock().unwrap();
        let sync: i64 = inner
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 1, "NORMAL");
        let fk: i64 = inner
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(fk, 1);
    }

    #[tokio::test]
    async fn opening_is_idempotent_and_refuses_newer_schemas() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let a = SqliteStore::open(&path).unwrap();
        let b = SqliteStore::open(&path).unwrap();
        drop((a, b));

        raw(&path)
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        match SqliteStore::open(&path) {
            Err(StoreError::Unavailable(msg)) => assert!(msg.contains("newer"), "{msg}"),
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn database_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let _store = SqliteStore::open(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "mode {mode:o}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn two_handles_on_one_file_see_each_others_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let server = SqliteStore::open(&path).unwrap();
        let admin = SqliteStore::open(&path).unwrap();

        let first = issue(&server, &grant("g1"), "r0").await;
        assert!(admin.find_refresh(&first.hash, T).await.unwrap().is_some());
        // An admin revocation is seen by the server at once: nothing is cached.
        assert_eq!(admin.revoke_user("u1", T + 1).await.unwrap(), 1);
        let next = RefreshToken::issue(hash("r1"), &grant("g1"), 3_600, T + 2);
        assert_eq!(
            server
                .rotate_refresh(&first.hash, &next, 0, T + 2)
                .await
                .unwrap(),
            Rotated::Invalid
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn rotations_through_two_connections_have_one_winner() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let a = SqliteStore::open(&path).unwrap();
        let b = SqliteStore::open(&path).unwrap();
        let first = issue(&a, &grant("g1"), "r0").await;

        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let store = if i % 2 == 0 { a.clone() } else { b.clone() };
                let old = first.hash.clone();
                let next =
                    RefreshToken::issue(hash(&format!("next {i}")), &grant("g1"), 3_600, T + 1);
                tokio::spawn(async move { store.rotate_refresh(&old, &next, 0, T + 1).await })
            })
            .collect();
        let mut rotated = 0;
        for task in tasks {
            if task.await.unwrap().unwrap() == Rotated::Rotated {
                rotated += 1;
            }
        }
        assert_eq!(rotated, 1);
        let successors: i64 = raw(&path)
            .query_row(
                "SELECT count(*) FROM refresh_tokens WHERE grant_id = 'g1'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(successors, 2, "the first token and one successor");
    }

    #[tokio::test]
    async fn a_group_answers_each_rotation_with_its_own_outcome() {
        let store = SqliteStore::open_in_memory().unwrap();
        let (g1, g2) = (grant("g1"), grant("g2"));
        let t1 = issue(&store, &g1, "r1").await;
        let t2 = issue(&store, &g2, "r2").await;
        let s1 = RefreshToken::issue(hash("s1"), &g1, 3_600, T + 1);
        let unknown = RefreshToken::issue(hash("s0"), &g1, 3_600, T + 1);
        // Its successor's hash is taken (by t1), so its insert fails after
        // its UPDATE has consumed t2: that UPDATE must be undone alone.
        let clash = RefreshToken::issue(t1.hash.clone(), &g2, 3_600, T + 1);

        // Polled by one task, the three join one group before it commits.
        let never_issued = hash("never issued");
        let (one, two, three) = tokio::join!(
            store.rotate_refresh(&t1.hash, &s1, 0, T + 1),
            store.rotate_refresh(&never_issued, &unknown, 0, T + 1),
            store.rotate_refresh(&t2.hash, &clash, 0, T + 1),
        );
        assert_eq!(one.unwrap(), Rotated::Rotated);
        assert_eq!(two.unwrap(), Rotated::Invalid);
        assert!(matches!(three, Err(StoreError::Conflict(_))), "{three:?}");

        let find = async |h: &str| store.find_refresh(h, T + 1).await.unwrap();
        assert!(find(&t1.hash).await.unwrap().token.consumed_at.is_some());
        assert!(find(&s1.hash).await.is_some());
        let t2_now = find(&t2.hash).await.unwrap();
        assert_eq!(
            t2_now.token.consumed_at, None,
            "the failed rotation left t2 as it was"
        );
        assert_eq!(t2_now.token.successor_hash, None);
        // And t2 still rotates.
        let s2 = RefreshToken::issue(hash("s2"), &g2, 3_600, T + 2);
        assert_eq!(
            store.rotate_refresh(&t2.hash, &s2, 0, T + 2).await.unwrap(),
            Rotated::Rotated
        );
    }

    #[tokio::test]
    async fn a_rotation_whose_caller_went_away_is_still_committed() {
        let store = SqliteStore::open_in_memory().unwrap();
        let g = grant("g1");
        let first = issue(&store, &g, "r0").await;
        let next = RefreshToken::issue(hash("next"), &g, 3_600, T + 1);

        // Polled once (queued), then dropped, as hyper drops the request of
        // a client that hung up.
        let mut rotation = store.rotate_refresh(&first.hash, &next, 0, T + 1);
        std::future::poll_fn(|cx| {
            let polled = rotation.as_mut().poll(cx);
            assert!(polled.is_pending(), "the rotation waits for its group");
            std::task::Poll::Ready(())
        })
        .await;
        drop(rotation);

        // A later rotation is answered only after the earlier group's commit.
        let other = issue(&store, &grant("g2"), "o0").await;
        let other_next = RefreshToken::issue(hash("o1"), &grant("g2"), 3_600, T + 1);
        assert_eq!(
            store
                .rotate_refresh(&other.hash, &other_next, 0, T + 1)
                .await
                .unwrap(),
            Rotated::Rotated
        );
        let view = store
            .find_refresh(&first.hash, T + 1)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            view.token.successor_hash.as_deref(),
            Some(next.hash.as_str())
        );
        assert!(
            store
                .find_refresh(&next.hash, T + 1)
                .await
                .unwrap()
                .is_some()
        );
    }

    #[tokio::test]
    async fn garbage_collection_deletes_only_what_reads_cannot_see() {
        let store = SqliteStore::open_in_memory().unwrap();
        let g = grant("g1");
        let first = issue(&store, &g, "r0").await;
        store.put_code(&code("live", "g2")).await.unwrap();
        let mut dead = code("dead", "g3");
        dead.expires_at = T + 10;
        store.put_code(&dead).await.unwrap();

        let deleted = {
            let conn = store.inner.conn.lock().unwrap();
            collect_garbage(&conn, T + 30).unwrap()
        };
        assert_eq!(deleted, 1);
        assert!(
            store
                .find_code(&hash("live"), T + 30)
                .await
                .unwrap()
                .is_some()
        );
        // The redeemed code of g1 is live until T + 60, and the token until the grant ends.
        assert!(
            store
                .find_code(&hash("code r0"), T + 30)
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            store
                .find_refresh(&first.hash, T + 30)
                .await
                .unwrap()
                .is_some()
        );

        let deleted = {
            let conn = store.inner.conn.lock().unwrap();
            collect_garbage(&conn, g.expires_at).unwrap()
        };
        assert_eq!(deleted, 3, "two codes and the refresh token");
        assert_eq!(
            store.get_grant("g1").await.unwrap(),
            Some(g),
            "grants are kept"
        );
    }

    #[tokio::test]
    async fn housekeeping_runs_during_rotations() {
        let store = SqliteStore::open_in_memory().unwrap();
        let mut dead = code("dead", "gx");
        dead.expires_at = T + 1;
        store.put_code(&dead).await.unwrap();
        let g = grant("g1");
        let mut current = issue(&store, &g, "r0").await;
        for i in 0..GC_EVERY {
            let next = RefreshToken::issue(hash(&format!("r{}", i + 1)), &g, 3_600, T + 2);
            assert_eq!(
                store
                    .rotate_refresh(&current.hash, &next, 0, T + 2)
                    .await
                    .unwrap(),
                Rotated::Rotated
            );
            current = next;
        }
        let left: i64 = store
            .inner
            .conn
            .lock()
            .unwrap()
            .query_row(
                "SELECT count(*) FROM codes WHERE hash = ?1",
                [hash("dead")],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(left, 0);
    }

    #[tokio::test]
    async fn corrupt_rows_are_unavailable_without_quoting_them() {
        let store = SqliteStore::open_in_memory().unwrap();
        store
            .inner
            .conn
            .lock()
            .unwrap()
            .execute(
                "INSERT INTO sessions (hash, user_id, auth_time, amr, expires_at)
                 VALUES ('h', 'u1', 0, 'not json: s3cr3t', ?1)",
                [T + 100],
            )
            .unwrap();
        match store.get_session("h", T).await {
            Err(StoreError::Unavailable(msg)) => assert!(!msg.contains("s3cr3t"), "{msg}"),
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_code_cannot_be_written_twice() {
        let store = SqliteStore::open_in_memory().unwrap();
        let c = code("once", "g1");
        store.put_code(&c).await.unwrap();
        assert_eq!(
            store
                .redeem_code(&c.hash, &grant("g1"), None, T)
                .await
                .unwrap(),
            Redeemed::Issued
        );
        match store.put_code(&c).await {
            Err(StoreError::Conflict(_)) => {}
            other => panic!("expected Conflict, got {other:?}"),
        }
        let found = store.find_code(&c.hash, T).await.unwrap().unwrap();
        assert_eq!(found.consumed_at, Some(T), "still consumed");
    }

    #[tokio::test]
    async fn a_failed_redemption_leaves_the_code_unused() {
        let store = SqliteStore::open_in_memory().unwrap();
        issue(&store, &grant("g1"), "r0").await;
        // A second code naming an existing grant id cannot create it again.
        let c = code("second", "g1");
        store.put_code(&c).await.unwrap();
        match store.redeem_code(&c.hash, &grant("g1"), None, T).await {
            Err(StoreError::Conflict(_)) => {}
            other => panic!("expected Conflict, got {other:?}"),
        }
        let found = store.find_code(&c.hash, T).await.unwrap().unwrap();
        assert_eq!(found.consumed_at, None, "the transaction rolled back");
    }
}
