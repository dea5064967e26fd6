//! Session tools: `sessions_list` and `session_history`, so the agent can
//! look back at its other conversations.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;

use super::{Tool, ToolContext, ToolGroup, arguments, json_result};
use crate::AgentError;
use crate::sessions::SessionStore;

/// Characters of one message shown by `session_history`.
pub const MAX_MESSAGE_CHARS: usize = 2000;

/// `sessions_list`: sessions, most recent first.
#[derive(Debug, Clone)]
pub struct SessionsListTool(pub Arc<dyn SessionStore>);

#[derive(Deserialize)]
struct ListArgs {
    #[serde(default)]
    limit: Option<usize>,
}

#[async_trait]
impl Tool for SessionsListTool {
    fn name(&self) -> &'static str {
        "sessions_list"
    }
    fn group(&self) -> ToolGroup {
        ToolGroup::Sessions
    }
    fn description(&self) -> &'static str {
        "List conversation sessions, most recently used first: key, title, last use, message count."
    }
    fn parameters(&self) -> serde_json::Value {
        json!({
            "type": "object",
            "properties": {"limit": {"type": "integer", "minimum": 1, "maximum": 200}}
        })
    }
    fn read_only(&self) -> bool {
        true
    }
    async fn call(&self, _: &ToolContext, args: serde_json::Value) -> Result<String, AgentError> {
        let args: ListArgs = arguments(self.name(), args)?;
        let sessions = self.0.list().await.map_err(AgentError::Sessions)?;
        let shown: Vec<_> = sessions
            .iter()
            .take(args.limit.unwrap_or(20).clamp(1, 200))
            .map(|s| {
                json!({
                    "key": s.key,
                    "title": s.title,
                    "updated_at_ms": s.updated_at_ms,
                    "messages": s.messages,
                })
            })
            .collect();
        json_result(&shown)
    }
}

/// `session_history`: a page of one session's messages.
#[derive(Debug, Clone)]
pub struct SessionHistoryTool(pub Arc<dyn SessionStore>);

#[derive(Deserialize)]
struct HistoryArgs {
    key: String,
    #[serde(default)]
    offset: Option<u64>,
    #[serde(default)]
    limit: Option<u64>,
}

#[async_trait]
impl Tool for SessionHistoryTool {
    fn name(&self) -> &'static str {
        "session_history"
    }
    fn group(&self) -> ToolGroup {
        ToolGroup::Sessions
    }
    fn description(&self) -> &'static str {
        "Read messages of a session (oldest first) by its key from sessions_list; `offset` and \
         `limit` page through long ones."
    }
    fn parameters(&self) -> serde_json::Value {
        json!({
            "type": "object",
            "properties": {
                "key": {"type": "string"},
                "offset": {"type": "integer", "minimum": 0},
                "limit": {"type": "integer", "minimum": 1, "maximum": 200}
            },
            "required": ["key"]
        })
    }
    fn read_only(&self) -> bool {
        true
    }
    async fn call(&self, _: &ToolContext, args: serde_json::Value) -> Result<String, AgentError> {
        let args: HistoryArgs = arguments(self.name(), args)?;
        let entries = self
            .0
            .history(
                &args.key,
                args.offset.unwrap_or(0),
                args.limit.unwrap_or(50).clamp(1, 200),
                false,
            )
            .await
            .map_err(|error| match error {
                ocg_core::Error::NotFound(_) => AgentError::tool(
                    "session_not_found",
                    format!("there is no session {:?}", args.key),
                ),
                other => AgentError::Sessions(other),
            })?;
        let shown: Vec<_> = entries
            .iter()
            .map(|entry| {
                let mut text: String = entry
                    .message
                    .content
                    .chars()
                    .take(MAX_MESSAGE_CHARS)
                    .collect();
                if text.len() < entry.message.content.len() {
                    text.push_str(" […]");
                }
                let mut value = json!({
                    "role": entry.message.role,
                    "content": text,
                    "created_at_ms": entry.created_at_ms,
                });
                if !entry.message.tool_calls.is_empty() {
                    let names: Vec<&str> = entry
                        .message
                        .tool_calls
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect();
                    value["tool_calls"] = json!(names);
                }
                value
            })
            .collect();
        json_result(&shown)
    }
}
