//! Telegram, through the Bot API: the reference implementation of
//! [`Channel`].
//!
//! - **Receiving.** Long polling (`getUpdates` with a long timeout) or a
//!   webhook (`setWebhook` with a secret; the gateway hands the requests to
//!   [`Channel::webhook`], which checks the secret header in constant time).
//! - **Exactly once, as far as possible.** Every update is written to a
//!   journal (`docs/channels.md`) and synced before its offset is acknowledged (the
//!   next `getUpdates`) or its webhook request answered, and marked done
//!   once the handler (which sends the reply) returns. After a crash the
//!   updates not done are handled again; done ones never are. The one window
//!   left: a crash after Telegram accepted the reply and before "done" is
//!   synced repeats that one reply (`docs/channels.md`).
//! - **Order.** Messages of one chat are handled one at a time, in order;
//!   chats run in parallel.
//! - **Allow-list.** Only chats in `TELEGRAM_ALLOWED_CHATS` reach the
//!   handler. A stranger writing in a private chat gets a pairing code
//!   ([`crate::access`]) when the channel has [`Pairing`]; other chats are
//!   logged once (with their id, so the owner can add theirs) and never
//!   answered.
//! - **Sending.** Markdown becomes Telegram HTML; text over 4096 UTF-16 units
//!   is split; a message whose formatting Telegram rejects is resent as
//!   plain text; 429s wait `retry_after`; 5xx and network errors back off.
//! - **Secrets.** The token is in URLs only, and URLs never reach errors or
//!   logs.

mod api;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ocg_core::config::{Config, Secret};
use ocg_core::{
    Attachment, AttachmentKind, Channel, ChannelCapabilities, ChannelState, ChannelStatus,
    ChatTarget, Error, InboundHandler, IncomingMessage, OutgoingMessage, Result, Sender,
    SentMessage, TextFormat, WebhookRequest, WebhookResponse,
};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::access::{AllowList, Pairing, Refusals};
use crate::dispatch::Dispatcher;
use crate::journal::InboundJournal;
use crate::markup;
use crate::reconnect::send_retrying;
use crate::settings::missing_key;
use crate::status::StatusBoard;
use crate::{GatewayError, lock};
use api::{ApiFailure, BotApi, TgMessage, Update};

/// Telegram's limit on a message's text, in UTF-16 code units.
const MESSAGE_LIMIT: usize = 4096;

/// The header Telegram puts the webhook secret in.
pub const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

/// How the channel receives updates.
#[derive(Clone, PartialEq, Eq)]
pub enum TelegramMode {
    /// `getUpdates` in a loop (the default; works behind NAT).
    LongPolling,
    /// Telegram pushes updates to `url`, which must reach the gateway's
    /// `POST /channels/telegram/webhook`.
    Webhook {
        /// The public HTTPS URL given to `setWebhook`.
        url: String,
        /// Sent back by Telegram in `X-Telegram-Bot-Api-Secret-Token`.
        secret: Secret,
    },
}

impl std::fmt::Debug for TelegramMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TelegramMode::LongPolling => f.write_str("LongPolling"),
            TelegramMode::Webhook { url, .. } => f
                .debug_struct("Webhook")
                .field("url", url)
                .field("secret", &"[redacted]")
                .finish(),
        }
    }
}

/// Typed settings of the Telegram channel.
#[derive(Clone)]
pub struct TelegramConfig {
    /// `TELEGRAM_BOT_TOKEN`.
    pub token: Secret,
    /// `TELEGRAM_API_URL` (default `https://api.telegram.org`).
    pub api_url: String,
    /// `TELEGRAM_MODE` and, for webhooks, `TELEGRAM_WEBHOOK_URL` and
    /// `TELEGRAM_WEBHOOK_SECRET`.
    pub mode: TelegramMode,
    /// `TELEGRAM_ALLOWED_CHATS`: the only chats answered.
    pub allowed_chats: HashSet<i64>,
    /// Where the journal lives (`$OCG_DATA_DIR/telegram`).
    pub state_dir: PathBuf,
    /// How long one `getUpdates` waits on Telegram's side.
    pub poll_timeout: Duration,
    /// First and longest wait after a failure.
    pub backoff: (Duration, Duration),
}

impl std::fmt::Debug for TelegramConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramConfig")
            .field("token", &"[redacted]")
            .field("api_url", &self.api_url)
            .field("mode", &self.mode)
            .field("allowed_chats", &self.allowed_chats)
            .field("state_dir", &self.state_dir)
            .field("poll_timeout", &self.poll_timeout)
            .finish_non_exhaustive()
    }
}

/// The default Bot API server.
pub const DEFAULT_API_URL: &str = "https://api.telegram.org";

impl TelegramConfig {
    /// Settings for `token` with the defaults: long polling, nobody allowed,
    /// journal under `state_dir`.
    pub fn new(token: Secret, state_dir: PathBuf) -> Self {
        TelegramConfig {
            token,
            api_url: DEFAULT_API_URL.into(),
            mode: TelegramMode::LongPolling,
            allowed_chats: HashSet::new(),
            state_dir,
            poll_timeout: Duration::from_secs(30),
            backoff: (Duration::from_millis(500), Duration::from_secs(60)),
        }
    }

    /// The channel's settings from `config`; `None` when `TELEGRAM_BOT_TOKEN`
    /// is unset. A malformed value is an error naming its key.
    pub fn from_config(config: &Config) -> std::result::Result<Option<Self>, GatewayError> {
        let raw = config.raw();
        let Some(token) = raw.parse("TELEGRAM_BOT_TOKEN", |v| {
            let v = v.trim();
            let valid = v.split_once(':').is_some_and(|(id, rest)| {
                !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) && !rest.is_empty()
            }) && v
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'));
            // The value is a secret: the reason must not quote it.
            valid
                .then(|| Secret::new(v))
                .ok_or_else(|| "is not a bot token (<digits>:<letters>, from @BotFather)".into())
        })?
        else {
            return Ok(None);
        };
        let mut settings = TelegramConfig::new(token, config.data_dir.join("telegram"));
        if let Some(url) = raw.parse("TELEGRAM_API_URL", ocg_core::config::parse_http_url)? {
            settings.api_url = url;
        }
        if let Some(chats) = raw.parse("TELEGRAM_ALLOWED_CHATS", |v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.parse::<i64>().map_err(|_| {
                        format!("{s:?} is not a chat id (a number such as 12345 or -100123)")
                    })
                })
                .collect::<std::result::Result<HashSet<i64>, String>>()
        })? {
            settings.allowed_chats = chats;
        }
        let mode = raw
            .parse("TELEGRAM_MODE", |v| match v.trim() {
                "long_polling" | "polling" => Ok(false),
                "webhook" => Ok(true),
                other => Err(format!("{other:?} is neither long_polling nor webhook")),
            })?
            .unwrap_or(false);
        if mode {
            let url = raw
                .parse("TELEGRAM_WEBHOOK_URL", ocg_core::config::parse_http_url)?
                .ok_or_else(|| {
                    missing_key(
                        "TELEGRAM_WEBHOOK_URL",
                        "is required when TELEGRAM_MODE=webhook",
                    )
                })?;
            let secret = raw
                .parse("TELEGRAM_WEBHOOK_SECRET", |v| {
                    let ok = (1..=256).contains(&v.len())
                        && v.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                    ok.then(|| Secret::new(v))
                        .ok_or_else(|| "must be 1-256 characters of A-Z, a-z, 0-9, _ and -".into())
                })?
                .ok_or_else(|| {
                    missing_key(
                        "TELEGRAM_WEBHOOK_SECRET",
                        "is required when TELEGRAM_MODE=webhook",
                    )
                })?;
            settings.mode = TelegramMode::Webhook { url, secret };
        }
        Ok(Some(settings))
    }

    /// The bot's numeric id (the part of the token before `:`; not secret).
    fn bot_id(&self) -> &str {
        self.token
            .expose()
            .split(':')
            .next()
            .filter(|id| !id.is_empty())
            .unwrap_or("bot")
    }
}

/// The Telegram channel (see the module docs).
pub struct TelegramChannel {
    config: TelegramConfig,
    api: BotApi,
    journal: Arc<InboundJournal>,
    allowed: Arc<AllowList>,
    pairing: Option<Arc<Pairing>>,
    board: Arc<StatusBoard>,
    /// Webhook updates for the running `run`.
    pushed: Mutex<Option<mpsc::UnboundedSender<Value>>>,
    /// Chats refused so far (each is logged once).
    refused: Refusals,
}

impl std::fmt::Debug for TelegramChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramChannel")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn core_error(failure: ApiFailure) -> Error {
    match &failure {
        ApiFailure::Transport(_) => Error::unavailable("telegram", failure.to_string()),
        ApiFailure::Refused { status, .. } if failure.is_transient() => {
            Error::unavailable("telegram", format!("{failure} (status {status})"))
        }
        ApiFailure::Refused { status, .. } => Error::Remote {
            code: format!("telegram_{status}"),
            message: failure.to_string(),
        },
    }
}

/// Marks the channel stopped (and stops taking webhook updates) when `run`
/// returns or its future is dropped.
struct StopGuard<'a>(
    &'a StatusBoard,
    &'a Mutex<Option<mpsc::UnboundedSender<Value>>>,
);

impl Drop for StopGuard<'_> {
    fn drop(&mut self) {
        self.0.set_state(ChannelState::Stopped);
        lock(self.1).take();
    }
}

impl TelegramChannel {
    /// A channel with `config`; opens (and replays) its journal.
    pub fn new(config: TelegramConfig) -> std::result::Result<Self, GatewayError> {
        let path = config
            .state_dir
            .join(format!("{}.inbound", config.bot_id()));
        let journal_error = |path: &std::path::Path| {
            let path = path.to_owned();
            move |source| GatewayError::Journal { path, source }
        };
        let journal = InboundJournal::open(&path).map_err(journal_error(&path))?;
        let old = config
            .state_dir
            .join(format!("{}.journal", config.bot_id()));
        if old.exists() {
            import_journal(&old, &journal).map_err(journal_error(&old))?;
        }
        let api = BotApi::new(&config.api_url, config.token.clone())
            .map_err(|e| GatewayError::Channel(e.to_string()))?;
        if config.allowed_chats.is_empty() {
            tracing::warn!(
                "TELEGRAM_ALLOWED_CHATS is empty: nobody is answered; refused chat ids are logged so you can add yours"
            );
        }
        let allowed = Arc::new(AllowList::new(
            "TELEGRAM_ALLOWED_CHATS",
            config.allowed_chats.iter().map(i64::to_string),
        ));
        let board = Arc::new(StatusBoard::new(
            "telegram",
            match config.mode {
                TelegramMode::LongPolling => "long_polling",
                TelegramMode::Webhook { .. } => "webhook",
            },
        ));
        Ok(TelegramChannel {
            config,
            api,
            journal: Arc::new(journal),
            allowed,
            pairing: None,
            board,
            pushed: Mutex::default(),
            refused: Refusals::default(),
        })
    }

    fn failed(&self, what: &str, error: &str) {
        tracing::warn!(channel = "telegram", "{what}: {error}");
        self.board.failed(&format!("{what}: {error}"));
    }

    fn set_state(&self, state: ChannelState) {
        self.board.set_state(state);
    }

    /// Give strangers in private chats pairing codes from `pairing`, whose
    /// approvals join this channel's allow-list (`None`: strangers get
    /// nothing).
    pub fn with_pairing(mut self, pairing: Option<Arc<Pairing>>) -> Self {
        if let Some(pairing) = &pairing {
            pairing.register("telegram", self.allowed.clone());
        }
        self.pairing = pairing;
        self
    }

    /// Whether `chat` may talk to the agent.
    fn allowed(&self, chat: i64) -> bool {
        self.allowed.contains(&chat.to_string())
    }

    /// A message from a chat not allowed: a pairing code for a stranger in
    /// a private chat (once), else a log line (once per chat).
    fn refuse(&self, message: &TgMessage, challenges: &mut Vec<OutgoingMessage>) {
        let chat = message.chat.id;
        let private = message.chat.kind.as_deref() == Some("private");
        if let (true, Some(pairing)) = (private, &self.pairing) {
            let sender = message.from.as_ref().map_or_else(
                || chat.to_string(),
                |u| {
                    let name = u.username.as_ref().map(|n| format!("@{n}"));
                    let name = name.or_else(|| u.first_name.clone()).unwrap_or_default();
                    format!("{name} ({chat})").trim().to_owned()
                },
            );
            let target = ChatTarget::chat(chat.to_string());
            challenges.extend(pairing.code_message("telegram", &chat.to_string(), &sender, target));
            return;
        }
        if self.refused.first(&chat.to_string()) {
            tracing::warn!(
                chat_id = chat,
                "Telegram chat {chat} is not in TELEGRAM_ALLOWED_CHATS: not answered (add the id to allow it)"
            );
        }
    }

    /// Whether a raw update is worth answering: a parseable message from an
    /// allowed chat. `None` when it has no `update_id` at all.
    fn classify(
        &self,
        raw: Value,
        challenges: &mut Vec<OutgoingMessage>,
    ) -> Option<(String, Option<Value>)> {
        let id = raw.get("update_id")?.as_i64()?;
        if self.journal.seen(&id.to_string()) {
            return None;
        }
        let answer = match parse_update(raw.clone()) {
            Some((_, m)) if incoming(&m).is_none() => false,
            Some((_, m)) if self.allowed(m.chat.id) => true,
            Some((_, m)) => {
                self.refuse(&m, challenges);
                false
            }
            None => false,
        };
        Some((id.to_string(), answer.then_some(raw)))
    }

    /// The offset to ask Telegram for next.
    fn next_offset(&self) -> i64 {
        self.journal
            .cursor()
            .and_then(|c| c.parse().ok())
            .unwrap_or(0)
    }

    /// Record raw updates durably; the ones to answer are returned.
    async fn record(&self, raw: Vec<Value>) -> std::io::Result<Vec<Value>> {
        // Past every update of the batch, seen before or not.
        let cursor = raw
            .iter()
            .filter_map(|u| u.get("update_id")?.as_i64())
            .max()
            .map(|id| id.saturating_add(1))
            .filter(|next| *next > self.next_offset())
            .map(|next| next.to_string());
        let mut challenges = Vec::new();
        let batch: Vec<_> = raw
            .into_iter()
            .filter_map(|u| self.classify(u, &mut challenges))
            .collect();
        let journal = self.journal.clone();
        let fresh = tokio::task::spawn_blocking(move || journal.record(batch, cursor))
            .await
            .map_err(std::io::Error::other)??;
        self.board.received(fresh.len());
        // Recorded as skipped first: a crash here never sends a code twice.
        for challenge in challenges {
            if let Err(e) = self.send(challenge).await {
                self.failed("pairing code", &e.to_string());
            }
        }
        Ok(fresh.into_iter().map(|(_, update)| update).collect())
    }

    async fn long_poll(&self, dispatcher: &mut Dispatcher) -> Result<()> {
        let (min, max) = self.config.backoff;
        let mut backoff = min;
        // Switching back from webhook mode: getUpdates fails while a webhook is set.
        loop {
            match self.api.delete_webhook().await {
                Ok(()) => break,
                Err(e) if e.is_unauthorized() => return Err(self.fatal(e)),
                Err(e) => {
                    self.failed("deleteWebhook", &e.to_string());
                    self.set_state(ChannelState::Failing);
                    tokio::time::sleep(e.retry_after().unwrap_or(backoff)).await;
                    backoff = (backoff * 2).min(max);
                }
            }
        }
        loop {
            let offset = self.next_offset();
            let started = Instant::now();
            match self.api.get_updates(offset, self.config.poll_timeout).await {
                Ok(raw) => {
                    self.set_state(ChannelState::Connected);
                    backoff = min;
                    if raw.is_empty() {
                        // A server that answers at once instead of holding
                        // the poll must not turn this into a busy loop.
                        if started.elapsed() < Duration::from_millis(50) {
                            tokio::time::sleep(min).await;
                        }
                        continue;
                    }
                    match self.record(raw).await {
                        Ok(fresh) => fresh.into_iter().for_each(|u| dispatch(dispatcher, u)),
                        Err(e) => {
                            // The offset did not move: the batch comes again.
                            self.failed("journal", &e.to_string());
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(max);
                        }
                    }
                }
                Err(e) if e.is_unauthorized() => return Err(self.fatal(e)),
                Err(e) => {
                    self.failed("getUpdates", &e.to_string());
                    self.set_state(ChannelState::Failing);
                    let wait = e.retry_after().unwrap_or(backoff);
                    tokio::time::sleep(wait).await;
                    backoff = (backoff * 2).min(max);
                }
            }
            dispatcher.reap();
        }
    }

    fn fatal(&self, failure: ApiFailure) -> Error {
        self.failed("Telegram refused the bot token", &failure.to_string());
        self.set_state(ChannelState::Failing);
        Error::InvalidInput(format!(
            "Telegram refused TELEGRAM_BOT_TOKEN ({failure}); check it with @BotFather"
        ))
    }

    async fn receive_webhooks(
        &self,
        url: &str,
        secret: &Secret,
        mut pushed: mpsc::UnboundedReceiver<Value>,
        dispatcher: &mut Dispatcher,
    ) -> Result<()> {
        let (min, max) = self.config.backoff;
        let mut backoff = min;
        loop {
            match self.api.set_webhook(url, secret).await {
                Ok(()) => break,
                Err(e) if e.is_unauthorized() => return Err(self.fatal(e)),
                Err(e) => {
                    self.failed("setWebhook", &e.to_string());
                    self.set_state(ChannelState::Failing);
                    tokio::time::sleep(e.retry_after().unwrap_or(backoff)).await;
                    backoff = (backoff * 2).min(max);
                }
            }
        }
        self.set_state(ChannelState::Connected);
        tracing::info!(channel = "telegram", %url, "webhook set");
        while let Some(update) = pushed.recv().await {
            dispatch(dispatcher, update);
            dispatcher.reap();
        }
        Ok(())
    }

    async fn deliver_piece(
        &self,
        target: &ChatTarget,
        text: &str,
        html: bool,
        reply_to: Option<&str>,
    ) -> std::result::Result<i64, ApiFailure> {
        send_retrying(
            self.config.backoff,
            || {
                self.api.send_message(
                    &target.chat_id,
                    target.thread_id.as_deref(),
                    text,
                    html,
                    reply_to,
                )
            },
            |e| self.failed("sendMessage", &e.to_string()),
        )
        .await
    }
}

/// Carry a journal of the format before the shared one (`<bot>.journal`:
/// `{"recv": update}`, `{"done"|"skip": id}`, `{"offset", "recent"}` lines)
/// over into `journal`, then remove it: updates received and not answered
/// are still answered, answered ones still never are.
fn import_journal(old: &std::path::Path, journal: &InboundJournal) -> std::io::Result<()> {
    use std::io::BufRead;
    let mut pending = std::collections::BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut offset = 0i64;
    for line in std::io::BufReader::new(std::fs::File::open(old)?).lines() {
        let Ok(record) = serde_json::from_str::<Value>(&line?) else {
            continue;
        };
        if let Some(o) = record.get("offset").and_then(Value::as_i64) {
            offset = offset.max(o);
            seen.extend(
                record["recent"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_i64),
            );
        } else if let Some(update) = record.get("recv") {
            if let Some(id) = update.get("update_id").and_then(Value::as_i64) {
                pending.insert(id, update.clone());
                seen.insert(id);
            }
        } else if let Some(id) = record
            .get("done")
            .or_else(|| record.get("skip"))
            .and_then(Value::as_i64)
        {
            pending.remove(&id);
            seen.insert(id);
        }
    }
    offset = offset.max(seen.last().map_or(0, |id| id.saturating_add(1)));
    // Pending first: a key's first appearance in a batch is the one kept.
    let batch = pending
        .iter()
        .map(|(id, update)| (id.to_string(), Some(update.clone())))
        .chain(seen.iter().map(|id| (id.to_string(), None)))
        .collect();
    journal.record(batch, Some(offset.to_string()))?;
    std::fs::remove_file(old)?;
    tracing::info!(from = %old.display(), pending = pending.len(), "Telegram journal carried over to the shared format");
    Ok(())
}

/// What the dispatcher makes of one update's JSON (its id and the message to
/// answer), and how an answer is split and formatted; for the fuzz targets.
#[cfg(fuzzing)]
pub(crate) mod fuzzing {
    use super::*;

    /// The update's id and the message it brings, as the dispatcher sees them.
    pub(crate) fn update(body: &[u8]) -> Option<(i64, IncomingMessage)> {
        let (id, message) = parse_update(serde_json::from_slice(body).ok()?)?;
        incoming(&message).map(|message| (id, message))
    }

    /// The HTML pieces an answer is sent as.
    pub(crate) fn answer(text: &str) -> Vec<String> {
        markup::split(text, MESSAGE_LIMIT)
            .iter()
            .map(|piece| markup::markdown_to_html(piece))
            .collect()
    }
}

/// A raw update's id and its message, when it has both.
fn parse_update(raw: Value) -> Option<(i64, TgMessage)> {
    let id = raw.get("update_id")?.as_i64()?;
    let message = serde_json::from_value::<Update>(raw).ok()?.message?;
    Some((id, message))
}

/// The core message for a Telegram message; `None` when there is nothing to
/// answer (a service message such as "X joined").
fn incoming(message: &TgMessage) -> Option<IncomingMessage> {
    let file = |kind, file: &api::FileRef| Attachment {
        kind,
        id: file.file_id.clone(),
        name: file.file_name.clone(),
        mime_type: file.mime_type.clone(),
        size: file.file_size,
    };
    let mut attachments = Vec::new();
    if let Some(photo) = message.photo.last() {
        attachments.push(file(AttachmentKind::Image, photo));
    }
    for (kind, item) in [
        (AttachmentKind::Audio, &message.voice),
        (AttachmentKind::Audio, &message.audio),
        (AttachmentKind::Video, &message.video),
        (AttachmentKind::Video, &message.video_note),
        (AttachmentKind::Document, &message.document),
        (AttachmentKind::Other, &message.sticker),
    ] {
        if let Some(item) = item {
            attachments.push(file(kind, item));
        }
    }
    if message.location.is_some() || message.contact.is_some() || message.poll.is_some() {
        attachments.push(Attachment {
            kind: AttachmentKind::Other,
            id: None,
            name: None,
            mime_type: None,
            size: None,
        });
    }
    let text = message
        .text
        .clone()
        .or_else(|| message.caption.clone())
        .filter(|t| !t.trim().is_empty());
    if text.is_none() && attachments.is_empty() {
        return None;
    }
    let sender = message.from.as_ref();
    Some(IncomingMessage {
        channel: "telegram".into(),
        target: ChatTarget {
            chat_id: message.chat.id.to_string(),
            thread_id: message
                .message_thread_id
                .filter(|_| message.is_topic_message)
                .map(|t| t.to_string()),
        },
        message_id: message.message_id.to_string(),
        sender: Sender {
            id: sender.map_or_else(String::new, |u| u.id.to_string()),
            display_name: sender.and_then(|u| u.first_name.clone().or_else(|| u.username.clone())),
        },
        text,
        attachments,
        reply_to: message
            .reply_to_message
            .as_ref()
            .map(|r| r.message_id.to_string()),
        edited: false,
    })
}

/// Queue a raw update that has a message to answer.
fn dispatch(dispatcher: &mut Dispatcher, raw: Value) {
    if let Some((id, message)) = parse_update(raw).and_then(|(id, m)| Some((id, incoming(&m)?))) {
        dispatcher.dispatch(id.to_string(), message);
    }
}

#[async_trait]
impl Channel for TelegramChannel {
    fn name(&self) -> &str {
        "telegram"
    }

    fn capabilities(&self) -> ChannelCapabilities {
        ChannelCapabilities {
            max_message_chars: MESSAGE_LIMIT,
            // "typing" shows for five seconds or until the next message.
            typing_refresh_ms: Some(4_000),
            edit: true,
            threads: true,
        }
    }

    async fn run(&self, handler: Arc<dyn InboundHandler>) -> Result<()> {
        self.set_state(ChannelState::Connecting);
        let _stopped = StopGuard(&self.board, &self.pushed);
        let (tx, rx) = mpsc::unbounded_channel();
        *lock(&self.pushed) = Some(tx);
        let mut dispatcher = Dispatcher::new(
            "telegram",
            handler,
            self.journal.clone(),
            self.board.clone(),
        );
        // Updates received before a restart and not answered: answer them
        // now, unless their chat was removed from the allow-list since.
        dispatcher
            .replay(|update| {
                let (_, message) = parse_update(update.clone())?;
                self.allowed(message.chat.id)
                    .then(|| incoming(&message))
                    .flatten()
            })
            .await;
        match &self.config.mode {
            TelegramMode::LongPolling => {
                drop(rx);
                lock(&self.pushed).take();
                self.long_poll(&mut dispatcher).await
            }
            TelegramMode::Webhook { url, secret } => {
                self.receive_webhooks(url, secret, rx, &mut dispatcher)
                    .await
            }
        }
    }

    async fn send(&self, message: OutgoingMessage) -> Result<SentMessage> {
        let pieces = markup::split(&message.text, MESSAGE_LIMIT);
        if pieces.is_empty() {
            return Err(Error::InvalidInput("empty message".into()));
        }
        let html = message.format == TextFormat::Markdown;
        let mut ids = Vec::with_capacity(pieces.len());
        for (n, piece) in pieces.iter().enumerate() {
            let reply_to = if n == 0 {
                message.reply_to.as_deref()
            } else {
                None
            };
            let result = if html {
                let formatted = markup::markdown_to_html(piece);
                match self
                    .deliver_piece(&message.target, &formatted, true, reply_to)
                    .await
                {
                    Err(e) if e.is_formatting() => {
                        tracing::warn!(
                            channel = "telegram",
                            "Telegram rejected the formatting ({e}); sending plain text"
                        );
                        self.deliver_piece(&message.target, piece, false, reply_to)
                            .await
                    }
                    other => other,
                }
            } else {
                self.deliver_piece(&message.target, piece, false, reply_to)
                    .await
            };
            match result {
                Ok(id) => ids.push(id.to_string()),
                Err(e) => {
                    self.failed("sendMessage", &e.to_string());
                    return Err(core_error(e));
                }
            }
        }
        self.board.sent();
        Ok(SentMessage { message_ids: ids })
    }

    async fn edit(&self, target: &ChatTarget, message_id: &str, text: &str) -> Result<()> {
        self.api
            .edit_message(&target.chat_id, message_id, text)
            .await
            .map_err(core_error)
    }

    async fn typing(&self, target: &ChatTarget) -> Result<()> {
        self.api
            .send_typing(&target.chat_id, target.thread_id.as_deref())
            .await
            .map_err(core_error)
    }

    async fn webhook(&self, request: WebhookRequest) -> Result<WebhookResponse> {
        let TelegramMode::Webhook { secret, .. } = &self.config.mode else {
            return Err(Error::NotFound(
                "the Telegram channel is in long-polling mode".into(),
            ));
        };
        let refuse = |status: u16, code: &str, message: &str| WebhookResponse {
            status,
            content_type: "application/json",
            body: serde_json::json!({"error": {"code": code, "message": message}})
                .to_string()
                .into_bytes(),
        };
        let given = request.header(SECRET_HEADER).unwrap_or_default();
        if !crate::auth::constant_time_eq(given.as_bytes(), secret.expose().as_bytes()) {
            tracing::warn!(
                channel = "telegram",
                "webhook request without the right secret refused"
            );
            return Ok(refuse(401, "unauthorized", "wrong or missing secret token"));
        }
        let Ok(update) = serde_json::from_slice::<Value>(&request.body) else {
            return Ok(refuse(400, "invalid_json", "the body is not a JSON update"));
        };
        if update.get("update_id").and_then(Value::as_i64).is_none() {
            return Ok(refuse(400, "invalid_update", "no update_id"));
        }
        match self.record(vec![update]).await {
            Ok(fresh) => {
                if let Some(tx) = lock(&self.pushed).as_ref() {
                    for update in fresh {
                        let _ = tx.send(update);
                    }
                }
                Ok(WebhookResponse::ok())
            }
            Err(e) => {
                // Telegram retries a failed delivery: nothing is lost.
                self.failed("journal", &e.to_string());
                Ok(refuse(500, "journal", "could not record the update"))
            }
        }
    }

    fn status(&self) -> ChannelStatus {
        self.board.snapshot(self.journal.pending_count())
    }
}

#[cfg(test)]
mod tests;
