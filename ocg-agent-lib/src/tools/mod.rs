//! The agent's tools.
//!
//! A [`Tool`] is one capability offered to the model, described by a JSON
//! schema. A [`ToolRegistry`] holds the tools a [`ToolPolicy`] allows and is
//! the runtime's [`ToolExecutor`]: it refuses what the policy denies, turns
//! failures into tool errors for the model and caps every result
//! ([`truncate_middle`]). File tools resolve every path inside one
//! [`Workspace`]; see `docs/tools.md` for the whole security model.

pub(crate) mod exec;
mod executor;
pub mod fs;
pub mod memory;
pub mod patch;
mod policy;
mod process;
mod registry;
pub mod schedule;
pub mod sessions;
mod web;
mod workspace;

use async_trait::async_trait;
use serde::Serialize;

use crate::AgentError;

pub use exec::{EXEC_OUTPUT_CAP, ExecTool, SAFE_PATH};
pub use executor::{NoTools, ToolExecutor, ToolOutput};
pub use policy::{ExecSandbox, ToolGroup, ToolPolicy};
pub use process::{MAX_LIVE_PROCESSES, PROCESS_BUFFER, ProcessTool};
pub use registry::{ToolRegistry, truncate_middle};
pub use web::{
    MAX_REDIRECTS, WEB_MAX_BYTES, WEB_TIMEOUT, WebFetchTool, html_to_text, is_public_address,
};
pub use workspace::Workspace;

/// What a tool knows about the call it serves.
#[derive(Debug, Clone, Default)]
pub struct ToolContext {
    /// The session the call was made in, when the turn has one.
    pub session_key: Option<String>,
}

/// One capability offered to the model.
///
/// Contract: [`call`](Tool::call) never panics; bad arguments and refusals
/// are `Err(AgentError::Tool { .. })` with a stable code, which the registry
/// hands to the model as a failed tool result.
#[async_trait]
pub trait Tool: Send + Sync {
    /// The name the model calls it by.
    fn name(&self) -> &'static str;

    /// Its policy group.
    fn group(&self) -> ToolGroup;

    /// What it does, for the model.
    fn description(&self) -> &'static str;

    /// JSON schema of its arguments (an object schema).
    fn parameters(&self) -> serde_json::Value;

    /// Whether it only reads: read-only calls of one round run concurrently,
    /// the others one at a time in order.
    fn read_only(&self) -> bool {
        false
    }

    /// Run it.
    async fn call(
        &self,
        context: &ToolContext,
        arguments: serde_json::Value,
    ) -> Result<String, AgentError>;
}

/// Decode a call's arguments into `T`, as a tool error when they do not fit.
pub fn arguments<T: serde::de::DeserializeOwned>(
    tool: &str,
    arguments: serde_json::Value,
) -> Result<T, AgentError> {
    serde_json::from_value(arguments).map_err(|error| {
        AgentError::tool(
            "invalid_arguments",
            format!("{tool}: invalid arguments: {error}"),
        )
    })
}

/// Serialize a tool's structured result as compact JSON.
pub fn json_result<T: Serialize>(value: &T) -> Result<String, AgentError> {
    serde_json::to_string(value).map_err(|error| AgentError::Internal(error.to_string()))
}

/// The built-in tools, and the handle that ends their background programs.
#[derive(Clone)]
pub struct BuiltinTools {
    /// Every built-in tool, for a [`ToolRegistry`] to filter.
    pub tools: Vec<std::sync::Arc<dyn Tool>>,
    /// The `process` tool: call [`ProcessTool::shutdown`] on a clean exit
    /// (dropping it kills its programs too).
    pub processes: std::sync::Arc<ProcessTool>,
}

impl std::fmt::Debug for BuiltinTools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.tools.iter().map(|t| t.name()).collect();
        f.debug_struct("BuiltinTools")
            .field("tools", &names)
            .finish()
    }
}

/// Every built-in tool, before a policy filters them: the file tools in
/// `workspace`, `exec`, `process` and `web_fetch` under `policy`, the memory
/// tools when there is `memory`, the session tools over `sessions`, and
/// `schedule` when there are `schedules`.
pub fn builtin(
    workspace: std::sync::Arc<Workspace>,
    policy: &ToolPolicy,
    memory: Option<crate::memory::MemoryBank>,
    sessions: std::sync::Arc<dyn crate::sessions::SessionStore>,
    schedules: Option<crate::schedule::ScheduleStore>,
) -> BuiltinTools {
    use std::sync::Arc;
    let processes = Arc::new(ProcessTool::new((*workspace).clone(), policy.clone()));
    let mut tools: Vec<Arc<dyn Tool>> = vec![
        Arc::new(fs::ReadTool(workspace.clone())),
        Arc::new(fs::WriteTool(workspace.clone())),
        Arc::new(fs::EditTool(workspace.clone())),
        Arc::new(patch::ApplyPatchTool(workspace.clone())),
        Arc::new(fs::ListTool(workspace.clone())),
        Arc::new(fs::GlobTool(workspace.clone())),
        Arc::new(fs::GrepTool(workspace.clone())),
        Arc::new(ExecTool::new((*workspace).clone(), policy.clone())),
        processes.clone(),
        Arc::new(WebFetchTool::new(policy)),
    ];
    if let Some(memory) = memory {
        tools.push(Arc::new(self::memory::MemorySearchTool(memory.clone())));
        tools.push(Arc::new(self::memory::MemoryStoreTool(memory.clone())));
        tools.push(Arc::new(self::memory::MemoryGetTool(memory.clone())));
        tools.push(Arc::new(self::memory::MemoryDeleteTool(memory)));
    }
    tools.push(Arc::new(self::sessions::SessionsListTool(sessions.clone())));
    tools.push(Arc::new(self::sessions::SessionHistoryTool(sessions)));
    if let Some(schedules) = schedules {
        let webhooks = policy.allows("web_fetch", ToolGroup::Web);
        tools.push(Arc::new(self::schedule::ScheduleTool::new(
            schedules, webhooks,
        )));
    }
    BuiltinTools { tools, processes }
}
