//! Chat channels in the gateway: the bridge from any [`Channel`] to the
//! agent, and the routes that show channels and take their webhooks.
//!
//! The bridge ([`ChannelBridge`]) is channel-agnostic: each chat is an agent
//! session (`<channel>:<chat_id>`), the commands `/start`, `/help`, `/new`
//! and `/reset` are answered here, a typing notice is repeated at the
//! channel's interval while the agent works, attachments the agent cannot
//! read yet are named to the user, and agent errors reach the user as a
//! short message. A new channel gets all of that by implementing
//! [`Channel`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ocg_core::{
    Agent, AttachmentKind, Channel, ChannelState, ChannelStatus, ChatRequest, Error,
    InboundHandler, IncomingMessage, OutgoingMessage, SentMessage, TextFormat, WebhookRequest,
};

use crate::ApiError;
use crate::routes::AppState;

/// The answer to `/start` and `/help`.
pub const HELP: &str = "Hi! I am your OCG assistant. Write to me and I answer.\n\n\
/new or /reset: start a fresh conversation (I forget this chat's history)\n\
/help: this message";

/// Longest agent error shown to a user, in characters.
const ERROR_CHARS: usize = 300;

/// Passes what a channel hears to the agent and sends the answers back.
pub struct ChannelBridge {
    agent: Arc<dyn Agent>,
    channel: Arc<dyn Channel>,
}

impl std::fmt::Debug for ChannelBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelBridge")
            .field("channel", &self.channel.name())
            .finish_non_exhaustive()
    }
}

impl ChannelBridge {
    /// A bridge from `channel` to `agent`.
    pub fn new(agent: Arc<dyn Agent>, channel: Arc<dyn Channel>) -> Self {
        ChannelBridge { agent, channel }
    }

    /// Run the channel with this bridge as its handler until the future is
    /// dropped or the channel fails for good.
    pub async fn run(self: Arc<Self>) -> ocg_core::Result<()> {
        let channel = self.channel.clone();
        channel.run(self).await
    }

    /// Send `text`, retrying while the platform is unreachable: a reply is
    /// never dropped because of a transient failure. A refusal (blocked bot,
    /// deleted chat) is logged and given up.
    async fn deliver(&self, message: OutgoingMessage) {
        let mut wait = Duration::from_secs(1);
        loop {
            match self.channel.send(message.clone()).await {
                Ok(_) => return,
                Err(e @ (Error::Unavailable { .. } | Error::Timeout(_))) => {
                    tracing::warn!(
                        channel = self.channel.name(),
                        "reply not sent yet, retrying: {e}"
                    );
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(60));
                }
                Err(e) => {
                    tracing::error!(
                        channel = self.channel.name(),
                        chat = %message.target.chat_id,
                        "reply refused by the platform, dropped: {e}"
                    );
                    return;
                }
            }
        }
    }

    async fn reply(&self, message: &IncomingMessage, text: String, format: TextFormat) {
        self.deliver(OutgoingMessage {
            target: message.target.clone(),
            text,
            format,
            reply_to: None,
        })
        .await;
    }

    async fn command(&self, message: &IncomingMessage, command: &str) {
        let answer = match command {
            "start" | "help" => HELP.to_owned(),
            "new" | "reset" => match self.agent.reset_session(&message.session_key()).await {
                Ok(()) | Err(Error::NotFound(_)) => {
                    "Started a new conversation: earlier messages are forgotten.".to_owned()
                }
                Err(e) => format!("Could not start a new conversation: {}", short(&e)),
            },
            other => format!("I do not know /{other}. /help lists what I understand."),
        };
        self.reply(message, answer, TextFormat::Plain).await;
    }

    /// Run the agent turn, showing "typing" until it ends.
    async fn turn(&self, message: &IncomingMessage, text: String) -> String {
        let request = ChatRequest::user(message.session_key(), text);
        let refresh = self
            .channel
            .capabilities()
            .typing_refresh_ms
            .map(Duration::from_millis);
        let typing = async {
            loop {
                if let Err(e) = self.channel.typing(&message.target).await {
                    tracing::debug!(channel = self.channel.name(), "typing notice failed: {e}");
                }
                match refresh {
                    Some(every) => tokio::time::sleep(every).await,
                    None => std::future::pending::<()>().await,
                }
            }
        };
        // Typing first, so the notice goes out before the turn starts.
        let result = tokio::select! {
            biased;
            () = typing => unreachable_typing(),
            result = self.agent.chat(request) => result,
        };
        match result {
            Ok(reply) if reply.message.content.trim().is_empty() => {
                "(The agent finished without a text answer.)".into()
            }
            Ok(reply) => reply.message.content,
            Err(e) => {
                tracing::warn!(channel = self.channel.name(), session = %message.session_key(), "agent turn failed: {e}");
                format!("Sorry, I could not answer: {}", short(&e))
            }
        }
    }
}

/// The typing loop never ends by itself; this keeps `select!` typed.
fn unreachable_typing() -> ocg_core::Result<ocg_core::ChatReply> {
    Err(Error::Cancelled)
}

/// An error as one short line for a chat user.
fn short(error: &Error) -> String {
    let text = match error {
        Error::Unavailable { .. } => "the agent is not reachable right now; try again soon".into(),
        Error::Timeout(_) => "the agent took too long".into(),
        Error::Remote { message, .. } => message.clone(),
        other => other.to_string(),
    };
    let mut short: String = text.chars().take(ERROR_CHARS).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short
}

/// What to tell the user about attachments the agent cannot read yet.
fn unsupported_note(message: &IncomingMessage) -> Option<String> {
    let mut kinds: Vec<&str> = message
        .attachments
        .iter()
        .map(|a| match a.kind {
            AttachmentKind::Image => "photos",
            AttachmentKind::Audio => "voice messages and audio",
            AttachmentKind::Video => "videos",
            AttachmentKind::Document => "files",
            AttachmentKind::Other => "this kind of message",
        })
        .collect();
    kinds.dedup();
    if kinds.is_empty() {
        return None;
    }
    let what = kinds.join(", ");
    Some(if message.text.is_some() {
        format!("I cannot read {what} yet, so I am answering your text only.")
    } else {
        format!("I cannot read {what} yet. Please send it as text.")
    })
}

#[async_trait]
impl InboundHandler for ChannelBridge {
    async fn handle(&self, message: IncomingMessage) {
        if let Some(command) = message.command() {
            return self.command(&message, &command).await;
        }
        if let Some(note) = unsupported_note(&message) {
            self.reply(&message, note, TextFormat::Plain).await;
        }
        let Some(text) = message.text.clone().filter(|t| !t.trim().is_empty()) else {
            return;
        };
        let answer = self.turn(&message, text).await;
        self.reply(&message, answer, TextFormat::Markdown).await;
    }
}

/// A channel whose keys are set but wrong: it never connects, and shows
/// why on `/api/channels`, the status page and `ocg status`, while the rest
/// of the gateway serves.
#[derive(Debug, Clone)]
pub struct MisconfiguredChannel {
    name: String,
    error: String,
}

impl MisconfiguredChannel {
    /// Channel `name`, which could not be set up because of `error` (which
    /// names the key and never holds a secret).
    pub fn new(name: impl Into<String>, error: impl Into<String>) -> Self {
        MisconfiguredChannel {
            name: name.into(),
            error: error.into(),
        }
    }
}

#[async_trait]
impl Channel for MisconfiguredChannel {
    fn name(&self) -> &str {
        &self.name
    }

    async fn run(&self, _handler: Arc<dyn InboundHandler>) -> ocg_core::Result<()> {
        Err(Error::InvalidInput(self.error.clone()))
    }

    async fn send(&self, _message: OutgoingMessage) -> ocg_core::Result<SentMessage> {
        Err(Error::InvalidInput(format!(
            "{} is not configured correctly: {}",
            self.name, self.error
        )))
    }

    fn status(&self) -> ChannelStatus {
        ChannelStatus {
            name: self.name.clone(),
            state: ChannelState::Failing,
            last_error: Some(self.error.clone()),
            ..ChannelStatus::default()
        }
    }
}

/// `GET /api/channels`: every channel's status.
pub(crate) async fn list(State(state): State<AppState>) -> Json<Vec<ChannelStatus>> {
    Json(state.channels.iter().map(|c| c.status()).collect())
}

/// `GET /api/pairing`: the senders waiting for approval.
pub(crate) async fn pairing_list(
    State(state): State<AppState>,
) -> Json<Vec<crate::access::PairingRequest>> {
    Json(
        state
            .pairing
            .as_ref()
            .map(|p| p.pending())
            .unwrap_or_default(),
    )
}

/// What approving a code tells its sender.
pub const APPROVED: &str = "You are approved: write to me any time.";

/// `POST /api/pairing/{code}/approve`: allow the sender, and tell them.
pub(crate) async fn pairing_approve(
    State(state): State<AppState>,
    Path(code): Path<String>,
) -> Result<Json<crate::access::PairingRequest>, ApiError> {
    let pairing = state.pairing.as_ref().ok_or_else(no_pairing)?;
    let request = pairing.approve(&code)?;
    if let Some(channel) = state.channels.iter().find(|c| c.name() == request.channel) {
        let notice = OutgoingMessage {
            target: request.chat.clone(),
            text: APPROVED.into(),
            format: TextFormat::Plain,
            reply_to: None,
        };
        if let Err(e) = channel.send(notice).await {
            tracing::warn!(channel = %request.channel, "the approval notice was not sent: {e}");
        }
    }
    Ok(Json(request))
}

/// `POST /api/pairing/{code}/deny`: refuse the sender (they hear nothing).
pub(crate) async fn pairing_deny(
    State(state): State<AppState>,
    Path(code): Path<String>,
) -> Result<Json<crate::access::PairingRequest>, ApiError> {
    let pairing = state.pairing.as_ref().ok_or_else(no_pairing)?;
    Ok(Json(pairing.deny(&code)?))
}

fn no_pairing() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "pairing is not enabled in this gateway",
    )
}

/// `POST /channels/{name}/webhook`: the channel authenticates and answers.
pub(crate) async fn webhook(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Some(channel) = state.channels.iter().find(|c| c.name() == name) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such channel",
        ));
    };
    let request = WebhookRequest {
        headers: headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect(),
        body: body.to_vec(),
    };
    let answer = channel.webhook(request).await?;
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    Ok((
        status,
        [(header::CONTENT_TYPE, answer.content_type)],
        answer.body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ocg_core::testing::{RecordingChannel, ScriptedAgent};
    use ocg_core::{Attachment, ChatTarget};

    /// The scripted agent, plus sessions that can be reset.
    #[derive(Default)]
    struct Resettable(ScriptedAgent, std::sync::Mutex<Vec<String>>);

    #[async_trait]
    impl Agent for Resettable {
        async fn chat_stream(
            &self,
            request: ChatRequest,
        ) -> ocg_core::Result<ocg_core::ChatStream> {
            self.0.chat_stream(request).await
        }
        async fn health(&self) -> ocg_core::HealthReport {
            self.0.health().await
        }
        async fn reset_session(&self, key: &str) -> ocg_core::Result<()> {
            self.1.lock().unwrap().push(key.to_owned());
            Ok(())
        }
    }

    fn bridge() -> (Arc<ChannelBridge>, Arc<RecordingChannel>, Arc<Resettable>) {
        let channel = Arc::new(RecordingChannel::new("fake"));
        let agent = Arc::new(Resettable::default());
        (
            Arc::new(ChannelBridge::new(agent.clone(), channel.clone())),
            channel,
            agent,
        )
    }

    #[tokio::test]
    async fn a_message_is_answered_in_its_chat_with_a_typing_notice() {
        let (bridge, channel, agent) = bridge();
        bridge
            .handle(IncomingMessage::text("fake", "42", "7", "hello"))
            .await;
        let sent = channel.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].target, ChatTarget::chat("42"));
        assert_eq!(sent[0].text, "echo: hello");
        assert_eq!(sent[0].format, TextFormat::Markdown);
        let requests = agent.0.requests();
        assert_eq!(requests[0].session_key.as_deref(), Some("fake:42"));
        assert_eq!(channel.typing_notices(), vec![ChatTarget::chat("42")]);
    }

    #[tokio::test]
    async fn commands_are_answered_by_the_bridge() {
        let (bridge, channel, agent) = bridge();
        for text in ["/start", "/help@my_bot", "/new", "/reset", "/frobnicate"] {
            bridge
                .handle(IncomingMessage::text("fake", "1", "2", text))
                .await;
        }
        let sent: Vec<String> = channel.sent().into_iter().map(|m| m.text).collect();
        assert_eq!(sent[0], HELP);
        assert_eq!(sent[1], HELP);
        assert!(
            sent[2].starts_with("Started a new conversation"),
            "{}",
            sent[2]
        );
        assert!(sent[3].starts_with("Started a new conversation"));
        assert!(sent[4].contains("/frobnicate"));
        assert!(channel.typing_notices().is_empty(), "no agent turn ran");
        assert_eq!(*agent.1.lock().unwrap(), vec!["fake:1", "fake:1"]);
    }

    /// An agent whose turns take a while.
    struct SlowAgent(ScriptedAgent);

    #[async_trait]
    impl Agent for SlowAgent {
        async fn chat_stream(
            &self,
            request: ChatRequest,
        ) -> ocg_core::Result<ocg_core::ChatStream> {
            tokio::time::sleep(Duration::from_millis(300)).await;
            self.0.chat_stream(request).await
        }
        async fn health(&self) -> ocg_core::HealthReport {
            self.0.health().await
        }
    }

    /// A recording channel whose typing notice lasts 50 ms.
    struct ShortTyping(RecordingChannel);

    #[async_trait]
    impl Channel for ShortTyping {
        fn name(&self) -> &str {
            self.0.name()
        }
        fn capabilities(&self) -> ocg_core::ChannelCapabilities {
            ocg_core::ChannelCapabilities {
                typing_refresh_ms: Some(50),
                ..Default::default()
            }
        }
        async fn run(&self, handler: Arc<dyn InboundHandler>) -> ocg_core::Result<()> {
            self.0.run(handler).await
        }
        async fn send(&self, message: OutgoingMessage) -> ocg_core::Result<ocg_core::SentMessage> {
            self.0.send(message).await
        }
        async fn typing(&self, target: &ChatTarget) -> ocg_core::Result<()> {
            self.0.typing(target).await
        }
        fn status(&self) -> ChannelStatus {
            self.0.status()
        }
    }

    #[tokio::test]
    async fn typing_is_repeated_until_the_reply_is_sent() {
        let channel = Arc::new(ShortTyping(RecordingChannel::new("fake")));
        let bridge = ChannelBridge::new(Arc::new(SlowAgent(ScriptedAgent::new())), channel.clone());
        bridge
            .handle(IncomingMessage::text("fake", "3", "3", "slow"))
            .await;
        let notices = channel.0.typing_notices().len();
        assert!(
            notices >= 3,
            "300 ms of work, a notice every 50 ms: {notices}"
        );
        assert_eq!(channel.0.sent()[0].text, "echo: slow");
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(
            channel.0.typing_notices().len(),
            notices,
            "typing stops with the reply"
        );
    }

    #[tokio::test]
    async fn attachments_are_named_never_ignored() {
        let (bridge, channel, _) = bridge();
        let mut photo = IncomingMessage::text("fake", "1", "2", "");
        photo.text = None;
        photo.attachments.push(Attachment {
            kind: AttachmentKind::Image,
            id: Some("f".into()),
            name: None,
            mime_type: None,
            size: None,
        });
        bridge.handle(photo.clone()).await;
        let sent = channel.sent();
        assert_eq!(sent.len(), 1);
        assert!(
            sent[0].text.contains("cannot read photos"),
            "{}",
            sent[0].text
        );

        photo.text = Some("what is this?".into());
        bridge.handle(photo).await;
        let sent = channel.sent();
        assert_eq!(sent.len(), 3, "the note, then the answer to the caption");
        assert!(sent[1].text.contains("answering your text only"));
    }

    /// A channel that takes webhooks with the secret `s3`.
    struct HookChannel(RecordingChannel);

    #[async_trait]
    impl Channel for HookChannel {
        fn name(&self) -> &str {
            "hooky"
        }
        async fn run(&self, handler: Arc<dyn InboundHandler>) -> ocg_core::Result<()> {
            self.0.run(handler).await
        }
        async fn send(&self, message: OutgoingMessage) -> ocg_core::Result<ocg_core::SentMessage> {
            self.0.send(message).await
        }
        async fn webhook(
            &self,
            request: WebhookRequest,
        ) -> ocg_core::Result<ocg_core::WebhookResponse> {
            if request.header("x-secret") != Some("s3") {
                return Err(Error::InvalidInput("bad secret".into()));
            }
            Ok(ocg_core::WebhookResponse {
                status: 200,
                content_type: "text/plain",
                body: request.body,
            })
        }
        fn status(&self) -> ChannelStatus {
            ChannelStatus {
                name: "hooky".into(),
                received: 3,
                ..ChannelStatus::default()
            }
        }
    }

    #[tokio::test]
    async fn channels_are_listed_and_take_their_webhooks() {
        use axum::body::Body;
        use axum::http::Request;
        use http_body_util::BodyExt;
        use tower::ServiceExt;

        let state = crate::GatewayState::new(Arc::new(ScriptedAgent::new()), "tok".into())
            .with_channel(Arc::new(HookChannel(RecordingChannel::new("x"))))
            .with_channel(Arc::new(RecordingChannel::new("plain")));
        let app = crate::router(state);
        let call = |request: Request<Body>| {
            let app = app.clone();
            async move {
                let response = app.oneshot(request).await.unwrap();
                let status = response.status();
                let body = response.into_body().collect().await.unwrap().to_bytes();
                (status, String::from_utf8_lossy(&body).into_owned())
            }
        };
        let list = || Request::get("/api/channels");
        let (status, _) = call(list().body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "the list needs the token");
        let (status, body) = call(
            list()
                .header("authorization", "Bearer tok")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let channels: Vec<ChannelStatus> = serde_json::from_str(&body).unwrap();
        assert_eq!(channels.len(), 2);
        assert_eq!(
            (channels[0].name.as_str(), channels[0].received),
            ("hooky", 3)
        );

        let hook = |name: &str, secret: &str| {
            Request::post(format!("/channels/{name}/webhook"))
                .header("x-secret", secret)
                .body(Body::from("payload"))
                .unwrap()
        };
        assert_eq!(
            call(hook("hooky", "s3")).await,
            (StatusCode::OK, "payload".into())
        );
        assert_eq!(call(hook("hooky", "nope")).await.0, StatusCode::BAD_REQUEST);
        assert_eq!(
            call(hook("plain", "s3")).await.0,
            StatusCode::NOT_FOUND,
            "no webhooks"
        );
        assert_eq!(call(hook("missing", "s3")).await.0, StatusCode::NOT_FOUND);
        let put = Request::put("/channels/hooky/webhook")
            .header("x-secret", "s3")
            .body(Body::from("p"))
            .unwrap();
        assert_eq!(call(put).await.0, StatusCode::OK);
    }

    #[test]
    fn errors_are_short() {
        let long = Error::Remote {
            code: "llm_error".into(),
            message: "x".repeat(1000),
        };
        assert!(short(&long).chars().count() <= ERROR_CHARS + 1);
        assert!(
            short(&Error::unavailable("agent", "connection refused")).contains("not reachable")
        );
    }
}
