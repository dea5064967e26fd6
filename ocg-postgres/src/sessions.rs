//! [`PgSessionStore`]: the [`SessionStore`] contract in PostgreSQL, shared
//! by every agent of the database.
//!
//! The tables mirror the agent's SQLite ones (`ocg_sessions`,
//! `ocg_messages`, `ocg_summaries`), with each session's counters kept in
//! its row so a turn costs the same at turn 100,000 as at turn 1. A turn is
//! one statement (the session's row and its messages, through data-modifying
//! CTEs), so it is atomic and costs one round trip.
//!
//! [`lock_session`](SessionStore::lock_session) takes a session-level
//! advisory lock keyed by the session (`pg_try_advisory_lock(class,
//! hashtext(key))`) on one connection this store keeps for its locks.
//! PostgreSQL frees an advisory lock when its connection ends, so the
//! sessions of an agent that was killed mid-turn are free again as soon as
//! the server notices the dead connection; two keys with the same hash
//! merely queue behind each other. On its one connection the lock is
//! reentrant, so it excludes other processes only: the runtime queues a
//! process's own turns of a session before taking it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Object, Pool};
use ocg_core::{
    HistoryEntry, Message, NewMessage, Role, SessionContext, SessionInfo, SessionLock,
    SessionStore, StoreStats, ToolCall,
};
use tokio_postgres::Row;

use crate::{PgError, now_ms};

/// The first key of the sessions' advisory locks ("oc"), so they never
/// meet another application's two-key locks by chance.
const LOCK_CLASS: i32 = 0x6f63;
/// How long a waiting lock sleeps between tries, at most.
const LOCK_POLL_MAX: Duration = Duration::from_millis(50);

/// Sessions and their history in PostgreSQL.
#[derive(Clone)]
pub struct PgSessionStore {
    pool: Pool,
    /// The connection holding this store's session locks, once one was taken.
    locks: LockSlot,
}

impl std::fmt::Debug for PgSessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSessionStore").finish_non_exhaustive()
    }
}

const MESSAGE_COLUMNS: &str =
    "id, turn, role, content, tool_calls, tool_call_id, tokens, created_at_ms, archived";

fn read_message(row: &Row) -> HistoryEntry {
    let tool_calls: Option<String> = row.get("tool_calls");
    let tool_calls: Vec<ToolCall> = tool_calls
        .and_then(|json| serde_json::from_str(&json).ok())
        .unwrap_or_default();
    HistoryEntry {
        id: row.get("id"),
        turn: row.get("turn"),
        message: Message {
            role: Role::parse(row.get("role")).unwrap_or(Role::User),
            content: row.get("content"),
            tool_calls,
            tool_call_id: row.get("tool_call_id"),
        },
        tokens: u32::try_from(row.get::<_, i32>("tokens")).unwrap_or(0),
        created_at_ms: row.get("created_at_ms"),
        archived: row.get("archived"),
    }
}

/// Messages as the arrays of one `INSERT … SELECT … FROM unnest(…)`.
struct Columns<'a> {
    roles: Vec<&'static str>,
    contents: Vec<&'a str>,
    calls: Vec<Option<String>>,
    call_ids: Vec<Option<&'a str>>,
    tokens: Vec<i32>,
}

impl<'a> Columns<'a> {
    /// The columns of `messages` (each with its token count).
    fn of(messages: impl ExactSizeIterator<Item = (&'a Message, u32)>) -> Result<Self, PgError> {
        let mut columns = Columns {
            roles: Vec::with_capacity(messages.len()),
            contents: Vec::with_capacity(messages.len()),
            calls: Vec::with_capacity(messages.len()),
            call_ids: Vec::with_capacity(messages.len()),
            tokens: Vec::with_capacity(messages.len()),
        };
        for (m, tokens) in messages {
            columns.roles.push(m.role.as_str());
            columns.contents.push(m.content.as_str());
            columns.calls.push(
                (!m.tool_calls.is_empty())
                    .then(|| serde_json::to_string(&m.tool_calls))
                    .transpose()
                    .map_err(|e| PgError::Invalid(e.to_string()))?,
            );
            columns.call_ids.push(m.tool_call_id.as_deref());
            columns
                .tokens
                .push(i32::try_from(tokens).unwrap_or(i32::MAX));
        }
        Ok(columns)
    }
}

fn not_found(key: &str) -> ocg_core::Error {
    ocg_core::Error::NotFound(format!("session {key}"))
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl PgSessionStore {
    /// Sessions in the database of `pool` (migrated by [`open`](crate::open)).
    pub fn new(pool: Pool) -> Self {
        PgSessionStore {
            pool,
            locks: Arc::default(),
        }
    }

    async fn client(&self) -> Result<Object, PgError> {
        Ok(self.pool.get().await?)
    }

    /// The connection the locks live on: the one held, or a new one when
    /// it ended (its locks ended with it).
    async fn lock_connection(&self) -> Result<Arc<LockConnection>, PgError> {
        let mut held = self.locks.lock().await;
        if let Some(conn) = held.as_ref().filter(|c| !c.client().is_closed()) {
            return Ok(conn.clone());
        }
        let conn = Arc::new(LockConnection(Some(self.client().await?)));
        *held = Some(conn.clone());
        Ok(conn)
    }

    /// Copy session `info` with all its `messages` (oldest first, archived
    /// ones included) and its latest compaction `summary` from another
    /// store, keeping turns, archive flags and times; messages get ids of
    /// this database, in the same order. A session already here is left as
    /// it is (false), so an import can be run again.
    pub async fn import(
        &self,
        info: &SessionInfo,
        messages: &[HistoryEntry],
        summary: Option<&str>,
    ) -> Result<bool, PgError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let last_turn = messages.iter().map(|m| m.turn).max().unwrap_or(0);
        let archived = messages.iter().filter(|m| m.archived).count();
        let live = i64::try_from(messages.len() - archived).unwrap_or(i64::MAX);
        let archived = i64::try_from(archived).unwrap_or(i64::MAX);
        let created = tx
            .execute(
                "INSERT INTO ocg_sessions
                     (key, title, created_at_ms, updated_at_ms, last_turn, live_messages, archived_messages)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (key) DO NOTHING",
                &[
                    &info.key,
                    &info.title,
                    &info.created_at_ms,
                    &info.updated_at_ms,
                    &last_turn,
                    &live,
                    &archived,
                ],
            )
            .await?;
        if created == 0 {
            return Ok(false);
        }
        let columns = Columns::of(messages.iter().map(|e| (&e.message, e.tokens)))?;
        let turns: Vec<i64> = messages.iter().map(|e| e.turn).collect();
        let times: Vec<i64> = messages.iter().map(|e| e.created_at_ms).collect();
        let flags: Vec<bool> = messages.iter().map(|e| e.archived).collect();
        // The new id of the last archived message: what the summary covers.
        let covers: Option<i64> = tx
            .query_one(
                "WITH stored AS (
                    INSERT INTO ocg_messages (session_key, turn, role, content, tool_calls,
                        tool_call_id, tokens, created_at_ms, archived)
                    SELECT $1, m.turn, m.role, m.content, m.tool_calls, m.tool_call_id, m.tokens,
                        m.created_at_ms, m.archived
                    FROM unnest($2::int8[], $3::text[], $4::text[], $5::text[], $6::text[],
                        $7::int4[], $8::int8[], $9::bool[])
                        WITH ORDINALITY AS m (turn, role, content, tool_calls, tool_call_id,
                            tokens, created_at_ms, archived, n)
                    ORDER BY m.n
                    RETURNING id, archived
                 )
                 SELECT max(id) FILTER (WHERE archived) FROM stored",
                &[
                    &info.key,
                    &turns,
                    &columns.roles,
                    &columns.contents,
                    &columns.calls,
                    &columns.call_ids,
                    &columns.tokens,
                    &times,
                    &flags,
                ],
            )
            .await?
            .get(0);
        if let Some(summary) = summary {
            tx.execute(
                "INSERT INTO ocg_summaries (session_key, content, covers_up_to, created_at_ms)
                 VALUES ($1, $2, $3, $4)",
                &[
                    &info.key,
                    &summary,
                    &covers.unwrap_or(0),
                    &info.updated_at_ms,
                ],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn session_exists(client: &Object, key: &str) -> Result<bool, PgError> {
        let statement = client
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM ocg_sessions WHERE key = $1)")
            .await?;
        Ok(client.query_one(&statement, &[&key]).await?.get(0))
    }
}

/// Where a store keeps the connection of its session locks.
type LockSlot = Arc<tokio::sync::Mutex<Option<Arc<LockConnection>>>>;

/// The connection session locks are taken on. It never goes back to the
/// pool (a lock left on it would go along): dropped, it is closed, and
/// every lock still on it ends.
struct LockConnection(Option<Object>);

impl LockConnection {
    fn client(&self) -> &Object {
        // Some until dropped.
        self.0
            .as_ref()
            .unwrap_or_else(|| unreachable!("taken only on drop"))
    }
}

impl Drop for LockConnection {
    fn drop(&mut self) {
        if let Some(object) = self.0.take() {
            drop(Object::take(object));
        }
    }
}

/// A held session lock: unlocked on its connection when dropped. Should
/// the unlock fail, the connection is given up (closed once no other lock
/// holds it), which ends the lock for sure.
struct HeldLock {
    conn: Arc<LockConnection>,
    slot: LockSlot,
    key: String,
}

impl ocg_core::LockHeld for HeldLock {
    fn still_held(&self) -> bool {
        !self.conn.client().is_closed()
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        let (conn, slot, key) = (
            self.conn.clone(),
            self.slot.clone(),
            std::mem::take(&mut self.key),
        );
        let unlock = async move {
            let unlocked = conn
                .client()
                .query_one(
                    "SELECT pg_advisory_unlock($1, hashtext($2))",
                    &[&LOCK_CLASS, &key],
                )
                .await;
            if let Err(error) = unlocked {
                tracing::warn!(%error, "unlocking a session failed; closing its connection");
                let mut held = slot.lock().await;
                if held.as_ref().is_some_and(|c| Arc::ptr_eq(c, &conn)) {
                    *held = None;
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(unlock)),
            // No runtime to unlock on: give the connection up instead.
            Err(_) => {
                if let Ok(mut held) = self.slot.try_lock() {
                    *held = None;
                }
            }
        }
    }
}

#[async_trait]
impl SessionStore for PgSessionStore {
    async fn append_turn(&self, key: &str, messages: Vec<NewMessage>) -> ocg_core::Result<i64> {
        let count = i64::try_from(messages.len()).unwrap_or(i64::MAX);
        let columns = Columns::of(messages.iter().map(|m| (&m.message, m.tokens)))?;
        let client = self.client().await?;
        // One statement: the session's row, then its messages in order.
        let statement = client
            .prepare_cached(
                "WITH session AS (
                    INSERT INTO ocg_sessions (key, created_at_ms, updated_at_ms, last_turn, live_messages)
                    VALUES ($1, $2, $2, 1, $3)
                    ON CONFLICT (key) DO UPDATE SET updated_at_ms = excluded.updated_at_ms,
                        last_turn = ocg_sessions.last_turn + 1,
                        live_messages = ocg_sessions.live_messages + excluded.live_messages
                    RETURNING last_turn
                ), stored AS (
                    INSERT INTO ocg_messages
                        (session_key, turn, role, content, tool_calls, tool_call_id, tokens, created_at_ms)
                    SELECT $1, session.last_turn, m.role, m.content, m.tool_calls, m.tool_call_id, m.tokens, $2
                    FROM session, unnest($4::text[], $5::text[], $6::text[], $7::text[], $8::int4[])
                        WITH ORDINALITY AS m (role, content, tool_calls, tool_call_id, tokens, n)
                    ORDER BY m.n
                )
                SELECT last_turn FROM session",
            )
            .await
            .map_err(PgError::from)?;
        let row = client
            .query_one(
                &statement,
                &[
                    &key,
                    &now_ms(),
                    &count,
                    &columns.roles,
                    &columns.contents,
                    &columns.calls,
                    &columns.call_ids,
                    &columns.tokens,
                ],
            )
            .await
            .map_err(PgError::from)?;
        Ok(row.get(0))
    }

    async fn context(&self, key: &str) -> ocg_core::Result<SessionContext> {
        let client = self.client().await?;
        let summary = client
            .prepare_cached(
                "SELECT content FROM ocg_summaries WHERE session_key = $1 ORDER BY id DESC LIMIT 1",
            )
            .await
            .map_err(PgError::from)?;
        let messages = client
            .prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM ocg_messages
                 WHERE session_key = $1 AND NOT archived ORDER BY id"
            ))
            .await
            .map_err(PgError::from)?;
        // Both on the wire at once: one round trip.
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&key];
        let (summary, messages) = tokio::join!(
            client.query_opt(&summary, &params),
            client.query(&messages, &params)
        );
        Ok(SessionContext {
            summary: summary.map_err(PgError::from)?.map(|row| row.get(0)),
            messages: messages
                .map_err(PgError::from)?
                .iter()
                .map(read_message)
                .collect(),
        })
    }

    async fn history(
        &self,
        key: &str,
        offset: u64,
        limit: u64,
        include_archived: bool,
    ) -> ocg_core::Result<Vec<HistoryEntry>> {
        let client = self.client().await?;
        let page = client
            .prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM ocg_messages
                 WHERE session_key = $1 AND ($2 OR NOT archived)
                 ORDER BY id LIMIT $3 OFFSET $4"
            ))
            .await
            .map_err(PgError::from)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
            [&key, &include_archived, &limit, &offset];
        let (exists, rows) = tokio::join!(
            Self::session_exists(&client, key),
            client.query(&page, &params)
        );
        if !exists? {
            return Err(not_found(key));
        }
        Ok(rows
            .map_err(PgError::from)?
            .iter()
            .map(read_message)
            .collect())
    }

    async fn list(&self) -> ocg_core::Result<Vec<SessionInfo>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT key, title, created_at_ms, updated_at_ms, live_messages, archived_messages
                 FROM ocg_sessions ORDER BY updated_at_ms DESC, key",
                &[],
            )
            .await
            .map_err(PgError::from)?;
        Ok(rows
            .iter()
            .map(|row| SessionInfo {
                key: row.get(0),
                title: row.get(1),
                created_at_ms: row.get(2),
                updated_at_ms: row.get(3),
                messages: count(row.get(4)),
                archived: count(row.get(5)),
            })
            .collect())
    }

    async fn reset(&self, key: &str) -> ocg_core::Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(PgError::from)?;
        let updated = tx
            .execute(
                "UPDATE ocg_sessions SET last_turn = 0, live_messages = 0, archived_messages = 0
                 WHERE key = $1",
                &[&key],
            )
            .await
            .map_err(PgError::from)?;
        if updated == 0 {
            return Err(not_found(key));
        }
        tx.execute("DELETE FROM ocg_messages WHERE session_key = $1", &[&key])
            .await
            .map_err(PgError::from)?;
        tx.execute("DELETE FROM ocg_summaries WHERE session_key = $1", &[&key])
            .await
            .map_err(PgError::from)?;
        tx.commit().await.map_err(PgError::from)?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> ocg_core::Result<()> {
        let client = self.client().await?;
        let deleted = client
            .execute("DELETE FROM ocg_sessions WHERE key = $1", &[&key])
            .await
            .map_err(PgError::from)?;
        if deleted == 0 {
            return Err(not_found(key));
        }
        Ok(())
    }

    async fn rename(&self, key: &str, title: &str) -> ocg_core::Result<()> {
        let client = self.client().await?;
        let updated = client
            .execute(
                "UPDATE ocg_sessions SET title = $2 WHERE key = $1",
                &[&key, &title],
            )
            .await
            .map_err(PgError::from)?;
        if updated == 0 {
            return Err(not_found(key));
        }
        Ok(())
    }

    async fn compact(&self, key: &str, up_to: i64, summary: String) -> ocg_core::Result<u64> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(PgError::from)?;
        let archived = tx
            .execute(
                "UPDATE ocg_messages SET archived = true
                 WHERE session_key = $1 AND NOT archived AND id <= $2",
                &[&key, &up_to],
            )
            .await
            .map_err(PgError::from)?;
        let moved = i64::try_from(archived).unwrap_or(i64::MAX);
        tx.execute(
            "UPDATE ocg_sessions SET live_messages = live_messages - $2,
                 archived_messages = archived_messages + $2
             WHERE key = $1",
            &[&key, &moved],
        )
        .await
        .map_err(PgError::from)?;
        tx.execute(
            "INSERT INTO ocg_summaries (session_key, content, covers_up_to, created_at_ms)
             VALUES ($1, $2, $3, $4)",
            &[&key, &summary, &up_to, &now_ms()],
        )
        .await
        .map_err(PgError::from)?;
        tx.commit().await.map_err(PgError::from)?;
        Ok(archived)
    }

    async fn stats(&self) -> ocg_core::Result<StoreStats> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT (SELECT count(*) FROM ocg_sessions), (SELECT count(*) FROM ocg_messages)",
                &[],
            )
            .await
            .map_err(PgError::from)?;
        Ok(StoreStats {
            sessions: count(row.get(0)),
            messages: count(row.get(1)),
        })
    }

    async fn lock_session(&self, key: &str) -> ocg_core::Result<SessionLock> {
        // Taken by a task of its own: should the caller go away while the
        // server grants the lock, the task still gets the answer, and the
        // lock it holds is given back with it.
        let wanted = Arc::new(());
        let store = self.clone();
        let (key, caller) = (key.to_owned(), Arc::downgrade(&wanted));
        let taking = tokio::spawn(async move {
            let mut pause = Duration::from_millis(2);
            loop {
                let conn = store.lock_connection().await?;
                let taken: bool = conn
                    .client()
                    .query_one(
                        "SELECT pg_try_advisory_lock($1, hashtext($2))",
                        &[&LOCK_CLASS, &key],
                    )
                    .await?
                    .get(0);
                if taken {
                    return Ok(HeldLock {
                        conn,
                        slot: store.locks.clone(),
                        key,
                    });
                }
                if caller.strong_count() == 0 {
                    return Err(PgError::Pool("the caller went away".into()));
                }
                // Another agent runs this session's turn: try again shortly.
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(LOCK_POLL_MAX);
            }
        });
        let held = taking
            .await
            .map_err(|e| PgError::Pool(format!("taking a session lock failed: {e}")))??;
        drop(wanted);
        Ok(SessionLock::held_by(held))
    }

    async fn check(&self) -> ocg_core::Result<()> {
        let client = self.client().await?;
        client
            .execute("SELECT 1 FROM ocg_sessions LIMIT 0", &[])
            .await
            .map_err(PgError::from)?;
        Ok(())
    }
}
