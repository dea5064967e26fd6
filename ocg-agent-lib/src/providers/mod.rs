//! LLM providers behind one trait.
//!
//! A provider turns a [`CompletionRequest`] into a stream of
//! [`ProviderEvent`]s: text deltas, complete tool calls (streamed argument
//! fragments are merged inside the provider, by index), and one final
//! [`ProviderEvent::Done`]. Vendor wire structs stay private to each provider
//! module and are converted to these types at the edge.
//!
//! - [`openai::OpenAiProvider`]: any OpenAI-compatible `/chat/completions`
//!   (OpenAI, OpenRouter, Ollama, vLLM, llama.cpp's server, …).
//! - [`anthropic::AnthropicProvider`]: Anthropic's Messages API, natively.
//! - [`retry::Retrying`]: retries with backoff on 429/5xx/connection errors,
//!   honouring `Retry-After`, before the first event of a stream.
//! - [`retry::Fallback`]: an ordered list of providers, the next used when
//!   one fails before its first event.

pub mod anthropic;
#[cfg(test)]
mod fake_vendor;
pub mod openai;
pub mod retry;
mod transport;

use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{Stream, StreamExt};
use ocg_core::{Message, ToolCall, Usage};
use serde::{Deserialize, Serialize};

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    /// Tool name.
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// JSON schema of its arguments (an object schema).
    pub parameters: serde_json::Value,
}

/// One request to a model.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompletionRequest {
    /// The conversation; system messages first.
    pub messages: Vec<Message>,
    /// Tools offered (shared: the same list serves every round).
    pub tools: std::sync::Arc<[ToolSpec]>,
    /// Model override (else the provider's configured model).
    pub model: Option<String>,
    /// Cap on the answer's tokens.
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    pub temperature: Option<f32>,
}

/// Why the model stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// A natural end.
    Stop,
    /// The token cap was reached.
    Length,
    /// The model asked for tool calls.
    ToolCalls,
    /// Content was filtered.
    ContentFilter,
    /// Anything else the vendor said.
    Other(String),
}

/// One event of a model's streamed answer.
#[derive(Debug, Clone, PartialEq)]
pub enum ProviderEvent {
    /// Text to append to the answer.
    TextDelta(String),
    /// A complete tool call. `arguments` is the parsed JSON object, or, when
    /// the model produced invalid JSON, a JSON string holding the raw text
    /// (the runtime reports that back to the model as a tool error).
    ToolCall(ToolCall),
    /// The answer is complete.
    Done {
        /// Token usage, when reported.
        usage: Option<Usage>,
        /// Why it stopped.
        finish_reason: FinishReason,
    },
}

/// A provider's failure, classified for retry decisions.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// 429: slow down; `retry_after` from the vendor when given.
    #[error("{provider}: rate limited")]
    RateLimited {
        /// Provider name.
        provider: String,
        /// The vendor's `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// 401/403: the key is wrong or lacks access.
    #[error("{provider}: authentication failed: {message}")]
    Auth {
        /// Provider name.
        provider: String,
        /// The vendor's message.
        message: String,
    },
    /// Another 4xx: the request itself is wrong.
    #[error("{provider}: request rejected (HTTP {status}): {message}")]
    BadRequest {
        /// Provider name.
        provider: String,
        /// HTTP status.
        status: u16,
        /// The vendor's message.
        message: String,
    },
    /// 5xx (or 529 overloaded).
    #[error("{provider}: server error (HTTP {status}): {message}")]
    Server {
        /// Provider name.
        provider: String,
        /// HTTP status.
        status: u16,
        /// The vendor's message.
        message: String,
    },
    /// Could not connect.
    #[error("{provider}: cannot connect: {message}")]
    Connect {
        /// Provider name.
        provider: String,
        /// Why.
        message: String,
    },
    /// No answer in time.
    #[error("{provider}: timed out")]
    Timeout {
        /// Provider name.
        provider: String,
    },
    /// The answer did not follow the vendor's protocol (broken stream, bad JSON).
    #[error("{provider}: {message}")]
    Protocol {
        /// Provider name.
        provider: String,
        /// What was wrong.
        message: String,
    },
}

impl ProviderError {
    /// Whether trying again may help (429, 5xx, connection errors, timeouts).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ProviderError::RateLimited { .. }
                | ProviderError::Server { .. }
                | ProviderError::Connect { .. }
                | ProviderError::Timeout { .. }
        )
    }

    /// The stable code used in `error` chat events.
    pub fn code(&self) -> &'static str {
        match self {
            ProviderError::RateLimited { .. } => "llm_rate_limited",
            ProviderError::Auth { .. } => "llm_auth",
            ProviderError::BadRequest { .. } => "llm_bad_request",
            ProviderError::Server { .. } => "llm_server_error",
            ProviderError::Connect { .. } => "llm_unavailable",
            ProviderError::Timeout { .. } => "llm_timeout",
            ProviderError::Protocol { .. } => "llm_protocol",
        }
    }
}

/// A streamed answer.
pub type ProviderStream = Pin<Box<dyn Stream<Item = Result<ProviderEvent, ProviderError>> + Send>>;

/// A complete (non-streamed) answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The text.
    pub text: String,
    /// Tool calls requested.
    pub tool_calls: Vec<ToolCall>,
    /// Token usage.
    pub usage: Option<Usage>,
    /// Why it stopped.
    pub finish_reason: FinishReason,
}

/// Why a provider cannot answer now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotReady {
    /// It will be ready by itself soon (a local model loading).
    Loading(String),
    /// It cannot answer until something changes; the text says what.
    Failing(String),
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotReady::Loading(why) | NotReady::Failing(why) => f.write_str(why),
        }
    }
}

/// A chat model.
///
/// Contract: a stream yields zero or more `TextDelta`/`ToolCall` events and
/// ends with exactly one `Done` or an `Err`. Dropping the stream aborts the
/// HTTP request.
#[async_trait]
pub trait LlmProvider: Send + Sync {
    /// Short name for logs and errors (`openai`, `anthropic`, `local`).
    fn name(&self) -> &str;

    /// The model used when the request names none.
    fn model(&self) -> &str;

    /// Start a streamed answer.
    async fn stream(&self, request: &CompletionRequest) -> Result<ProviderStream, ProviderError>;

    /// Whether the provider can answer now; the error says why not (a local
    /// model still loading, say). Remote providers answer `Ok` without a
    /// network call: health checks must not cost tokens.
    async fn check(&self) -> Result<(), NotReady> {
        Ok(())
    }

    /// The whole answer at once.
    async fn complete(&self, request: &CompletionRequest) -> Result<Completion, ProviderError> {
        let mut stream = self.stream(request).await?;
        let mut completion = Completion {
            text: String::new(),
            tool_calls: Vec::new(),
            usage: None,
            finish_reason: FinishReason::Stop,
        };
        while let Some(event) = stream.next().await {
            match event? {
                ProviderEvent::TextDelta(text) => completion.text.push_str(&text),
                ProviderEvent::ToolCall(call) => completion.tool_calls.push(call),
                ProviderEvent::Done {
                    usage,
                    finish_reason,
                } => {
                    completion.usage = usage;
                    completion.finish_reason = finish_reason;
                    return Ok(completion);
                }
            }
        }
        Err(ProviderError::Protocol {
            provider: self.name().to_owned(),
            message: "the stream ended without a final event".into(),
        })
    }
}
