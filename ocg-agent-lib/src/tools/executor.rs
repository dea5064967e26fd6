//! [`ToolExecutor`]: the hook through which the runtime runs tool calls.

use std::sync::Arc;

use async_trait::async_trait;
use ocg_core::ToolCall;

use crate::providers::ToolSpec;

/// What a tool call produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOutput {
    /// The result (or the error text) handed back to the model.
    pub content: String,
    /// Whether the tool succeeded.
    pub ok: bool,
}

/// Runs tool calls for the runtime.
///
/// Contract: [`call`](ToolExecutor::call) never panics and never fails as a
/// whole: refusals and errors are outputs with `ok: false`, returned to the
/// model as data. Calls of one round may run concurrently.
#[async_trait]
pub trait ToolExecutor: Send + Sync {
    /// The tools offered to the model. Asked for on every turn: build the
    /// list once and hand out the shared copy.
    fn definitions(&self) -> Arc<[ToolSpec]>;

    /// Run one call on behalf of `session_key`.
    async fn call(&self, session_key: Option<&str>, call: &ToolCall) -> ToolOutput;

    /// Whether a call of `name` may run concurrently with the other calls of
    /// its round. Calls that change state (files, processes, memory) are run
    /// one at a time, in the order the model gave them.
    fn parallel_safe(&self, name: &str) -> bool {
        let _ = name;
        true
    }
}

/// No tools: the model is offered none, and a call it makes anyway is refused.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoTools;

#[async_trait]
impl ToolExecutor for NoTools {
    fn definitions(&self) -> Arc<[ToolSpec]> {
        Arc::new([])
    }

    async fn call(&self, _session_key: Option<&str>, call: &ToolCall) -> ToolOutput {
        ToolOutput {
            content: format!("unknown tool {:?}: no tools are available", call.name),
            ok: false,
        }
    }
}
