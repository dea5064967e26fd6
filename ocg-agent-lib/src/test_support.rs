//! A scripted [`LlmProvider`] for the runtime's and server's tests.
#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::sync::Mutex;

use async_trait::async_trait;
use ocg_core::{ToolCall, Usage};

use crate::providers::{
    CompletionRequest, FinishReason, LlmProvider, ProviderError, ProviderEvent, ProviderStream,
};

/// One scripted answer.
#[derive(Debug, Clone)]
pub(crate) enum Reply {
    Text(&'static str),
    Tools(Vec<ToolCall>),
    Fail(ProviderError),
}

/// Answers from a queue; with the queue empty, echoes the last user message.
/// Records every request.
#[derive(Debug, Default)]
pub(crate) struct ScriptedProvider {
    replies: Mutex<VecDeque<Reply>>,
    pub(crate) requests: Mutex<Vec<CompletionRequest>>,
}

impl ScriptedProvider {
    pub(crate) fn with(replies: Vec<Reply>) -> Self {
        ScriptedProvider {
            replies: Mutex::new(replies.into()),
            requests: Mutex::default(),
        }
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
        self.requests.lock().unwrap().push(request.clone());
        let reply = self.replies.lock().unwrap().pop_front();
        let usage = Some(Usage {
            prompt_tokens: 10,
            completion_tokens: 2,
            total_tokens: 12,
        });
        let events: Vec<Result<ProviderEvent, ProviderError>> = match reply {
            Some(Reply::Fail(error)) => return Err(error),
            Some(Reply::Tools(calls)) => calls
                .into_iter()
                .map(|c| Ok(ProviderEvent::ToolCall(c)))
                .chain([Ok(ProviderEvent::Done {
                    usage,
                    finish_reason: FinishReason::ToolCalls,
                })])
                .collect(),
            Some(Reply::Text(text)) => vec![
                Ok(ProviderEvent::TextDelta(text.to_owned())),
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
