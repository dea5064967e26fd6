//! Memory tools: `memory_search`, `memory_store`, `memory_get`,
//! `memory_delete`, over the agent's [`MemoryBank`].

use async_trait::async_trait;
use ocg_core::{Memory, NewMemory};
use serde::Deserialize;
use serde_json::json;

use super::{Tool, ToolContext, ToolGroup, arguments, json_result};
use crate::AgentError;
use crate::memory::MemoryBank;

/// Memory failures as tool errors: an outage says that nothing happened.
fn tool_error(error: AgentError) -> AgentError {
    match error {
        AgentError::MemoryUnavailable(why) => AgentError::tool(
            "memory_unavailable",
            format!(
                "long-term memory is unavailable right now ({why}); nothing was read or changed"
            ),
        ),
        AgentError::MemoryNotFound(id) => {
            AgentError::tool("memory_not_found", format!("there is no memory {id:?}"))
        }
        AgentError::InvalidInput(message) => AgentError::tool("invalid_arguments", message),
        other => other,
    }
}

fn shown(memory: &Memory) -> serde_json::Value {
    json!({
        "id": memory.id,
        "text": memory.text,
        "category": memory.category,
        "importance": memory.importance,
        "score": memory.score,
        "updated_at_ms": memory.updated_at_ms,
    })
}

/// `memory_search`: relevant memories, best first.
#[derive(Debug, Clone)]
pub struct MemorySearchTool(pub MemoryBank);

#[derive(Deserialize)]
struct SearchArgs {
    query: String,
    #[serde(default)]
    limit: Option<usize>,
}

#[async_trait]
impl Tool for MemorySearchTool {
    fn name(&self) -> &'static str {
        "memory_search"
    }
    fn group(&self) -> ToolGroup {
        ToolGroup::Memory
    }
    fn description(&self) -> &'static str {
        "Search long-term memory by meaning and keywords. Returns the best matches with their \
         id, text, category and score."
    }
    fn parameters(&self) -> serde_json::Value {
        json!({
            "type": "object",
            "properties": {
                "query": {"type": "string"},
                "limit": {"type": "integer", "minimum": 1, "maximum": 50}
            },
            "required": ["query"]
        })
    }
    fn read_only(&self) -> bool {
        true
    }
    async fn call(&self, _: &ToolContext, args: serde_json::Value) -> Result<String, AgentError> {
        let args: SearchArgs = arguments(self.name(), args)?;
        let found = self
            .0
            .search(
                &args.query,
                args.limit.unwrap_or(5).clamp(1, 50),
                Some(crate::memory::SEARCH_MIN_SCORE),
            )
            .await
            .map_err(tool_error)?;
        if found.is_empty() {
            return Ok("no memories match".into());
        }
        json_result(&found.iter().map(shown).collect::<Vec<_>>())
    }
}

/// `memory_store`: remember a fact.
#[derive(Debug, Clone)]
pub struct MemoryStoreTool(pub MemoryBank);

#[derive(Deserialize)]
struct StoreArgs {
    text: String,
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    importance: Option<f32>,
}

#[async_trait]
impl Tool for MemoryStoreTool {
    fn name(&self) -> &'static str {
        "memory_store"
    }
    fn group(&self) -> ToolGroup {
        ToolGroup::Memory
    }
    fn description(&self) -> &'static str {
        "Remember a fact for future conversations: one self-contained sentence (who, what, \
         when). A nearly identical memory is updated instead of duplicated. Categories: \
         preference, fact, person, task, or another single word."
    }
    fn parameters(&self) -> serde_json::Value {
        json!({
            "type": "object",
            "properties": {
                "text": {"type": "string"},
                "category": {"type": "string"},
                "importance": {"type": "number", "minimum": 0, "maximum": 1}
            },
            "required": ["text"]
        })
    }
    async fn call(
        &self,
        context: &ToolContext,
        args: serde_json::Value,
    ) -> Result<String, AgentError> {
        let args: StoreArgs = arguments(self.name(), args)?;
        let stored = self
            .0
            .store(
                NewMemory {
                    text: args.text,
                    category: args.category,
                    importance: args.importance,
                    session: context.session_key.clone(),
                },
                "agent",
            )
            .await
            .map_err(tool_error)?;
        Ok(if stored.updated {
            format!("updated the existing memory {}", stored.memory.id)
        } else {
            format!("stored as memory {}", stored.memory.id)
        })
    }
}

/// `memory_get`: one memory by id.
#[derive(Debug, Clone)]
pub struct MemoryGetTool(pub MemoryBank);

#[derive(Deserialize)]
struct IdArgs {
    id: String,
}

fn id_schema() -> serde_json::Value {
    json!({
        "type": "object",
        "properties": {"id": {"type": "string"}},
        "required": ["id"]
    })
}

#[async_trait]
impl Tool for MemoryGetTool {
    fn name(&self) -> &'static str {
        "memory_get"
    }
    fn group(&self) -> ToolGroup {
        ToolGroup::Memory
    }
    fn description(&self) -> &'static str {
        "Read one memory by its id."
    }
    fn parameters(&self) -> serde_json::Value {
        id_schema()
    }
    fn read_only(&self) -> bool {
        true
    }
    async fn call(&self, _: &ToolContext, args: serde_json::Value) -> Result<String, AgentError> {
        let args: IdArgs = arguments(self.name(), args)?;
        let memory = self.0.get(&args.id).await.map_err(tool_error)?;
        json_result(&memory)
    }
}

/// `memory_delete`: forget a memory.
#[derive(Debug, Clone)]
pub struct MemoryDeleteTool(pub MemoryBank);

#[async_trait]
impl Tool for MemoryDeleteTool {
    fn name(&self) -> &'static str {
        "memory_delete"
    }
    fn group(&self) -> ToolGroup {
        ToolGroup::Memory
    }
    fn description(&self) -> &'static str {
        "Forget a memory by its id (for facts that are wrong or that the user wants forgotten)."
    }
    fn parameters(&self) -> serde_json::Value {
        id_schema()
    }
    async fn call(&self, _: &ToolContext, args: serde_json::Value) -> Result<String, AgentError> {
        let args: IdArgs = arguments(self.name(), args)?;
        self.0.delete(&args.id).await.map_err(tool_error)?;
        Ok(format!("deleted memory {}", args.id))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use ocg_core::testing::InMemoryVectorStore;

    #[tokio::test]
    async fn store_search_get_delete_through_tools_and_report_outages() {
        let store = InMemoryVectorStore::default();
        let bank = MemoryBank::new(Arc::new(store.clone()));
        let context = ToolContext {
            session_key: Some("web:1".into()),
        };
        let stored = MemoryStoreTool(bank.clone())
            .call(
                &context,
                json!({"text": "The wifi password is hunter2", "category": "fact"}),
            )
            .await
            .unwrap();
        let id = stored.strip_prefix("stored as memory ").unwrap().to_owned();
        let found = MemorySearchTool(bank.clone())
            .call(&context, json!({"query": "wifi password"}))
            .await
            .unwrap();
        assert!(found.contains("hunter2"), "{found}");
        let got = MemoryGetTool(bank.clone())
            .call(&context, json!({"id": id}))
            .await
            .unwrap();
        assert!(got.contains("\"session\":\"web:1\""), "{got}");
        MemoryDeleteTool(bank.clone())
            .call(&context, json!({"id": id}))
            .await
            .unwrap();
        let gone = MemoryGetTool(bank.clone())
            .call(&context, json!({"id": id}))
            .await
            .unwrap_err();
        assert_eq!(gone.code(), "memory_not_found");

        store.set_down(true);
        let down = MemoryStoreTool(bank)
            .call(&context, json!({"text": "x"}))
            .await
            .unwrap_err();
        assert_eq!(down.code(), "memory_unavailable");
        assert!(down.to_string().contains("nothing was read or changed"));
    }
}
