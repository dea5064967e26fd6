//! The [`Agent`] contract: one conversational turn at a time, streamed.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use futures_core::Stream;

use serde::{Deserialize, Serialize};

use crate::schedule::{Delivery, DeliveryOutcome, Job, JobPatch, JobRun, NewJob};
use crate::{
    ChatEvent, ChatReply, ChatRequest, Error, HealthReport, McpServerInfo, Memory, MemoryPage,
    Message, NewMemory, Result, StoredMemory,
};

/// A session as listed by an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// Its key (`web:<id>`, `telegram:<chat_id>`, `api:<user>`, …).
    pub key: String,
    /// A title set by rename.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Creation time (Unix ms).
    pub created_at_ms: i64,
    /// Last turn (Unix ms).
    pub updated_at_ms: i64,
    /// Messages not archived.
    pub messages: u64,
    /// Messages archived by compaction.
    pub archived: u64,
}

/// A stored message of a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Row id; increases with time.
    pub id: i64,
    /// The turn it belongs to (per session, from 1).
    pub turn: i64,
    /// The message.
    #[serde(flatten)]
    pub message: Message,
    /// Tokens (reported by the model for its answers, estimated otherwise).
    pub tokens: u32,
    /// Unix time in milliseconds.
    pub created_at_ms: i64,
    /// Whether compaction archived it.
    pub archived: bool,
}

fn unsupported<T>(what: &str) -> Result<T> {
    Err(Error::Unsupported(format!(
        "this agent does not offer {what}"
    )))
}

/// A stream of [`ChatEvent`]s for one turn.
pub type ChatStream = Pin<Box<dyn Stream<Item = ChatEvent> + Send>>;

/// Something that answers chat turns: the in-process runtime, a client of the
/// agent's socket, or a fake.
///
/// Contract:
/// - [`chat_stream`](Agent::chat_stream) returns `Err` only when the turn could
///   not start (bad request, agent unreachable). Once a stream is returned,
///   failures arrive as a final [`ChatEvent::Error`].
/// - A stream ends with exactly one terminal event (`done` or `error`); events
///   after it are not produced.
/// - Dropping the stream cancels the turn; an implementation must stop work
///   (and billing calls to a model) promptly when that happens.
/// - Turns on the same session are serialized by the implementation; callers
///   may issue them concurrently.
#[async_trait]
pub trait Agent: Send + Sync {
    /// Start a turn and stream its events.
    async fn chat_stream(&self, request: ChatRequest) -> Result<ChatStream>;

    /// The agent's health, including what it depends on. Never fails: an
    /// unreachable agent reports itself as unhealthy.
    async fn health(&self) -> HealthReport;

    /// Sessions, most recently used first.
    async fn sessions(&self) -> Result<Vec<SessionInfo>> {
        unsupported("sessions")
    }

    /// A page of a session's messages, oldest first; archived ones only when
    /// asked. An unknown session is [`Error::NotFound`].
    async fn history(
        &self,
        key: &str,
        offset: u64,
        limit: u64,
        include_archived: bool,
    ) -> Result<Vec<HistoryEntry>> {
        let _ = (key, offset, limit, include_archived);
        unsupported("session history")
    }

    /// Set a session's title.
    async fn rename_session(&self, key: &str, title: &str) -> Result<()> {
        let _ = (key, title);
        unsupported("renaming sessions")
    }

    /// Forget a session's messages; the session stays.
    async fn reset_session(&self, key: &str) -> Result<()> {
        let _ = key;
        unsupported("resetting sessions")
    }

    /// Delete a session.
    async fn delete_session(&self, key: &str) -> Result<()> {
        let _ = key;
        unsupported("deleting sessions")
    }

    /// The models this agent answers with (for `GET /v1/models`).
    async fn models(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    /// Memories most relevant to `query`, best first, at most `limit`.
    async fn memory_search(&self, query: &str, limit: usize) -> Result<Vec<Memory>> {
        let _ = (query, limit);
        unsupported("memory")
    }

    /// A page of memories, newest first.
    async fn memory_list(&self, offset: u64, limit: u64) -> Result<MemoryPage> {
        let _ = (offset, limit);
        unsupported("memory")
    }

    /// One memory; an unknown id is [`Error::NotFound`].
    async fn memory_get(&self, id: &str) -> Result<Memory> {
        let _ = id;
        unsupported("memory")
    }

    /// Remember a fact (stored as coming from the user); a near-identical
    /// memory is updated instead of duplicated.
    async fn memory_store(&self, memory: NewMemory) -> Result<StoredMemory> {
        let _ = memory;
        unsupported("memory")
    }

    /// Forget a memory; an unknown id is [`Error::NotFound`].
    async fn memory_delete(&self, id: &str) -> Result<()> {
        let _ = id;
        unsupported("memory")
    }

    /// Create a scheduled job (validated: a bad schedule, target or
    /// message is [`Error::InvalidInput`]).
    async fn job_create(&self, job: NewJob) -> Result<Job> {
        let _ = job;
        unsupported("scheduling")
    }

    /// Every job, soonest next run first.
    async fn job_list(&self) -> Result<Vec<Job>> {
        unsupported("scheduling")
    }

    /// One job; an unknown id is [`Error::NotFound`].
    async fn job_get(&self, id: &str) -> Result<Job> {
        let _ = id;
        unsupported("scheduling")
    }

    /// Change a job (pause, resume, reschedule, …).
    async fn job_update(&self, id: &str, patch: JobPatch) -> Result<Job> {
        let _ = (id, patch);
        unsupported("scheduling")
    }

    /// Delete a job and its runs.
    async fn job_delete(&self, id: &str) -> Result<()> {
        let _ = id;
        unsupported("scheduling")
    }

    /// A job's latest runs, newest first, at most `limit`.
    async fn job_runs(&self, id: &str, limit: u64) -> Result<Vec<JobRun>> {
        let _ = (id, limit);
        unsupported("scheduling")
    }

    /// Run a job now, besides its schedule: queued for the scheduler, which
    /// claims it like any occurrence; returns the occurrence's time (Unix ms).
    async fn job_run_now(&self, id: &str) -> Result<i64> {
        let _ = id;
        unsupported("scheduling")
    }

    /// Chat deliveries queued for `channels` (for every channel when
    /// empty), oldest first; waits up to `wait_ms` for one when none is
    /// queued.
    async fn deliveries_pending(&self, channels: &[String], wait_ms: u64) -> Result<Vec<Delivery>> {
        let _ = (channels, wait_ms);
        unsupported("scheduling")
    }

    /// Record what became of a delivery; it is not handed out again.
    async fn delivery_report(&self, key: &str, outcome: DeliveryOutcome) -> Result<()> {
        let _ = (key, outcome);
        unsupported("scheduling")
    }

    /// The Model Context Protocol servers whose tools this agent offers.
    async fn mcp_servers(&self) -> Result<Vec<McpServerInfo>> {
        unsupported("MCP servers")
    }

    /// Run a turn to the end and return its final message.
    async fn chat(&self, request: ChatRequest) -> Result<ChatReply> {
        let mut stream = self.chat_stream(request).await?;
        while let Some(event) = poll_fn(|cx| stream.as_mut().poll_next(cx)).await {
            match event {
                ChatEvent::Done {
                    message,
                    usage,
                    session_key,
                } => {
                    return Ok(ChatReply {
                        message,
                        usage,
                        session_key,
                    });
                }
                ChatEvent::Error { code, message } => return Err(Error::Remote { code, message }),
                _ => {}
            }
        }
        Err(Error::unavailable(
            "agent",
            "the event stream ended without a final event",
        ))
    }
}

#[async_trait]
impl<T: Agent + ?Sized> Agent for Arc<T> {
    async fn chat_stream(&self, request: ChatRequest) -> Result<ChatStream> {
        (**self).chat_stream(request).await
    }
    async fn health(&self) -> HealthReport {
        (**self).health().await
    }
    async fn chat(&self, request: ChatRequest) -> Result<ChatReply> {
        (**self).chat(request).await
    }
    async fn sessions(&self) -> Result<Vec<SessionInfo>> {
        (**self).sessions().await
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
    async fn rename_session(&self, key: &str, title: &str) -> Result<()> {
        (**self).rename_session(key, title).await
    }
    async fn reset_session(&self, key: &str) -> Result<()> {
        (**self).reset_session(key).await
    }
    async fn delete_session(&self, key: &str) -> Result<()> {
        (**self).delete_session(key).await
    }
    async fn models(&self) -> Result<Vec<String>> {
        (**self).models().await
    }
    async fn memory_search(&self, query: &str, limit: usize) -> Result<Vec<Memory>> {
        (**self).memory_search(query, limit).await
    }
    async fn memory_list(&self, offset: u64, limit: u64) -> Result<MemoryPage> {
        (**self).memory_list(offset, limit).await
    }
    async fn memory_get(&self, id: &str) -> Result<Memory> {
        (**self).memory_get(id).await
    }
    async fn memory_store(&self, memory: NewMemory) -> Result<StoredMemory> {
        (**self).memory_store(memory).await
    }
    async fn memory_delete(&self, id: &str) -> Result<()> {
        (**self).memory_delete(id).await
    }
    async fn job_create(&self, job: NewJob) -> Result<Job> {
        (**self).job_create(job).await
    }
    async fn job_list(&self) -> Result<Vec<Job>> {
        (**self).job_list().await
    }
    async fn job_get(&self, id: &str) -> Result<Job> {
        (**self).job_get(id).await
    }
    async fn job_update(&self, id: &str, patch: JobPatch) -> Result<Job> {
        (**self).job_update(id, patch).await
    }
    async fn job_delete(&self, id: &str) -> Result<()> {
        (**self).job_delete(id).await
    }
    async fn job_runs(&self, id: &str, limit: u64) -> Result<Vec<JobRun>> {
        (**self).job_runs(id, limit).await
    }
    async fn job_run_now(&self, id: &str) -> Result<i64> {
        (**self).job_run_now(id).await
    }
    async fn deliveries_pending(&self, channels: &[String], wait_ms: u64) -> Result<Vec<Delivery>> {
        (**self).deliveries_pending(channels, wait_ms).await
    }
    async fn delivery_report(&self, key: &str, outcome: DeliveryOutcome) -> Result<()> {
        (**self).delivery_report(key, outcome).await
    }
    async fn mcp_servers(&self) -> Result<Vec<McpServerInfo>> {
        (**self).mcp_servers().await
    }
}

#[async_trait]
impl<T: Agent + ?Sized> Agent for Box<T> {
    async fn chat_stream(&self, request: ChatRequest) -> Result<ChatStream> {
        (**self).chat_stream(request).await
    }
    async fn health(&self) -> HealthReport {
        (**self).health().await
    }
    async fn chat(&self, request: ChatRequest) -> Result<ChatReply> {
        (**self).chat(request).await
    }
    async fn sessions(&self) -> Result<Vec<SessionInfo>> {
        (**self).sessions().await
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
    async fn rename_session(&self, key: &str, title: &str) -> Result<()> {
        (**self).rename_session(key, title).await
    }
    async fn reset_session(&self, key: &str) -> Result<()> {
        (**self).reset_session(key).await
    }
    async fn delete_session(&self, key: &str) -> Result<()> {
        (**self).delete_session(key).await
    }
    async fn models(&self) -> Result<Vec<String>> {
        (**self).models().await
    }
    async fn memory_search(&self, query: &str, limit: usize) -> Result<Vec<Memory>> {
        (**self).memory_search(query, limit).await
    }
    async fn memory_list(&self, offset: u64, limit: u64) -> Result<MemoryPage> {
        (**self).memory_list(offset, limit).await
    }
    async fn memory_get(&self, id: &str) -> Result<Memory> {
        (**self).memory_get(id).await
    }
    async fn memory_store(&self, memory: NewMemory) -> Result<StoredMemory> {
        (**self).memory_store(memory).await
    }
    async fn memory_delete(&self, id: &str) -> Result<()> {
        (**self).memory_delete(id).await
    }
    async fn job_create(&self, job: NewJob) -> Result<Job> {
        (**self).job_create(job).await
    }
    async fn job_list(&self) -> Result<Vec<Job>> {
        (**self).job_list().await
    }
    async fn job_get(&self, id: &str) -> Result<Job> {
        (**self).job_get(id).await
    }
    async fn job_update(&self, id: &str, patch: JobPatch) -> Result<Job> {
        (**self).job_update(id, patch).await
    }
    async fn job_delete(&self, id: &str) -> Result<()> {
        (**self).job_delete(id).await
    }
    async fn job_runs(&self, id: &str, limit: u64) -> Result<Vec<JobRun>> {
        (**self).job_runs(id, limit).await
    }
    async fn job_run_now(&self, id: &str) -> Result<i64> {
        (**self).job_run_now(id).await
    }
    async fn deliveries_pending(&self, channels: &[String], wait_ms: u64) -> Result<Vec<Delivery>> {
        (**self).deliveries_pending(channels, wait_ms).await
    }
    async fn delivery_report(&self, key: &str, outcome: DeliveryOutcome) -> Result<()> {
        (**self).delivery_report(key, outcome).await
    }
    async fn mcp_servers(&self) -> Result<Vec<McpServerInfo>> {
        (**self).mcp_servers().await
    }
}
