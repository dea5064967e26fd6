//! For tests (feature `testing`): a scripted [`LlmProvider`], to test an
//! agent built on [`AgentRuntime`](crate::AgentRuntime) without a model or a
//! vendor, and [`check_job_store`], the contract of a
//! [`JobStore`](ocg_core::JobStore).
//!
//! ```
//! use ocg_agent_lib::testing::{ScriptedProvider, ScriptedReply};
//! let provider = ScriptedProvider::with(vec![ScriptedReply::Text("Paris.".into())]);
//! assert!(provider.requests().is_empty());
//! ```

use std::collections::VecDeque;
use std::sync::Mutex;

use async_trait::async_trait;
use ocg_core::{ToolCall, Usage};

use crate::providers::{
    CompletionRequest, FinishReason, LlmProvider, ProviderError, ProviderEvent, ProviderStream,
};
pub use crate::schedule::contract::check_job_store;

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum ScriptedReply {
    /// Answer this text, then stop.
    Text(String),
    /// Call these tools (finish reason `tool_calls`).
    Tools(Vec<ToolCall>),
    /// Fail the request before any event.
    Fail(ProviderError),
}

/// Answers from a queue; with the queue empty, echoes the last user message.
/// Records every request.
#[derive(Debug, Default)]
pub struct ScriptedProvider {
    replies: Mutex<VecDeque<ScriptedReply>>,
    requests: Mutex<Vec<CompletionRequest>>,
}

impl ScriptedProvider {
    /// A provider answering `replies` in order, then echoing.
    pub fn with(replies: Vec<ScriptedReply>) -> Self {
        ScriptedProvider {
            replies: Mutex::new(replies.into()),
            requests: Mutex::default(),
        }
    }

    /// Every request it was sent, oldest first.
    pub fn requests(&self) -> Vec<CompletionRequest> {
        self.requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl LlmProvider for ScriptedProvider {
    fn name(&self) -> &str {
        "scripted"
    }

    fn model(&self) -> &str {
        "script-1"
    }

    async fn stream(&self, request: &CompletionRequest) -> Result<ProviderStream, ProviderError> {
        self.requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(request.clone());
        let reply = self
            .replies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop_front();
        let usage = Some(Usage {
            prompt_tokens: 10,
            completion_tokens: 2,
            total_tokens: 12,
        });
        let events: Vec<Result<ProviderEvent, ProviderError>> = match reply {
            Some(ScriptedReply::Fail(error)) => return Err(error),
            Some(ScriptedReply::Tools(calls)) => calls
                .into_iter()
                .map(|c| Ok(ProviderEvent::ToolCall(c)))
                .chain([Ok(ProviderEvent::Done {
                    usage,
                    finish_reason: FinishReason::ToolCalls,
                })])
                .collect(),
            Some(ScriptedReply::Text(text)) => vec![
                Ok(ProviderEvent::TextDelta(text)),
                Ok(ProviderEvent::Done {
                    usage,
                    finish_reason: FinishReason::Stop,
                }),
            ],
            None => {
                let last = request
                    .messages
                    .iter()
                    .rev()
                    .find(|m| m.role == ocg_core::Role::User)
                    .map(|m| m.content.clone())
                    .unwrap_or_default();
                vec![
                    Ok(ProviderEvent::TextDelta("echo: ".into())),
                    Ok(ProviderEvent::TextDelta(last)),
                    Ok(ProviderEvent::Done {
                        usage,
                        finish_reason: FinishReason::Stop,
                    }),
                ]
            }
        };
        Ok(Box::pin(futures_util::stream::iter(events)))
    }
}
