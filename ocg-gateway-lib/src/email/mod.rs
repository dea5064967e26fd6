//! Email: the bot reads its inbox over IMAP and answers over SMTP.
//!
//! - **Receiving.** IMAP (`EMAIL_IMAP_SERVER`, TLS on 993, `STARTTLS`
//!   elsewhere), the inbox selected, new messages found by UID and fetched
//!   without marking them read; then `IDLE` (or a `NOOP` poll where the
//!   server has no IDLE) until more arrive. The resume cursor is
//!   `UIDVALIDITY:next UID`, written with the messages of its batch; the
//!   dedupe key is the `Message-ID`. At the very first start (and when the
//!   server renumbers the mailbox) the mail already there is not answered.
//! - **Who is answered** (`EMAIL_ALLOWED`): sender addresses, or `@domain`
//!   for a whole domain. Mail that the receiving server's topmost
//!   `Authentication-Results` marks as forged (`dmarc=fail`, or SPF failing
//!   without a passing DKIM signature) is never answered; nor is mail sent
//!   by programs (`Auto-Submitted`, `Precedence: bulk|list|junk`,
//!   `List-Id`, bounces), so two robots cannot answer each other forever.
//!   A stranger gets a pairing code by return mail.
//! - **Sessions**: one per thread: `email:<address>:<first Message-ID of
//!   the thread>` (by `References`, else `In-Reply-To`).
//! - **Delivery**: one reply mail per answer, threaded (`In-Reply-To`,
//!   `References`, `Re: subject`), as `multipart/alternative` with the
//!   Markdown as text and its HTML; marked `Auto-Submitted: auto-replied`.
//!   SMTP (`EMAIL_SMTP_SERVER`): implicit TLS on 465, `STARTTLS` (required)
//!   elsewhere, authenticated with the same account.

mod imap;
mod message;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use ocg_core::config::{Config, Secret};
use ocg_core::{
    Channel, ChannelCapabilities, ChannelState, ChannelStatus, ChatTarget, Error, InboundHandler,
    IncomingMessage, OutgoingMessage, Result, Sender, SentMessage, TextFormat,
};
use serde_json::{Value, json};

use crate::access::{AllowList, Pairing, Refusals};
use crate::dispatch::Dispatcher;
use crate::journal::InboundJournal;
use crate::reconnect::{Ended, Reconnect};
use crate::settings::{host_port, is_loopback, missing_key};
use crate::status::{StatusBoard, now_ms};
use crate::{GatewayError, lock};
use imap::{Imap, ImapError, Security};
use message::{Mail, Thread};

/// Threads remembered for replies (the oldest are forgotten past this).
const MAX_THREADS: usize = 10_000;

/// Typed settings of the email channel.
#[derive(Clone)]
pub struct EmailConfig {
    /// `EMAIL_IMAP_SERVER`: host and port (default 993 with TLS, 143 without).
    pub imap: (String, u16),
    /// `EMAIL_SMTP_SERVER`: host and port (default 465 with TLS, 25 without).
    pub smtp: (String, u16),
    /// `EMAIL_USERNAME`: the account, for IMAP and SMTP.
    pub username: String,
    /// `EMAIL_PASSWORD`.
    pub password: Secret,
    /// `EMAIL_FROM`: the address replies come from (default: the user name).
    pub from: String,
    /// `EMAIL_ALLOWED`: addresses and `@domain`s answered, lower-cased.
    pub allowed: Vec<String>,
    /// `EMAIL_TLS` (default true); off only toward this machine.
    pub tls: bool,
    /// `EMAIL_TLS_CA`: extra certificate authorities (PEM) to trust.
    pub tls_ca: Option<std::path::PathBuf>,
    /// Where the journal lives (`$OCG_DATA_DIR/channels`).
    pub state_dir: std::path::PathBuf,
    /// Longest `IDLE` (or poll interval without IDLE).
    pub idle: Duration,
    /// First and longest wait before reconnecting.
    pub backoff: (Duration, Duration),
}

impl std::fmt::Debug for EmailConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailConfig")
            .field("imap", &self.imap)
            .field("smtp", &self.smtp)
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .field("from", &self.from)
            .field("allowed", &self.allowed)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

fn is_address(text: &str) -> bool {
    text.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty()
            && domain.contains('.') | (domain == "localhost")
            && !text.contains(|c: char| c.is_whitespace() || "<>,;\"".contains(c))
    })
}

impl EmailConfig {
    /// The channel's settings from `config`; `None` when
    /// `EMAIL_IMAP_SERVER` is unset. A malformed value is an error naming
    /// its key.
    pub fn from_config(config: &Config) -> std::result::Result<Option<Self>, GatewayError> {
        let raw = config.raw();
        let Some(imap) = raw.parse("EMAIL_IMAP_SERVER", |v| {
            host_port(v, "imap.example.org:993")
        })?
        else {
            return Ok(None);
        };
        let tls = raw
            .parse("EMAIL_TLS", ocg_core::config::parse_bool)?
            .unwrap_or(true);
        let smtp = raw
            .parse("EMAIL_SMTP_SERVER", |v| {
                host_port(v, "smtp.example.org:465")
            })?
            .ok_or_else(|| {
                missing_key("EMAIL_SMTP_SERVER", "is required with EMAIL_IMAP_SERVER")
            })?;
        let text = |key: &str| {
            raw.parse(key, |v| {
                let v = v.trim();
                (!v.is_empty())
                    .then(|| v.to_owned())
                    .ok_or_else(|| "is empty".to_owned())
            })
        };
        let username = text("EMAIL_USERNAME")?
            .ok_or_else(|| missing_key("EMAIL_USERNAME", "is required with EMAIL_IMAP_SERVER"))?;
        let password = raw
            .parse("EMAIL_PASSWORD", |v| {
                (!v.is_empty())
                    .then(|| Secret::new(v))
                    .ok_or_else(|| "is empty".to_owned())
            })?
            .ok_or_else(|| missing_key("EMAIL_PASSWORD", "is required with EMAIL_IMAP_SERVER"))?;
        let from = match raw.parse("EMAIL_FROM", |v| {
            let v = v.trim();
            is_address(v)
                .then(|| v.to_owned())
                .ok_or_else(|| format!("{v:?} is not an address (ocg@example.org)"))
        })? {
            Some(from) => from,
            None if is_address(&username) => username.clone(),
            None => {
                return Err(missing_key(
                    "EMAIL_FROM",
                    "is required when EMAIL_USERNAME is not an address",
                ));
            }
        };
        let allowed = raw
            .parse("EMAIL_ALLOWED", |v| {
                crate::settings::list(v)
                    .map(|entry| {
                        let entry = entry.to_ascii_lowercase();
                        let domain = entry
                            .strip_prefix('@')
                            .is_some_and(|d| d.contains('.') || d == "localhost");
                        (domain || is_address(&entry))
                            .then_some(entry.clone())
                            .ok_or_else(|| format!("{entry:?} is neither an address nor @domain"))
                    })
                    .collect::<std::result::Result<Vec<_>, _>>()
            })?
            .unwrap_or_default();
        let mut settings = EmailConfig {
            imap: (imap.0, imap.1.unwrap_or(if tls { 993 } else { 143 })),
            smtp: (smtp.0, smtp.1.unwrap_or(if tls { 465 } else { 25 })),
            username,
            password,
            from,
            allowed,
            tls,
            tls_ca: raw.parse("EMAIL_TLS_CA", ocg_core::config::parse_path)?,
            state_dir: config.data_dir.join("channels"),
            idle: Duration::from_secs(300),
            backoff: (Duration::from_secs(1), Duration::from_secs(300)),
        };
        if !tls {
            for (key, host) in [
                ("EMAIL_IMAP_SERVER", &settings.imap.0),
                ("EMAIL_SMTP_SERVER", &settings.smtp.0),
            ] {
                if !is_loopback(host) {
                    return Err(missing_key(
                        key,
                        "is another machine: EMAIL_TLS=false is only accepted toward this one (the password would travel in the clear)",
                    ));
                }
            }
        }
        settings.allowed.dedup();
        Ok(Some(settings))
    }

    fn imap_security(&self) -> Security {
        match (self.tls, self.imap.1) {
            (false, _) => Security::Plain,
            (true, 993) => Security::Tls,
            (true, _) => Security::StartTls,
        }
    }
}

/// A message to answer, as the journal keeps it.
#[derive(Debug, Clone)]
struct Received {
    message: IncomingMessage,
    from: String,
    thread: Thread,
}

impl Received {
    fn to_record(&self) -> Value {
        json!({"message": self.message, "from": self.from, "thread": self.thread})
    }

    fn from_record(record: &Value) -> Option<Received> {
        Some(Received {
            message: serde_json::from_value(record.get("message")?.clone()).ok()?,
            from: record.get("from")?.as_str()?.to_owned(),
            thread: serde_json::from_value(record.get("thread")?.clone()).ok()?,
        })
    }
}

impl From<ImapError> for Ended {
    fn from(error: ImapError) -> Self {
        Ended::lost(error.to_string())
    }
}

/// The email channel (see the module docs).
pub struct EmailChannel {
    config: EmailConfig,
    journal: Arc<InboundJournal>,
    allowed: Arc<AllowList>,
    pairing: Option<Arc<Pairing>>,
    board: Arc<StatusBoard>,
    refused: Refusals,
    smtp: AsyncSmtpTransport<Tokio1Executor>,
    tls: tokio_rustls::TlsConnector,
    /// How to answer each thread: the last message received in it.
    threads: std::sync::Mutex<HashMap<(String, Option<String>), Thread>>,
    sequence: AtomicU64,
}

impl std::fmt::Debug for EmailChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailChannel")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The SMTP client: implicit TLS on 465, STARTTLS (required) elsewhere,
/// plain only when `EMAIL_TLS=false`; authenticated with the account.
fn smtp_transport(
    config: &EmailConfig,
) -> std::result::Result<AsyncSmtpTransport<Tokio1Executor>, GatewayError> {
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    let (host, port) = &config.smtp;
    let invalid = |e: &dyn std::fmt::Display| GatewayError::Channel(format!("SMTP TLS: {e}"));
    let tls = if config.tls {
        let mut parameters = TlsParameters::builder(host.clone());
        if let Some(path) = &config.tls_ca {
            let pem = std::fs::read(path)
                .map_err(|e| invalid(&format!("EMAIL_TLS_CA {}: {e}", path.display())))?;
            let ca = Certificate::from_pem(&pem)
                .map_err(|e| invalid(&format!("EMAIL_TLS_CA {}: {e}", path.display())))?;
            parameters = parameters.add_root_certificate(ca);
        }
        let parameters = parameters.build().map_err(|e| invalid(&e))?;
        if *port == 465 {
            Tls::Wrapper(parameters)
        } else {
            Tls::Required(parameters)
        }
    } else {
        Tls::None
    };
    Ok(
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(*port)
            .tls(tls)
            .credentials(Credentials::new(
                config.username.clone(),
                config.password.expose().to_owned(),
            ))
            .timeout(Some(Duration::from_secs(60)))
            .build(),
    )
}

impl EmailChannel {
    /// A channel with `config`; opens (and replays) its journal.
    pub fn new(config: EmailConfig) -> std::result::Result<Self, GatewayError> {
        let path = config.state_dir.join("email.inbound");
        let journal =
            InboundJournal::open(&path).map_err(|source| GatewayError::Journal { path, source })?;
        let extra_ca = config.tls_ca.as_deref().map(|path| ("EMAIL_TLS_CA", path));
        let tls = crate::tls::connector(extra_ca).map_err(GatewayError::Channel)?;
        let smtp = smtp_transport(&config)?;
        if config.allowed.is_empty() {
            tracing::warn!("EMAIL_ALLOWED is empty: nobody is answered except through pairing");
        }
        let allowed = Arc::new(AllowList::new("EMAIL_ALLOWED", config.allowed.clone()));
        Ok(EmailChannel {
            config,
            journal: Arc::new(journal),
            allowed,
            pairing: None,
            board: Arc::new(StatusBoard::new("email", "imap")),
            refused: Refusals::default(),
            smtp,
            tls,
            threads: std::sync::Mutex::default(),
            sequence: AtomicU64::new(0),
        })
    }

    /// Give strangers pairing codes from `pairing`, whose approvals join
    /// this channel's allow-list (`None`: strangers get nothing).
    pub fn with_pairing(mut self, pairing: Option<Arc<Pairing>>) -> Self {
        if let Some(pairing) = &pairing {
            pairing.register("email", self.allowed.clone());
        }
        self.pairing = pairing;
        self
    }

    /// Whether mail from `address` (lower-cased) is answered.
    fn allows(&self, address: &str) -> bool {
        self.allowed.any(|entry| {
            entry.eq_ignore_ascii_case(address)
                || entry.starts_with('@')
                    && address
                        .rsplit_once('@')
                        .is_some_and(|(_, domain)| entry[1..].eq_ignore_ascii_case(domain))
        })
    }

    /// Where answers to `mail` go: its sender, in its thread.
    fn target(from: &str, thread: &Thread) -> ChatTarget {
        ChatTarget {
            chat_id: from.to_owned(),
            thread_id: thread.root().map(str::to_owned),
        }
    }

    /// Keep how to answer `target`'s thread.
    fn remember(&self, target: &ChatTarget, thread: &Thread) {
        let mut threads = lock(&self.threads);
        if threads.len() >= MAX_THREADS {
            threads.clear();
        }
        threads.insert(
            (target.chat_id.clone(), target.thread_id.clone()),
            thread.clone(),
        );
    }

    /// Connect, read new mail, wait for more; until something fails.
    async fn session(&self, dispatcher: &mut Dispatcher, connected: &mut bool) -> Ended {
        let (host, port) = &self.config.imap;
        let mut imap =
            match Imap::connect(host, *port, self.config.imap_security(), &self.tls).await {
                Ok(imap) => imap,
                Err(e) => return e.into(),
            };
        match imap
            .login(&self.config.username, &self.config.password)
            .await
        {
            Ok(()) => {}
            Err(ImapError::Refused(why)) => {
                return Ended::Fatal(Error::InvalidInput(format!(
                    "the IMAP server refused EMAIL_USERNAME/EMAIL_PASSWORD ({why})"
                )));
            }
            Err(e) => return e.into(),
        }
        let selected = match imap.select("INBOX").await {
            Ok(selected) => selected,
            Err(e) => return e.into(),
        };
        let cursor = self.journal.cursor().and_then(|c| {
            let (validity, next) = c.split_once(':')?;
            Some((validity.parse::<u32>().ok()?, next.parse::<u32>().ok()?))
        });
        let mut next = match cursor {
            Some((validity, next)) if validity == selected.uid_validity => next,
            other => {
                if other.is_some() {
                    tracing::warn!(
                        channel = "email",
                        "the server renumbered the inbox (UIDVALIDITY changed): mail already there is not answered"
                    );
                } else {
                    tracing::info!(
                        channel = "email",
                        "first start: mail already in the inbox is not answered"
                    );
                }
                selected.uid_next
            }
        };
        self.board.set_state(ChannelState::Connected);
        *connected = true;
        tracing::info!(channel = "email", server = %host, user = %self.config.username, "reading the inbox");
        loop {
            let uids = match imap.uids_from(next).await {
                Ok(uids) => uids,
                Err(e) => return e.into(),
            };
            let mut fetched = Vec::with_capacity(uids.len());
            for uid in &uids {
                match imap.fetch(*uid).await {
                    Ok(Some(raw)) => fetched.push((*uid, raw)),
                    Ok(None) => {}
                    Err(e) => return e.into(),
                }
            }
            let after = uids.last().map_or(next, |last| last.saturating_add(1));
            let cursor = format!("{}:{after}", selected.uid_validity);
            if self.journal.cursor().as_deref() != Some(cursor.as_str()) {
                if let Err(e) = self
                    .take(fetched, selected.uid_validity, cursor, dispatcher)
                    .await
                {
                    // The cursor did not move: the same mail is read again.
                    return Ended::lost(format!("journal: {e}"));
                }
            }
            next = after;
            dispatcher.reap();
            if let Err(e) = imap.wait_for_mail(self.config.idle).await {
                return e.into();
            }
        }
    }

    /// Record fetched mail with the new cursor, hand on what is to be
    /// answered, and answer strangers with a pairing code.
    async fn take(
        &self,
        fetched: Vec<(u32, Vec<u8>)>,
        validity: u32,
        cursor: String,
        dispatcher: &mut Dispatcher,
    ) -> std::io::Result<()> {
        let mut records = Vec::new();
        let mut strangers = Vec::new();
        for (uid, raw) in fetched {
            let mail = message::read(&raw);
            let key = match mail.as_ref().and_then(|m| m.thread.message_id.as_ref()) {
                Some(id) => format!("mid:{id}"),
                None => format!("uid:{validity}:{uid}"),
            };
            if self.journal.seen(&key) {
                continue;
            }
            let record = mail.and_then(|mail| self.classify(mail, &mut strangers));
            records.push((key, record));
        }
        let journal = self.journal.clone();
        let fresh = tokio::task::spawn_blocking(move || journal.record(records, Some(cursor)))
            .await
            .map_err(std::io::Error::other)??;
        self.board.received(fresh.len());
        for (key, record) in fresh {
            if let Some(received) = Received::from_record(&record) {
                self.remember(&received.message.target, &received.thread);
                dispatcher.dispatch(key, received.message);
            }
        }
        // Recorded as seen first: a crash here never sends a code twice.
        for mail in strangers {
            self.refuse(mail).await;
        }
        Ok(())
    }

    /// The record of `mail` when it is to be answered; strangers are set
    /// aside for a pairing code.
    fn classify(&self, mail: Mail, strangers: &mut Vec<Mail>) -> Option<Value> {
        if mail.from.eq_ignore_ascii_case(&self.config.from) || mail.automatic {
            return None;
        }
        if let Some(verdict) = &mail.failed_authentication {
            if self.refused.first(&format!("forged:{}", mail.from)) {
                tracing::warn!(
                    channel = "email",
                    sender = %mail.from,
                    "mail claiming to be from {} failed the server's authentication ({verdict}): not answered",
                    mail.from
                );
            }
            return None;
        }
        if !self.allows(&mail.from) {
            strangers.push(mail);
            return None;
        }
        if mail.text.is_empty() {
            return None;
        }
        let target = Self::target(&mail.from, &mail.thread);
        let received = Received {
            message: IncomingMessage {
                channel: "email".into(),
                message_id: mail.thread.message_id.clone().unwrap_or_default(),
                target,
                sender: Sender {
                    id: mail.from.clone(),
                    display_name: None,
                },
                text: Some(mail.text.clone()),
                attachments: Vec::new(),
                reply_to: mail.thread.message_id.clone(),
                edited: false,
            },
            from: mail.from,
            thread: mail.thread,
        };
        Some(received.to_record())
    }

    /// A stranger: a pairing code by return mail, else a log line (once
    /// per sender, never the text).
    async fn refuse(&self, mail: Mail) {
        let target = Self::target(&mail.from, &mail.thread);
        if let Some(pairing) = &self.pairing {
            if let Some(code) = pairing.code_message("email", &mail.from, &mail.from, target) {
                self.remember(&code.target, &mail.thread);
                if let Err(e) = self.send(code).await {
                    tracing::warn!(channel = "email", "pairing code: {e}");
                }
            }
            return;
        }
        if self.refused.first(&mail.from) {
            tracing::warn!(
                channel = "email",
                sender = %mail.from,
                "{} is not in EMAIL_ALLOWED: not answered (add the address to allow it)",
                mail.from
            );
        }
    }

    /// A new `Message-ID` for a mail we send.
    fn new_message_id(&self) -> String {
        let n = self.sequence.fetch_add(1, Ordering::Relaxed);
        let domain = self.config.from.rsplit_once('@').map_or("ocg", |(_, d)| d);
        let mut salt = [0u8; 6];
        let _ = getrandom::fill(&mut salt);
        let salt: String = salt.iter().map(|b| format!("{b:02x}")).collect();
        format!("ocg.{}.{n}.{salt}@{domain}", now_ms())
    }

    /// The reply mail for `message`, and its `Message-ID`.
    fn compose(&self, message: &OutgoingMessage) -> Result<(lettre::Message, String)> {
        let invalid = |what: &str, e: &dyn std::fmt::Display| {
            Error::InvalidInput(format!("email: {what}: {e}"))
        };
        let from: Mailbox = format!("OCG <{}>", self.config.from)
            .parse()
            .map_err(|e| invalid("EMAIL_FROM", &e))?;
        let to: Mailbox = message
            .target
            .chat_id
            .parse()
            .map_err(|e| invalid("recipient", &e))?;
        let thread = lock(&self.threads)
            .get(&(
                message.target.chat_id.clone(),
                message.target.thread_id.clone(),
            ))
            .cloned();
        let id = self.new_message_id();
        let mut builder = lettre::Message::builder()
            .from(from)
            .to(to)
            .message_id(Some(format!("<{id}>")))
            .date_now()
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("Auto-Submitted"),
                "auto-replied".into(),
            ));
        builder = match &thread {
            Some(thread) => {
                let references: Vec<String> = thread
                    .answer_references()
                    .iter()
                    .map(|r| format!("<{r}>"))
                    .collect();
                if let Some(answered) = &thread.message_id {
                    builder = builder.in_reply_to(format!("<{answered}>"));
                }
                if !references.is_empty() {
                    builder = builder.references(references.join(" "));
                }
                builder.subject(thread.answer_subject())
            }
            None => builder.subject("A message from your OCG assistant"),
        };
        let mail = match message.format {
            TextFormat::Markdown => {
                let html = format!(
                    "<!DOCTYPE html><html><body>{}</body></html>",
                    crate::markup::html_line_breaks(&crate::markup::markdown_to_html(
                        &message.text
                    ))
                );
                builder.multipart(MultiPart::alternative_plain_html(
                    message.text.clone(),
                    html,
                ))
            }
            TextFormat::Plain => builder
                .header(ContentType::TEXT_PLAIN)
                .body(message.text.clone()),
        }
        .map_err(|e| invalid("building the mail", &e))?;
        Ok((mail, id))
    }
}

#[async_trait]
impl Channel for EmailChannel {
    fn name(&self) -> &str {
        "email"
    }

    fn capabilities(&self) -> ChannelCapabilities {
        ChannelCapabilities {
            // One mail holds any answer.
            max_message_chars: 1_000_000,
            typing_refresh_ms: None,
            edit: false,
            threads: true,
        }
    }

    async fn run(&self, handler: Arc<dyn InboundHandler>) -> Result<()> {
        self.board.set_state(ChannelState::Connecting);
        let mut dispatcher =
            Dispatcher::new("email", handler, self.journal.clone(), self.board.clone());
        dispatcher
            .replay(|record| {
                let received = Received::from_record(record)?;
                if !self.allows(&received.from) {
                    return None;
                }
                self.remember(&received.message.target, &received.thread);
                Some(received.message)
            })
            .await;
        let mut reconnect = Reconnect::new("email", self.config.backoff);
        loop {
            let mut healthy = false;
            let ended = self.session(&mut dispatcher, &mut healthy).await;
            reconnect.after(&self.board, ended, healthy).await?;
        }
    }

    async fn send(&self, message: OutgoingMessage) -> Result<SentMessage> {
        if message.text.trim().is_empty() {
            return Err(Error::InvalidInput("empty message".into()));
        }
        let (mail, id) = self.compose(&message)?;
        match self.smtp.send(mail).await {
            Ok(_) => {
                self.board.sent();
                Ok(SentMessage {
                    message_ids: vec![id],
                })
            }
            Err(e) => {
                let why = format!("SMTP: {e}");
                tracing::warn!(channel = "email", "{why}");
                self.board.failed(&why);
                if e.is_permanent() {
                    Err(Error::Remote {
                        code: "email_refused".into(),
                        message: why,
                    })
                } else {
                    Err(Error::unavailable("email", why))
                }
            }
        }
    }

    fn status(&self) -> ChannelStatus {
        self.board.snapshot(self.journal.pending_count())
    }
}

#[cfg(test)]
mod tests;
