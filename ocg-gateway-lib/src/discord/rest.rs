//! The few REST calls the Discord channel makes (API v10), with the rate
//! limits Discord announces obeyed per route: a route whose
//! `X-RateLimit-Remaining` reached 0 waits `X-RateLimit-Reset-After`, and a
//! `429` waits its `retry_after` (for every route when it is global) and
//! is sent again. The token travels in the `Authorization` header only.

use std::time::Duration;

use ocg_core::config::Secret;
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::ratelimit::{RouteLimits, seconds};

/// Timeout of one call.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Sends of one request, 429s included.
const ATTEMPTS: u32 = 5;

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ApiFailure {
    /// No answer: connection refused, reset, timed out.
    Transport(String),
    /// Discord answered with an error.
    Refused {
        /// HTTP status.
        status: u16,
        /// Discord's message.
        message: String,
        /// The wait Discord asked for (429).
        retry_after: Option<Duration>,
    },
}

impl ApiFailure {
    /// Worth retrying: no answer, still rate limited, or a server error.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            ApiFailure::Transport(_) => true,
            ApiFailure::Refused { status, .. } => *status == 429 || *status >= 500,
        }
    }

    /// The token was refused.
    pub(crate) fn is_unauthorized(&self) -> bool {
        matches!(self, ApiFailure::Refused { status: 401, .. })
    }

    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiFailure::Refused { retry_after, .. } => *retry_after,
            ApiFailure::Transport(_) => None,
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
            ApiFailure::Transport(message) => write!(f, "no answer from Discord: {message}"),
            ApiFailure::Refused {
                status, message, ..
            } => write!(f, "Discord answered {status}: {message}"),
        }
    }
}

/// What `GET /gateway/bot` says.
#[derive(Debug, Deserialize)]
pub(crate) struct GatewayBot {
    pub url: String,
    #[serde(default)]
    pub session_start_limit: Option<StartLimit>,
}

/// How many fresh sessions (identifies) are left, and when more come.
#[derive(Debug, Deserialize)]
pub(crate) struct StartLimit {
    pub remaining: u64,
    /// Milliseconds.
    pub reset_after: u64,
}

/// A REST client for one bot.
pub(crate) struct Rest {
    http: reqwest::Client,
    /// `…/api/v10`.
    base: String,
    token: Secret,
    limits: RouteLimits,
}

impl std::fmt::Debug for Rest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rest")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

fn header_seconds(headers: &HeaderMap, name: &str) -> Option<Duration> {
    seconds(headers.get(name)?.to_str().ok()?.trim().parse().ok()?)
}

impl Rest {
    /// A client of the API at `api_url` (`https://discord.com/api`).
    pub(crate) fn new(api_url: &str, token: Secret) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!(
                "DiscordBot (https://github.com/ocg-rs/ocg, ",
                env!("CARGO_PKG_VERSION"),
                ")"
            ))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.without_url().to_string())?;
        Ok(Rest {
            http,
            base: format!("{}/v10", api_url.trim_end_matches('/')),
            token,
            limits: RouteLimits::default(),
        })
    }

    fn scrub(&self, text: &str) -> String {
        text.replace(self.token.expose(), "[redacted]")
    }

    /// One call, waiting for its route's limit and through 429s.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, ApiFailure> {
        // Discord's buckets are per route and major parameter (the
        // channel id), which the path holds.
        let route = format!("{method} {path}");
        let mut last = None;
        for _ in 0..ATTEMPTS {
            self.limits.ready(&route).await;
            let mut request = self
                .http
                .request(method.clone(), format!("{}{path}", self.base))
                .header("Authorization", format!("Bot {}", self.token.expose()))
                .timeout(CALL_TIMEOUT);
            if let Some(body) = &body {
                request = request.json(body);
            }
            let response = request
                .send()
                .await
                .map_err(|e| ApiFailure::Transport(self.scrub(&e.without_url().to_string())))?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            if headers
                .get("x-ratelimit-remaining")
                .is_some_and(|v| v.as_bytes() == b"0")
                && let Some(wait) = header_seconds(&headers, "x-ratelimit-reset-after")
            {
                self.limits.hold(Some(&route), wait);
            }
            let bytes = response
                .bytes()
                .await
                .map_err(|e| ApiFailure::Transport(self.scrub(&e.without_url().to_string())))?;
            let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            if status == 429 {
                let wait = answer
                    .get("retry_after")
                    .and_then(Value::as_f64)
                    .and_then(seconds)
                    .or_else(|| header_seconds(&headers, "retry-after"))
                    .unwrap_or(Duration::from_secs(1));
                let global = answer.get("global").and_then(Value::as_bool) == Some(true)
                    || headers.get("x-ratelimit-global").is_some();
                tracing::warn!(channel = "discord", route = %route, global, "rate limited: waiting {wait:?}");
                self.limits.hold((!global).then_some(route.as_str()), wait);
                last = Some(ApiFailure::Refused {
                    status,
                    message: "rate limited".into(),
                    retry_after: Some(wait),
                });
                continue;
            }
            if (200..300).contains(&status) {
                return Ok(answer);
            }
            let message = answer.get("message").and_then(Value::as_str).map_or_else(
                || format!("{method} {}", path_shape(path)),
                |m| self.scrub(m),
            );
            return Err(ApiFailure::Refused {
                status,
                message,
                retry_after: None,
            });
        }
        Err(last.unwrap_or_else(|| ApiFailure::Transport("no attempt made".into())))
    }

    /// Where to connect the Gateway, and how many identifies are left.
    pub(crate) async fn gateway_bot(&self) -> Result<GatewayBot, ApiFailure> {
        let answer = self.call(Method::GET, "/gateway/bot", None).await?;
        serde_json::from_value(answer).map_err(|e| ApiFailure::Refused {
            status: 502,
            message: format!("GET /gateway/bot: unexpected answer: {e}"),
            retry_after: None,
        })
    }

    /// The bot's own user id.
    pub(crate) async fn me(&self) -> Result<String, ApiFailure> {
        let answer = self.call(Method::GET, "/users/@me", None).await?;
        answer
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| ApiFailure::Refused {
                status: 502,
                message: "GET /users/@me: no id".into(),
                retry_after: None,
            })
    }

    /// The parent channel of `channel` when it is a thread.
    pub(crate) async fn parent(&self, channel: &str) -> Result<Option<String>, ApiFailure> {
        let answer = self
            .call(Method::GET, &format!("/channels/{channel}"), None)
            .await?;
        // Types 10, 11 and 12 are threads.
        let thread = answer
            .get("type")
            .and_then(Value::as_u64)
            .is_some_and(|t| (10..=12).contains(&t));
        Ok(thread
            .then(|| answer.get("parent_id")?.as_str().map(str::to_owned))
            .flatten())
    }

    /// Post `content` in `channel`, as a reply to `reply_to`; its id. No
    /// mention in it pings anyone: the model's text must not call
    /// `@everyone`. Discord posts a `nonce` once: a retry with the same one
    /// (after a lost answer) returns the message already posted.
    pub(crate) async fn post(
        &self,
        channel: &str,
        content: &str,
        reply_to: Option<&str>,
        nonce: &str,
    ) -> Result<String, ApiFailure> {
        let mut body = json!({
            "content": content,
            "allowed_mentions": {"parse": []},
            "nonce": nonce,
            "enforce_nonce": true,
        });
        if let Some(id) = reply_to {
            body["message_reference"] = json!({"message_id": id, "fail_if_not_exists": false});
        }
        let answer = self
            .call(
                Method::POST,
                &format!("/channels/{channel}/messages"),
                Some(body),
            )
            .await?;
        Ok(answer
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned())
    }

    /// Show "typing" in `channel` (for ten seconds, or until the bot posts).
    pub(crate) async fn typing(&self, channel: &str) -> Result<(), ApiFailure> {
        self.call(Method::POST, &format!("/channels/{channel}/typing"), None)
            .await
            .map(drop)
    }
}

/// A path with its ids replaced, for messages.
fn path_shape(path: &str) -> String {
    path.split('/')
        .map(|part| {
            if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
                "{id}"
            } else {
                part
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}
