//! The Web API methods the Slack channel calls, with `429 Retry-After`
//! obeyed per method (Slack's limits are per method and workspace). The
//! tokens travel in the `Authorization` header only.

use std::time::Duration;

use ocg_core::config::Secret;
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
    /// Slack answered `ok: false` or an HTTP error.
    Refused {
        /// HTTP status (200 for `ok: false`).
        status: u16,
        /// Slack's error code (`invalid_auth`, `channel_not_found`, …).
        error: String,
        /// The wait Slack asked for (429).
        retry_after: Option<Duration>,
    },
}

impl ApiFailure {
    /// Worth retrying: no answer, still rate limited, or a server error.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            ApiFailure::Transport(_) => true,
            ApiFailure::Refused { status, error, .. } => {
                *status == 429
                    || *status >= 500
                    || matches!(
                        error.as_str(),
                        "ratelimited"
                            | "internal_error"
                            | "fatal_error"
                            | "service_unavailable"
                            | "request_timeout"
                    )
            }
        }
    }

    /// The token was refused.
    pub(crate) fn is_unauthorized(&self) -> bool {
        matches!(self, ApiFailure::Refused { error, .. } if matches!(
            error.as_str(),
            "invalid_auth" | "not_authed" | "account_inactive" | "token_revoked" | "token_expired" | "not_allowed_token_type"
        ))
    }

    /// The app lacks an OAuth scope.
    pub(crate) fn is_missing_scope(&self) -> bool {
        matches!(self, ApiFailure::Refused { error, .. } if error == "missing_scope")
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
            ApiFailure::Transport(message) => write!(f, "no answer from Slack: {message}"),
            ApiFailure::Refused { status, error, .. } => {
                write!(f, "Slack answered {status}: {error}")
            }
        }
    }
}

/// Who the bot token belongs to (`auth.test`).
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    /// The bot's user id (`U…`), as mentions name it.
    pub user_id: String,
}

/// A Web API client.
pub(crate) struct WebApi {
    http: reqwest::Client,
    base: String,
    limits: RouteLimits,
}

impl std::fmt::Debug for WebApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebApi")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl WebApi {
    /// A client of the Web API at `api_url` (`https://slack.com/api`).
    pub(crate) fn new(api_url: &str) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.without_url().to_string())?;
        Ok(WebApi {
            http,
            base: api_url.trim_end_matches('/').to_owned(),
            limits: RouteLimits::default(),
        })
    }

    /// Call `method` with `token` and a JSON body, through 429s.
    async fn call(&self, method: &str, token: &Secret, body: Value) -> Result<Value, ApiFailure> {
        let scrub = |text: String| text.replace(token.expose(), "[redacted]");
        let mut last = None;
        for _ in 0..ATTEMPTS {
            self.limits.ready(method).await;
            let response = self
                .http
                .post(format!("{}/{method}", self.base))
                .bearer_auth(token.expose())
                .json(&body)
                .timeout(CALL_TIMEOUT)
                .send()
                .await
                .map_err(|e| ApiFailure::Transport(scrub(e.without_url().to_string())))?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()?.trim().parse::<f64>().ok())
                .and_then(seconds);
            let bytes = response
                .bytes()
                .await
                .map_err(|e| ApiFailure::Transport(scrub(e.without_url().to_string())))?;
            if status == 429 {
                let wait = retry_after.unwrap_or(Duration::from_secs(1));
                tracing::warn!(channel = "slack", method, "rate limited: waiting {wait:?}");
                self.limits.hold(Some(method), wait);
                last = Some(ApiFailure::Refused {
                    status,
                    error: "ratelimited".into(),
                    retry_after: Some(wait),
                });
                continue;
            }
            let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            if status < 300 && answer.get("ok").and_then(Value::as_bool) == Some(true) {
                return Ok(answer);
            }
            let error = answer.get("error").and_then(Value::as_str).map_or_else(
                || format!("{method}: HTTP {status}"),
                |e| scrub(e.to_owned()),
            );
            return Err(ApiFailure::Refused {
                status,
                error,
                retry_after,
            });
        }
        Err(last.unwrap_or_else(|| ApiFailure::Transport("no attempt made".into())))
    }

    /// Whose `token` is (`auth.test`).
    pub(crate) async fn auth_test(&self, token: &Secret) -> Result<Identity, ApiFailure> {
        let answer = self.call("auth.test", token, json!({})).await?;
        Ok(Identity {
            user_id: answer
                .get("user_id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        })
    }

    /// A Socket Mode URL for the app token (`apps.connections.open`).
    pub(crate) async fn open_connection(&self, app_token: &Secret) -> Result<String, ApiFailure> {
        let answer = self
            .call("apps.connections.open", app_token, json!({}))
            .await?;
        answer
            .get("url")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| ApiFailure::Refused {
                status: 200,
                error: "apps.connections.open gave no url".into(),
                retry_after: None,
            })
    }

    /// `chat.postMessage`; the message's `ts`.
    pub(crate) async fn post_message(
        &self,
        token: &Secret,
        message: Value,
    ) -> Result<String, ApiFailure> {
        let answer = self.call("chat.postMessage", token, message).await?;
        Ok(answer
            .get("ts")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned())
    }

    /// Add (`reactions.add`) or remove (`reactions.remove`) the reaction
    /// `name` on the message `ts` of `channel`.
    pub(crate) async fn reaction(
        &self,
        token: &Secret,
        add: bool,
        channel: &str,
        ts: &str,
        name: &str,
    ) -> Result<(), ApiFailure> {
        let method = if add {
            "reactions.add"
        } else {
            "reactions.remove"
        };
        self.call(
            method,
            token,
            json!({"channel": channel, "timestamp": ts, "name": name}),
        )
        .await
        .map(drop)
    }
}
