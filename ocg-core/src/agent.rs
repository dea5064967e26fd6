//! The [`Agent`] contract: one conversational turn at a time, streamed.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use futures_core::Stream;

use crate::{ChatEvent, ChatReply, ChatRequest, Error, HealthReport, Result};

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
}
