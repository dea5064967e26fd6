//! One IRC connection at a time: connect (TCP or TLS), register, read and
//! answer; and the loop around it that reconnects with backoff.

use std::time::{Duration, Instant};

use base64::Engine;
use ocg_core::{ChannelState, ChatTarget, Error, IncomingMessage, Result, Sender};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;

use super::proto::{self, Message};
use super::{IrcChannel, Link, Outbound};
use crate::dispatch::Dispatcher;
use crate::reconnect::{Ended, Reconnect};

/// Longest line read (tags may add up to 8,191 bytes to the 512).
const MAX_LINE: u64 = 8_192 + 512;
/// Capabilities asked for when the server offers them.
const WANTED_CAPS: &[&str] = &["message-tags", "account-tag"];

/// A message to answer, as the journal keeps it: with who sent it, so the
/// allow-list can be checked again when it is replayed after a restart.
#[derive(Debug, Clone)]
pub(super) struct Received {
    pub message: IncomingMessage,
    pub mask: String,
    pub account: Option<String>,
}

impl Received {
    fn to_record(&self) -> Value {
        json!({"message": self.message, "mask": self.mask, "account": self.account})
    }

    /// The message of a journal record; `None` for a malformed one.
    pub fn from_record(record: &Value) -> Option<Received> {
        Some(Received {
            message: serde_json::from_value(record.get("message")?.clone()).ok()?,
            mask: record.get("mask")?.as_str()?.to_owned(),
            account: record
                .get("account")
                .and_then(Value::as_str)
                .map(str::to_owned),
        })
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Aborts the writer task when the connection ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Registration and capability state of one connection.
#[derive(Debug, Default)]
struct Session {
    nick: String,
    registered: bool,
    offered: Vec<String>,
    message_tags: bool,
    pinged: bool,
}

/// `text` addressed to `nick` in a channel (`nick: hi`, `nick, hi`,
/// `@nick hi`): the rest; `None` when not addressed to it.
fn addressed(text: &str, nick: &str) -> Option<String> {
    let text = text.trim_start();
    let text = text.strip_prefix('@').unwrap_or(text);
    let head = text.get(..nick.len())?;
    if !head.eq_ignore_ascii_case(nick) {
        return None;
    }
    let rest = &text[nick.len()..];
    let rest = rest
        .strip_prefix([':', ','])
        .or_else(|| rest.strip_prefix(' '))?;
    let rest = rest.trim();
    (!rest.is_empty()).then(|| rest.to_owned())
}

impl IrcChannel {
    /// Connect, serve, and reconnect with backoff until a fatal error.
    pub(super) async fn connect_loop(&self, dispatcher: &mut Dispatcher) -> Result<()> {
        let tls = if self.config.tls {
            Some(self.tls_connector()?)
        } else {
            None
        };
        let mut reconnect = Reconnect::new("irc", self.config.backoff);
        loop {
            let started = Instant::now();
            let ended = self.session(tls.as_ref(), dispatcher).await;
            self.link.send_replace(None);
            // A minute connected counts as a good connection.
            let healthy = started.elapsed() > Duration::from_secs(60);
            reconnect.after(&self.board, ended, healthy).await?;
        }
    }

    fn tls_connector(&self) -> Result<TlsConnector> {
        let extra = self
            .config
            .tls_ca
            .as_deref()
            .map(|path| ("IRC_TLS_CA", path));
        crate::tls::connector(extra).map_err(|e| Error::InvalidInput(format!("IRC TLS: {e}")))
    }

    async fn open(
        &self,
        tls: Option<&TlsConnector>,
    ) -> std::result::Result<Box<dyn Stream>, String> {
        let (host, port) = (&self.config.host, self.config.port);
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        match tls {
            None => Ok(Box::new(tcp)),
            Some(connector) => {
                let name = rustls::pki_types::ServerName::try_from(host.clone())
                    .map_err(|e| format!("{host}: {e}"))?;
                let stream = connector
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS with {host}:{port} failed: {e}"))?;
                Ok(Box::new(stream))
            }
        }
    }

    async fn session(&self, tls: Option<&TlsConnector>, dispatcher: &mut Dispatcher) -> Ended {
        let stream = match tokio::time::timeout(Duration::from_secs(30), self.open(tls)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(why)) => return Ended::lost(why),
            Err(_) => return Ended::lost("connecting timed out after 30 s"),
        };
        let (read, write) = tokio::io::split(stream);
        let (urgent_tx, urgent_rx) = mpsc::channel::<Outbound>(64);
        let (lines_tx, lines_rx) = mpsc::channel::<Outbound>(256);
        let _writer = AbortOnDrop(tokio::spawn(writer(
            write,
            urgent_rx,
            lines_rx,
            self.config.flood,
        )));
        let urgent = |line: String| {
            // A full urgent queue means the writer is stuck: the idle check
            // ends this connection soon.
            let _ = urgent_tx.try_send(Outbound { line, ack: None });
        };
        let mut session = Session {
            nick: self.config.nick.clone(),
            ..Session::default()
        };
        urgent("CAP LS 302".into());
        if let Some(password) = &self.config.password {
            urgent(proto::line("PASS", &[password.expose()]));
        }
        urgent(proto::line("NICK", &[&session.nick]));
        urgent(proto::line(
            "USER",
            &[&session.nick, "0", "*", "OCG assistant"],
        ));

        let mut reader = BufReader::new(read);
        let mut buffer = Vec::with_capacity(1024);
        loop {
            buffer.clear();
            let mut limited = (&mut reader).take(MAX_LINE);
            let read = limited.read_until(b'\n', &mut buffer);
            let line = match tokio::time::timeout(self.config.idle, read).await {
                Err(_) if session.pinged => {
                    return Ended::lost(format!(
                        "the server was silent for {} s",
                        2 * self.config.idle.as_secs()
                    ));
                }
                Err(_) => {
                    session.pinged = true;
                    urgent("PING :ocg".into());
                    continue;
                }
                Ok(Err(e)) => return Ended::lost(format!("reading from the server: {e}")),
                Ok(Ok(0)) => return Ended::lost("the server closed the connection"),
                Ok(Ok(_)) if !buffer.ends_with(b"\n") && buffer.len() as u64 >= MAX_LINE => {
                    return Ended::lost("the server sent a line longer than 8 KiB");
                }
                Ok(Ok(_)) => String::from_utf8_lossy(&buffer).into_owned(),
            };
            session.pinged = false;
            let Some(message) = Message::parse(&line) else {
                continue;
            };
            if let Some(ended) = self
                .on_message(message, &mut session, &urgent, &lines_tx, dispatcher)
                .await
            {
                return ended;
            }
        }
    }

    /// Handle one line from the server; `Some` ends the connection.
    async fn on_message(
        &self,
        message: Message,
        session: &mut Session,
        urgent: &impl Fn(String),
        lines: &mpsc::Sender<Outbound>,
        dispatcher: &mut Dispatcher,
    ) -> Option<Ended> {
        match message.command.as_str() {
            "PING" => urgent(proto::line("PONG", &[message.param(0)])),
            "CAP" => self.on_cap(&message, session, urgent),
            "AUTHENTICATE" if message.param(0) == "+" => {
                let password = self.config.password.as_ref()?.expose().to_owned();
                let plain = format!("{0}\0{0}\0{password}", self.config.nick);
                let encoded = base64::engine::general_purpose::STANDARD.encode(plain);
                urgent(proto::line("AUTHENTICATE", &[&encoded]));
            }
            "903" => urgent("CAP END".into()),
            "904" | "905" | "906" | "908" => {
                return Some(Ended::Fatal(Error::InvalidInput(
                    "the IRC server refused the SASL login: check IRC_NICK and IRC_PASSWORD".into(),
                )));
            }
            "464" => {
                return Some(Ended::Fatal(Error::InvalidInput(
                    "the IRC server refused IRC_PASSWORD".into(),
                )));
            }
            "465" => {
                return Some(Ended::Fatal(Error::InvalidInput(
                    "the IRC server has banned this client".into(),
                )));
            }
            "432" if !session.registered => {
                return Some(Ended::Fatal(Error::InvalidInput(format!(
                    "the IRC server refuses the nick {:?} (IRC_NICK)",
                    session.nick
                ))));
            }
            "433" | "436" if !session.registered => {
                session.nick = format!("{}_", session.nick.chars().take(29).collect::<String>());
                urgent(proto::line("NICK", &[&session.nick]));
            }
            "001" => {
                session.registered = true;
                session.nick = message.param(0).to_owned();
                let me = message
                    .params
                    .last()
                    .and_then(|text| text.split_whitespace().last())
                    .filter(|who| who.contains('!') && who.contains('@'));
                // Until the server shows our host (our own JOIN), assume the
                // longest host it could give us.
                let prefix_len = me.map_or(session.nick.len() + 1 + 10 + 1 + 63, str::len);
                self.link.send_replace(Some(Link {
                    lines: lines.clone(),
                    nick: session.nick.clone(),
                    prefix_len,
                    message_tags: session.message_tags,
                }));
                self.board.set_state(ChannelState::Connected);
                tracing::info!(channel = "irc", nick = %session.nick, server = %self.config.host, "registered");
                if !self.config.channels.is_empty() {
                    urgent(proto::line("JOIN", &[&self.config.channels.join(",")]));
                }
            }
            "JOIN" | "NICK"
                if message
                    .nick()
                    .is_some_and(|n| n.eq_ignore_ascii_case(&session.nick)) =>
            {
                if message.command == "NICK" {
                    session.nick = message.param(0).to_owned();
                }
                let prefix = message.prefix.clone().unwrap_or_default();
                let nick = session.nick.clone();
                self.link.send_modify(|link| {
                    if let Some(link) = link {
                        link.nick = nick;
                        if prefix.contains('!') && message.command == "JOIN" {
                            link.prefix_len = prefix.len();
                        }
                    }
                });
            }
            "471" | "473" | "474" | "475" | "403" => {
                let why = format!(
                    "cannot join {}: {}",
                    message.param(1),
                    message.params.last().map_or("", String::as_str)
                );
                tracing::warn!(channel = "irc", "{why}");
                self.board.failed(&why);
            }
            "ERROR" => {
                return Some(Ended::lost(format!(
                    "the server closed the link: {}",
                    message.param(0)
                )));
            }
            "PRIVMSG" => self.on_privmsg(&message, session, lines, dispatcher).await,
            _ => {}
        }
        None
    }

    fn on_cap(&self, message: &Message, session: &mut Session, urgent: &impl Fn(String)) {
        match message.param(1) {
            "LS" => {
                let more = message.param(2) == "*";
                let list = message.params.last().map_or("", String::as_str);
                session.offered.extend(
                    list.split_whitespace()
                        .map(|cap| cap.split('=').next().unwrap_or(cap).to_owned()),
                );
                if more {
                    return;
                }
                let mut wanted: Vec<&str> = WANTED_CAPS
                    .iter()
                    .copied()
                    .filter(|cap| session.offered.iter().any(|o| o == cap))
                    .collect();
                if self.config.password.is_some() && session.offered.iter().any(|o| o == "sasl") {
                    wanted.push("sasl");
                }
                if wanted.is_empty() {
                    urgent("CAP END".into());
                } else {
                    urgent(proto::line("CAP", &["REQ", &wanted.join(" ")]));
                }
            }
            "ACK" => {
                let acked: Vec<&str> = message
                    .params
                    .last()
                    .map_or("", String::as_str)
                    .split_whitespace()
                    .collect();
                session.message_tags = acked.contains(&"message-tags");
                if acked.contains(&"sasl") {
                    urgent("AUTHENTICATE PLAIN".into());
                } else {
                    urgent("CAP END".into());
                }
            }
            "NAK" => urgent("CAP END".into()),
            _ => {}
        }
    }

    async fn on_privmsg(
        &self,
        message: &Message,
        session: &Session,
        lines: &mpsc::Sender<Outbound>,
        dispatcher: &mut Dispatcher,
    ) {
        let (Some(mask), Some(from)) = (message.prefix.clone(), message.nick().map(str::to_owned))
        else {
            return;
        };
        let (target, text) = (message.param(0), message.param(1));
        // Our own echo, and CTCP (ACTION, VERSION, …): not for the agent.
        if from.eq_ignore_ascii_case(&session.nick) || text.starts_with('\x01') {
            return;
        }
        let direct = target.eq_ignore_ascii_case(&session.nick);
        let text = if direct {
            text.trim().to_owned()
        } else {
            match addressed(text, &session.nick) {
                Some(text) => text,
                None => return,
            }
        };
        if text.is_empty() {
            return;
        }
        let account = message
            .tag("account")
            .filter(|a| !a.is_empty() && *a != "*")
            .map(str::to_owned);
        if !self.allows(&mask, account.as_deref()) {
            return self.refuse(direct, &from, &mask, account, lines).await;
        }
        let chat = if direct {
            from.to_lowercase()
        } else {
            target.to_lowercase()
        };
        let key = message
            .tag("msgid")
            .map_or_else(|| self.next_key(), |id| format!("msgid:{id}"));
        let received = Received {
            message: IncomingMessage {
                channel: "irc".into(),
                target: ChatTarget::chat(chat),
                message_id: key.clone(),
                sender: Sender {
                    id: mask.clone(),
                    display_name: Some(from),
                },
                text: Some(text),
                attachments: Vec::new(),
                reply_to: None,
                edited: false,
            },
            mask,
            account,
        };
        let journal = self.journal.clone();
        let record = received.to_record();
        let recorded =
            tokio::task::spawn_blocking(move || journal.record(vec![(key, Some(record))], None))
                .await
                .map_err(std::io::Error::other)
                .and_then(|r| r);
        match recorded {
            Ok(fresh) => {
                self.board.received(fresh.len());
                for (key, _) in fresh {
                    dispatcher.dispatch(key, received.message.clone());
                }
            }
            Err(e) => {
                // IRC does not redeliver: say so rather than stay silent.
                self.board.failed(&format!("journal: {e}"));
                let notice = proto::line(
                    "NOTICE",
                    &[
                        &received.message.target.chat_id,
                        "Sorry, I could not take that message in; please send it again.",
                    ],
                );
                let _ = lines.try_send(Outbound {
                    line: notice,
                    ack: None,
                });
            }
        }
        dispatcher.reap();
    }

    /// A sender not on the allow-list: a pairing code by NOTICE when they
    /// wrote directly, else one log line per sender (never their text).
    async fn refuse(
        &self,
        direct: bool,
        from: &str,
        mask: &str,
        account: Option<String>,
        lines: &mpsc::Sender<Outbound>,
    ) {
        if let (true, Some(pairing)) = (direct, &self.pairing) {
            let entry = account.map_or_else(|| mask.to_owned(), |a| format!("account:{a}"));
            if let Some(text) = pairing.challenge("irc", &entry, mask, &ChatTarget::chat(from)) {
                let budget = proto::text_budget(
                    self.link.borrow().as_ref().map_or(120, |l| l.prefix_len),
                    from,
                );
                for piece in proto::split(&text, budget) {
                    let line = proto::line("NOTICE", &[from, &piece]);
                    let _ = lines.send(Outbound { line, ack: None }).await;
                }
            }
            return;
        }
        if self.refused.first(mask) {
            tracing::warn!(
                channel = "irc",
                sender = mask,
                "{mask} is not in IRC_ALLOWED: not answered (add a mask or account:NAME to allow it)"
            );
        }
    }
}

/// Write lines as they come, urgent ones first, the others through the
/// flood limiter: `burst` at once, then one per `every`.
async fn writer(
    mut out: impl AsyncWrite + Unpin,
    mut urgent: mpsc::Receiver<Outbound>,
    mut lines: mpsc::Receiver<Outbound>,
    (burst, every): (u32, Duration),
) {
    let burst = f64::from(burst.max(1));
    let mut tokens = burst;
    let mut last = Instant::now();
    loop {
        let next = tokio::select! {
            biased;
            Some(line) = urgent.recv() => line,
            Some(line) = lines.recv() => {
                let now = Instant::now();
                tokens = (tokens + now.duration_since(last).as_secs_f64() / every.as_secs_f64()).min(burst);
                last = now;
                if tokens < 1.0 {
                    tokio::time::sleep(every.mul_f64(1.0 - tokens)).await;
                    tokens = 1.0;
                    last = Instant::now();
                }
                tokens -= 1.0;
                line
            }
            else => return,
        };
        let mut bytes = next.line.into_bytes();
        bytes.extend_from_slice(b"\r\n");
        if out.write_all(&bytes).await.is_err() || out.flush().await.is_err() {
            return;
        }
        if let Some(ack) = next.ack {
            let _ = ack.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_addressed_to_the_bot_are_recognized() {
        assert_eq!(addressed("ocg: hello", "ocg").as_deref(), Some("hello"));
        assert_eq!(
            addressed("OCG, hi there", "ocg").as_deref(),
            Some("hi there")
        );
        assert_eq!(
            addressed("@ocg what time", "ocg").as_deref(),
            Some("what time")
        );
        assert_eq!(addressed("ocgx: hello", "ocg"), None);
        assert_eq!(addressed("hello ocg", "ocg"), None);
        assert_eq!(addressed("ocg:", "ocg"), None);
        assert_eq!(addressed("é", "ocg"), None, "no panic inside a character");
    }

    #[test]
    fn journal_records_round_trip() {
        let received = Received {
            message: IncomingMessage::text("irc", "#ocg", "ann!a@h", "hi"),
            mask: "ann!a@h".into(),
            account: Some("ann".into()),
        };
        let back = Received::from_record(&received.to_record()).unwrap();
        assert_eq!(back.message, received.message);
        assert_eq!((back.mask, back.account), (received.mask, received.account));
        assert!(Received::from_record(&json!({"x": 1})).is_none());
    }

    #[tokio::test]
    async fn the_writer_keeps_to_the_flood_limit_and_lets_pongs_ahead() {
        let (client, mut server) = tokio::io::duplex(64 * 1024);
        let (urgent_tx, urgent_rx) = mpsc::channel(8);
        let (lines_tx, lines_rx) = mpsc::channel(64);
        let _task = AbortOnDrop(tokio::spawn(writer(
            client,
            urgent_rx,
            lines_rx,
            (2, Duration::from_millis(100)),
        )));
        let started = Instant::now();
        let mut acks = Vec::new();
        for n in 0..6 {
            let (ack, done) = tokio::sync::oneshot::channel();
            lines_tx
                .send(Outbound {
                    line: format!("PRIVMSG #a :{n}"),
                    ack: Some(ack),
                })
                .await
                .unwrap();
            acks.push(done);
        }
        urgent_tx
            .send(Outbound {
                line: "PONG :x".into(),
                ack: None,
            })
            .await
            .unwrap();
        for ack in acks {
            ack.await.unwrap();
        }
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(350),
            "2 at once, then 1 per 100 ms: {took:?}"
        );
        let mut text = vec![0u8; 4096];
        let n = server.read(&mut text).await.unwrap();
        let text = String::from_utf8_lossy(&text[..n]).into_owned();
        let lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 7, "{lines:?}");
        let pong = lines.iter().position(|l| *l == "PONG :x").unwrap();
        assert!(
            pong < 6,
            "the PONG did not wait behind every line: {lines:?}"
        );
        let order: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| l.starts_with("PRIVMSG"))
            .collect();
        assert_eq!(
            order,
            (0..6)
                .map(|n| format!("PRIVMSG #a :{n}"))
                .collect::<Vec<_>>()
        );
    }
}
