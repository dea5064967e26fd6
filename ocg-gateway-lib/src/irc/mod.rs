//! IRC: the bot joins a server as one nick, answers direct messages and
//! messages addressed to it (`ocg: hello`) in the channels it joins.
//!
//! - **Connection.** TCP or TLS (rustls, the system's roots plus
//!   `IRC_TLS_CA`), IRCv3 capability negotiation (`message-tags`,
//!   `account-tag`, `sasl` with `IRC_PASSWORD` when offered; `PASS`
//!   otherwise), nick collisions resolved by appending `_`, `PING`s
//!   answered, a silent server pinged and dropped, reconnection with
//!   backoff (1 s doubling to 60 s) that rejoins the channels.
//! - **Allow-list** (`IRC_ALLOWED`): `nick!user@host` masks with `*` and `?`,
//!   or `account:NAME`, matched against the services account the server
//!   tags a message with (`account-tag`). A nick alone can be taken by
//!   anyone, so masks should pin the host, or use accounts where the server
//!   has services. Strangers writing directly get a pairing code by NOTICE
//!   (approval adds `account:NAME` when they have an account, else their
//!   exact mask); strangers in channels get nothing.
//! - **Sessions**: `irc:<nick>` for a direct conversation, `irc:#channel`
//!   for a channel (names lower-cased: IRC compares them case-insensitively).
//! - **Delivery**: every line of a reply is one `PRIVMSG`, split so that the
//!   line the server relays (`:nick!user@host PRIVMSG target :text\r\n`) fits
//!   in 512 bytes, never inside a UTF-8 character; Markdown bold becomes IRC
//!   bold. Lines go out through a flood limiter (a burst of 5, then one every
//!   700 ms), and `PONG` goes ahead of the queue. Typing is sent as the
//!   IRCv3 `+typing` tag where the server has `message-tags`.
//! - **Durability**: each message to answer is written to the shared
//!   [`InboundJournal`] before it is handed on and marked done after the
//!   reply; messages received and not answered when the gateway stopped are
//!   answered after the restart. IRC servers do not redeliver, so there is
//!   nothing to deduplicate across a reconnection; a server's `msgid` tag,
//!   when present, is the key.

mod connection;
mod proto;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use ocg_core::config::{Config, Secret};
use ocg_core::{
    Channel, ChannelCapabilities, ChannelState, ChannelStatus, ChatTarget, Error, InboundHandler,
    OutgoingMessage, Result, SentMessage, TextFormat,
};
use tokio::sync::{mpsc, oneshot, watch};

use crate::GatewayError;
use crate::access::{AllowList, Pairing, Refusals};
use crate::dispatch::Dispatcher;
use crate::journal::InboundJournal;
use crate::status::StatusBoard;

/// Typed settings of the IRC channel.
#[derive(Clone)]
pub struct IrcConfig {
    /// `IRC_SERVER`: the host.
    pub host: String,
    /// `IRC_SERVER`: the port (default 6697 with TLS, 6667 without).
    pub port: u16,
    /// `IRC_TLS` (default true).
    pub tls: bool,
    /// `IRC_TLS_CA`: extra certificate authorities (PEM) to trust.
    pub tls_ca: Option<PathBuf>,
    /// `IRC_NICK` (default `ocg`).
    pub nick: String,
    /// `IRC_PASSWORD`: SASL PLAIN when the server offers it, else `PASS`.
    pub password: Option<Secret>,
    /// `IRC_CHANNELS`: the channels joined.
    pub channels: Vec<String>,
    /// `IRC_ALLOWED`: masks and `account:` entries answered.
    pub allowed: Vec<String>,
    /// Where the journal lives (`$OCG_DATA_DIR/channels`).
    pub state_dir: PathBuf,
    /// First and longest wait before reconnecting.
    pub backoff: (Duration, Duration),
    /// Lines sent at once, then one per interval.
    pub flood: (u32, Duration),
    /// Silence after which the server is pinged, and dropped after twice.
    pub idle: Duration,
}

impl std::fmt::Debug for IrcConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IrcConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("nick", &self.nick)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .field("channels", &self.channels)
            .field("allowed", &self.allowed)
            .finish_non_exhaustive()
    }
}

fn is_nick(nick: &str) -> bool {
    let special = |c: char| "[]\\`_^{|}".contains(c);
    (1..=30).contains(&nick.len())
        && nick
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || special(c))
        && nick
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || special(c) || c == '-')
}

impl IrcConfig {
    /// The channel's settings from `config`; `None` when `IRC_SERVER` is
    /// unset. A malformed value is an error naming its key.
    pub fn from_config(config: &Config) -> std::result::Result<Option<Self>, GatewayError> {
        let raw = config.raw();
        let Some((host, port)) = raw.parse("IRC_SERVER", |v| {
            crate::settings::host_port(v, "irc.libera.chat:6697")
        })?
        else {
            return Ok(None);
        };
        let tls = raw
            .parse("IRC_TLS", ocg_core::config::parse_bool)?
            .unwrap_or(true);
        let nick = raw
            .parse("IRC_NICK", |v| {
                let v = v.trim();
                is_nick(v).then(|| v.to_owned()).ok_or_else(|| {
                    format!("{v:?} is not an IRC nick (letters, digits, -_[]\\`^{{|}}, 30 at most)")
                })
            })?
            .unwrap_or_else(|| "ocg".into());
        let channels = raw
            .parse("IRC_CHANNELS", |v| {
                crate::settings::list(v)
                    .map(|c| {
                        let ok = c.starts_with(['#', '&'])
                            && c.len() <= 50
                            && !c.contains([' ', ',', '\x07', ':']);
                        ok.then(|| c.to_owned())
                            .ok_or_else(|| format!("{c:?} is not a channel name (#name)"))
                    })
                    .collect::<std::result::Result<Vec<_>, _>>()
            })?
            .unwrap_or_default();
        let allowed = raw
            .parse("IRC_ALLOWED", |v| {
                crate::settings::list(v)
                    .map(|entry| {
                        let account = entry
                            .strip_prefix("account:")
                            .is_some_and(|a| !a.is_empty() && !a.contains(' '));
                        let mask =
                            entry.contains('!') && entry.contains('@') && !entry.contains(' ');
                        (account || mask).then(|| entry.to_owned()).ok_or_else(|| {
                            format!("{entry:?} is neither a nick!user@host mask nor account:NAME")
                        })
                    })
                    .collect::<std::result::Result<Vec<_>, _>>()
            })?
            .unwrap_or_default();
        Ok(Some(IrcConfig {
            port: port.unwrap_or(if tls { 6697 } else { 6667 }),
            host,
            tls,
            tls_ca: raw.parse("IRC_TLS_CA", ocg_core::config::parse_path)?,
            nick,
            password: raw.parse("IRC_PASSWORD", |v| Ok::<_, String>(Secret::new(v)))?,
            channels,
            allowed,
            state_dir: config.data_dir.join("channels"),
            backoff: (Duration::from_secs(1), Duration::from_secs(60)),
            flood: (5, Duration::from_millis(700)),
            idle: Duration::from_secs(120),
        }))
    }
}

/// A line for the connection's writer; `ack` fires once it is written.
#[derive(Debug)]
struct Outbound {
    line: String,
    ack: Option<oneshot::Sender<()>>,
}

/// The live connection, as `send` and `typing` see it.
#[derive(Debug, Clone)]
struct Link {
    /// The writer's queue.
    lines: mpsc::Sender<Outbound>,
    /// Our nick now.
    nick: String,
    /// Length of `nick!user@host` as the server relays us.
    prefix_len: usize,
    /// Whether the server takes client tags (`+typing`).
    message_tags: bool,
}

/// The IRC channel (see the module docs).
pub struct IrcChannel {
    config: IrcConfig,
    journal: Arc<InboundJournal>,
    allowed: Arc<AllowList>,
    pairing: Option<Arc<Pairing>>,
    board: Arc<StatusBoard>,
    link: watch::Sender<Option<Link>>,
    sequence: AtomicU64,
    /// Strangers in channels logged so far (each once).
    refused: Refusals,
}

impl std::fmt::Debug for IrcChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IrcChannel")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl IrcChannel {
    /// A channel with `config`; opens (and replays) its journal.
    pub fn new(config: IrcConfig) -> std::result::Result<Self, GatewayError> {
        let path = config.state_dir.join("irc.inbound");
        let journal =
            InboundJournal::open(&path).map_err(|source| GatewayError::Journal { path, source })?;
        if config.allowed.is_empty() {
            tracing::warn!("IRC_ALLOWED is empty: nobody is answered except through pairing");
        }
        let allowed = Arc::new(AllowList::new("IRC_ALLOWED", config.allowed.clone()));
        Ok(IrcChannel {
            config,
            journal: Arc::new(journal),
            allowed,
            pairing: None,
            board: Arc::new(StatusBoard::new("irc", "connection")),
            link: watch::Sender::new(None),
            sequence: AtomicU64::new(0),
            refused: Refusals::default(),
        })
    }

    /// Give strangers writing directly pairing codes from `pairing`
    /// (`None`: strangers get nothing).
    pub fn with_pairing(mut self, pairing: Option<Arc<Pairing>>) -> Self {
        if let Some(pairing) = &pairing {
            pairing.register("irc", self.allowed.clone());
        }
        self.pairing = pairing;
        self
    }

    /// Whether the sender `mask` (with services `account`) may talk.
    fn allows(&self, mask: &str, account: Option<&str>) -> bool {
        self.allowed
            .any(|entry| match entry.strip_prefix("account:") {
                Some(name) => account.is_some_and(|a| a.eq_ignore_ascii_case(name)),
                None => proto::mask_matches(entry, mask),
            })
    }

    /// A key for a message without a server `msgid`: unique across restarts.
    fn next_key(&self) -> String {
        let n = self.sequence.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", crate::status::now_ms())
    }

    /// Wait up to `limit` for a registered connection.
    async fn wait_link(&self, limit: Duration) -> Result<Link> {
        let mut link = self.link.subscribe();
        let found = tokio::time::timeout(limit, link.wait_for(Option::is_some)).await;
        let not_connected = || Error::unavailable("irc", "not connected to the IRC server");
        match found {
            Ok(Ok(link)) => link.clone().ok_or_else(not_connected),
            _ => Err(not_connected()),
        }
    }

    /// Queue `line` and wait until it is written.
    async fn write(&self, link: &Link, line: String) -> Result<()> {
        let (ack, written) = oneshot::channel();
        link.lines
            .send(Outbound {
                line,
                ack: Some(ack),
            })
            .await
            .map_err(|_| Error::unavailable("irc", "the connection closed"))?;
        written.await.map_err(|_| {
            Error::unavailable("irc", "the connection closed before the line was sent")
        })
    }
}

#[async_trait]
impl Channel for IrcChannel {
    fn name(&self) -> &str {
        "irc"
    }

    fn capabilities(&self) -> ChannelCapabilities {
        ChannelCapabilities {
            // Lines are split by bytes when sent; this is what one line holds.
            max_message_chars: 400,
            // `+typing=active` lasts 6 s at the receiving client.
            typing_refresh_ms: Some(3_000),
            edit: false,
            threads: false,
        }
    }

    async fn run(&self, handler: Arc<dyn InboundHandler>) -> Result<()> {
        self.board.set_state(ChannelState::Connecting);
        let mut dispatcher =
            Dispatcher::new("irc", handler, self.journal.clone(), self.board.clone());
        // Asked again: the allow-list may have changed since.
        dispatcher
            .replay(|record| {
                let received = connection::Received::from_record(record)?;
                self.allows(&received.mask, received.account.as_deref())
                    .then_some(received.message)
            })
            .await;
        let result = self.connect_loop(&mut dispatcher).await;
        self.link.send_replace(None);
        self.board.set_state(ChannelState::Stopped);
        result
    }

    async fn send(&self, message: OutgoingMessage) -> Result<SentMessage> {
        let link = self.wait_link(Duration::from_secs(30)).await?;
        let text = match message.format {
            TextFormat::Markdown => proto::markdown_to_irc(&message.text),
            TextFormat::Plain => message.text.clone(),
        };
        let target = &message.target.chat_id;
        let pieces = proto::split(&text, proto::text_budget(link.prefix_len, target));
        if pieces.is_empty() {
            return Err(Error::InvalidInput("empty message".into()));
        }
        for piece in &pieces {
            self.write(&link, proto::line("PRIVMSG", &[target, piece]))
                .await?;
        }
        self.board.sent();
        Ok(SentMessage {
            message_ids: Vec::new(),
        })
    }

    async fn typing(&self, target: &ChatTarget) -> Result<()> {
        let Some(link) = self.link.borrow().clone() else {
            return Ok(());
        };
        if !link.message_tags {
            return Ok(());
        }
        let line = format!(
            "@+typing=active {}",
            proto::line("TAGMSG", &[&target.chat_id])
        );
        // Best effort: a typing notice is never worth waiting for.
        let _ = link.lines.try_send(Outbound { line, ack: None });
        Ok(())
    }

    fn status(&self) -> ChannelStatus {
        self.board.snapshot(self.journal.pending_count())
    }
}

#[cfg(test)]
mod tests;
