//! [`AgentRuntime`]: the in-process agent.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use async_trait::async_trait;
use futures_util::StreamExt;
use ocg_core::schedule::{Delivery, DeliveryOutcome, Job, JobPatch, JobRun, NewJob};
use ocg_core::{
    Agent, ChatEvent, ChatRequest, ChatStream, HealthCheck, HealthReport, HistoryEntry, Memory,
    MemoryPage, Message, NewMemory, Role, StoredMemory, ToolCall, Usage, VERSION,
};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::context::{ContextBudget, compaction_slice, estimate_tokens, message_tokens};
use crate::event_stream::spawn_event_stream;
use crate::memory::{MemoryBank, RecallConfig, recall_block};
use crate::providers::{CompletionRequest, LlmProvider, NotReady, ProviderEvent};
use crate::schedule::ScheduleStore;
use crate::sessions::{NewMessage, SessionContext, SessionLock, SessionStore};
use crate::{AgentError, ToolExecutor, ToolOutput};

/// How the runtime behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeConfig {
    /// Prompt budget and system prompt.
    pub budget: ContextBudget,
    /// Tool rounds allowed per turn.
    pub max_tool_rounds: u32,
    /// A workspace instructions file (`AGENTS.md`) appended to the system
    /// prompt when it exists; read each turn, at most 64 KiB.
    pub agents_file: Option<PathBuf>,
    /// Memories recalled before each turn (when the runtime has memory).
    pub recall: RecallConfig,
}

/// How often one tool call (same name, same arguments) may run in a turn;
/// a further repetition is refused as a loop.
pub const MAX_IDENTICAL_CALLS: u32 = 2;

/// The longest session key accepted.
pub const MAX_SESSION_KEY: usize = 200;

/// Counters for `/v1/stats`.
#[derive(Debug, Default)]
struct Counters {
    turns: AtomicU64,
    errors: AtomicU64,
    active: AtomicI64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
}

/// A snapshot of the runtime's counters.
#[derive(Debug, Clone, Serialize)]
pub struct RuntimeStats {
    /// Turns completed since start.
    pub turns: u64,
    /// Turns that ended in an error.
    pub errors: u64,
    /// Turns running now.
    pub active_turns: i64,
    /// Prompt tokens reported by the model.
    pub prompt_tokens: u64,
    /// Completion tokens reported by the model.
    pub completion_tokens: u64,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// Provider name.
    pub provider: String,
    /// Default model.
    pub model: String,
    /// Stored sessions.
    pub sessions: u64,
    /// Stored messages.
    pub messages: u64,
}

struct Inner {
    provider: Arc<dyn LlmProvider>,
    store: Arc<dyn SessionStore>,
    tools: Arc<dyn ToolExecutor>,
    memory: Option<MemoryBank>,
    config: RuntimeConfig,
    locks: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
    counters: Counters,
    started: Instant,
    /// Checks fixed at start (the exec sandbox), reported with the others.
    checks: Vec<HealthCheck>,
    /// Scheduled jobs, when the agent offers scheduling.
    schedules: Option<ScheduleStore>,
    /// The MCP servers whose tools are offered, reported on health.
    mcp: Option<crate::mcp::McpServers>,
}

/// The agent, in process: implements [`Agent`].
#[derive(Clone)]
pub struct AgentRuntime {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AgentRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentRuntime")
            .field("provider", &self.inner.provider.name())
            .field("model", &self.inner.provider.model())
            .finish_non_exhaustive()
    }
}

/// Held while a session's turn (or reset, delete, compaction) runs; the
/// store's lock is given back before this process's.
struct TurnGuard {
    shared: SessionLock,
    _local: tokio::sync::OwnedMutexGuard<()>,
}

/// Why a turn failed: the `error` event's code and message.
struct TurnError {
    code: &'static str,
    message: String,
}

impl From<AgentError> for TurnError {
    fn from(error: AgentError) -> Self {
        TurnError {
            code: error.code(),
            message: error.to_string(),
        }
    }
}

impl From<TurnError> for AgentError {
    fn from(error: TurnError) -> Self {
        AgentError::Llm {
            code: error.code,
            message: error.message,
        }
    }
}

impl AgentRuntime {
    /// A runtime answering with `provider`, storing in `store`, acting
    /// through `tools`, remembering in `memory` (whose store is reported in
    /// health checks as `embedding`).
    pub fn new(
        provider: Arc<dyn LlmProvider>,
        store: Arc<dyn SessionStore>,
        tools: Arc<dyn ToolExecutor>,
        memory: Option<MemoryBank>,
        config: RuntimeConfig,
    ) -> Self {
        AgentRuntime {
            inner: Arc::new(Inner {
                provider,
                store,
                tools,
                memory,
                config,
                locks: Mutex::default(),
                counters: Counters::default(),
                started: Instant::now(),
                checks: Vec::new(),
                schedules: None,
                mcp: None,
            }),
        }
    }

    /// Report `check` in every health answer (a fact fixed at start, such as
    /// whether programs run sandboxed). Call before the runtime is shared.
    pub fn with_check(mut self, check: HealthCheck) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.checks.push(check);
        }
        self
    }

    /// Offer scheduling over `store` through [`Agent`]'s `job_*` and
    /// `deliveries_*` calls (a [`Scheduler`](crate::schedule::Scheduler)
    /// runs the jobs). Call before the runtime is shared.
    pub fn with_schedules(mut self, store: ScheduleStore) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.schedules = Some(store);
        }
        self
    }

    /// Report `servers` (whose tools the executor offers) on `/health`
    /// and `GET /v1/mcp/servers`.
    pub fn with_mcp(mut self, servers: crate::mcp::McpServers) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.mcp = Some(servers);
        }
        self
    }

    /// Hand the memory that turns freed back to the system once the agent
    /// is idle ([`ocg_process::heap::release_free_memory`]): checked every
    /// `every`, after a check that saw turns end since the last release,
    /// then a whole period with none running or ending. Ends when the
    /// runtime is dropped. Measured in bench/agent.sh: 16 long sessions at
    /// once left 21–25 MB of anonymous memory without it, about 11 with it.
    pub fn release_memory_when_idle(
        &self,
        every: std::time::Duration,
    ) -> tokio::task::JoinHandle<()> {
        let inner = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let (mut released_at, mut seen) = (0, 0);
            loop {
                tick.tick().await;
                let Some(inner) = inner.upgrade() else { return };
                let c = &inner.counters;
                let ended = c.turns.load(Ordering::Relaxed) + c.errors.load(Ordering::Relaxed);
                let idle = c.active.load(Ordering::Relaxed) == 0 && ended == seen;
                if idle && ended != released_at {
                    let released =
                        tokio::task::spawn_blocking(ocg_process::heap::release_free_memory).await;
                    tracing::debug!(
                        ?released,
                        turns = ended,
                        "released freed memory after turns"
                    );
                    released_at = ended;
                }
                seen = ended;
            }
        })
    }

    /// The session store.
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.inner.store
    }

    /// Summarize and archive the older half of `key`'s history now.
    /// Returns how many messages were archived (0 when there is too little).
    pub async fn compact(&self, key: &str) -> Result<u64, AgentError> {
        let _turn = self.inner.lock_turns(key).await?;
        Ok(self.inner.compact(key).await?)
    }

    /// Counters and totals.
    pub async fn stats(&self) -> Result<RuntimeStats, AgentError> {
        let store = self
            .inner
            .store
            .stats()
            .await
            .map_err(AgentError::Sessions)?;
        let c = &self.inner.counters;
        Ok(RuntimeStats {
            turns: c.turns.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            active_turns: c.active.load(Ordering::Relaxed),
            prompt_tokens: c.prompt_tokens.load(Ordering::Relaxed),
            completion_tokens: c.completion_tokens.load(Ordering::Relaxed),
            uptime_secs: self.inner.started.elapsed().as_secs(),
            provider: self.inner.provider.name().to_owned(),
            model: self.inner.provider.model().to_owned(),
            sessions: store.sessions,
            messages: store.messages,
        })
    }
}

/// Check a session key: 1 to [`MAX_SESSION_KEY`] bytes, no control characters.
pub(crate) fn check_session_key(key: &str) -> Result<(), AgentError> {
    if key.is_empty() || key.len() > MAX_SESSION_KEY || key.chars().any(char::is_control) {
        return Err(AgentError::InvalidInput(format!(
            "a session key is 1 to {MAX_SESSION_KEY} characters without control characters"
        )));
    }
    Ok(())
}

/// Check a request before starting its turn.
pub(crate) fn validate(request: &ChatRequest) -> Result<(), AgentError> {
    if let Some(key) = &request.session_key {
        check_session_key(key)?;
    }
    match request.messages.last() {
        None => Err(AgentError::InvalidInput(
            "messages must not be empty".into(),
        )),
        Some(last) if last.role != Role::User => Err(AgentError::InvalidInput(
            "the last message must be from the user".into(),
        )),
        Some(last) if last.content.trim().is_empty() => {
            Err(AgentError::InvalidInput("the user message is empty".into()))
        }
        Some(_) if request.session_key.is_some() && request.messages.len() != 1 => {
            Err(AgentError::InvalidInput(
                "a session turn carries exactly one user message; the session holds the history"
                    .into(),
            ))
        }
        Some(_) => Ok(()),
    }
}

#[async_trait]
impl Agent for AgentRuntime {
    async fn chat_stream(&self, request: ChatRequest) -> ocg_core::Result<ChatStream> {
        validate(&request)?;
        let inner = self.inner.clone();
        Ok(spawn_event_stream(move |events| async move {
            // A guard, not a decrement after the turn: a cancelled turn's task
            // is dropped at an await point and runs no code after it.
            struct Active<'a>(&'a AtomicI64);
            impl Drop for Active<'_> {
                fn drop(&mut self) {
                    self.0.fetch_sub(1, Ordering::Relaxed);
                }
            }
            inner.counters.active.fetch_add(1, Ordering::Relaxed);
            let active = Active(&inner.counters.active);
            let result = inner.turn(request, &events).await;
            drop(active);
            let last = match result {
                Ok(done) => {
                    inner.counters.turns.fetch_add(1, Ordering::Relaxed);
                    done
                }
                Err(error) => {
                    inner.counters.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(code = %error.code, message = %error.message, "turn failed");
                    ChatEvent::Error {
                        code: error.code.to_owned(),
                        message: error.message,
                    }
                }
            };
            let _ = events.send(last).await;
        }))
    }

    async fn sessions(&self) -> ocg_core::Result<Vec<ocg_core::SessionInfo>> {
        Ok(self.inner.store.list().await?)
    }

    async fn history(
        &self,
        key: &str,
        offset: u64,
        limit: u64,
        include_archived: bool,
    ) -> ocg_core::Result<Vec<ocg_core::HistoryEntry>> {
        Ok(self
            .inner
            .store
            .history(key, offset, limit, include_archived)
            .await?)
    }

    async fn rename_session(&self, key: &str, title: &str) -> ocg_core::Result<()> {
        let title = title.trim();
        if title.is_empty() || title.chars().count() > 200 {
            return Err(ocg_core::Error::InvalidInput(
                "a title is 1 to 200 characters".into(),
            ));
        }
        Ok(self.inner.store.rename(key, title).await?)
    }

    async fn reset_session(&self, key: &str) -> ocg_core::Result<()> {
        let _turn = self.inner.lock_turns(key).await?;
        Ok(self.inner.store.reset(key).await?)
    }

    async fn delete_session(&self, key: &str) -> ocg_core::Result<()> {
        let _turn = self.inner.lock_turns(key).await?;
        Ok(self.inner.store.delete(key).await?)
    }

    async fn models(&self) -> ocg_core::Result<Vec<String>> {
        Ok(vec![self.inner.provider.model().to_owned()])
    }

    async fn memory_search(&self, query: &str, limit: usize) -> ocg_core::Result<Vec<Memory>> {
        Ok(self
            .inner
            .memory()?
            .search(query, limit, Some(crate::memory::SEARCH_MIN_SCORE))
            .await?)
    }

    async fn memory_list(&self, offset: u64, limit: u64) -> ocg_core::Result<MemoryPage> {
        Ok(self.inner.memory()?.list(offset, limit).await?)
    }

    async fn memory_get(&self, id: &str) -> ocg_core::Result<Memory> {
        Ok(self.inner.memory()?.get(id).await?)
    }

    async fn memory_store(&self, memory: NewMemory) -> ocg_core::Result<StoredMemory> {
        Ok(self.inner.memory()?.store(memory, "user").await?)
    }

    async fn memory_delete(&self, id: &str) -> ocg_core::Result<()> {
        Ok(self.inner.memory()?.delete(id).await?)
    }

    async fn job_create(&self, job: NewJob) -> ocg_core::Result<Job> {
        Ok(self.inner.schedules()?.create(job).await?)
    }

    async fn job_list(&self) -> ocg_core::Result<Vec<Job>> {
        Ok(self.inner.schedules()?.list().await?)
    }

    async fn job_get(&self, id: &str) -> ocg_core::Result<Job> {
        Ok(self.inner.schedules()?.get(id).await?)
    }

    async fn job_update(&self, id: &str, patch: JobPatch) -> ocg_core::Result<Job> {
        Ok(self.inner.schedules()?.update(id, patch).await?)
    }

    async fn job_delete(&self, id: &str) -> ocg_core::Result<()> {
        Ok(self.inner.schedules()?.delete(id).await?)
    }

    async fn job_runs(&self, id: &str, limit: u64) -> ocg_core::Result<Vec<JobRun>> {
        Ok(self.inner.schedules()?.runs(id, limit).await?)
    }

    async fn job_run_now(&self, id: &str) -> ocg_core::Result<i64> {
        Ok(self.inner.schedules()?.request_run(id).await?)
    }

    async fn deliveries_pending(
        &self,
        channels: &[String],
        wait_ms: u64,
    ) -> ocg_core::Result<Vec<Delivery>> {
        let wait = std::time::Duration::from_millis(wait_ms.min(60_000));
        Ok(self
            .inner
            .schedules()?
            .wait_pending(channels, 64, wait)
            .await?)
    }

    async fn delivery_report(&self, key: &str, outcome: DeliveryOutcome) -> ocg_core::Result<()> {
        Ok(self.inner.schedules()?.report(key, outcome).await?)
    }

    async fn mcp_servers(&self) -> ocg_core::Result<Vec<ocg_core::McpServerInfo>> {
        Ok(self
            .inner
            .mcp
            .as_ref()
            .map(crate::mcp::McpServers::status)
            .unwrap_or_default())
    }

    async fn health(&self) -> HealthReport {
        let inner = &self.inner;
        let mut checks = vec![match inner.provider.check().await {
            Ok(()) => HealthCheck::ok(
                "llm",
                Some(format!(
                    "{} {}",
                    inner.provider.name(),
                    inner.provider.model()
                )),
            ),
            Err(NotReady::Loading(why)) => HealthCheck::starting("llm", why),
            Err(NotReady::Failing(why)) => HealthCheck::failing("llm", why),
        }];
        checks.push(match inner.store.check().await {
            Ok(_) => HealthCheck::ok("sessions", None),
            Err(error) => HealthCheck::failing("sessions", error.to_string()),
        });
        if let Some(memory) = &inner.memory {
            checks.push(match memory.check().await {
                Ok(()) => HealthCheck::ok("embedding", None),
                Err(error) => HealthCheck::failing("embedding", error.to_string()),
            });
        }
        checks.extend(inner.checks.iter().cloned());
        checks.extend(inner.mcp.as_ref().and_then(crate::mcp::McpServers::check));
        HealthReport::from_checks("agent", VERSION, inner.started.elapsed().as_secs(), checks)
    }
}

impl Inner {
    fn schedules(&self) -> Result<&ScheduleStore, ocg_core::Error> {
        self.schedules.as_ref().ok_or_else(|| {
            ocg_core::Error::Unsupported("this agent runs without scheduling".into())
        })
    }

    fn memory(&self) -> Result<&MemoryBank, ocg_core::Error> {
        self.memory.as_ref().ok_or_else(|| {
            ocg_core::Error::Unsupported("this agent runs without long-term memory".into())
        })
    }

    /// The right to run `key`'s turns: this process's lock first (turns
    /// of one session queue here, not in the store), then the store's, which
    /// excludes the other agents sharing it.
    async fn lock_turns(&self, key: &str) -> Result<TurnGuard, AgentError> {
        let local = self.session_lock(key).lock_owned().await;
        let shared = self
            .store
            .lock_session(key)
            .await
            .map_err(AgentError::Sessions)?;
        Ok(TurnGuard {
            shared,
            _local: local,
        })
    }

    fn session_lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(lock) = locks.get(key).and_then(Weak::upgrade) {
            return lock;
        }
        if locks.len() > 1024 {
            locks.retain(|_, weak| weak.strong_count() > 0);
        }
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        locks.insert(key.to_owned(), Arc::downgrade(&lock));
        lock
    }

    fn system_prompt(&self) -> String {
        let mut prompt = self.config.budget.system_prompt.clone();
        if let Some(path) = &self.config.agents_file {
            if let Ok(text) = std::fs::read_to_string(path) {
                let text: String = text.chars().take(64 * 1024).collect();
                prompt.push_str("\n\n# Workspace instructions (AGENTS.md)\n");
                prompt.push_str(&text);
            }
        }
        prompt
    }

    async fn turn(
        self: &Arc<Self>,
        request: ChatRequest,
        events: &mpsc::Sender<ChatEvent>,
    ) -> Result<ChatEvent, TurnError> {
        let session_key = request.session_key.clone();
        let turn_lock = match session_key.as_deref() {
            Some(key) => Some(self.lock_turns(key).await?),
            None => None,
        };
        let user_text = request
            .messages
            .last()
            .map(|m| m.content.trim())
            .unwrap_or("");
        if let (Some(key), "/compact") = (session_key.as_deref(), user_text) {
            return self.compact_command(key).await;
        }

        let budget = ContextBudget {
            system_prompt: self.system_prompt(),
            ..self.config.budget.clone()
        };
        let (session, mut conversation) = self.prompt(&request, &budget, user_text).await?;
        let mut produced: Vec<NewMessage> = request
            .messages
            .iter()
            .map(|m| NewMessage {
                tokens: message_tokens(m),
                message: m.clone(),
            })
            .collect();
        let mut usage_total: Option<Usage> = None;
        let tools = self.tools.definitions();
        let mut final_message = None;
        let mut seen_calls: HashMap<String, u32> = HashMap::new();

        for _round in 0..self.config.max_tool_rounds.max(1) {
            let completion = CompletionRequest {
                messages: conversation.clone(),
                tools: tools.clone(),
                model: request.model.clone(),
                max_tokens: request.max_tokens.or(Some(budget.max_answer_tokens)),
                temperature: request.temperature,
            };
            let (text, calls, usage) = self.model_round(&completion, events).await?;
            if let Some(usage) = usage {
                self.count_usage(usage);
                let total = usage_total.get_or_insert_with(Usage::default);
                total.prompt_tokens += usage.prompt_tokens;
                total.completion_tokens += usage.completion_tokens;
                total.total_tokens += usage.total_tokens;
            }
            let mut assistant = Message::assistant(text);
            assistant.tool_calls = calls.clone();
            let tokens = usage
                .map(|u| u.completion_tokens)
                .filter(|t| *t > 0)
                .unwrap_or_else(|| message_tokens(&assistant));
            conversation.push(assistant.clone());
            produced.push(NewMessage {
                message: assistant.clone(),
                tokens,
            });
            if calls.is_empty() {
                final_message = Some(assistant);
                break;
            }
            for result in self
                .run_tools(session_key.as_deref(), &calls, &mut seen_calls, events)
                .await
            {
                conversation.push(result.clone());
                produced.push(NewMessage {
                    tokens: estimate_tokens(&result.content),
                    message: result,
                });
            }
        }
        let message = final_message.unwrap_or_else(|| {
            Message::assistant(format!(
                "I stopped after {} rounds of tool calls without a final answer.",
                self.config.max_tool_rounds
            ))
        });
        if let Some(key) = session_key.as_deref() {
            // A store that lost the session's lock mid-turn (its connection
            // ended) may have let another agent run the session meanwhile:
            // this turn is not stored over it.
            if turn_lock
                .as_ref()
                .is_some_and(|lock| !lock.shared.still_held())
            {
                return Err(TurnError {
                    code: "session_lock_lost",
                    message: "the session's lock was lost during the turn; it was not stored"
                        .into(),
                });
            }
            self.store_turn(key, session, produced, &budget).await?;
        }
        Ok(ChatEvent::Done {
            message,
            usage: usage_total,
            session_key,
        })
    }

    /// `/compact` in a session: summarize and archive its older turns now.
    async fn compact_command(&self, key: &str) -> Result<ChatEvent, TurnError> {
        let archived = self.compact(key).await?;
        let text = if archived == 0 {
            "Nothing to compact yet.".to_owned()
        } else {
            format!("Compacted: {archived} older messages were summarized and archived.")
        };
        Ok(ChatEvent::Done {
            message: Message::assistant(text),
            usage: None,
            session_key: Some(key.to_owned()),
        })
    }

    /// The messages sent to the model: the session's history fitted to the
    /// budget (or the request's own messages without a session), with
    /// recalled memories put before the user's words, in the prompt only.
    async fn prompt(
        &self,
        request: &ChatRequest,
        budget: &ContextBudget,
        user_text: &str,
    ) -> Result<(Option<SessionContext>, Vec<Message>), TurnError> {
        let (session, mut conversation) = match request.session_key.as_deref() {
            Some(key) => {
                let session = self
                    .store
                    .context(key)
                    .await
                    .map_err(AgentError::Sessions)?;
                let prompt = budget.build(&session, &request.messages);
                (Some(session), prompt)
            }
            None => {
                let mut prompt = request.messages.clone();
                if prompt.first().is_none_or(|m| m.role != Role::System) {
                    prompt.insert(0, Message::system(budget.system_prompt.clone()));
                }
                (None, prompt)
            }
        };
        if let Some(memory) = &self.memory {
            let recalled = memory.recall(user_text, &self.config.recall).await;
            if let (Some(block), Some(last)) = (recall_block(&recalled), conversation.last_mut()) {
                // Prompt only: the stored user message stays as written.
                last.content = format!("{block}\n\n{}", last.content);
            }
        }
        Ok((session, conversation))
    }

    /// One answer of the model, its text streamed to `events` as it comes:
    /// the text, the tool calls, the usage.
    async fn model_round(
        &self,
        completion: &CompletionRequest,
        events: &mpsc::Sender<ChatEvent>,
    ) -> Result<(String, Vec<ToolCall>, Option<Usage>), TurnError> {
        let mut stream = self
            .provider
            .stream(completion)
            .await
            .map_err(provider_error)?;
        let mut text = String::new();
        let mut calls: Vec<ToolCall> = Vec::new();
        while let Some(event) = stream.next().await {
            match event.map_err(provider_error)? {
                ProviderEvent::TextDelta(delta) => {
                    text.push_str(&delta);
                    let _ = events.send(ChatEvent::Delta { text: delta }).await;
                }
                ProviderEvent::ToolCall(call) => calls.push(call),
                ProviderEvent::Done { usage, .. } => return Ok((text, calls, usage)),
            }
        }
        Err(TurnError {
            code: "llm_protocol",
            message: "the model's stream ended early".into(),
        })
    }

    /// Add a round's tokens to the runtime's counters.
    fn count_usage(&self, usage: Usage) {
        self.counters
            .prompt_tokens
            .fetch_add(u64::from(usage.prompt_tokens), Ordering::Relaxed);
        self.counters
            .completion_tokens
            .fetch_add(u64::from(usage.completion_tokens), Ordering::Relaxed);
    }

    /// Store the turn's messages; when the session has outgrown its budget,
    /// compact it after the reply, under the session lock, so the next turn
    /// sees the archived history.
    async fn store_turn(
        self: &Arc<Self>,
        key: &str,
        session: Option<SessionContext>,
        produced: Vec<NewMessage>,
        budget: &ContextBudget,
    ) -> Result<(), TurnError> {
        let produced_tokens: Vec<u32> = produced.iter().map(|m| m.tokens).collect();
        self.store
            .append_turn(key, produced)
            .await
            .map_err(AgentError::Sessions)?;
        let Some(mut session) = session else {
            return Ok(());
        };
        // The stored history is what was loaded plus this turn: no second read.
        session
            .messages
            .extend(produced_tokens.into_iter().map(|tokens| HistoryEntry {
                id: 0,
                turn: 0,
                message: Message::assistant(""),
                tokens,
                created_at_ms: 0,
                archived: false,
            }));
        if budget.needs_compaction(&session) {
            let inner = self.clone();
            let key = key.to_owned();
            tokio::spawn(async move {
                let compacted = match inner.lock_turns(&key).await {
                    Ok(_turn) => inner.compact(&key).await,
                    Err(error) => Err(error.into()),
                };
                if let Err(error) = compacted {
                    tracing::warn!(session = %key, error = %error.message, "automatic compaction failed");
                }
            });
        }
        Ok(())
    }

    /// Run one round's calls: consecutive read-only calls together, others
    /// one at a time in order. A call repeated with the same arguments more
    /// than [`MAX_IDENTICAL_CALLS`] times in the turn (`seen`) is refused.
    async fn run_tools(
        &self,
        session_key: Option<&str>,
        calls: &[ToolCall],
        seen: &mut HashMap<String, u32>,
        events: &mpsc::Sender<ChatEvent>,
    ) -> Vec<Message> {
        for call in calls {
            let _ = events
                .send(ChatEvent::ToolStart {
                    id: call.id.clone(),
                    name: call.name.clone(),
                    arguments: call.arguments.clone(),
                })
                .await;
        }
        // Refusals decided before anything runs.
        let mut outputs: Vec<Option<ToolOutput>> = calls
            .iter()
            .map(|call| {
                if !call.arguments.is_object() {
                    return Some(ToolOutput {
                        content: format!(
                            "error [invalid_arguments]: the arguments of {} are not a JSON object: {}",
                            call.name, call.arguments
                        ),
                        ok: false,
                    });
                }
                let signature = format!("{}\u{0}{}", call.name, call.arguments);
                let count = seen.entry(signature).or_insert(0);
                *count += 1;
                (*count > MAX_IDENTICAL_CALLS).then(|| ToolOutput {
                    content: format!(
                        "error [loop_detected]: {} was already called {} times with these same \
                         arguments in this turn; use the results you have, change the arguments, \
                         or answer",
                        call.name, MAX_IDENTICAL_CALLS
                    ),
                    ok: false,
                })
            })
            .collect();
        let mut index = 0;
        while index < calls.len() {
            if outputs[index].is_some() {
                index += 1;
                continue;
            }
            let parallel = self.tools.parallel_safe(&calls[index].name);
            let mut end = index + 1;
            if parallel {
                while end < calls.len()
                    && (outputs[end].is_some() || self.tools.parallel_safe(&calls[end].name))
                {
                    end += 1;
                }
            }
            let batch: Vec<usize> = (index..end).filter(|&i| outputs[i].is_none()).collect();
            let results = futures_util::future::join_all(
                batch
                    .iter()
                    .map(|&i| self.tools.call(session_key, &calls[i])),
            )
            .await;
            for (i, output) in batch.into_iter().zip(results) {
                outputs[i] = Some(output);
            }
            index = end;
        }
        let mut results = Vec::with_capacity(calls.len());
        for (call, output) in calls.iter().zip(outputs) {
            let output = output.unwrap_or_else(|| ToolOutput {
                content: "error [internal_error]: the call did not run".into(),
                ok: false,
            });
            let _ = events
                .send(ChatEvent::ToolEnd {
                    id: call.id.clone(),
                    name: call.name.clone(),
                    result: output.content.clone(),
                    ok: output.ok,
                })
                .await;
            let mut message = Message::new(Role::Tool, output.content);
            message.tool_call_id = Some(call.id.clone());
            results.push(message);
        }
        results
    }

    async fn compact(&self, key: &str) -> Result<u64, TurnError> {
        let session = self
            .store
            .context(key)
            .await
            .map_err(AgentError::Sessions)?;
        let Some((up_to, transcript)) = compaction_slice(&session) else {
            return Ok(0);
        };
        let mut material = String::new();
        if let Some(previous) = &session.summary {
            material.push_str("Earlier summary:\n");
            material.push_str(previous);
            material.push_str("\n\n");
        }
        material.push_str("Conversation to summarize:\n");
        material.push_str(&transcript);
        let request = CompletionRequest {
            messages: vec![
                Message::system(
                    "Summarize the conversation below for your own later reference. Keep every \
                     fact, name, number, decision and open task; drop pleasantries. Write plain \
                     prose, at most 300 words.",
                ),
                Message::user(material),
            ],
            max_tokens: Some(512),
            ..Default::default()
        };
        let summary = self
            .provider
            .complete(&request)
            .await
            .map_err(provider_error)?;
        let archived = self
            .store
            .compact(key, up_to, summary.text)
            .await
            .map_err(AgentError::Sessions)?;
        tracing::info!(session = %key, archived, "compacted");
        Ok(archived)
    }
}

fn provider_error(error: crate::providers::ProviderError) -> TurnError {
    TurnError {
        code: error.code(),
        message: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sessions::SqliteSessionStore;
    use crate::testing::{ScriptedProvider, ScriptedReply as Reply};

    struct Upper;

    #[async_trait]
    impl ToolExecutor for Upper {
        fn definitions(&self) -> Arc<[crate::providers::ToolSpec]> {
            Arc::new([crate::providers::ToolSpec {
                name: "upper".into(),
                description: "uppercase text".into(),
                parameters: serde_json::json!({"type":"object","properties":{"text":{"type":"string"}}}),
            }])
        }
        async fn call(&self, _: Option<&str>, call: &ToolCall) -> ToolOutput {
            ToolOutput {
                content: call.arguments["text"].as_str().unwrap_or("").to_uppercase(),
                ok: true,
            }
        }
    }

    fn config(window: u32) -> RuntimeConfig {
        RuntimeConfig {
            budget: ContextBudget {
                system_prompt: "sys".into(),
                context_window: window,
                max_answer_tokens: 16,
                compaction_threshold: 0.75,
            },
            max_tool_rounds: 3,
            agents_file: None,
            recall: Default::default(),
        }
    }

    fn runtime(provider: Arc<ScriptedProvider>, window: u32) -> AgentRuntime {
        AgentRuntime::new(
            provider,
            Arc::new(SqliteSessionStore::in_memory().unwrap()),
            Arc::new(Upper),
            None,
            config(window),
        )
    }

    fn call(id: &str, arguments: serde_json::Value) -> ToolCall {
        ToolCall {
            id: id.into(),
            name: "upper".into(),
            arguments,
        }
    }

    async fn events(runtime: &AgentRuntime, request: ChatRequest) -> Vec<ChatEvent> {
        runtime.chat_stream(request).await.unwrap().collect().await
    }

    #[tokio::test]
    async fn tool_calls_run_stream_and_are_stored_with_the_turn() {
        let provider = Arc::new(ScriptedProvider::with(vec![
            Reply::Tools(vec![
                call("a", serde_json::json!({"text": "hi"})),
                call("b", serde_json::Value::String("{broken".into())),
            ]),
            Reply::Text("HI it is".into()),
        ]));
        let runtime = runtime(provider.clone(), 8192);
        let got = events(&runtime, ChatRequest::user("s:1", "shout hi")).await;
        let kinds: Vec<&str> = got
            .iter()
            .map(|e| match e {
                ChatEvent::ToolStart { .. } => "start",
                ChatEvent::ToolEnd { .. } => "end",
                ChatEvent::Delta { .. } => "delta",
                ChatEvent::Done { .. } => "done",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, ["start", "start", "end", "end", "delta", "done"]);
        assert!(matches!(&got[2], ChatEvent::ToolEnd { result, ok: true, .. } if result == "HI"));
        assert!(
            matches!(&got[3], ChatEvent::ToolEnd { ok: false, result, .. } if result.contains("not a JSON object"))
        );

        // The second model call saw the tool results.
        let second = provider.requests()[1].clone();
        let roles: Vec<Role> = second.messages.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [
                Role::System,
                Role::User,
                Role::Assistant,
                Role::Tool,
                Role::Tool
            ]
        );
        assert_eq!(second.tools.len(), 1);

        let stored = runtime.store().context("s:1").await.unwrap().messages;
        assert_eq!(
            stored.len(),
            5,
            "user, assistant(tool calls), 2 tool results, answer"
        );
        assert!(stored.iter().all(|m| m.turn == 1));
        assert_eq!(stored[4].message.content, "HI it is");
    }

    #[tokio::test]
    async fn the_tool_loop_stops_after_the_configured_rounds() {
        let provider = Arc::new(ScriptedProvider::with(vec![
            Reply::Tools(vec![call("1", serde_json::json!({"text": "a"}))]),
            Reply::Tools(vec![call("2", serde_json::json!({"text": "a"}))]),
            Reply::Tools(vec![call("3", serde_json::json!({"text": "a"}))]),
            Reply::Text("never reached".into()),
        ]));
        let runtime = runtime(provider, 8192);
        let reply = runtime
            .chat(ChatRequest::user("s:loop", "go"))
            .await
            .unwrap();
        assert!(
            reply.message.content.contains("3 rounds"),
            "{}",
            reply.message.content
        );
    }

    #[tokio::test]
    async fn a_call_repeated_with_the_same_arguments_is_refused_as_a_loop() {
        let same = || Reply::Tools(vec![call("x", serde_json::json!({"text": "a"}))]);
        let provider = Arc::new(ScriptedProvider::with(vec![
            same(),
            same(),
            same(),
            same(),
            Reply::Text("done".into()),
        ]));
        let runtime = runtime(provider, 8192);
        let got = events(&runtime, ChatRequest::user("s:loop", "go")).await;
        let ends: Vec<(bool, String)> = got
            .iter()
            .filter_map(|e| match e {
                ChatEvent::ToolEnd { ok, result, .. } => Some((*ok, result.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(ends.len(), 3);
        assert!(ends[0].0 && ends[1].0);
        assert!(!ends[2].0);
        assert!(
            ends[2].1.starts_with("error [loop_detected]"),
            "{}",
            ends[2].1
        );
        // The count is per turn: the next turn may make the call again.
        let got = events(&runtime, ChatRequest::user("s:loop", "again")).await;
        assert!(
            got.iter()
                .any(|e| matches!(e, ChatEvent::ToolEnd { ok: true, .. }))
        );
        assert!(
            matches!(got.last(), Some(ChatEvent::Done { message, .. }) if message.content == "done")
        );
    }

    #[tokio::test]
    async fn recalled_memories_reach_the_prompt_but_not_the_history() {
        use crate::memory::{MemoryBank, RecallConfig};
        use ocg_core::testing::InMemoryVectorStore;
        let bank = MemoryBank::new(Arc::new(InMemoryVectorStore::default()));
        bank.store(NewMemory::text("Ann takes her coffee black"), "agent")
            .await
            .unwrap();
        let provider = Arc::new(ScriptedProvider::default());
        let mut config = config(8192);
        config.recall = RecallConfig {
            min_score: 0.3,
            ..RecallConfig::default()
        };
        let runtime = AgentRuntime::new(
            provider.clone(),
            Arc::new(SqliteSessionStore::in_memory().unwrap()),
            Arc::new(Upper),
            Some(bank),
            config,
        );
        runtime
            .chat(ChatRequest::user("s:m", "how does Ann take her coffee"))
            .await
            .unwrap();
        runtime
            .chat(ChatRequest::user("s:m", "what are stock prices doing"))
            .await
            .unwrap();
        let requests = provider.requests();
        let first = &requests[0].messages.last().unwrap().content;
        assert!(first.starts_with("<recalled_memories>"), "{first}");
        assert!(first.contains("Ann takes her coffee black"));
        assert!(first.ends_with("how does Ann take her coffee"));
        let second = &requests[1].messages.last().unwrap().content;
        assert_eq!(second, "what are stock prices doing", "nothing relevant");
        let stored = runtime.store().context("s:m").await.unwrap().messages;
        assert_eq!(stored[0].message.content, "how does Ann take her coffee");
        assert_eq!(runtime.memory_list(0, 10).await.unwrap().total, 1);
    }

    #[tokio::test]
    async fn history_is_sent_and_stateless_turns_store_nothing() {
        let provider = Arc::new(ScriptedProvider::default());
        let runtime = runtime(provider.clone(), 8192);
        runtime.chat(ChatRequest::user("s:h", "one")).await.unwrap();
        runtime.chat(ChatRequest::user("s:h", "two")).await.unwrap();
        let sent = provider.requests()[1].messages.clone();
        let texts: Vec<&str> = sent.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(texts, ["sys", "one", "echo: one", "two"]);

        let stateless = ChatRequest {
            messages: vec![
                Message::user("a"),
                Message::assistant("b"),
                Message::user("c"),
            ],
            ..Default::default()
        };
        let reply = runtime.chat(stateless).await.unwrap();
        assert_eq!(reply.message.content, "echo: c");
        assert_eq!(reply.session_key, None);
        assert_eq!(runtime.store().stats().await.unwrap().sessions, 1);
    }

    #[tokio::test]
    async fn turns_of_one_session_are_serialized() {
        let provider = Arc::new(ScriptedProvider::default());
        let runtime = runtime(provider, 8192);
        let turns: Vec<_> = (0..8)
            .map(|i| {
                let runtime = runtime.clone();
                tokio::spawn(async move {
                    runtime
                        .chat(ChatRequest::user("s:same", format!("m{i}")))
                        .await
                })
            })
            .collect();
        for turn in turns {
            turn.await.unwrap().unwrap();
        }
        let stored = runtime.store().context("s:same").await.unwrap().messages;
        assert_eq!(stored.len(), 16);
        // Each turn's user message is directly followed by its own answer.
        for pair in stored.chunks(2) {
            assert_eq!(
                pair[1].message.content,
                format!("echo: {}", pair[0].message.content)
            );
            assert_eq!(pair[0].turn, pair[1].turn);
        }
    }

    #[tokio::test]
    async fn compact_summarizes_old_turns_and_keeps_the_archive() {
        let provider = Arc::new(ScriptedProvider::with(vec![
            Reply::Text("a1".into()),
            Reply::Text("a2".into()),
            Reply::Text("a3".into()),
            Reply::Text("SUMMARY: they talked".into()),
        ]));
        let runtime = runtime(provider.clone(), 100_000);
        for q in ["q1", "q2", "q3"] {
            runtime.chat(ChatRequest::user("s:c", q)).await.unwrap();
        }
        let reply = runtime
            .chat(ChatRequest::user("s:c", "/compact"))
            .await
            .unwrap();
        assert!(
            reply.message.content.starts_with("Compacted"),
            "{}",
            reply.message.content
        );
        let context = runtime.store().context("s:c").await.unwrap();
        assert_eq!(context.summary.as_deref(), Some("SUMMARY: they talked"));
        assert!(context.messages.len() < 6);
        assert_eq!(
            runtime
                .store()
                .history("s:c", 0, 100, true)
                .await
                .unwrap()
                .len(),
            6
        );
        // The next turn starts with the system prompt and the summary.
        runtime.chat(ChatRequest::user("s:c", "q4")).await.unwrap();
        let last = provider.requests().last().unwrap().messages.clone();
        assert_eq!(last[0].content, "sys");
        assert!(last[1].content.contains("SUMMARY: they talked"));
    }

    #[tokio::test]
    async fn a_small_window_compacts_by_itself() {
        let provider = Arc::new(ScriptedProvider::default());
        // usable = 80 - 16 = 64 tokens; three turns of long text pass 75 % of it.
        let runtime = runtime(provider, 80);
        for i in 0..3 {
            runtime
                .chat(ChatRequest::user(
                    "s:auto",
                    format!("{i} {}", "word ".repeat(20)),
                ))
                .await
                .unwrap();
        }
        let mut compacted = false;
        for _ in 0..50 {
            if runtime
                .store()
                .context("s:auto")
                .await
                .unwrap()
                .summary
                .is_some()
            {
                compacted = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(compacted, "automatic compaction ran");
    }
}
