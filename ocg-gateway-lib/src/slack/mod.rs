//! Slack, through Socket Mode or the Events API, and the Web API.
//!
//! - **Receiving.** Socket Mode (`SLACK_APP_TOKEN`): `apps.connections.open`
//!   gives a WebSocket URL; each envelope is recorded and then acknowledged
//!   with its `envelope_id` (well within Slack's 3 seconds); a `disconnect`
//!   (Slack refreshes connections every few hours) opens a new connection
//!   at once; a silent socket is pinged and dropped. Or the Events API over
//!   HTTP (`SLACK_SIGNING_SECRET` without an app token): Slack posts to
//!   `POST /channels/slack/webhook`, and every request's signature (the
//!   HMAC-SHA256 of `v0:<timestamp>:<body>`) and timestamp (within five
//!   minutes) are checked before anything in it is read; the URL check
//!   (`url_verification`) is answered.
//! - **Exactly once, as far as possible.** Each message is recorded in the
//!   journal by its channel and `ts` before it is acknowledged, and marked
//!   done after the reply: a redelivered envelope or a retried request is
//!   answered once, and a restart answers what was left.
//! - **Who is answered.** Direct messages (`message` events in an `im`) and
//!   mentions of the bot in channels (`app_mention`), from senders
//!   `SLACK_ALLOWED` allows (user ids, or channel ids for everyone in a
//!   channel). A stranger's direct message gets a pairing code; strangers
//!   in channels are logged once. Messages of bots (this one included) and
//!   edits are not answered.
//! - **Sessions**: one per DM or channel, one per thread; replies in a
//!   thread stay in it (`thread_ts`).
//! - **Sending.** `chat.postMessage` with the Markdown as mrkdwn in a
//!   section block and the text as the plain fallback, split below the
//!   block's 3,000 characters; 429s wait `Retry-After`. Slack has no typing
//!   indicator for bots: an :eyes: reaction on the message being answered
//!   shows the bot is at work, and goes when the reply is posted.

mod api;
mod socket;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use hmac::{Hmac, Mac};
use ocg_core::config::{Config, Secret};
use ocg_core::{
    Attachment, AttachmentKind, Channel, ChannelCapabilities, ChannelState, ChannelStatus,
    ChatTarget, Error, InboundHandler, IncomingMessage, OutgoingMessage, Result, Sender,
    SentMessage, TextFormat, WebhookRequest, WebhookResponse,
};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::access::{AllowList, Pairing, Refusals};
use crate::dispatch::Dispatcher;
use crate::journal::InboundJournal;
use crate::reconnect::{Ended, Reconnect};
use crate::status::StatusBoard;
use crate::{GatewayError, lock, markup};
use api::{ApiFailure, Identity, WebApi};

/// Longest piece of a reply: a section block holds 3,000 characters, and
/// mrkdwn can be a little longer than the Markdown it comes from.
const PIECE_LIMIT: usize = 2_800;
/// A section block's limit on its text.
const SECTION_LIMIT: usize = 3_000;
/// How old a signed request may be.
pub const REPLAY_WINDOW_SECS: u64 = 300;
/// The reaction that stands for "typing".
const WORKING_REACTION: &str = "eyes";
/// The default Web API base.
pub const DEFAULT_API_URL: &str = "https://slack.com/api";

/// How the channel receives events.
#[derive(Clone)]
pub enum SlackMode {
    /// Socket Mode, with the app-level token (`xapp-…`).
    Socket {
        /// `SLACK_APP_TOKEN`.
        app_token: Secret,
    },
    /// The Events API over HTTP, signed with the signing secret.
    Events {
        /// `SLACK_SIGNING_SECRET`.
        signing_secret: Secret,
    },
}

impl std::fmt::Debug for SlackMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SlackMode::Socket { .. } => "Socket",
            SlackMode::Events { .. } => "Events",
        })
    }
}

/// Typed settings of the Slack channel.
#[derive(Clone)]
pub struct SlackConfig {
    /// `SLACK_BOT_TOKEN` (`xoxb-…`).
    pub bot_token: Secret,
    /// Socket Mode or the Events API.
    pub mode: SlackMode,
    /// `SLACK_API_URL`.
    pub api_url: String,
    /// `SLACK_ALLOWED`: user ids and channel ids.
    pub allowed: Vec<String>,
    /// Where the journal lives (`$OCG_DATA_DIR/channels`).
    pub state_dir: PathBuf,
    /// First and longest wait after a failure.
    pub backoff: (Duration, Duration),
}

impl std::fmt::Debug for SlackConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackConfig")
            .field("mode", &self.mode)
            .field("api_url", &self.api_url)
            .field("allowed", &self.allowed)
            .finish_non_exhaustive()
    }
}

/// A token of the given prefix: `xoxb-…`, `xapp-…`.
fn token(prefix: &'static str) -> impl Fn(&str) -> std::result::Result<Secret, String> {
    move |v| {
        let v = v.trim();
        // The value is a secret: the reason must not quote it.
        let ok = v.starts_with(prefix)
            && v.len() > prefix.len() + 8
            && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        ok.then(|| Secret::new(v)).ok_or_else(|| {
            format!("is not a {prefix}… token (your app's settings at api.slack.com/apps)")
        })
    }
}

impl SlackConfig {
    /// The channel's settings from `config`; `None` when `SLACK_BOT_TOKEN`
    /// is unset. A malformed value is an error naming its key.
    pub fn from_config(config: &Config) -> std::result::Result<Option<Self>, GatewayError> {
        let raw = config.raw();
        let Some(bot_token) = raw.parse("SLACK_BOT_TOKEN", token("xoxb-"))? else {
            return Ok(None);
        };
        let app_token = raw.parse("SLACK_APP_TOKEN", token("xapp-"))?;
        let signing_secret = raw.parse("SLACK_SIGNING_SECRET", |v| {
            let v = v.trim();
            (v.len() >= 16 && v.bytes().all(|b| b.is_ascii_alphanumeric()))
                .then(|| Secret::new(v))
                .ok_or_else(|| "is not a signing secret (Basic Information of your app)".to_owned())
        })?;
        let mode = match (app_token, signing_secret) {
            (Some(app_token), _) => SlackMode::Socket { app_token },
            (None, Some(signing_secret)) => SlackMode::Events { signing_secret },
            (None, None) => {
                return Err(crate::settings::missing_key(
                    "SLACK_APP_TOKEN",
                    "(Socket Mode) or SLACK_SIGNING_SECRET (Events API) is required with SLACK_BOT_TOKEN",
                ));
            }
        };
        let api_url = raw
            .parse("SLACK_API_URL", crate::settings::parse_private_url)?
            .unwrap_or_else(|| DEFAULT_API_URL.into());
        let allowed = raw
            .parse("SLACK_ALLOWED", |v| {
                crate::settings::list(v)
                    .map(|entry| {
                        let ok = entry.len() >= 3
                            && entry.starts_with(['U', 'W', 'C', 'G', 'D'])
                            && entry
                                .bytes()
                                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
                        ok.then(|| entry.to_owned()).ok_or_else(|| {
                            format!(
                                "{entry:?} is neither a user id (U…) nor a channel id (C…, G…, D…)"
                            )
                        })
                    })
                    .collect::<std::result::Result<Vec<_>, _>>()
            })?
            .unwrap_or_default();
        Ok(Some(SlackConfig {
            bot_token,
            mode,
            api_url,
            allowed,
            state_dir: config.data_dir.join("channels"),
            backoff: (Duration::from_millis(500), Duration::from_secs(60)),
        }))
    }
}

/// An event as far as read: `message` or `app_mention`.
#[derive(Debug, Clone, Deserialize)]
struct SlackEvent {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    subtype: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    bot_id: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    channel_type: Option<String>,
    #[serde(default)]
    ts: Option<String>,
    #[serde(default)]
    thread_ts: Option<String>,
    #[serde(default)]
    files: Vec<SlackFile>,
}

#[derive(Debug, Clone, Deserialize)]
struct SlackFile {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    mimetype: Option<String>,
    #[serde(default)]
    size: Option<u64>,
}

/// A message to answer, with who sent it where (asked again on replay).
#[derive(Debug, Clone)]
struct Received {
    message: IncomingMessage,
    sender: String,
    channel: String,
}

impl Received {
    fn to_record(&self) -> Value {
        json!({"message": self.message, "sender": self.sender, "channel": self.channel})
    }

    fn from_record(record: &Value) -> Option<Received> {
        Some(Received {
            message: serde_json::from_value(record.get("message")?.clone()).ok()?,
            sender: record.get("sender")?.as_str()?.to_owned(),
            channel: record.get("channel")?.as_str()?.to_owned(),
        })
    }
}

/// The Slack channel (see the module docs).
pub struct SlackChannel {
    config: SlackConfig,
    api: WebApi,
    journal: Arc<InboundJournal>,
    allowed: Arc<AllowList>,
    pairing: Option<Arc<Pairing>>,
    board: Arc<StatusBoard>,
    refused: Refusals,
    identity: Mutex<Option<Identity>>,
    /// Events API requests recorded, for the running `run` to dispatch.
    pushed: Mutex<Option<mpsc::UnboundedSender<Taken>>>,
    /// The latest message of each conversation not reacted to yet.
    latest: Mutex<HashMap<String, String>>,
    /// The message of each conversation that carries the reaction now.
    reacted: Mutex<HashMap<String, String>>,
    /// Whether reactions work (the `reactions:write` scope is granted).
    reactions: AtomicBool,
}

impl std::fmt::Debug for SlackChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackChannel")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The key of a conversation (a channel, or a thread in it).
fn conversation(target: &ChatTarget) -> String {
    match &target.thread_id {
        Some(thread) => format!("{}/{thread}", target.chat_id),
        None => target.chat_id.clone(),
    }
}

impl SlackChannel {
    /// A channel with `config`; opens its journal.
    pub fn new(config: SlackConfig) -> std::result::Result<Self, GatewayError> {
        let path = config.state_dir.join("slack.inbound");
        let journal =
            InboundJournal::open(&path).map_err(|source| GatewayError::Journal { path, source })?;
        let api = WebApi::new(&config.api_url).map_err(GatewayError::Channel)?;
        if config.allowed.is_empty() {
            tracing::warn!("SLACK_ALLOWED is empty: nobody is answered except through pairing");
        }
        let allowed = Arc::new(AllowList::new("SLACK_ALLOWED", config.allowed.clone()));
        let mode = match config.mode {
            SlackMode::Socket { .. } => "socket_mode",
            SlackMode::Events { .. } => "events_api",
        };
        Ok(SlackChannel {
            config,
            api,
            journal: Arc::new(journal),
            allowed,
            pairing: None,
            board: Arc::new(StatusBoard::new("slack", mode)),
            refused: Refusals::default(),
            identity: Mutex::default(),
            pushed: Mutex::default(),
            latest: Mutex::default(),
            reacted: Mutex::default(),
            reactions: AtomicBool::new(true),
        })
    }

    /// Give strangers writing directly to the bot pairing codes from
    /// `pairing`, whose approvals join this channel's allow-list.
    pub fn with_pairing(mut self, pairing: Option<Arc<Pairing>>) -> Self {
        if let Some(pairing) = &pairing {
            pairing.register("slack", self.allowed.clone());
        }
        self.pairing = pairing;
        self
    }

    fn allows(&self, sender: &str, channel: &str) -> bool {
        self.allowed
            .any(|entry| entry == sender || entry == channel)
    }

    /// Who the bot is (`auth.test`, once).
    async fn identify(&self) -> std::result::Result<Identity, Ended> {
        if let Some(identity) = lock(&self.identity).clone() {
            return Ok(identity);
        }
        match self.api.auth_test(&self.config.bot_token).await {
            Ok(identity) => {
                *lock(&self.identity) = Some(identity.clone());
                Ok(identity)
            }
            Err(e) if e.is_unauthorized() => Err(Ended::Fatal(Error::InvalidInput(format!(
                "Slack refused SLACK_BOT_TOKEN ({e}): copy the Bot User OAuth Token from your app's OAuth & Permissions page"
            )))),
            Err(e) => Err(Ended::Lost {
                why: format!("auth.test: {e}"),
                wait: e.retry_after(),
            }),
        }
    }

    /// Take an event callback's payload (`{"type": "event_callback",
    /// "event": …}`): record the message it brings. What is to be done with
    /// it is returned, to be done once the event is acknowledged (Slack
    /// waits three seconds at most).
    async fn take(&self, payload: &Value) -> std::io::Result<Taken> {
        let Some(identity) = lock(&self.identity).clone() else {
            return Ok(Taken::Nothing);
        };
        let Some(event) = payload
            .get("event")
            .and_then(|e| serde_json::from_value::<SlackEvent>(e.clone()).ok())
        else {
            return Ok(Taken::Nothing);
        };
        let Some(Found {
            key,
            received,
            direct,
        }) = answerable(&event, &identity)
        else {
            return Ok(Taken::Nothing);
        };
        if self.journal.seen(&key) {
            return Ok(Taken::Nothing);
        }
        let allowed = self.allows(&received.sender, &received.channel);
        let record = allowed.then(|| received.to_record());
        let journal = self.journal.clone();
        let batch = vec![(key, record)];
        let fresh = tokio::task::spawn_blocking(move || journal.record(batch, None))
            .await
            .map_err(std::io::Error::other)??;
        self.board.received(fresh.len());
        if !allowed {
            return Ok(Taken::Stranger(received, direct));
        }
        Ok(match fresh.into_iter().next() {
            Some((key, _)) => {
                lock(&self.latest).insert(
                    conversation(&received.message.target),
                    received.message.message_id.clone(),
                );
                Taken::Answer(key, received.message)
            }
            None => Taken::Nothing,
        })
    }

    /// Do what a recorded event calls for; a stranger's refusal is left to
    /// `refusals`, which run beside the loop (a pairing code may wait out a
    /// rate limit; acknowledgements may not).
    fn act<'a>(
        &'a self,
        taken: Taken,
        dispatcher: &mut Dispatcher,
        refusals: &mut FuturesUnordered<futures_util::future::BoxFuture<'a, ()>>,
    ) {
        match taken {
            Taken::Answer(key, message) => dispatcher.dispatch(key, message),
            Taken::Stranger(received, direct) => refusals.push(Box::pin(async move {
                self.refuse(&received, direct).await;
            })),
            Taken::Nothing => {}
        }
    }

    /// A stranger: a pairing code in a direct message, else one log line
    /// per sender (never their text).
    async fn refuse(&self, received: &Received, direct: bool) {
        if let (true, Some(pairing)) = (direct, &self.pairing) {
            let chat = received.message.target.clone();
            let shown = format!("<@{}>", received.sender);
            if let Some(code) = pairing.code_message("slack", &received.sender, &shown, chat) {
                if let Err(e) = self.send(code).await {
                    tracing::warn!(channel = "slack", "the pairing code was not sent: {e}");
                }
            }
            return;
        }
        if self.refused.first(&received.sender) {
            tracing::warn!(
                channel = "slack",
                sender = %received.sender,
                "Slack user {} is not in SLACK_ALLOWED: not answered (add the user id, or the channel id, to allow it)",
                received.sender
            );
        }
    }

    fn failed(&self, what: &str, error: &ApiFailure) {
        tracing::warn!(channel = "slack", "{what}: {error}");
        self.board.failed(&format!("{what}: {error}"));
    }

    /// Events API mode: check the bot token, then dispatch what the
    /// webhook records.
    async fn receive_events(
        &self,
        mut pushed: mpsc::UnboundedReceiver<Taken>,
        dispatcher: &mut Dispatcher,
    ) -> Result<()> {
        let mut reconnect = Reconnect::new("slack", self.config.backoff);
        while let Err(ended) = self.identify().await {
            reconnect.after(&self.board, ended, false).await?;
        }
        self.board.set_state(ChannelState::Connected);
        tracing::info!(
            channel = "slack",
            "taking events at /channels/slack/webhook"
        );
        let mut refusals = FuturesUnordered::new();
        loop {
            tokio::select! {
                Some(()) = refusals.next(), if !refusals.is_empty() => {}
                taken = pushed.recv() => match taken {
                    Some(taken) => self.act(taken, dispatcher, &mut refusals),
                    None => return Ok(()),
                },
            }
            dispatcher.reap();
        }
    }

    /// Post one piece, retrying what is transient.
    async fn post_piece(&self, body: Value) -> std::result::Result<String, ApiFailure> {
        crate::reconnect::send_retrying(
            self.config.backoff,
            || self.api.post_message(&self.config.bot_token, body.clone()),
            |e| tracing::warn!(channel = "slack", "chat.postMessage, retrying: {e}"),
        )
        .await
    }

    /// Add or remove the working reaction; a missing scope turns it off.
    async fn react(&self, add: bool, channel: &str, ts: &str) {
        if !self.reactions.load(Ordering::Relaxed) {
            return;
        }
        match self
            .api
            .reaction(&self.config.bot_token, add, channel, ts, WORKING_REACTION)
            .await
        {
            Ok(()) => {}
            Err(e) if e.is_missing_scope() => {
                self.reactions.store(false, Ordering::Relaxed);
                tracing::warn!(
                    channel = "slack",
                    "no reactions:write scope: the bot does not show that it is working (add the scope to show an :eyes: reaction)"
                );
            }
            Err(e) => tracing::debug!(channel = "slack", "reaction: {e}"),
        }
    }
}

/// What to do with a recorded event, once it is acknowledged.
#[derive(Debug)]
enum Taken {
    /// Answer the message recorded as `key`.
    Answer(String, IncomingMessage),
    /// A stranger wrote (in a direct message when `true`).
    Stranger(Received, bool),
    /// Nothing: not a message to answer, or one seen before.
    Nothing,
}

/// A message event worth recording: its journal key, the message, and
/// whether it came in a direct message.
struct Found {
    key: String,
    received: Received,
    direct: bool,
}

/// The message of an event, when it is one to answer: a direct message,
/// or a mention in a channel, from a person.
fn answerable(event: &SlackEvent, identity: &Identity) -> Option<Found> {
    let direct = match event.kind.as_str() {
        "message" => event.channel_type.as_deref() == Some("im"),
        "app_mention" => false,
        _ => return None,
    };
    // Mentions in channels come as `app_mention`; the `message` twin in
    // the channel is not answered.
    if event.kind == "message" && !direct {
        return None;
    }
    if event.bot_id.is_some()
        || event
            .subtype
            .as_deref()
            .is_some_and(|s| s != "file_share" && s != "thread_broadcast")
    {
        return None;
    }
    let user = event.user.clone()?;
    if user == identity.user_id {
        return None;
    }
    let (channel, ts) = (event.channel.clone()?, event.ts.clone()?);
    let mention = format!("<@{}>", identity.user_id);
    let text = event
        .text
        .as_deref()
        .unwrap_or_default()
        .replace(&mention, "")
        .trim()
        .to_owned();
    let attachments: Vec<Attachment> = event
        .files
        .iter()
        .map(|f| {
            let mime = f.mimetype.as_deref().unwrap_or_default();
            Attachment {
                kind: match mime.split('/').next() {
                    Some("image") => AttachmentKind::Image,
                    Some("audio") => AttachmentKind::Audio,
                    Some("video") => AttachmentKind::Video,
                    _ => AttachmentKind::Document,
                },
                id: f.id.clone(),
                name: f.name.clone(),
                mime_type: f.mimetype.clone(),
                size: f.size,
            }
        })
        .collect();
    if text.is_empty() && attachments.is_empty() {
        return None;
    }
    let message = IncomingMessage {
        channel: "slack".into(),
        target: ChatTarget {
            chat_id: channel.clone(),
            thread_id: event.thread_ts.clone(),
        },
        message_id: ts.clone(),
        sender: Sender {
            id: user.clone(),
            display_name: None,
        },
        text: (!text.is_empty()).then_some(text),
        attachments,
        reply_to: None,
        edited: false,
    };
    Some(Found {
        key: format!("{channel}/{ts}"),
        received: Received {
            message,
            sender: user,
            channel,
        },
        direct,
    })
}

/// Whether a request carries Slack's signature of its body for `secret`,
/// made within the replay window of `now` (Unix seconds).
fn signed(
    request: &WebhookRequest,
    secret: &Secret,
    now: u64,
) -> std::result::Result<(), &'static str> {
    let timestamp = request
        .header("x-slack-request-timestamp")
        .and_then(|t| t.trim().parse::<u64>().ok())
        .ok_or("no X-Slack-Request-Timestamp")?;
    if now.abs_diff(timestamp) > REPLAY_WINDOW_SECS {
        return Err("the request is older than five minutes (a replay?)");
    }
    let given = request
        .header("x-slack-signature")
        .ok_or("no X-Slack-Signature")?;
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.expose().as_bytes())
        .map_err(|_| "unusable signing secret")?;
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(&request.body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let expected = format!("v0={expected}");
    crate::auth::constant_time_eq(given.trim().as_bytes(), expected.as_bytes())
        .then_some(())
        .ok_or("the signature does not match")
}

fn core_error(failure: ApiFailure) -> Error {
    match &failure {
        _ if failure.is_transient() => Error::unavailable("slack", failure.to_string()),
        ApiFailure::Refused { error, .. } => Error::Remote {
            code: format!("slack_{error}"),
            message: failure.to_string(),
        },
        ApiFailure::Transport(_) => Error::unavailable("slack", failure.to_string()),
    }
}

/// `&`, `<` and `>` as Slack wants them in text it must not read as markup.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The `chat.postMessage` body of one piece.
fn post_body(target: &ChatTarget, piece: &str, format: TextFormat) -> Value {
    let mut body = json!({
        "channel": target.chat_id,
        "unfurl_links": false,
    });
    if let Some(thread) = &target.thread_id {
        body["thread_ts"] = json!(thread);
    }
    let mrkdwn = (format == TextFormat::Markdown).then(|| markup::markdown_to_mrkdwn(piece));
    match mrkdwn.filter(|m| m.chars().count() <= SECTION_LIMIT) {
        Some(mrkdwn) => {
            body["blocks"] =
                json!([{"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn}}]);
            // The fallback for notifications and old clients: plain text.
            body["text"] = json!(escape(piece));
            body["mrkdwn"] = json!(false);
        }
        None => {
            body["text"] = json!(escape(piece));
            body["mrkdwn"] = json!(false);
        }
    }
    body
}

fn unix_now() -> u64 {
    crate::status::now_ms() / 1000
}

#[async_trait]
impl Channel for SlackChannel {
    fn name(&self) -> &str {
        "slack"
    }

    fn capabilities(&self) -> ChannelCapabilities {
        ChannelCapabilities {
            max_message_chars: PIECE_LIMIT,
            // A reaction stays until it is removed.
            typing_refresh_ms: None,
            edit: false,
            threads: true,
        }
    }

    async fn run(&self, handler: Arc<dyn InboundHandler>) -> Result<()> {
        self.board.set_state(ChannelState::Connecting);
        let mut dispatcher =
            Dispatcher::new("slack", handler, self.journal.clone(), self.board.clone());
        // Before the replay: an event the webhook records meanwhile is not
        // left behind.
        let (tx, pushed) = mpsc::unbounded_channel();
        *lock(&self.pushed) = Some(tx);
        // Asked again: the allow-list may have changed since.
        dispatcher
            .replay(|record| {
                let received = Received::from_record(record)?;
                self.allows(&received.sender, &received.channel)
                    .then_some(received.message)
            })
            .await;
        let result = match &self.config.mode {
            SlackMode::Socket { app_token } => {
                drop(pushed);
                lock(&self.pushed).take();
                self.socket_loop(app_token, &mut dispatcher).await
            }
            SlackMode::Events { .. } => self.receive_events(pushed, &mut dispatcher).await,
        };
        lock(&self.pushed).take();
        self.board.set_state(ChannelState::Stopped);
        result
    }

    async fn send(&self, message: OutgoingMessage) -> Result<SentMessage> {
        let pieces = markup::split(&message.text, PIECE_LIMIT);
        if pieces.is_empty() {
            return Err(Error::InvalidInput("empty message".into()));
        }
        let mut ids = Vec::with_capacity(pieces.len());
        for (n, piece) in pieces.iter().enumerate() {
            let body = post_body(&message.target, piece, message.format);
            match self.post_piece(body).await {
                Ok(ts) => ids.push(ts),
                Err(e) => {
                    self.failed("chat.postMessage", &e);
                    if n > 0 {
                        // Not to be sent again whole: the first pieces are posted.
                        return Err(Error::Remote {
                            code: "slack_partial".into(),
                            message: format!("{n} of {} pieces sent, then: {e}", pieces.len()),
                        });
                    }
                    return Err(core_error(e));
                }
            }
        }
        let key = conversation(&message.target);
        let reacted = lock(&self.reacted).remove(&key);
        if let Some(ts) = reacted {
            self.react(false, &message.target.chat_id, &ts).await;
        }
        self.board.sent();
        Ok(SentMessage { message_ids: ids })
    }

    async fn typing(&self, target: &ChatTarget) -> Result<()> {
        let key = conversation(target);
        // Taken out: one reaction per message, and the map stays small.
        let Some(ts) = lock(&self.latest).remove(&key) else {
            return Ok(());
        };
        lock(&self.reacted).insert(key, ts.clone());
        self.react(true, &target.chat_id, &ts).await;
        Ok(())
    }

    async fn webhook(&self, request: WebhookRequest) -> Result<WebhookResponse> {
        let SlackMode::Events { signing_secret } = &self.config.mode else {
            return Err(Error::NotFound(
                "the Slack channel is in Socket Mode".into(),
            ));
        };
        let answer = |status: u16, body: Value| WebhookResponse {
            status,
            content_type: "application/json",
            body: body.to_string().into_bytes(),
        };
        let refuse = |status: u16, code: &str, message: &str| {
            answer(status, json!({"error": {"code": code, "message": message}}))
        };
        // Nothing of the request is read before its signature is checked.
        if let Err(why) = signed(&request, signing_secret, unix_now()) {
            tracing::warn!(
                channel = "slack",
                "an Events API request was refused: {why}"
            );
            return Ok(refuse(401, "unauthorized", why));
        }
        let Ok(payload) = serde_json::from_slice::<Value>(&request.body) else {
            return Ok(refuse(400, "invalid_json", "the body is not JSON"));
        };
        match payload.get("type").and_then(Value::as_str) {
            Some("url_verification") => {
                let challenge = payload.get("challenge").cloned().unwrap_or_default();
                Ok(answer(200, json!({"challenge": challenge})))
            }
            // Slack retries: the event comes again once the bot is known
            // (`run` asks `auth.test` at start; nothing here waits on it).
            Some("event_callback") if lock(&self.identity).is_none() => {
                Ok(refuse(503, "not_ready", "the bot token is not checked yet"))
            }
            Some("event_callback") => match self.take(&payload).await {
                Ok(taken) => {
                    // Done by `run`: the answer to Slack goes out now.
                    if let Some(tx) = lock(&self.pushed).as_ref() {
                        let _ = tx.send(taken);
                    }
                    Ok(WebhookResponse::ok())
                }
                Err(e) => {
                    // Slack retries a failed delivery: nothing is lost.
                    self.board.failed(&format!("journal: {e}"));
                    Ok(refuse(500, "journal", "could not record the event"))
                }
            },
            _ => Ok(WebhookResponse::ok()),
        }
    }

    fn status(&self) -> ChannelStatus {
        self.board.snapshot(self.journal.pending_count())
    }
}

#[cfg(test)]
mod tests;
