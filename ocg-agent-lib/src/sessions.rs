//! Sessions in SQLite: every message of every turn, written one turn per
//! transaction.
//!
//! The database runs in WAL mode with a busy timeout, so readers never block
//! the writer and a concurrent writer waits instead of failing. A turn (the
//! user's message and everything the model and tools produced for it) is
//! inserted in one transaction after the turn completes: a crash mid-turn
//! leaves no half turn, and a turn whose `done` was sent is on disk.
//!
//! Turns that finish together are committed together (group commit): the
//! first turn to queue takes the writer and commits every turn queued by
//! then in one transaction, each under a savepoint of its own, so one bad
//! turn fails alone. Each caller is answered only after the commit, so an
//! acknowledged turn is always on disk, and a burst of turns costs one WAL
//! write instead of one per turn.
//!
//! Compaction archives the oldest messages and stores a summary of them in
//! the same transaction. Archived messages stay queryable through
//! [`SessionStore::history`].
//!
//! [`SqliteSessionStore`] is the agent's default [`SessionStore`]; one
//! process uses it, so its [`SessionStore::lock_session`] is the caller's
//! own lock (the runtime's).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use ocg_core::{HistoryEntry, Message, Role, SessionInfo, ToolCall};
pub use ocg_core::{NewMessage, SessionContext, SessionLock, SessionStore, StoreStats};
use rusqlite::{Connection, OptionalExtension, params};

use crate::AgentError;

/// Read-only connections opened beside the writer (WAL lets them read while
/// it writes, so a turn's context never queues behind another turn's commit).
const READERS: usize = 2;

/// How much of the database file a reader maps (address space, not memory).
const READER_MMAP: i64 = 256 << 20;

/// The session database. Cheap to clone; calls run on tokio's blocking pool.
#[derive(Debug, Clone)]
pub struct SqliteSessionStore {
    writer: Arc<Mutex<Connection>>,
    readers: Arc<Vec<Mutex<Connection>>>,
    next_reader: Arc<std::sync::atomic::AtomicUsize>,
    /// Turns waiting for the next group commit.
    pending: Arc<Mutex<Vec<PendingTurn>>>,
}

/// A turn queued for the group commit, and who waits for its turn number.
#[derive(Debug)]
struct PendingTurn {
    key: String,
    messages: Vec<NewMessage>,
    done: tokio::sync::oneshot::Sender<Result<i64, AgentError>>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sessions (
    key TEXT PRIMARY KEY,
    title TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_key TEXT NOT NULL REFERENCES sessions(key) ON DELETE CASCADE,
    turn INTEGER NOT NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    tool_calls TEXT,
    tool_call_id TEXT,
    tokens INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    archived INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_by_session ON messages(session_key, archived, id);
CREATE TABLE IF NOT EXISTS summaries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_key TEXT NOT NULL REFERENCES sessions(key) ON DELETE CASCADE,
    content TEXT NOT NULL,
    covers_up_to INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
";

/// Schema version 1: what every turn needs is kept in the session's row
/// (its last turn number, its live and archived message counts), so a turn
/// costs the same at turn 100,000 as at turn 1 instead of reading the whole
/// session; the latest summary is found by an index.
const SCHEMA_V1: &str = "
ALTER TABLE sessions ADD COLUMN last_turn INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN live_messages INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN archived_messages INTEGER NOT NULL DEFAULT 0;
UPDATE sessions SET
    last_turn = (SELECT COALESCE(MAX(turn), 0) FROM messages WHERE session_key = sessions.key),
    live_messages = (SELECT COUNT(*) FROM messages WHERE session_key = sessions.key AND archived = 0),
    archived_messages = (SELECT COUNT(*) FROM messages WHERE session_key = sessions.key AND archived = 1);
CREATE INDEX IF NOT EXISTS summaries_by_session ON summaries(session_key, id);
";

/// Bring the database up to the current schema (`PRAGMA user_version`),
/// each step in one transaction.
fn migrate(conn: &mut Connection) -> Result<(), AgentError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version < 1 {
        let tx = conn.transaction()?;
        tx.execute_batch(SCHEMA_V1)?;
        tx.pragma_update(None, "user_version", 1)?;
        tx.commit()?;
    }
    Ok(())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn read_message(row: &rusqlite::Row<'_>) -> rusqlite::Result<HistoryEntry> {
    let tool_calls: Option<String> = row.get("tool_calls")?;
    let tool_calls: Vec<ToolCall> = tool_calls
        .and_then(|json| serde_json::from_str(&json).ok())
        .unwrap_or_default();
    Ok(HistoryEntry {
        id: row.get("id")?,
        turn: row.get("turn")?,
        message: Message {
            role: Role::parse(&row.get::<_, String>("role")?).unwrap_or(Role::User),
            content: row.get("content")?,
            tool_calls,
            tool_call_id: row.get("tool_call_id")?,
        },
        tokens: row.get("tokens")?,
        created_at_ms: row.get("created_at")?,
        archived: row.get::<_, i64>("archived")? != 0,
    })
}

impl SqliteSessionStore {
    /// Open (or create) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, AgentError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| AgentError::Io {
                path: dir.to_owned(),
                source,
            })?;
        }
        let mut store = Self::init(Connection::open(path)?)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let reader = Connection::open_with_flags(
                path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            reader.busy_timeout(std::time::Duration::from_secs(5))?;
            // Pages of the database file are read in place, not copied in by
            // a syscall each time a commit has emptied the reader's cache.
            reader.pragma_update(None, "mmap_size", READER_MMAP)?;
            readers.push(Mutex::new(reader));
        }
        store.readers = Arc::new(readers);
        Ok(store)
    }

    /// A private in-memory database (tests, examples).
    pub fn in_memory() -> Result<Self, AgentError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Self, AgentError> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // NORMAL in WAL mode: a committed turn survives a crash of the
        // process (kill -9); only a power loss may drop the last commits.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.execute_batch(SCHEMA)?;
        migrate(&mut conn)?;
        Ok(SqliteSessionStore {
            writer: Arc::new(Mutex::new(conn)),
            readers: Arc::new(Vec::new()),
            next_reader: Arc::default(),
            pending: Arc::default(),
        })
    }

    /// Run `work` on the writer connection.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, AgentError> + Send + 'static,
    ) -> Result<T, AgentError> {
        let conn = self.writer.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            work(&mut conn)
        })
        .await
        .map_err(|e| AgentError::Internal(format!("session store task failed: {e}")))?
    }

    /// Run read-only `work` on a reader connection (the writer for an
    /// in-memory database, which has no other connections).
    async fn read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, AgentError> + Send + 'static,
    ) -> Result<T, AgentError> {
        if self.readers.is_empty() {
            return self.run(work).await;
        }
        let readers = self.readers.clone();
        let index = self
            .next_reader
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            % readers.len();
        tokio::task::spawn_blocking(move || {
            let mut conn = readers[index].lock().unwrap_or_else(|p| p.into_inner());
            work(&mut conn)
        })
        .await
        .map_err(|e| AgentError::Internal(format!("session store task failed: {e}")))?
    }
}

#[async_trait]
impl SessionStore for SqliteSessionStore {
    /// Store one turn's messages, atomically; answers once they are
    /// committed, with the turn's number in its session. Turns stored
    /// concurrently share one transaction (see the module docs).
    async fn append_turn(&self, key: &str, messages: Vec<NewMessage>) -> ocg_core::Result<i64> {
        let (done, committed) = tokio::sync::oneshot::channel();
        let first = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            pending.push(PendingTurn {
                key: key.to_owned(),
                messages,
                done,
            });
            pending.len() == 1
        };
        if first {
            // The first turn of an empty queue commits it; turns queued while
            // it waits for the writer join its transaction.
            let (writer, pending) = (self.writer.clone(), self.pending.clone());
            let task = tokio::task::spawn_blocking(move || {
                let mut conn = writer.lock().unwrap_or_else(|p| p.into_inner());
                let batch = std::mem::take(&mut *pending.lock().unwrap_or_else(|p| p.into_inner()));
                commit_turns(&mut conn, batch);
            });
            drop(task);
        }
        let stored = committed
            .await
            .map_err(|_| AgentError::Internal("session store task failed".into()))?;
        Ok(stored?)
    }

    /// What the model sees of `key`: the latest summary and the messages not archived.
    async fn context(&self, key: &str) -> ocg_core::Result<SessionContext> {
        let key = key.to_owned();
        self.read(move |conn| {
            // Statements on the per-turn path are prepared once per
            // connection (`prepare_cached`), not parsed on every turn.
            let summary = conn
                .prepare_cached(
                    "SELECT content FROM summaries WHERE session_key = ?1 ORDER BY id DESC LIMIT 1",
                )?
                .query_row(params![key], |row| row.get(0))
                .optional()?;
            let mut select = conn.prepare_cached(
                "SELECT * FROM messages WHERE session_key = ?1 AND archived = 0 ORDER BY id",
            )?;
            let messages = select
                .query_map(params![key], read_message)?
                .collect::<Result<_, _>>()?;
            Ok(SessionContext { summary, messages })
        })
        .await
        .map_err(Into::into)
    }

    /// A page of `key`'s messages, oldest first; archived ones only when asked.
    async fn history(
        &self,
        key: &str,
        offset: u64,
        limit: u64,
        include_archived: bool,
    ) -> ocg_core::Result<Vec<HistoryEntry>> {
        let key = key.to_owned();
        self.read(move |conn| {
            ensure_session(conn, &key)?;
            let mut select = conn.prepare_cached(
                "SELECT * FROM messages WHERE session_key = ?1 AND (?2 OR archived = 0)
                 ORDER BY id LIMIT ?3 OFFSET ?4",
            )?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let offset = i64::try_from(offset).unwrap_or(i64::MAX);
            let rows = select
                .query_map(params![key, include_archived, limit, offset], read_message)?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
        .map_err(Into::into)
    }

    /// All sessions, most recently used first.
    async fn list(&self) -> ocg_core::Result<Vec<SessionInfo>> {
        self.read(|conn| {
            let mut select = conn.prepare_cached(
                "SELECT key, title, created_at, updated_at, live_messages, archived_messages
                 FROM sessions ORDER BY updated_at DESC, key",
            )?;
            let rows = select
                .query_map([], |row| {
                    Ok(SessionInfo {
                        key: row.get(0)?,
                        title: row.get(1)?,
                        created_at_ms: row.get(2)?,
                        updated_at_ms: row.get(3)?,
                        messages: row.get(4)?,
                        archived: row.get(5)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
        .map_err(Into::into)
    }

    /// Forget `key`'s messages and summaries; the session stays.
    async fn reset(&self, key: &str) -> ocg_core::Result<()> {
        let key = key.to_owned();
        self.run(move |conn| {
            let tx = conn.transaction()?;
            ensure_session(&tx, &key)?;
            tx.execute("DELETE FROM messages WHERE session_key = ?1", params![key])?;
            tx.execute("DELETE FROM summaries WHERE session_key = ?1", params![key])?;
            tx.execute(
                "UPDATE sessions SET last_turn = 0, live_messages = 0, archived_messages = 0
                 WHERE key = ?1",
                params![key],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
        .map_err(Into::into)
    }

    /// Delete `key` and everything in it.
    async fn delete(&self, key: &str) -> ocg_core::Result<()> {
        let key = key.to_owned();
        self.run(move |conn| {
            let deleted = conn.execute("DELETE FROM sessions WHERE key = ?1", params![key])?;
            if deleted == 0 {
                return Err(AgentError::SessionNotFound(key));
            }
            Ok(())
        })
        .await
        .map_err(Into::into)
    }

    /// Set `key`'s title.
    async fn rename(&self, key: &str, title: &str) -> ocg_core::Result<()> {
        let (key, title) = (key.to_owned(), title.to_owned());
        self.run(move |conn| {
            let updated = conn.execute(
                "UPDATE sessions SET title = ?2 WHERE key = ?1",
                params![key, title],
            )?;
            if updated == 0 {
                return Err(AgentError::SessionNotFound(key));
            }
            Ok(())
        })
        .await
        .map_err(Into::into)
    }

    /// Archive `key`'s messages up to id `up_to` and record `summary` of them,
    /// in one transaction. Returns how many messages were archived.
    async fn compact(&self, key: &str, up_to: i64, summary: String) -> ocg_core::Result<u64> {
        let key = key.to_owned();
        self.run(move |conn| {
            let tx = conn.transaction()?;
            let archived = tx.execute(
                "UPDATE messages SET archived = 1
                 WHERE session_key = ?1 AND archived = 0 AND id <= ?2",
                params![key, up_to],
            )?;
            tx.execute(
                "UPDATE sessions SET live_messages = live_messages - ?2,
                     archived_messages = archived_messages + ?2
                 WHERE key = ?1",
                params![key, i64::try_from(archived).unwrap_or(i64::MAX)],
            )?;
            tx.execute(
                "INSERT INTO summaries (session_key, content, covers_up_to, created_at)
                 VALUES (?1, ?2, ?3, ?4)",
                params![key, summary, up_to, now_ms()],
            )?;
            tx.commit()?;
            Ok(archived as u64)
        })
        .await
        .map_err(Into::into)
    }

    /// Totals.
    async fn stats(&self) -> ocg_core::Result<StoreStats> {
        self.read(|conn| {
            Ok(StoreStats {
                sessions: conn.query_row("SELECT COUNT(*) FROM sessions", [], |r| r.get(0))?,
                messages: conn.query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))?,
            })
        })
        .await
        .map_err(Into::into)
    }

    async fn check(&self) -> ocg_core::Result<()> {
        self.read(|conn| {
            conn.prepare_cached("SELECT 1 FROM sessions LIMIT 0")?
                .execute([])?;
            Ok(())
        })
        .await
        .map_err(Into::into)
    }
}

/// Commit `batch` in one transaction, each turn under a savepoint, and
/// answer every turn: its number, or the error that failed it (a failed
/// commit fails them all).
fn commit_turns(conn: &mut Connection, batch: Vec<PendingTurn>) {
    let mut results = Vec::with_capacity(batch.len());
    let committed = insert_turns(conn, &batch, &mut results);
    let mut results = results.into_iter();
    for turn in batch {
        let result = match &committed {
            Ok(()) => results
                .next()
                .unwrap_or_else(|| Err(AgentError::Internal("turn not stored".into()))),
            Err(error) => Err(AgentError::Internal(format!(
                "storing the turn failed: {error}"
            ))),
        };
        let _ = turn.done.send(result);
    }
}

/// The transaction of [`commit_turns`]: one result per turn in `results`.
/// A turn of a batch runs under a savepoint, so a failed one is undone
/// alone; a batch of one needs none. The transaction statements are
/// prepared once, like the inserts (this runs for every turn).
fn insert_turns(
    conn: &mut Connection,
    batch: &[PendingTurn],
    results: &mut Vec<Result<i64, AgentError>>,
) -> Result<(), AgentError> {
    let run = |conn: &Connection, sql: &str| -> Result<(), AgentError> {
        conn.prepare_cached(sql)?.execute([])?;
        Ok(())
    };
    run(conn, "BEGIN IMMEDIATE")?;
    let outcome = (|| {
        if let [turn] = batch {
            let result = insert_turn(conn, &turn.key, &turn.messages);
            let failed = result.is_err();
            results.push(result);
            return run(conn, if failed { "ROLLBACK" } else { "COMMIT" });
        }
        for turn in batch {
            run(conn, "SAVEPOINT turn")?;
            let result = insert_turn(conn, &turn.key, &turn.messages);
            if result.is_err() {
                run(conn, "ROLLBACK TO turn")?;
            }
            run(conn, "RELEASE turn")?;
            results.push(result);
        }
        run(conn, "COMMIT")
    })();
    if outcome.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    outcome
}

/// Insert one turn of `key` (in the caller's transaction); its number.
fn insert_turn(conn: &Connection, key: &str, messages: &[NewMessage]) -> Result<i64, AgentError> {
    let now = now_ms();
    let count = i64::try_from(messages.len()).unwrap_or(i64::MAX);
    let turn: i64 = conn
        .prepare_cached(
            "INSERT INTO sessions (key, created_at, updated_at, last_turn, live_messages)
             VALUES (?1, ?2, ?2, 1, ?3)
             ON CONFLICT(key) DO UPDATE SET updated_at = excluded.updated_at,
                 last_turn = sessions.last_turn + 1,
                 live_messages = sessions.live_messages + excluded.live_messages
             RETURNING last_turn",
        )?
        .query_row(params![key, now, count], |row| row.get(0))?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO messages
         (session_key, turn, role, content, tool_calls, tool_call_id, tokens, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for new in messages {
        let m = &new.message;
        let tool_calls = (!m.tool_calls.is_empty())
            .then(|| serde_json::to_string(&m.tool_calls))
            .transpose()
            .map_err(|e| AgentError::Internal(e.to_string()))?;
        insert.execute(params![
            key,
            turn,
            m.role.as_str(),
            m.content,
            tool_calls,
            m.tool_call_id,
            new.tokens,
            now
        ])?;
    }
    Ok(turn)
}

fn ensure_session(conn: &Connection, key: &str) -> Result<(), AgentError> {
    let exists: bool = conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM sessions WHERE key = ?1)",
        params![key],
        |row| row.get(0),
    )?;
    if exists {
        Ok(())
    } else {
        Err(AgentError::SessionNotFound(key.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: Role, text: &str) -> NewMessage {
        NewMessage {
            message: Message::new(role, text),
            tokens: 3,
        }
    }

    #[tokio::test]
    async fn the_session_store_contract_holds_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteSessionStore::open(&dir.path().join("ocg.db")).unwrap();
        ocg_core::testing::check_session_store(&store).await;
        ocg_core::testing::check_session_store(&SqliteSessionStore::in_memory().unwrap()).await;
    }

    #[tokio::test]
    async fn a_database_of_the_first_schema_is_migrated_with_its_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ocg.db");
        {
            // As the first release wrote it: no counters, no summary index.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(SCHEMA).unwrap();
            conn.execute_batch(
                "INSERT INTO sessions (key, created_at, updated_at) VALUES ('web:old', 1, 1);
                 INSERT INTO messages (session_key, turn, role, content, tokens, created_at, archived)
                 VALUES ('web:old', 1, 'user', 'a', 1, 1, 1), ('web:old', 1, 'assistant', 'b', 1, 1, 1),
                        ('web:old', 2, 'user', 'c', 1, 1, 0), ('web:old', 7, 'assistant', 'd', 1, 1, 0),
                        ('web:old', 7, 'user', 'e', 1, 1, 0);",
            )
            .unwrap();
        }
        let store = SqliteSessionStore::open(&path).unwrap();
        let list = store.list().await.unwrap();
        assert_eq!((list[0].messages, list[0].archived), (3, 2));
        let turn = store
            .append_turn("web:old", vec![msg(Role::User, "next")])
            .await
            .unwrap();
        assert_eq!(turn, 8, "numbering goes on after the highest turn");
        assert_eq!(store.list().await.unwrap()[0].messages, 4);
        drop(store);
        // Opening again does not migrate twice.
        let store = SqliteSessionStore::open(&path).unwrap();
        assert_eq!(store.list().await.unwrap()[0].messages, 4);
    }

    #[tokio::test]
    async fn turns_queued_together_commit_together_and_a_bad_one_fails_alone() {
        let store = SqliteSessionStore::in_memory().unwrap();
        store
            .run(|conn| {
                conn.execute_batch(
                    "CREATE TRIGGER poison BEFORE INSERT ON messages WHEN NEW.content = 'poison'
                     BEGIN SELECT RAISE(ABORT, 'poisoned'); END;",
                )?;
                Ok(())
            })
            .await
            .unwrap();
        // Hold the writer so that every turn queues behind it.
        let writer = store.writer.clone();
        let (held, hold) = std::sync::mpsc::channel();
        let holder = std::thread::spawn(move || {
            let _guard = writer.lock().unwrap();
            held.send(()).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(300));
        });
        hold.recv().unwrap();
        let mut turns = Vec::new();
        for (key, text) in [
            ("s:a", "one"),
            ("s:b", "poison"),
            ("s:a", "two"),
            ("s:c", "x"),
        ] {
            let store = store.clone();
            turns.push(tokio::spawn(async move {
                store.append_turn(key, vec![msg(Role::User, text)]).await
            }));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert_eq!(
            store.pending.lock().unwrap().len(),
            4,
            "all queued behind the writer"
        );
        holder.join().unwrap();
        let mut results = Vec::new();
        for turn in turns {
            results.push(turn.await.unwrap());
        }
        assert_eq!(results[0].as_ref().unwrap(), &1);
        assert!(
            results[1]
                .as_ref()
                .unwrap_err()
                .to_string()
                .contains("poisoned")
        );
        assert_eq!(results[2].as_ref().unwrap(), &2);
        assert_eq!(results[3].as_ref().unwrap(), &1);
        // The failed turn left nothing: no message, no session row.
        assert_eq!(
            store.stats().await.unwrap(),
            StoreStats {
                sessions: 2,
                messages: 3
            }
        );
        let texts: Vec<String> = store
            .context("s:a")
            .await
            .unwrap()
            .messages
            .into_iter()
            .map(|e| e.message.content)
            .collect();
        assert_eq!(texts, ["one", "two"]);
        // Alone in its transaction, a bad turn fails the same way.
        let error = store
            .append_turn("s:d", vec![msg(Role::User, "poison")])
            .await
            .unwrap_err();
        assert!(error.to_string().contains("poisoned"), "{error}");
        assert_eq!(
            store.stats().await.unwrap(),
            StoreStats {
                sessions: 2,
                messages: 3
            }
        );
        store
            .append_turn("s:d", vec![msg(Role::User, "fine")])
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn concurrent_writers_on_two_connections_wait_instead_of_failing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ocg.db");
        let a = SqliteSessionStore::open(&path).unwrap();
        let b = SqliteSessionStore::open(&path).unwrap();
        let mut tasks = Vec::new();
        for i in 0..20 {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            tasks.push(tokio::spawn(async move {
                store
                    .append_turn(&format!("s:{}", i % 3), vec![msg(Role::User, "x")])
                    .await
            }));
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(a.stats().await.unwrap().messages, 20);
    }
}
