use std::collections::VecDeque;
use std::sync::Mutex;

use async_trait::async_trait;

use super::iter_stream;
use crate::{
    Agent, ChatEvent, ChatRequest, ChatStream, Error, HealthCheck, HealthReport, Memory,
    MemoryPage, Message, NewMemory, Result, Role, StoredMemory, Usage,
};

/// An [`Agent`] that plays back scripted turns.
///
/// Each call takes the next script (a list of events) from the queue; with the
/// queue empty it echoes the last user message as `echo: <text>` in one
/// `delta` and a `done`. Every request is recorded.
///
/// Memory is off by default (the `memory_*` methods answer
/// [`Error::Unsupported`], as for an agent without memory);
/// [`with_memory`](ScriptedAgent::with_memory) turns on an in-memory list
/// with naive word matching for search.
#[derive(Debug, Default)]
pub struct ScriptedAgent {
    scripts: Mutex<VecDeque<Vec<ChatEvent>>>,
    requests: Mutex<Vec<ChatRequest>>,
    memory: Option<Mutex<FakeMemory>>,
}

/// The memories of a [`ScriptedAgent`], oldest first.
#[derive(Debug, Default)]
struct FakeMemory {
    memories: Vec<Memory>,
    next_id: u64,
    clock_ms: i64,
}

impl FakeMemory {
    /// A strictly increasing clock, so newest-first order is stable.
    fn now(&mut self) -> i64 {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        self.clock_ms = wall.max(self.clock_ms + 1);
        self.clock_ms
    }
}

/// Lowercased words (runs of alphanumerics).
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

impl ScriptedAgent {
    /// An agent that echoes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queue a script for a later turn.
    pub fn push_script(&self, events: Vec<ChatEvent>) -> &Self {
        lock(&self.scripts).push_back(events);
        self
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<ChatRequest> {
        lock(&self.requests).clone()
    }

    /// Keep memories: an in-memory list; a store of the same text (ignoring
    /// case and outer whitespace) updates it; search scores each memory by
    /// the share of the query's words it contains and drops those with none.
    pub fn with_memory(mut self) -> Self {
        self.memory = Some(Mutex::new(FakeMemory::default()));
        self
    }

    fn memory(&self) -> Result<std::sync::MutexGuard<'_, FakeMemory>> {
        self.memory
            .as_ref()
            .map(lock)
            .ok_or_else(|| Error::Unsupported("this agent does not offer memory".into()))
    }
}

#[async_trait]
impl Agent for ScriptedAgent {
    async fn chat_stream(&self, request: ChatRequest) -> Result<ChatStream> {
        let events = lock(&self.scripts)
            .pop_front()
            .unwrap_or_else(|| echo(&request));
        lock(&self.requests).push(request);
        Ok(Box::pin(iter_stream(events)))
    }

    async fn health(&self) -> HealthReport {
        HealthReport::from_checks(
            "agent",
            crate::VERSION,
            0,
            vec![HealthCheck::ok("script", None)],
        )
    }

    async fn memory_search(&self, query: &str, limit: usize) -> Result<Vec<Memory>> {
        let memory = self.memory()?;
        let wanted = words(query);
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let mut found: Vec<Memory> = memory
            .memories
            .iter()
            .rev()
            .filter_map(|m| {
                let have = words(&m.text);
                let shared = wanted.iter().filter(|w| have.contains(w)).count();
                (shared > 0).then(|| Memory {
                    score: Some(shared as f32 / wanted.len() as f32),
                    ..m.clone()
                })
            })
            .collect();
        found.sort_by(|a, b| b.score.unwrap_or(0.0).total_cmp(&a.score.unwrap_or(0.0)));
        found.truncate(limit);
        Ok(found)
    }

    async fn memory_list(&self, offset: u64, limit: u64) -> Result<MemoryPage> {
        let memory = self.memory()?;
        let skip = usize::try_from(offset).unwrap_or(usize::MAX);
        let take = usize::try_from(limit).unwrap_or(usize::MAX);
        Ok(MemoryPage {
            memories: memory
                .memories
                .iter()
                .rev()
                .skip(skip)
                .take(take)
                .cloned()
                .collect(),
            total: memory.memories.len() as u64,
        })
    }

    async fn memory_get(&self, id: &str) -> Result<Memory> {
        self.memory()?
            .memories
            .iter()
            .find(|m| m.id == id)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("memory {id:?}")))
    }

    async fn memory_store(&self, new: NewMemory) -> Result<StoredMemory> {
        let mut memory = self.memory()?;
        let now = memory.now();
        let key = new.text.trim().to_lowercase();
        if let Some(index) = memory
            .memories
            .iter()
            .position(|m| m.text.trim().to_lowercase() == key)
        {
            let mut existing = memory.memories.remove(index);
            existing.text = new.text;
            if let Some(category) = new.category {
                existing.category = category;
            }
            if let Some(importance) = new.importance {
                existing.importance = importance;
            }
            existing.updated_at_ms = now;
            memory.memories.push(existing.clone());
            return Ok(StoredMemory {
                memory: existing,
                updated: true,
            });
        }
        memory.next_id += 1;
        let stored = Memory {
            id: format!("m{}", memory.next_id),
            text: new.text,
            category: new.category.unwrap_or_else(|| "fact".into()),
            importance: new.importance.unwrap_or(0.5),
            source: "user".into(),
            session: new.session,
            created_at_ms: now,
            updated_at_ms: now,
            score: None,
        };
        memory.memories.push(stored.clone());
        Ok(StoredMemory {
            memory: stored,
            updated: false,
        })
    }

    async fn memory_delete(&self, id: &str) -> Result<()> {
        let mut memory = self.memory()?;
        let before = memory.memories.len();
        memory.memories.retain(|m| m.id != id);
        if memory.memories.len() == before {
            return Err(Error::NotFound(format!("memory {id:?}")));
        }
        Ok(())
    }
}

fn echo(request: &ChatRequest) -> Vec<ChatEvent> {
    let text = request
        .messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .map_or("", |m| m.content.as_str());
    let reply = format!("echo: {text}");
    let tokens = |s: &str| u32::try_from(s.split_whitespace().count()).unwrap_or(u32::MAX);
    vec![
        ChatEvent::Delta {
            text: reply.clone(),
        },
        ChatEvent::Done {
            usage: Some(Usage {
                prompt_tokens: tokens(text),
                completion_tokens: tokens(&reply),
                total_tokens: tokens(text) + tokens(&reply),
            }),
            message: Message::assistant(reply),
            session_key: request.session_key.clone(),
        },
    ]
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::block_on;

    #[test]
    fn echoes_then_plays_scripts() {
        let agent = ScriptedAgent::new();
        let reply = block_on(agent.chat(ChatRequest::user("web:1", "hi there"))).unwrap();
        assert_eq!(reply.message.content, "echo: hi there");
        assert_eq!(reply.session_key.as_deref(), Some("web:1"));

        agent.push_script(vec![ChatEvent::Error {
            code: "rate_limited".into(),
            message: "slow down".into(),
        }]);
        let err = block_on(agent.chat(ChatRequest::user("web:1", "again"))).unwrap_err();
        assert_eq!(err.code(), "rate_limited");
        assert_eq!(agent.requests().len(), 2);
    }

    #[test]
    fn memory_is_off_unless_asked_for_and_then_a_simple_list() {
        let plain = ScriptedAgent::new();
        let error = block_on(plain.memory_list(0, 10)).unwrap_err();
        assert_eq!(error.code(), "unsupported");

        let agent = ScriptedAgent::new().with_memory();
        let coffee = block_on(agent.memory_store(NewMemory::text("I take coffee black"))).unwrap();
        assert!(!coffee.updated);
        assert_eq!(coffee.memory.category, "fact");
        block_on(agent.memory_store(NewMemory::text("My sister lives in Lisbon"))).unwrap();
        let again = block_on(agent.memory_store(NewMemory {
            importance: Some(0.9),
            ..NewMemory::text(" i take COFFEE black ")
        }))
        .unwrap();
        assert!(again.updated);
        assert_eq!(again.memory.id, coffee.memory.id);
        let page = block_on(agent.memory_list(0, 10)).unwrap();
        assert_eq!(page.total, 2);
        assert_eq!(page.memories[0].id, coffee.memory.id, "updated is newest");
        let found = block_on(agent.memory_search("coffee please", 5)).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].score, Some(0.5));
        block_on(agent.memory_delete(&coffee.memory.id)).unwrap();
        assert_eq!(
            block_on(agent.memory_get(&coffee.memory.id))
                .unwrap_err()
                .code(),
            "not_found"
        );
        assert_eq!(
            block_on(agent.memory_delete("m99")).unwrap_err().code(),
            "not_found"
        );
    }
}
