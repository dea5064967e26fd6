//! The [`SessionStore`] contract: every message of every turn, per session,
//! and the right to run a session's turns.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;

use crate::{HistoryEntry, Message, Result, SessionInfo};

/// A message to store, with its token count.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    /// The message.
    pub message: Message,
    /// Its tokens.
    pub tokens: u32,
}

/// What the model sees of a session.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SessionContext {
    /// The latest compaction summary.
    pub summary: Option<String>,
    /// Messages not archived, oldest first.
    pub messages: Vec<HistoryEntry>,
}

/// Totals of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StoreStats {
    /// Sessions.
    pub sessions: u64,
    /// Messages (archived included).
    pub messages: u64,
}

/// The right to run one session's turns, held until dropped.
///
/// A store shared by several processes hands out a lock that excludes them
/// all (a PostgreSQL advisory lock, say) and frees it when the holder dies;
/// a store of one process hands out [`SessionLock::local`] and relies on the
/// caller's own lock.
#[must_use = "the session is locked only while this is held"]
pub struct SessionLock {
    held: Option<Box<dyn LockHeld>>,
}

/// What a store's lock guard tells about itself.
pub trait LockHeld: Send + Sync {
    /// Whether the lock still holds: false once the store lost it (its
    /// connection ended), so the holder must not store the turn.
    fn still_held(&self) -> bool;
}

impl SessionLock {
    /// No lock beyond the caller's own (a store only one process uses).
    pub fn local() -> Self {
        SessionLock { held: None }
    }

    /// A lock released when `guard` is dropped.
    pub fn held_by(guard: impl LockHeld + 'static) -> Self {
        SessionLock {
            held: Some(Box::new(guard)),
        }
    }

    /// Whether the lock still holds (always, for a local one).
    pub fn still_held(&self) -> bool {
        self.held.as_ref().is_none_or(|held| held.still_held())
    }
}

impl std::fmt::Debug for SessionLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionLock")
            .field("shared", &self.held.is_some())
            .finish()
    }
}

/// Sessions and their history: what the agent keeps of every conversation.
///
/// Contract (checked for every implementation by
/// `testing::check_session_store`):
/// - [`append_turn`](SessionStore::append_turn) stores a turn's messages
///   atomically (all or none), creating the session on first use, and
///   answers only once they are durable, with the turn's number in its
///   session (1, 2, …).
/// - Operations naming a session that does not exist ([`history`],
///   [`reset`], [`delete`], [`rename`]) fail with
///   [`Error::NotFound`](crate::Error::NotFound); [`context`] of an unknown
///   session is empty, since a first turn has no history yet.
/// - Messages keep their order (ids increase); compaction archives the
///   oldest up to an id and records a summary in one step, and archived
///   messages stay in the history.
/// - [`lock_session`](SessionStore::lock_session) excludes every other
///   process sharing the store from the session's turns until the lock is
///   dropped. Within one process the caller serializes a session's turns
///   itself (the agent runtime queues them before taking this lock).
///
/// [`history`]: SessionStore::history
/// [`reset`]: SessionStore::reset
/// [`delete`]: SessionStore::delete
/// [`rename`]: SessionStore::rename
/// [`context`]: SessionStore::context
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Store one turn's messages; the turn's number in its session.
    async fn append_turn(&self, key: &str, messages: Vec<NewMessage>) -> Result<i64>;

    /// The latest summary of `key` and its messages not archived.
    async fn context(&self, key: &str) -> Result<SessionContext>;

    /// A page of `key`'s messages, oldest first; archived ones only when asked.
    async fn history(
        &self,
        key: &str,
        offset: u64,
        limit: u64,
        include_archived: bool,
    ) -> Result<Vec<HistoryEntry>>;

    /// All sessions, most recently used first.
    async fn list(&self) -> Result<Vec<SessionInfo>>;

    /// Forget `key`'s messages and summaries; the session stays.
    async fn reset(&self, key: &str) -> Result<()>;

    /// Delete `key` and everything in it.
    async fn delete(&self, key: &str) -> Result<()>;

    /// Set `key`'s title.
    async fn rename(&self, key: &str, title: &str) -> Result<()>;

    /// Archive `key`'s messages up to id `up_to` and record `summary` of
    /// them, in one step; how many messages were archived.
    async fn compact(&self, key: &str, up_to: i64, summary: String) -> Result<u64>;

    /// Totals.
    async fn stats(&self) -> Result<StoreStats>;

    /// The right to run `key`'s turns, waiting while another process of
    /// the store holds it. Not a lock between callers of one process.
    async fn lock_session(&self, key: &str) -> Result<SessionLock> {
        let _ = key;
        Ok(SessionLock::local())
    }

    /// Whether the store is reachable; the error says why not.
    async fn check(&self) -> Result<()> {
        Ok(())
    }
}

impl std::fmt::Debug for dyn SessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dyn SessionStore")
    }
}

#[async_trait]
impl<T: SessionStore + ?Sized> SessionStore for Arc<T> {
    async fn append_turn(&self, key: &str, messages: Vec<NewMessage>) -> Result<i64> {
        (**self).append_turn(key, messages).await
    }
    async fn context(&self, key: &str) -> Result<SessionContext> {
        (**self).context(key).await
    }
    async fn history(
        &self,
        key: &str,
        offset: u64,
        limit: u64,
        include_archived: bool,
    ) -> Result<Vec<HistoryEntry>> {
        (**self).history(key, offset, limit, include_archived).await
    }
    async fn list(&self) -> Result<Vec<SessionInfo>> {
        (**self).list().await
    }
    async fn reset(&self, key: &str) -> Result<()> {
        (**self).reset(key).await
    }
    async fn delete(&self, key: &str) -> Result<()> {
        (**self).delete(key).await
    }
    async fn rename(&self, key: &str, title: &str) -> Result<()> {
        (**self).rename(key, title).await
    }
    async fn compact(&self, key: &str, up_to: i64, summary: String) -> Result<u64> {
        (**self).compact(key, up_to, summary).await
    }
    async fn stats(&self) -> Result<StoreStats> {
        (**self).stats().await
    }
    async fn lock_session(&self, key: &str) -> Result<SessionLock> {
        (**self).lock_session(key).await
    }
    async fn check(&self) -> Result<()> {
        (**self).check().await
    }
}
