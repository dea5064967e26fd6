//! Matrix, through the client-server API (v3) of any homeserver.
//!
//! - **Receiving.** `/sync` long polls with a filter (messages only); the
//!   sync token (`next_batch`) is the journal's cursor, written in the same
//!   record as the events of its batch, so a restart neither loses nor
//!   repeats a message. At the very first start the rooms' earlier history
//!   is recorded as seen, not answered.
//! - **Allow-list** (`MATRIX_ALLOWED`): user ids (`@ann:example.org`, or
//!   `@*:example.org` for everyone on a homeserver) and room ids
//!   (`!abc:example.org`: everyone in that room). Invitations from allowed
//!   users are accepted. A stranger's invitation is accepted only to give
//!   them a pairing code (then the room is left if no code can be given); a
//!   stranger writing in a room of two (a direct chat) gets a code; in
//!   larger rooms strangers get nothing and are logged once, without text.
//! - **Sessions**: one per room (`matrix:!room:server`), one per thread
//!   inside a room.
//! - **Delivery**: `m.text` with the HTML of the Markdown
//!   (`org.matrix.custom.html`) and the text as the plain fallback, split
//!   below the event size limit; replies in a thread stay in it. Each piece
//!   has its own transaction id, so a retry after a lost answer is not
//!   posted twice. Rate limits (429) wait `retry_after_ms`.
//! - **Login**: `MATRIX_ACCESS_TOKEN`, or `MATRIX_PASSWORD`, with which the
//!   channel logs in once and keeps the token (and its device) in
//!   `channels/matrix.session` (0600); a token the homeserver stops
//!   accepting is replaced by a new login.
//! - **End-to-end encryption is not supported**: an encrypted message from
//!   an allowed user gets one plain notice per room saying so
//!   (`docs/channels.md` explains the choice).

mod api;
mod sync;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ocg_core::config::{Config, Secret};
use ocg_core::{
    Channel, ChannelCapabilities, ChannelState, ChannelStatus, ChatTarget, Error, InboundHandler,
    IncomingMessage, OutgoingMessage, Result, Sender, SentMessage, TextFormat,
};
use serde_json::{Value, json};

use crate::access::{AllowList, Pairing, Refusals};
use crate::dispatch::Dispatcher;
use crate::journal::InboundJournal;
use crate::markup;
use crate::reconnect::{Ended, Reconnect, send_retrying};
use crate::settings::missing_key;
use crate::status::{StatusBoard, now_ms};
use crate::{GatewayError, lock};
use api::{ApiFailure, MatrixApi};
use sync::{Batch, Content, Invite, RoomEvent};

/// Longest piece of a reply, in UTF-16 units: with its HTML it stays well
/// below the 65,536 bytes of a Matrix event.
const PIECE_LIMIT: usize = 12_000;
/// Above this many bytes of content, a piece is sent without its HTML.
const CONTENT_BUDGET: usize = 56_000;
/// Events per room one sync returns.
const TIMELINE_LIMIT: u32 = 100;
/// The notice for an encrypted message.
const ENCRYPTED_NOTICE: &str = "I cannot read end-to-end encrypted messages. Please talk to me \
     in a room without encryption (in Element: create a room and leave \"Enable end-to-end \
     encryption\" off).";

/// How the channel logs in (`Debug` shows no secret).
#[derive(Clone, Debug)]
pub enum MatrixAuth {
    /// `MATRIX_ACCESS_TOKEN`: used as it is.
    Token(Secret),
    /// `MATRIX_PASSWORD`: logged in with once, the token kept.
    Password(Secret),
}

/// Typed settings of the Matrix channel.
#[derive(Clone)]
pub struct MatrixConfig {
    /// `MATRIX_HOMESERVER`: the client-server API's base URL.
    pub homeserver: String,
    /// `MATRIX_USER_ID`: the bot's user (`@ocg:example.org`).
    pub user_id: String,
    /// `MATRIX_ACCESS_TOKEN` or `MATRIX_PASSWORD`.
    pub auth: MatrixAuth,
    /// `MATRIX_ALLOWED`: user ids (`@*:server` for a whole homeserver) and
    /// room ids answered.
    pub allowed: Vec<String>,
    /// Where the journal and the login live (`$OCG_DATA_DIR/channels`).
    pub state_dir: PathBuf,
    /// How long one `/sync` waits on the homeserver.
    pub poll_timeout: Duration,
    /// First and longest wait after a failure.
    pub backoff: (Duration, Duration),
}

impl std::fmt::Debug for MatrixConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MatrixConfig")
            .field("homeserver", &self.homeserver)
            .field("user_id", &self.user_id)
            .field("auth", &self.auth)
            .field("allowed", &self.allowed)
            .finish_non_exhaustive()
    }
}

/// `@local:server`, `!opaque:server`: a sigil, a non-empty local part, a
/// server name.
fn is_matrix_id(id: &str, sigil: char) -> bool {
    id.strip_prefix(sigil)
        .and_then(|rest| rest.split_once(':'))
        .is_some_and(|(local, server)| {
            !local.is_empty()
                && !server.is_empty()
                && !id.contains(|c: char| c.is_whitespace() || c == ',')
        })
}

impl MatrixConfig {
    /// The channel's settings from `config`; `None` when
    /// `MATRIX_HOMESERVER` is unset. A malformed value is an error naming
    /// its key.
    pub fn from_config(config: &Config) -> std::result::Result<Option<Self>, GatewayError> {
        let raw = config.raw();
        let Some(homeserver) =
            raw.parse("MATRIX_HOMESERVER", crate::settings::parse_private_url)?
        else {
            return Ok(None);
        };
        let user_id = raw
            .parse("MATRIX_USER_ID", |v| {
                let v = v.trim();
                is_matrix_id(v, '@')
                    .then(|| v.to_owned())
                    .ok_or_else(|| format!("{v:?} is not a Matrix user id (@name:server)"))
            })?
            .ok_or_else(|| missing_key("MATRIX_USER_ID", "is required with MATRIX_HOMESERVER"))?;
        let secret = |v: &str| {
            let v = v.trim();
            // The value is a secret: the reason must not quote it.
            (!v.is_empty() && !v.contains(char::is_whitespace))
                .then(|| Secret::new(v))
                .ok_or_else(|| "must be one word without spaces".to_owned())
        };
        let token = raw.parse("MATRIX_ACCESS_TOKEN", secret)?;
        let password = raw.parse("MATRIX_PASSWORD", |v| {
            (!v.is_empty())
                .then(|| Secret::new(v))
                .ok_or_else(|| "is empty".to_owned())
        })?;
        let auth = match (token, password) {
            (Some(token), _) => MatrixAuth::Token(token),
            (None, Some(password)) => MatrixAuth::Password(password),
            (None, None) => {
                return Err(missing_key(
                    "MATRIX_ACCESS_TOKEN",
                    "or MATRIX_PASSWORD is required with MATRIX_HOMESERVER",
                ));
            }
        };
        let allowed = raw
            .parse("MATRIX_ALLOWED", |v| {
                crate::settings::list(v)
                    .map(|entry| {
                        let ok = is_matrix_id(entry, '@') || is_matrix_id(entry, '!');
                        ok.then(|| entry.to_owned()).ok_or_else(|| {
                            format!(
                                "{entry:?} is neither a user id (@name:server, @*:server) nor a room id (!id:server)"
                            )
                        })
                    })
                    .collect::<std::result::Result<Vec<_>, _>>()
            })?
            .unwrap_or_default();
        Ok(Some(MatrixConfig {
            homeserver,
            user_id,
            auth,
            allowed,
            state_dir: config.data_dir.join("channels"),
            poll_timeout: Duration::from_secs(30),
            backoff: (Duration::from_millis(500), Duration::from_secs(60)),
        }))
    }
}

/// A message to answer, as the journal keeps it: with its sender and room,
/// so the allow-list can be checked again when it is replayed.
#[derive(Debug, Clone)]
struct Received {
    message: IncomingMessage,
    sender: String,
    room: String,
}

impl Received {
    fn to_record(&self) -> Value {
        json!({"message": self.message, "sender": self.sender, "room": self.room})
    }

    fn from_record(record: &Value) -> Option<Received> {
        Some(Received {
            message: serde_json::from_value(record.get("message")?.clone()).ok()?,
            sender: record.get("sender")?.as_str()?.to_owned(),
            room: record.get("room")?.as_str()?.to_owned(),
        })
    }
}

impl From<&ApiFailure> for Ended {
    fn from(failure: &ApiFailure) -> Ended {
        Ended::Lost {
            why: failure.to_string(),
            wait: failure.retry_after(),
        }
    }
}

/// The Matrix channel (see the module docs).
pub struct MatrixChannel {
    config: MatrixConfig,
    api: MatrixApi,
    journal: Arc<InboundJournal>,
    allowed: Arc<AllowList>,
    pairing: Option<Arc<Pairing>>,
    board: Arc<StatusBoard>,
    /// Strangers logged so far (each once).
    refused: Refusals,
    /// Rooms told that encrypted messages cannot be read (each once).
    told_encrypted: Refusals,
    /// The login kept for `MATRIX_PASSWORD`.
    session_file: PathBuf,
    sequence: AtomicU64,
    /// Rooms whose "typing" is on, to turn it off after the reply.
    typing: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl std::fmt::Debug for MatrixChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MatrixChannel")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The content of one piece of a reply.
fn message_content(
    piece: &str,
    format: TextFormat,
    notice: bool,
    target: &ChatTarget,
    reply_to: Option<&str>,
) -> Value {
    let mut content = json!({
        "msgtype": if notice { "m.notice" } else { "m.text" },
        "body": piece,
    });
    if format == TextFormat::Markdown {
        let html = markup::html_line_breaks(&markup::markdown_to_html(piece));
        if html != piece && piece.len() + html.len() < CONTENT_BUDGET {
            content["format"] = json!("org.matrix.custom.html");
            content["formatted_body"] = json!(html);
        }
    }
    if let Some(thread) = &target.thread_id {
        content["m.relates_to"] = json!({
            "rel_type": "m.thread",
            "event_id": thread,
            "is_falling_back": reply_to.is_none(),
            "m.in_reply_to": {"event_id": reply_to.unwrap_or(thread)},
        });
    } else if let Some(reply_to) = reply_to {
        content["m.relates_to"] = json!({"m.in_reply_to": {"event_id": reply_to}});
    }
    content
}

impl MatrixChannel {
    /// A channel with `config`; opens (and replays) its journal.
    pub fn new(config: MatrixConfig) -> std::result::Result<Self, GatewayError> {
        let path = config.state_dir.join("matrix.inbound");
        let journal =
            InboundJournal::open(&path).map_err(|source| GatewayError::Journal { path, source })?;
        let api = MatrixApi::new(&config.homeserver).map_err(GatewayError::Channel)?;
        if config.allowed.is_empty() {
            tracing::warn!("MATRIX_ALLOWED is empty: nobody is answered except through pairing");
        }
        let allowed = Arc::new(AllowList::new("MATRIX_ALLOWED", config.allowed.clone()));
        Ok(MatrixChannel {
            session_file: config.state_dir.join("matrix.session"),
            config,
            api,
            journal: Arc::new(journal),
            allowed,
            pairing: None,
            board: Arc::new(StatusBoard::new("matrix", "sync")),
            refused: Refusals::default(),
            told_encrypted: Refusals::default(),
            sequence: AtomicU64::new(0),
            typing: std::sync::Mutex::default(),
        })
    }

    /// Give strangers pairing codes from `pairing`, whose approvals join
    /// this channel's allow-list (`None`: strangers get nothing).
    pub fn with_pairing(mut self, pairing: Option<Arc<Pairing>>) -> Self {
        if let Some(pairing) = &pairing {
            pairing.register("matrix", self.allowed.clone());
        }
        self.pairing = pairing;
        self
    }

    /// Whether `sender`, writing in `room`, may talk to the agent.
    fn allows(&self, sender: &str, room: &str) -> bool {
        self.allowed.any(|entry| {
            entry == sender
                || entry == room
                || entry
                    .strip_prefix("@*")
                    .is_some_and(|server| server.starts_with(':') && sender.ends_with(server))
        })
    }

    /// A transaction id unique across restarts.
    fn next_txn(&self) -> String {
        let n = self.sequence.fetch_add(1, Ordering::Relaxed);
        format!("ocg{}-{n}", now_ms())
    }

    /// The login kept from an earlier `MATRIX_PASSWORD` login, when it is
    /// for this user: (device id, token).
    fn saved_login(&self) -> Option<(String, Secret)> {
        let saved: Value = serde_json::from_slice(&std::fs::read(&self.session_file).ok()?).ok()?;
        (saved.get("user_id")?.as_str()? == self.config.user_id).then(|| {
            Some((
                saved.get("device_id")?.as_str()?.to_owned(),
                Secret::new(saved.get("access_token")?.as_str()?),
            ))
        })?
    }

    fn save_login(&self, login: &api::Login) {
        let saved = json!({
            "user_id": login.user_id,
            "device_id": login.device_id,
            "access_token": login.access_token.expose(),
        });
        if let Err(e) = ocg_core::config::env_file::write_private_atomic(
            &self.session_file,
            saved.to_string().as_bytes(),
        ) {
            tracing::warn!(channel = "matrix", "could not keep the login: {e}");
        }
    }

    /// Log in (or take the token) and check whose it is.
    async fn authenticate(&self) -> std::result::Result<(), Ended> {
        let password = match &self.config.auth {
            MatrixAuth::Token(token) => {
                self.api.set_token(Some(token.clone()));
                None
            }
            MatrixAuth::Password(password) => Some(password),
        };
        let mut device = None;
        if let Some(password) = password {
            match self.saved_login() {
                Some((saved_device, token)) => {
                    self.api.set_token(Some(token));
                    device = Some(saved_device);
                }
                None => self.login(password, None).await?,
            }
        }
        let user = match self.api.whoami().await {
            Ok(user) => user,
            Err(e) if e.is_unknown_token() => match password {
                // The kept token expired: log in again, on the same device.
                Some(password) => {
                    self.login(password, device.as_deref()).await?;
                    self.api.whoami().await.map_err(|e| Ended::from(&e))?
                }
                None => {
                    return Err(Ended::Fatal(Error::InvalidInput(format!(
                        "the homeserver refused MATRIX_ACCESS_TOKEN ({e})"
                    ))));
                }
            },
            Err(e) => return Err(Ended::from(&e)),
        };
        if user != self.config.user_id {
            return Err(Ended::Fatal(Error::InvalidInput(format!(
                "MATRIX_ACCESS_TOKEN belongs to {user}, not to MATRIX_USER_ID {}",
                self.config.user_id
            ))));
        }
        Ok(())
    }

    async fn login(
        &self,
        password: &Secret,
        device: Option<&str>,
    ) -> std::result::Result<(), Ended> {
        self.api.set_token(None);
        match self.api.login(&self.config.user_id, password, device).await {
            Ok(login) => {
                self.api.set_token(Some(login.access_token.clone()));
                self.save_login(&login);
                tracing::info!(channel = "matrix", user = %login.user_id, device = %login.device_id, "logged in");
                Ok(())
            }
            Err(
                e @ ApiFailure::Refused {
                    status: 401..=403, ..
                },
            ) => Err(Ended::Fatal(Error::InvalidInput(format!(
                "the homeserver refused MATRIX_USER_ID/MATRIX_PASSWORD ({e})"
            )))),
            Err(e) => Err(Ended::from(&e)),
        }
    }

    /// Log in and sync until something fails.
    async fn serve(&self, dispatcher: &mut Dispatcher, synced: &mut bool) -> Ended {
        if let Err(ended) = self.authenticate().await {
            return ended;
        }
        let filter = sync::filter(TIMELINE_LIMIT);
        loop {
            let since = self.journal.cursor();
            let started = Instant::now();
            let answer = match self
                .api
                .sync(since.as_deref(), &filter, self.config.poll_timeout)
                .await
            {
                Ok(answer) => answer,
                Err(e) if e.is_unknown_token() => {
                    if let MatrixAuth::Token(_) = self.config.auth {
                        return Ended::Fatal(Error::InvalidInput(format!(
                            "the homeserver no longer accepts MATRIX_ACCESS_TOKEN ({e})"
                        )));
                    }
                    let _ = std::fs::remove_file(&self.session_file);
                    return Ended::lost(format!("the login expired ({e})"));
                }
                Err(e) => return Ended::from(&e),
            };
            self.board.set_state(ChannelState::Connected);
            *synced = true;
            let Some(batch) = sync::read(&answer, &self.config.user_id) else {
                return Ended::lost("a sync answer without next_batch");
            };
            if let Err(e) = self.take(batch, since.is_none(), dispatcher).await {
                // The cursor did not move: the same batch comes again.
                return Ended::lost(format!("journal: {e}"));
            }
            dispatcher.reap();
            // A homeserver answering at once instead of holding the poll
            // must not turn this into a busy loop.
            if started.elapsed() < Duration::from_millis(20) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    /// Handle one sync batch: invitations, then the new messages, recorded
    /// with the batch's cursor before any is answered.
    async fn take(
        &self,
        batch: Batch,
        first_start: bool,
        dispatcher: &mut Dispatcher,
    ) -> std::io::Result<()> {
        for invite in &batch.invites {
            self.on_invite(invite).await;
        }
        for room in &batch.limited {
            if !first_start {
                tracing::warn!(
                    channel = "matrix",
                    room,
                    "more messages arrived than one sync returns: the earliest are not answered"
                );
            }
        }
        let mut records = Vec::new();
        let mut strangers = Vec::new();
        let mut encrypted = Vec::new();
        let skipped_history = if first_start { batch.events.len() } else { 0 };
        for event in batch.events {
            if self.journal.seen(&event.event_id) {
                continue;
            }
            let allowed = self.allows(&event.sender, &event.room);
            let record = match &event.content {
                _ if first_start => None,
                Content::Encrypted => {
                    if allowed && self.told_encrypted.first(&event.room) {
                        encrypted.push(event.room.clone());
                    }
                    None
                }
                Content::Text { .. } if !allowed => {
                    strangers.push(event.clone());
                    None
                }
                Content::Text { .. } => received(&event).map(|r| r.to_record()),
            };
            records.push((event.event_id, record));
        }
        if skipped_history > 0 {
            tracing::info!(
                channel = "matrix",
                count = skipped_history,
                "first start: messages sent before it are not answered"
            );
        }
        let journal = self.journal.clone();
        let cursor = Some(batch.next_batch);
        let fresh = tokio::task::spawn_blocking(move || journal.record(records, cursor))
            .await
            .map_err(std::io::Error::other)??;
        self.board.received(fresh.len());
        for (key, record) in fresh {
            if let Some(received) = Received::from_record(&record) {
                dispatcher.dispatch(key, received.message);
            }
        }
        // Recorded as seen first: a crash here never sends a code twice.
        for event in strangers {
            self.refuse(&event).await;
        }
        for room in encrypted {
            self.notice(&room, ENCRYPTED_NOTICE).await;
        }
        Ok(())
    }

    /// An invitation: accepted from allowed users; from a stranger, only to
    /// give a pairing code; else rejected.
    async fn on_invite(&self, invite: &Invite) {
        let Invite { room, inviter } = invite;
        if self.allows(inviter, room) {
            match self.api.join(room).await {
                Ok(()) => tracing::info!(channel = "matrix", room, inviter, "joined"),
                // The invitation comes again with the next sync.
                Err(e) => self.failed(&format!("joining {room}"), &e),
            }
            return;
        }
        if let Some(pairing) = &self.pairing {
            if let Err(e) = self.api.join(room).await {
                return self.failed(&format!("joining {room}"), &e);
            }
            let target = ChatTarget::chat(room.clone());
            match pairing.challenge("matrix", inviter, inviter, &target) {
                Some(text) => self.notice(room, &text).await,
                None => self.leave(room).await,
            }
            return;
        }
        if self.refused.first(inviter) {
            tracing::warn!(
                channel = "matrix",
                sender = %inviter,
                "{inviter} is not in MATRIX_ALLOWED: invitation rejected (add the user id to allow it)"
            );
        }
        self.leave(room).await;
    }

    /// A stranger's message: a pairing code in a direct chat (a room of
    /// two), else one log line per sender (never their text).
    async fn refuse(&self, event: &RoomEvent) {
        if let Some(pairing) = &self.pairing {
            match self.api.joined_members(&event.room).await {
                Ok(members) if members <= 2 => {
                    let target = ChatTarget::chat(event.room.clone());
                    if let Some(text) =
                        pairing.challenge("matrix", &event.sender, &event.sender, &target)
                    {
                        self.notice(&event.room, &text).await;
                    }
                    return;
                }
                Ok(_) => {}
                Err(e) => self.failed("joined_members", &e),
            }
        }
        if self.refused.first(&event.sender) {
            tracing::warn!(
                channel = "matrix",
                sender = %event.sender,
                "{} is not in MATRIX_ALLOWED: not answered (add the user id, or the room id, to allow it)",
                event.sender
            );
        }
    }

    async fn leave(&self, room: &str) {
        if let Err(e) = self.api.leave(room).await {
            self.failed(&format!("leaving {room}"), &e);
        }
    }

    /// Post a notice (`m.notice`: clients show it as from a bot, and bots
    /// do not answer it).
    async fn notice(&self, room: &str, text: &str) {
        let content = message_content(text, TextFormat::Plain, true, &ChatTarget::chat(room), None);
        if let Err(e) = self.post(room, &content).await {
            self.failed("sending a notice", &e);
        }
    }

    /// Send one event, retrying transient failures with the same
    /// transaction id.
    async fn post(&self, room: &str, content: &Value) -> std::result::Result<String, ApiFailure> {
        let txn = self.next_txn();
        send_retrying(
            self.config.backoff,
            || self.api.send(room, &txn, content),
            |e| tracing::warn!(channel = "matrix", "sending, retrying: {e}"),
        )
        .await
    }

    fn failed(&self, what: &str, error: &ApiFailure) {
        tracing::warn!(channel = "matrix", "{what}: {error}");
        self.board.failed(&format!("{what}: {error}"));
    }
}

/// The message to hand on for a text event.
fn received(event: &RoomEvent) -> Option<Received> {
    let Content::Text {
        body,
        reply_to,
        thread,
    } = &event.content
    else {
        return None;
    };
    Some(Received {
        message: IncomingMessage {
            channel: "matrix".into(),
            target: ChatTarget {
                chat_id: event.room.clone(),
                thread_id: thread.clone(),
            },
            message_id: event.event_id.clone(),
            sender: Sender {
                id: event.sender.clone(),
                display_name: None,
            },
            text: Some(body.clone()),
            attachments: Vec::new(),
            reply_to: reply_to.clone(),
            edited: false,
        },
        sender: event.sender.clone(),
        room: event.room.clone(),
    })
}

fn core_error(failure: ApiFailure) -> Error {
    match &failure {
        _ if failure.is_transient() => Error::unavailable("matrix", failure.to_string()),
        ApiFailure::Refused { status, .. } => Error::Remote {
            code: format!("matrix_{status}"),
            message: failure.to_string(),
        },
        ApiFailure::Transport(_) => Error::unavailable("matrix", failure.to_string()),
    }
}

#[async_trait]
impl Channel for MatrixChannel {
    fn name(&self) -> &str {
        "matrix"
    }

    fn capabilities(&self) -> ChannelCapabilities {
        ChannelCapabilities {
            max_message_chars: PIECE_LIMIT,
            // Typing is sent with a 10 s timeout.
            typing_refresh_ms: Some(8_000),
            edit: false,
            threads: true,
        }
    }

    async fn run(&self, handler: Arc<dyn InboundHandler>) -> Result<()> {
        self.board.set_state(ChannelState::Connecting);
        let mut dispatcher =
            Dispatcher::new("matrix", handler, self.journal.clone(), self.board.clone());
        // Asked again: the allow-list may have changed since.
        dispatcher
            .replay(|record| {
                let received = Received::from_record(record)?;
                self.allows(&received.sender, &received.room)
                    .then_some(received.message)
            })
            .await;
        let mut reconnect = Reconnect::new("matrix", self.config.backoff);
        loop {
            let mut healthy = false;
            let ended = self.serve(&mut dispatcher, &mut healthy).await;
            reconnect.after(&self.board, ended, healthy).await?;
        }
    }

    async fn send(&self, message: OutgoingMessage) -> Result<SentMessage> {
        let room = &message.target.chat_id;
        let pieces = markup::split(&message.text, PIECE_LIMIT);
        if pieces.is_empty() {
            return Err(Error::InvalidInput("empty message".into()));
        }
        let mut ids = Vec::with_capacity(pieces.len());
        for (n, piece) in pieces.iter().enumerate() {
            let reply_to = message.reply_to.as_deref().filter(|_| n == 0);
            let content = message_content(piece, message.format, false, &message.target, reply_to);
            match self.post(room, &content).await {
                Ok(id) => ids.push(id),
                Err(e) => {
                    self.failed("sending", &e);
                    return Err(core_error(e));
                }
            }
        }
        if lock(&self.typing).remove(room) {
            let _ = self.api.typing(room, &self.config.user_id, false).await;
        }
        self.board.sent();
        Ok(SentMessage { message_ids: ids })
    }

    async fn typing(&self, target: &ChatTarget) -> Result<()> {
        lock(&self.typing).insert(target.chat_id.clone());
        self.api
            .typing(&target.chat_id, &self.config.user_id, true)
            .await
            .map_err(core_error)
    }

    fn status(&self) -> ChannelStatus {
        self.board.snapshot(self.journal.pending_count())
    }
}

#[cfg(test)]
mod tests;
