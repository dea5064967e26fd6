//! The [`Channel`] contract: a chat app (Telegram, Discord, Slack, Matrix, …)
//! seen as a source of incoming messages and a sink for replies.
//!
//! Chat and message ids are strings everywhere, because Slack (`C024BE91L`),
//! Matrix (`!room:server`) and Discord (snowflakes beyond `i64` in JSON) do
//! not fit integers. Threads are part of the [`ChatTarget`].

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Where a message lives or goes: a chat, optionally a thread inside it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChatTarget {
    /// The channel's own chat id.
    pub chat_id: String,
    /// Thread or topic id inside the chat, where the platform has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
}

impl ChatTarget {
    /// A chat without a thread.
    pub fn chat(chat_id: impl Into<String>) -> Self {
        ChatTarget {
            chat_id: chat_id.into(),
            thread_id: None,
        }
    }
}

/// Who sent an incoming message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sender {
    /// The platform's user id.
    pub id: String,
    /// A name to show, when the platform gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

/// Kinds of attachment a channel may receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttachmentKind {
    /// A picture.
    Image,
    /// A voice note or audio file.
    Audio,
    /// A video.
    Video,
    /// Any other file.
    Document,
    /// Something else (sticker, location, poll, …).
    Other,
}

/// An attachment of an incoming message (described, not downloaded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// What it is.
    pub kind: AttachmentKind,
    /// File name, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// MIME type, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
}

/// A message that arrived on a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncomingMessage {
    /// The channel's name (`telegram`, …); the agent session key is
    /// `<channel>:<chat_id>`.
    pub channel: String,
    /// The chat (and thread) it came from; replies go there.
    pub target: ChatTarget,
    /// The platform's message id.
    pub message_id: String,
    /// Who wrote it.
    pub sender: Sender,
    /// Its text; `None` for a message with attachments only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// What came with it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
}

impl IncomingMessage {
    /// The agent session this message belongs to.
    pub fn session_key(&self) -> String {
        match &self.target.thread_id {
            Some(thread) => format!("{}:{}:{}", self.channel, self.target.chat_id, thread),
            None => format!("{}:{}", self.channel, self.target.chat_id),
        }
    }
}

/// How the text of an [`OutgoingMessage`] is to be read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextFormat {
    /// Literal text.
    Plain,
    /// Markdown, converted by the channel to what its platform renders; a
    /// channel must fall back to plain text rather than lose the message.
    #[default]
    Markdown,
}

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutgoingMessage {
    /// Where to send it.
    pub target: ChatTarget,
    /// The text; a channel splits it when it exceeds the platform's limit.
    pub text: String,
    /// How to read `text`.
    #[serde(default)]
    pub format: TextFormat,
    /// Message id to reply to, where the platform supports replies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
}

/// What a successful send produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentMessage {
    /// Ids of the platform messages sent (several when the text was split).
    pub message_ids: Vec<String>,
}

/// Connection state of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelState {
    /// Not running.
    Stopped,
    /// Starting or reconnecting.
    Connecting,
    /// Receiving messages.
    Connected,
    /// Failing; retrying with backoff.
    Failing,
}

/// A snapshot of a channel for status pages (`GET /api/channels`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelStatus {
    /// The channel's name.
    pub name: String,
    /// Its state.
    pub state: ChannelState,
    /// Unix time (ms) of the last message received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_message_at_ms: Option<u64>,
    /// The last error, redacted of secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Receives what a channel hears. Implemented by whoever runs the channel (the
/// gateway passes messages to the agent and sends the reply back).
#[async_trait]
pub trait InboundHandler: Send + Sync {
    /// Handle one message. Messages of one chat are delivered one at a time,
    /// in order; messages of different chats may be handled concurrently.
    async fn handle(&self, message: IncomingMessage);
}

/// A chat platform connection.
///
/// Contract:
/// - [`run`](Channel::run) receives messages until its future is dropped
///   (that is how a channel is stopped) or a fatal error (bad credentials)
///   occurs. Transient failures are retried inside with backoff and shown in
///   [`status`](Channel::status), not returned.
/// - A channel is responsible for its platform's rate limits: `send` waits or
///   retries as the platform asks instead of failing fast.
/// - Optional capabilities ([`edit`](Channel::edit),
///   [`typing`](Channel::typing)) have default bodies, so a new channel only
///   writes what its platform offers.
#[async_trait]
pub trait Channel: Send + Sync {
    /// A short stable name (`telegram`); it prefixes session keys.
    fn name(&self) -> &str;

    /// Receive messages and hand them to `handler` until cancelled.
    async fn run(&self, handler: Arc<dyn InboundHandler>) -> Result<()>;

    /// Send a message.
    async fn send(&self, message: OutgoingMessage) -> Result<SentMessage>;

    /// Replace the text of a message this channel sent.
    async fn edit(&self, target: &ChatTarget, message_id: &str, text: &str) -> Result<()> {
        let _ = (target, message_id, text);
        Err(Error::Unsupported(format!(
            "{} cannot edit messages",
            self.name()
        )))
    }

    /// Show that a reply is being written. A no-op where unsupported.
    async fn typing(&self, target: &ChatTarget) -> Result<()> {
        let _ = target;
        Ok(())
    }

    /// The channel's current state.
    fn status(&self) -> ChannelStatus;
}

#[async_trait]
impl<T: Channel + ?Sized> Channel for Arc<T> {
    fn name(&self) -> &str {
        (**self).name()
    }
    async fn run(&self, handler: Arc<dyn InboundHandler>) -> Result<()> {
        (**self).run(handler).await
    }
    async fn send(&self, message: OutgoingMessage) -> Result<SentMessage> {
        (**self).send(message).await
    }
    async fn edit(&self, target: &ChatTarget, message_id: &str, text: &str) -> Result<()> {
        (**self).edit(target, message_id, text).await
    }
    async fn typing(&self, target: &ChatTarget) -> Result<()> {
        (**self).typing(target).await
    }
    fn status(&self) -> ChannelStatus {
        (**self).status()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_key_includes_thread_when_present() {
        let mut message = IncomingMessage {
            channel: "telegram".into(),
            target: ChatTarget::chat("42"),
            message_id: "1".into(),
            sender: Sender {
                id: "7".into(),
                display_name: None,
            },
            text: Some("hi".into()),
            attachments: vec![],
        };
        assert_eq!(message.session_key(), "telegram:42");
        message.target.thread_id = Some("9".into());
        assert_eq!(message.session_key(), "telegram:42:9");
    }
}
