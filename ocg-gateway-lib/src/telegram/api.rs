//! The few Bot API calls the channel makes, and the wire shapes it reads.
//!
//! Every method URL contains the bot token (`/bot<token>/<method>`), so no
//! URL ever leaves this module: transport errors are stripped of theirs
//! (`reqwest::Error::without_url`) and any text is scrubbed of the token
//! before it becomes an error.

use std::time::Duration;

use ocg_core::config::Secret;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Why a Bot API call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ApiFailure {
    /// No answer: connection refused, reset, timed out.
    Transport(String),
    /// Telegram answered `ok: false` (or a non-JSON error page).
    Refused {
        /// HTTP status.
        status: u16,
        /// Telegram's description.
        description: String,
        /// Seconds to wait before retrying (429).
        retry_after: Option<u64>,
    },
}

impl ApiFailure {
    /// Worth retrying: no answer, 429 or a server error.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            ApiFailure::Transport(_) => true,
            ApiFailure::Refused { status, .. } => *status == 429 || *status >= 500,
        }
    }

    /// The bot token itself was refused: nothing to retry.
    pub(crate) fn is_unauthorized(&self) -> bool {
        matches!(
            self,
            ApiFailure::Refused {
                status: 401 | 404,
                ..
            }
        )
    }

    /// Telegram could not parse the HTML of a message.
    pub(crate) fn is_formatting(&self) -> bool {
        matches!(self, ApiFailure::Refused { status: 400, description, .. }
            if description.contains("parse entities") || description.contains("entity"))
    }

    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiFailure::Refused {
                retry_after: Some(seconds),
                ..
            } => Some(Duration::from_secs((*seconds).min(3600))),
            _ => None,
        }
    }
}

impl crate::reconnect::Transient for ApiFailure {
    fn transient(&self) -> bool {
        self.is_transient()
    }
    fn wait(&self) -> Option<Duration> {
        self.retry_after()
    }
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiFailure::Transport(message) => write!(f, "no answer from Telegram: {message}"),
            ApiFailure::Refused {
                status,
                description,
                ..
            } => write!(f, "Telegram answered {status}: {description}"),
        }
    }
}

#[derive(Debug, Deserialize)]
struct Envelope {
    ok: bool,
    #[serde(default)]
    result: Value,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Parameters>,
}

#[derive(Debug, Deserialize)]
struct Parameters {
    #[serde(default)]
    retry_after: Option<u64>,
}

/// An update from `getUpdates` or a webhook, as far as the channel reads it
/// (its `update_id` is read from the raw JSON the journal keeps).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Update {
    #[serde(default)]
    pub message: Option<TgMessage>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct TgMessage {
    pub message_id: i64,
    pub chat: Chat,
    #[serde(default)]
    pub from: Option<User>,
    #[serde(default)]
    pub message_thread_id: Option<i64>,
    #[serde(default)]
    pub is_topic_message: bool,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub caption: Option<String>,
    #[serde(default)]
    pub reply_to_message: Option<Box<ReplyTo>>,
    #[serde(default)]
    pub photo: Vec<FileRef>,
    #[serde(default)]
    pub voice: Option<FileRef>,
    #[serde(default)]
    pub audio: Option<FileRef>,
    #[serde(default)]
    pub video: Option<FileRef>,
    #[serde(default)]
    pub video_note: Option<FileRef>,
    #[serde(default)]
    pub document: Option<FileRef>,
    #[serde(default)]
    pub sticker: Option<FileRef>,
    #[serde(default)]
    pub location: Option<Value>,
    #[serde(default)]
    pub contact: Option<Value>,
    #[serde(default)]
    pub poll: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ReplyTo {
    pub message_id: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Chat {
    pub id: i64,
    /// `private`, `group`, `supergroup` or `channel`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct User {
    pub id: i64,
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct FileRef {
    #[serde(default)]
    pub file_id: Option<String>,
    #[serde(default)]
    pub file_name: Option<String>,
    #[serde(default)]
    pub mime_type: Option<String>,
    #[serde(default)]
    pub file_size: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct SentTg {
    message_id: i64,
}

/// A Bot API client for one bot.
pub(crate) struct BotApi {
    http: reqwest::Client,
    base: String,
    token: Secret,
}

impl std::fmt::Debug for BotApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BotApi")
            .field("base", &self.base)
            .field("token", &"[redacted]")
            .finish()
    }
}

/// Timeout of calls other than long polls.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

impl BotApi {
    pub(crate) fn new(api_url: &str, token: Secret) -> Result<Self, ApiFailure> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .map_err(|e| ApiFailure::Transport(e.without_url().to_string()))?;
        Ok(BotApi {
            http,
            base: api_url.trim_end_matches('/').to_owned(),
            token,
        })
    }

    fn scrub(&self, text: &str) -> String {
        let token = self.token.expose();
        if token.is_empty() {
            text.to_owned()
        } else {
            text.replace(token, "[redacted]")
        }
    }

    /// Call `method` with a JSON body; `timeout` bounds the whole call.
    async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        body: Value,
        timeout: Duration,
    ) -> Result<T, ApiFailure> {
        let url = format!("{}/bot{}/{method}", self.base, self.token.expose());
        let response = self
            .http
            .post(url)
            .json(&body)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| ApiFailure::Transport(self.scrub(&e.without_url().to_string())))?;
        let status = response.status().as_u16();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ApiFailure::Transport(self.scrub(&e.without_url().to_string())))?;
        let envelope: Envelope = match serde_json::from_slice(&bytes) {
            Ok(envelope) => envelope,
            Err(_) => {
                return Err(ApiFailure::Refused {
                    status: if status < 400 { 502 } else { status },
                    description: format!("{method}: the answer is not Bot API JSON"),
                    retry_after: None,
                });
            }
        };
        if !envelope.ok || status >= 400 {
            return Err(ApiFailure::Refused {
                status: if status < 400 { 400 } else { status },
                description: self
                    .scrub(envelope.description.as_deref().unwrap_or("no description")),
                retry_after: envelope.parameters.and_then(|p| p.retry_after),
            });
        }
        serde_json::from_value(envelope.result).map_err(|e| ApiFailure::Refused {
            status: 502,
            description: format!("{method}: unexpected result: {e}"),
            retry_after: None,
        })
    }

    /// Long-poll for updates from `offset`, waiting up to `wait` on the server.
    /// Updates are returned raw so the journal stores exactly what arrived.
    pub(crate) async fn get_updates(
        &self,
        offset: i64,
        wait: Duration,
    ) -> Result<Vec<Value>, ApiFailure> {
        self.call(
            "getUpdates",
            json!({
                "offset": offset,
                "timeout": wait.as_secs(),
                "limit": 100,
                "allowed_updates": ["message"],
            }),
            wait + CALL_TIMEOUT,
        )
        .await
    }

    /// Send one message; returns its id.
    pub(crate) async fn send_message(
        &self,
        chat_id: &str,
        thread_id: Option<&str>,
        text: &str,
        html: bool,
        reply_to: Option<&str>,
    ) -> Result<i64, ApiFailure> {
        let mut body = json!({
            "chat_id": chat_id,
            "text": text,
            "link_preview_options": {"is_disabled": true},
        });
        if html {
            body["parse_mode"] = "HTML".into();
        }
        if let Some(thread) = thread_id {
            body["message_thread_id"] = thread.into();
        }
        if let Some(id) = reply_to.and_then(|id| id.parse::<i64>().ok()) {
            body["reply_parameters"] =
                json!({"message_id": id, "allow_sending_without_reply": true});
        }
        let sent: SentTg = self.call("sendMessage", body, CALL_TIMEOUT).await?;
        Ok(sent.message_id)
    }

    /// Replace the text of a sent message.
    pub(crate) async fn edit_message(
        &self,
        chat_id: &str,
        message_id: &str,
        text: &str,
    ) -> Result<(), ApiFailure> {
        let _: Value = self
            .call(
                "editMessageText",
                json!({"chat_id": chat_id, "message_id": message_id, "text": text}),
                CALL_TIMEOUT,
            )
            .await?;
        Ok(())
    }

    /// Show "typing…" for about five seconds.
    pub(crate) async fn send_typing(
        &self,
        chat_id: &str,
        thread_id: Option<&str>,
    ) -> Result<(), ApiFailure> {
        let mut body = json!({"chat_id": chat_id, "action": "typing"});
        if let Some(thread) = thread_id {
            body["message_thread_id"] = thread.into();
        }
        let _: Value = self.call("sendChatAction", body, CALL_TIMEOUT).await?;
        Ok(())
    }

    /// Ask Telegram to push updates to `url` with `secret` in every request.
    pub(crate) async fn set_webhook(&self, url: &str, secret: &Secret) -> Result<(), ApiFailure> {
        let _: Value = self
            .call(
                "setWebhook",
                json!({
                    "url": url,
                    "secret_token": secret.expose(),
                    "allowed_updates": ["message"],
                }),
                CALL_TIMEOUT,
            )
            .await?;
        Ok(())
    }

    /// Stop webhook delivery (so `getUpdates` works); pending updates stay.
    pub(crate) async fn delete_webhook(&self) -> Result<(), ApiFailure> {
        let _: Value = self
            .call(
                "deleteWebhook",
                json!({"drop_pending_updates": false}),
                CALL_TIMEOUT,
            )
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_classify() {
        let refused = |status, description: &str, retry_after| ApiFailure::Refused {
            status,
            description: description.into(),
            retry_after,
        };
        assert!(refused(429, "Too Many Requests", Some(3)).is_transient());
        assert_eq!(
            refused(429, "x", Some(3)).retry_after(),
            Some(Duration::from_secs(3))
        );
        assert!(refused(502, "Bad Gateway", None).is_transient());
        assert!(!refused(400, "chat not found", None).is_transient());
        assert!(refused(401, "Unauthorized", None).is_unauthorized());
        assert!(
            refused(
                400,
                "Bad Request: can't parse entities: Unsupported start tag",
                None
            )
            .is_formatting()
        );
        assert!(!refused(400, "Bad Request: chat not found", None).is_formatting());
        assert!(ApiFailure::Transport("reset".into()).is_transient());
    }

    #[test]
    fn debug_and_scrub_hide_the_token() {
        let api = BotApi::new("https://api.telegram.org/", Secret::new("123:SECRET")).unwrap();
        assert!(!format!("{api:?}").contains("SECRET"));
        assert_eq!(
            api.scrub("GET /bot123:SECRET/getMe failed"),
            "GET /bot[redacted]/getMe failed"
        );
        assert_eq!(api.base, "https://api.telegram.org");
    }

    #[test]
    fn updates_parse_with_unknown_fields() {
        let update: Update = serde_json::from_value(json!({
            "update_id": 5,
            "message": {
                "message_id": 9, "date": 0, "chat": {"id": -100, "type": "group"},
                "from": {"id": 7, "is_bot": false, "first_name": "Ann"},
                "photo": [{"file_id": "a", "file_unique_id": "b", "width": 1, "height": 1}],
                "caption": "look"
            }
        }))
        .unwrap();
        let message = update.message.unwrap();
        assert_eq!(message.chat.id, -100);
        assert_eq!(message.photo.len(), 1);
        assert_eq!(message.caption.as_deref(), Some("look"));
    }
}
