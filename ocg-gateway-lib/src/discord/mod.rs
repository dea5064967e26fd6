//! Discord, through the Gateway (a WebSocket) and the REST API v10.
//!
//! - **Receiving.** The Gateway: `Hello`, then `Identify` with the intents
//!   for guild messages, direct messages and message content, or `Resume`
//!   with the session id and the last sequence number, after which Discord
//!   replays what was missed. Heartbeats go at the interval Discord gives
//!   (the first after a random part of it); a heartbeat not acknowledged
//!   before the next one means a dead connection, which is dropped and
//!   resumed. Op 7 (reconnect) resumes, op 9 (invalid session) resumes or
//!   identifies as Discord says; the close codes of a bad token or of
//!   intents not enabled are fatal and shown, every other loss reconnects
//!   with backoff.
//! - **Exactly once, as far as possible.** Each message is written to the
//!   journal (keyed by its id, with the session to resume as the cursor)
//!   before it is handled and marked done after the reply, so a replayed or
//!   resent event is answered once and a restart answers what was left.
//! - **Who is answered.** Direct messages, and messages that mention the
//!   bot in guild channels, from senders `DISCORD_ALLOWED` allows: user
//!   ids, `channel:<id>` (everyone in that channel and its threads) and
//!   `guild:<id>` (everyone in that server). A stranger's direct message
//!   gets a pairing code; strangers in guilds are logged once.
//! - **Sessions**: one per channel; a thread is its own channel in
//!   Discord, so it keeps its own session.
//! - **Sending.** Discord renders Markdown itself; text over 2,000
//!   characters is split; no mention in a reply pings anyone; rate limits
//!   are obeyed per route (`rest`).

mod gateway;
mod rest;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ocg_core::config::{Config, Secret};
use ocg_core::{
    Attachment, AttachmentKind, Channel, ChannelCapabilities, ChannelState, ChannelStatus,
    ChatTarget, Error, InboundHandler, IncomingMessage, OutgoingMessage, Result, Sender,
    SentMessage,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::access::{AllowList, Pairing, Refusals};
use crate::dispatch::Dispatcher;
use crate::journal::InboundJournal;
use crate::status::StatusBoard;
use crate::{GatewayError, lock, markup};
use rest::{ApiFailure, Rest};

/// Discord's limit on a message's content, in characters.
pub const MESSAGE_LIMIT: usize = 2000;
/// The Gateway intents: guild messages (1 << 9) and direct messages
/// (1 << 12). Not the privileged message content intent: Discord sends the
/// content of direct messages and of messages that mention the bot without
/// it, and those are the only ones answered.
pub const INTENTS: u64 = (1 << 9) | (1 << 12);
/// How long the lookup of a thread's channel may hold the Gateway loop.
const PARENT_TIMEOUT: Duration = Duration::from_secs(5);
/// The default API base (the version is added to it).
pub const DEFAULT_API_URL: &str = "https://discord.com/api";

/// Typed settings of the Discord channel.
#[derive(Clone)]
pub struct DiscordConfig {
    /// `DISCORD_BOT_TOKEN`.
    pub token: Secret,
    /// `DISCORD_API_URL`: the REST API base, without the version.
    pub api_url: String,
    /// `DISCORD_ALLOWED`: user ids, `channel:<id>` and `guild:<id>`.
    pub allowed: Vec<String>,
    /// Where the journal lives (`$OCG_DATA_DIR/channels`).
    pub state_dir: PathBuf,
    /// First and longest wait after a failure.
    pub backoff: (Duration, Duration),
}

impl std::fmt::Debug for DiscordConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscordConfig")
            .field("token", &"[redacted]")
            .field("api_url", &self.api_url)
            .field("allowed", &self.allowed)
            .finish_non_exhaustive()
    }
}

fn is_snowflake(id: &str) -> bool {
    !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit())
}

impl DiscordConfig {
    /// The channel's settings from `config`; `None` when `DISCORD_BOT_TOKEN`
    /// is unset. A malformed value is an error naming its key.
    pub fn from_config(config: &Config) -> std::result::Result<Option<Self>, GatewayError> {
        let raw = config.raw();
        let Some(token) = raw.parse("DISCORD_BOT_TOKEN", |v| {
            let v = v.trim();
            let v = v.strip_prefix("Bot ").unwrap_or(v);
            // The value is a secret: the reason must not quote it.
            let ok = v.len() >= 20
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            ok.then(|| Secret::new(v)).ok_or_else(|| {
                "is not a bot token (the Bot page of your application in the Discord Developer Portal)"
                    .into()
            })
        })?
        else {
            return Ok(None);
        };
        let api_url = raw
            .parse("DISCORD_API_URL", crate::settings::parse_private_url)?
            .unwrap_or_else(|| DEFAULT_API_URL.into());
        let allowed = raw
            .parse("DISCORD_ALLOWED", |v| {
                crate::settings::list(v)
                    .map(|entry| {
                        let id = entry
                            .strip_prefix("channel:")
                            .or_else(|| entry.strip_prefix("guild:"))
                            .unwrap_or(entry);
                        is_snowflake(id).then(|| entry.to_owned()).ok_or_else(|| {
                            format!(
                                "{entry:?} is neither a user id (digits) nor channel:<id> nor guild:<id>"
                            )
                        })
                    })
                    .collect::<std::result::Result<Vec<_>, _>>()
            })?
            .unwrap_or_default();
        Ok(Some(DiscordConfig {
            token,
            api_url,
            allowed,
            state_dir: config.data_dir.join("channels"),
            backoff: (Duration::from_millis(500), Duration::from_secs(60)),
        }))
    }
}

/// A message as the Gateway sends it (`MESSAGE_CREATE`), as far as read.
#[derive(Debug, Clone, Deserialize)]
struct DcMessage {
    id: String,
    channel_id: String,
    #[serde(default)]
    guild_id: Option<String>,
    author: DcUser,
    #[serde(default)]
    content: String,
    #[serde(default)]
    mentions: Vec<DcUser>,
    #[serde(default)]
    attachments: Vec<DcAttachment>,
    #[serde(default)]
    message_reference: Option<DcReference>,
    #[serde(default, rename = "type")]
    kind: u8,
}

#[derive(Debug, Clone, Deserialize)]
struct DcUser {
    id: String,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    global_name: Option<String>,
    #[serde(default)]
    bot: bool,
}

#[derive(Debug, Clone, Deserialize)]
struct DcAttachment {
    id: String,
    #[serde(default)]
    filename: Option<String>,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    size: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
struct DcReference {
    #[serde(default)]
    message_id: Option<String>,
}

/// A message from a sender not allowed, refused after it is recorded.
#[derive(Debug)]
pub(crate) struct Stranger {
    message: DcMessage,
    direct: bool,
}

/// Where a message came from, kept with it in the journal so the
/// allow-list can be asked again when it is replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    sender: String,
    channel: String,
    guild: Option<String>,
    parent: Option<String>,
}

/// The Discord channel (see the module docs).
pub struct DiscordChannel {
    config: DiscordConfig,
    rest: Rest,
    journal: Arc<InboundJournal>,
    allowed: Arc<AllowList>,
    pairing: Option<Arc<Pairing>>,
    board: Arc<StatusBoard>,
    refused: Refusals,
    /// The bot's user id, once known.
    bot_id: Mutex<Option<String>>,
    /// The parent channel of each thread seen (`None`: not a thread).
    parents: Mutex<HashMap<String, Option<String>>>,
    /// Numbers the nonces of sent messages.
    nonces: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for DiscordChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscordChannel")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl DiscordChannel {
    /// A channel with `config`; opens its journal.
    pub fn new(config: DiscordConfig) -> std::result::Result<Self, GatewayError> {
        let path = config.state_dir.join("discord.inbound");
        let journal =
            InboundJournal::open(&path).map_err(|source| GatewayError::Journal { path, source })?;
        let rest =
            Rest::new(&config.api_url, config.token.clone()).map_err(GatewayError::Channel)?;
        if config.allowed.is_empty() {
            tracing::warn!("DISCORD_ALLOWED is empty: nobody is answered except through pairing");
        }
        let allowed = Arc::new(AllowList::new("DISCORD_ALLOWED", config.allowed.clone()));
        Ok(DiscordChannel {
            config,
            rest,
            journal: Arc::new(journal),
            allowed,
            pairing: None,
            board: Arc::new(StatusBoard::new("discord", "gateway")),
            refused: Refusals::default(),
            bot_id: Mutex::default(),
            parents: Mutex::default(),
            nonces: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Give strangers writing directly to the bot pairing codes from
    /// `pairing`, whose approvals join this channel's allow-list.
    pub fn with_pairing(mut self, pairing: Option<Arc<Pairing>>) -> Self {
        if let Some(pairing) = &pairing {
            pairing.register("discord", self.allowed.clone());
        }
        self.pairing = pairing;
        self
    }

    fn allows(&self, origin: &Origin) -> bool {
        self.allowed.any(|entry| match entry.split_once(':') {
            Some(("channel", id)) => id == origin.channel || origin.parent.as_deref() == Some(id),
            Some(("guild", id)) => origin.guild.as_deref() == Some(id),
            _ => entry == origin.sender,
        })
    }

    fn bot_id(&self) -> Option<String> {
        lock(&self.bot_id).clone()
    }

    /// The parent of `channel` when it is a thread, asked once; only
    /// needed when a `channel:` entry could match it.
    async fn parent_of(&self, channel: &str) -> Option<String> {
        let wanted = self
            .allowed
            .any(|e| e.starts_with("channel:") && e != format!("channel:{channel}"));
        if !wanted {
            return None;
        }
        if let Some(known) = lock(&self.parents).get(channel) {
            return known.clone();
        }
        // Bounded: the Gateway loop waits for it.
        match tokio::time::timeout(PARENT_TIMEOUT, self.rest.parent(channel)).await {
            Ok(Ok(parent)) => {
                lock(&self.parents).insert(channel.to_owned(), parent.clone());
                parent
            }
            Ok(Err(e)) => {
                self.failed("looking up a thread's channel", &e);
                None
            }
            Err(_) => {
                tracing::warn!(
                    channel = "discord",
                    "looking up a thread's channel took over {PARENT_TIMEOUT:?}"
                );
                None
            }
        }
    }

    /// Take one `MESSAGE_CREATE`: record it (with `cursor`, the session to
    /// resume) and queue it when it is to be answered. A stranger's message
    /// is returned, to be refused off the Gateway loop (sending a pairing
    /// code may wait out a rate limit; heartbeats may not).
    async fn take(
        &self,
        event: &Value,
        cursor: Option<String>,
        dispatcher: &mut Dispatcher,
    ) -> std::io::Result<Option<Stranger>> {
        let Ok(message) = serde_json::from_value::<DcMessage>(event.clone()) else {
            return Ok(None);
        };
        let Some(bot) = self.bot_id() else {
            return Ok(None);
        };
        if self.journal.seen(&message.id)
            || message.author.bot
            || message.author.id == bot
            // Only ordinary messages and replies; not joins, pins, …
            || !matches!(message.kind, 0 | 19)
        {
            return Ok(None);
        }
        let direct = message.guild_id.is_none();
        if !direct && !message.mentions.iter().any(|u| u.id == bot) {
            return Ok(None);
        }
        let origin = Origin {
            sender: message.author.id.clone(),
            channel: message.channel_id.clone(),
            guild: message.guild_id.clone(),
            parent: match direct {
                true => None,
                false => self.parent_of(&message.channel_id).await,
            },
        };
        let allowed = self.allows(&origin);
        let record = incoming(&message, &bot)
            .filter(|_| allowed)
            .map(|m| to_record(&m, &origin));
        let journal = self.journal.clone();
        let batch = vec![(message.id.clone(), record)];
        let fresh = tokio::task::spawn_blocking(move || journal.record(batch, cursor))
            .await
            .map_err(std::io::Error::other)??;
        self.board.received(fresh.len());
        for (key, record) in fresh {
            if let Some((message, _)) = from_record(&record) {
                dispatcher.dispatch(key, message);
            }
        }
        Ok((!allowed).then_some(Stranger { message, direct }))
    }

    /// A stranger: a pairing code in a direct message, else one log line
    /// per sender (never their text).
    async fn refuse(&self, stranger: Stranger) {
        let Stranger { message, direct } = stranger;
        let user = &message.author;
        if let (true, Some(pairing)) = (direct, &self.pairing) {
            let name = user.username.as_deref().unwrap_or("someone");
            let shown = format!("@{name} ({})", user.id);
            let chat = ChatTarget::chat(message.channel_id.clone());
            if let Some(code) = pairing.code_message("discord", &user.id, &shown, chat) {
                if let Err(e) = self.send(code).await {
                    tracing::warn!(channel = "discord", "the pairing code was not sent: {e}");
                }
            }
            return;
        }
        if self.refused.first(&user.id) {
            tracing::warn!(
                channel = "discord",
                sender = %user.id,
                "Discord user {} is not in DISCORD_ALLOWED: not answered (add the id, channel:<id> or guild:<id> to allow it)",
                user.id
            );
        }
    }

    /// Post one piece, retrying what is transient with the same nonce, so
    /// a retry after a lost answer is not posted twice.
    async fn post_piece(
        &self,
        channel: &str,
        piece: &str,
        reply_to: Option<&str>,
    ) -> std::result::Result<String, ApiFailure> {
        let nonce = self.next_nonce();
        crate::reconnect::send_retrying(
            self.config.backoff,
            || self.rest.post(channel, piece, reply_to, &nonce),
            |e| tracing::warn!(channel = "discord", "sending, retrying: {e}"),
        )
        .await
    }

    /// A message nonce (at most 25 characters), unique across restarts.
    fn next_nonce(&self) -> String {
        let n = self
            .nonces
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{}{n:05}", crate::status::now_ms() % 1_000_000_000_000)
    }

    fn failed(&self, what: &str, error: &ApiFailure) {
        tracing::warn!(channel = "discord", "{what}: {error}");
        self.board.failed(&format!("{what}: {error}"));
    }
}

/// The core message for a Discord message; `None` when there is nothing
/// to answer.
fn incoming(message: &DcMessage, bot: &str) -> Option<IncomingMessage> {
    let text = message
        .content
        .replace(&format!("<@{bot}>"), "")
        .replace(&format!("<@!{bot}>"), "")
        .trim()
        .to_owned();
    let attachments: Vec<Attachment> = message
        .attachments
        .iter()
        .map(|a| {
            let mime = a.content_type.as_deref().unwrap_or_default();
            Attachment {
                kind: match mime.split('/').next() {
                    Some("image") => AttachmentKind::Image,
                    Some("audio") => AttachmentKind::Audio,
                    Some("video") => AttachmentKind::Video,
                    _ => AttachmentKind::Document,
                },
                id: Some(a.id.clone()),
                name: a.filename.clone(),
                mime_type: a.content_type.clone(),
                size: a.size,
            }
        })
        .collect();
    if text.is_empty() && attachments.is_empty() {
        return None;
    }
    Some(IncomingMessage {
        channel: "discord".into(),
        target: ChatTarget::chat(message.channel_id.clone()),
        message_id: message.id.clone(),
        sender: Sender {
            id: message.author.id.clone(),
            display_name: message
                .author
                .global_name
                .clone()
                .or_else(|| message.author.username.clone()),
        },
        text: (!text.is_empty()).then_some(text),
        attachments,
        reply_to: message
            .message_reference
            .as_ref()
            .and_then(|r| r.message_id.clone()),
        edited: false,
    })
}

fn to_record(message: &IncomingMessage, origin: &Origin) -> Value {
    json!({
        "message": message,
        "sender": origin.sender,
        "channel": origin.channel,
        "guild": origin.guild,
        "parent": origin.parent,
    })
}

fn from_record(record: &Value) -> Option<(IncomingMessage, Origin)> {
    let text = |key: &str| record.get(key)?.as_str().map(str::to_owned);
    Some((
        serde_json::from_value(record.get("message")?.clone()).ok()?,
        Origin {
            sender: text("sender")?,
            channel: text("channel")?,
            guild: text("guild"),
            parent: text("parent"),
        },
    ))
}

fn core_error(failure: ApiFailure) -> Error {
    match &failure {
        _ if failure.is_transient() => Error::unavailable("discord", failure.to_string()),
        ApiFailure::Refused { status, .. } => Error::Remote {
            code: format!("discord_{status}"),
            message: failure.to_string(),
        },
        ApiFailure::Transport(_) => Error::unavailable("discord", failure.to_string()),
    }
}

#[async_trait]
impl Channel for DiscordChannel {
    fn name(&self) -> &str {
        "discord"
    }

    fn capabilities(&self) -> ChannelCapabilities {
        ChannelCapabilities {
            max_message_chars: MESSAGE_LIMIT,
            // "typing" shows for ten seconds, or until the bot posts.
            typing_refresh_ms: Some(8_000),
            edit: false,
            threads: true,
        }
    }

    async fn run(&self, handler: Arc<dyn InboundHandler>) -> Result<()> {
        self.board.set_state(ChannelState::Connecting);
        let mut dispatcher =
            Dispatcher::new("discord", handler, self.journal.clone(), self.board.clone());
        // Asked again: the allow-list may have changed since.
        dispatcher
            .replay(|record| {
                let (message, origin) = from_record(record)?;
                self.allows(&origin).then_some(message)
            })
            .await;
        let result = self.connect_loop(&mut dispatcher).await;
        self.board.set_state(ChannelState::Stopped);
        result
    }

    async fn send(&self, message: OutgoingMessage) -> Result<SentMessage> {
        let pieces = markup::split(&message.text, MESSAGE_LIMIT);
        if pieces.is_empty() {
            return Err(Error::InvalidInput("empty message".into()));
        }
        let mut ids = Vec::with_capacity(pieces.len());
        for (n, piece) in pieces.iter().enumerate() {
            let reply_to = message.reply_to.as_deref().filter(|_| n == 0);
            match self
                .post_piece(&message.target.chat_id, piece, reply_to)
                .await
            {
                Ok(id) => ids.push(id),
                Err(e) => {
                    self.failed("sending", &e);
                    if n > 0 {
                        // Not to be sent again whole: the first pieces are posted.
                        return Err(Error::Remote {
                            code: "discord_partial".into(),
                            message: format!("{n} of {} pieces sent, then: {e}", pieces.len()),
                        });
                    }
                    return Err(core_error(e));
                }
            }
        }
        self.board.sent();
        Ok(SentMessage { message_ids: ids })
    }

    async fn typing(&self, target: &ChatTarget) -> Result<()> {
        self.rest.typing(&target.chat_id).await.map_err(core_error)
    }

    fn status(&self) -> ChannelStatus {
        self.board.snapshot(self.journal.pending_count())
    }
}

#[cfg(test)]
mod tests;
