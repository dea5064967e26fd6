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
    /// The platform's handle to fetch it later (Telegram `file_id`, Slack
    /// file id, Discord or Matrix URL), when it gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// File name, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// MIME type, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    /// Size in bytes, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
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
    /// The id of the message this one answers, where the platform has replies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// Whether this is an edit of an earlier message (`message_id` names it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub edited: bool,
}

impl IncomingMessage {
    /// A new text message from `sender_id` in `chat_id` of `channel`.
    pub fn text(
        channel: impl Into<String>,
        chat_id: impl Into<String>,
        sender_id: impl Into<String>,
        text: impl Into<String>,
    ) -> Self {
        IncomingMessage {
            channel: channel.into(),
            target: ChatTarget::chat(chat_id),
            message_id: String::new(),
            sender: Sender {
                id: sender_id.into(),
                display_name: None,
            },
            text: Some(text.into()),
            attachments: Vec::new(),
            reply_to: None,
            edited: false,
        }
    }

    /// The command this message is (`/new` → `"new"`), lower-cased, with a
    /// `@botname` suffix removed; `None` when the text is not a command.
    pub fn command(&self) -> Option<String> {
        let text = self.text.as_deref()?.trim_start();
        let word = text.strip_prefix('/')?.split_whitespace().next()?;
        let name = word.split('@').next().unwrap_or(word);
        (!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .then(|| name.to_ascii_lowercase())
    }

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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelState {
    /// Not running.
    #[default]
    Stopped,
    /// Starting or reconnecting.
    Connecting,
    /// Receiving messages.
    Connected,
    /// Failing; retrying with backoff.
    Failing,
    /// Run by another gateway of a shared store (`OCG_DATABASE_URL`);
    /// this one takes it over when that one stops.
    Standby,
}

/// A snapshot of a channel for status pages (`GET /api/channels`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ChannelStatus {
    /// The channel's name.
    pub name: String,
    /// Its state.
    pub state: ChannelState,
    /// How it receives (`long_polling`, `webhook`, `websocket`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Unix time (ms) of the last message received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_message_at_ms: Option<u64>,
    /// Messages received since start.
    #[serde(default)]
    pub received: u64,
    /// Replies sent since start.
    #[serde(default)]
    pub sent: u64,
    /// Messages received but not answered yet (including ones recovered
    /// after a restart).
    #[serde(default)]
    pub pending: u64,
    /// Transient errors since start (retried).
    #[serde(default)]
    pub errors: u64,
    /// The last error, redacted of secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Unix time (ms) of the last error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_at_ms: Option<u64>,
}

/// What a channel's platform offers, so that generic code (the gateway's
/// bridge to the agent) adapts without knowing the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelCapabilities {
    /// Longest message in characters; [`Channel::send`] splits longer text.
    pub max_message_chars: usize,
    /// How long a typing notice lasts, in milliseconds: the bridge repeats
    /// [`Channel::typing`] at this interval while the agent works. `None` when
    /// the notice lasts until the next message (or does not exist).
    pub typing_refresh_ms: Option<u64>,
    /// Whether [`Channel::edit`] works.
    pub edit: bool,
    /// Whether chats have threads ([`ChatTarget::thread_id`]).
    pub threads: bool,
}

impl Default for ChannelCapabilities {
    fn default() -> Self {
        ChannelCapabilities {
            max_message_chars: 4000,
            typing_refresh_ms: None,
            edit: false,
            threads: false,
        }
    }
}

/// An HTTP request pushed by a platform (Telegram webhooks, Slack's Events
/// API, Matrix application services), as the gateway received it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WebhookRequest {
    /// Header names (lower-case) and values.
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub body: Vec<u8>,
}

impl WebhookRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The answer to a [`WebhookRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookResponse {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type` of `body`.
    pub content_type: &'static str,
    /// The body (Slack's URL verification echoes a challenge, for example).
    pub body: Vec<u8>,
}

impl WebhookResponse {
    /// `200` with an empty JSON object.
    pub fn ok() -> Self {
        WebhookResponse {
            status: 200,
            content_type: "application/json",
            body: b"{}".to_vec(),
        }
    }
}

/// Receives what a channel hears. Implemented by whoever runs the channel (the
/// gateway passes messages to the agent and sends the reply back).
#[async_trait]
pub trait InboundHandler: Send + Sync {
    /// Handle one message. Messages of one chat are delivered one at a time,
    /// in order; messages of different chats may be handled concurrently.
    ///
    /// When `handle` returns, the message counts as answered: a durable
    /// channel records that and never delivers it again. When the future is
    /// dropped before (shutdown, crash), the channel delivers it again after
    /// a restart. So a handler sends its reply (or a short error message)
    /// before returning, and does not swallow a message it could not answer.
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
///   [`typing`](Channel::typing), [`webhook`](Channel::webhook)) have default
///   bodies, so a new channel only writes what its platform offers, and says
///   so in [`capabilities`](Channel::capabilities).
/// - Only allowed chats reach the handler: a channel filters by its own
///   allow-list before delivering.
/// - [`send`](Channel::send) never loses text silently: formatting the
///   platform rejects is resent plain, text over the platform's limit is
///   split. An `Err` means nothing (or not everything) was delivered.
/// - Secrets (tokens, signing keys) never appear in errors, logs or
///   [`status`](Channel::status).
///
/// See `examples/channel` for a complete minimal channel.
#[async_trait]
pub trait Channel: Send + Sync {
    /// A short stable name (`telegram`); it prefixes session keys.
    fn name(&self) -> &str;

    /// What the platform offers.
    fn capabilities(&self) -> ChannelCapabilities {
        ChannelCapabilities::default()
    }

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

    /// Accept an HTTP request the platform pushed to the gateway
    /// (`POST /channels/{name}/webhook`). The channel authenticates it (in
    /// constant time) and answers; messages it carries go to the handler of
    /// the running [`run`](Channel::run). Channels that only pull answer
    /// [`Error::NotFound`] (the default), which the gateway turns into `404`.
    async fn webhook(&self, request: WebhookRequest) -> Result<WebhookResponse> {
        let _ = request;
        Err(Error::NotFound(format!(
            "{} does not receive webhooks",
            self.name()
        )))
    }

    /// The channel's current state.
    fn status(&self) -> ChannelStatus;
}

#[async_trait]
impl<T: Channel + ?Sized> Channel for Arc<T> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn capabilities(&self) -> ChannelCapabilities {
        (**self).capabilities()
    }
    async fn webhook(&self, request: WebhookRequest) -> Result<WebhookResponse> {
        (**self).webhook(request).await
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
            reply_to: None,
            edited: false,
        };
        assert_eq!(message.session_key(), "telegram:42");
        message.target.thread_id = Some("9".into());
        assert_eq!(message.session_key(), "telegram:42:9");
    }

    #[test]
    fn commands_are_recognized_with_or_without_bot_name() {
        let command = |text: &str| IncomingMessage::text("t", "1", "2", text).command();
        assert_eq!(command("/new"), Some("new".into()));
        assert_eq!(command("/Reset@my_bot now"), Some("reset".into()));
        assert_eq!(command("hello /new"), None);
        assert_eq!(command("/"), None);
        assert_eq!(command("/a/b"), None);
        assert_eq!(command("/путь"), None);
    }

    #[test]
    fn webhook_headers_are_case_insensitive() {
        let request = WebhookRequest {
            headers: vec![("x-secret".into(), "s".into())],
            body: Vec::new(),
        };
        assert_eq!(request.header("X-Secret"), Some("s"));
        assert_eq!(request.header("other"), None);
    }
}
